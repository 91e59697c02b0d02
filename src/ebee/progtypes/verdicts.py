"""Return values named per program type: XDP actions, tc actions, SK_PASS/SK_DROP, ..."""
from __future__ import annotations

from .. import uapi
from ..uapi import TC_ACT_REDIRECT, ProgType as P, RetCode, SkAction, XdpAction

TC_ACT = {getattr(uapi, n): n for n in dir(uapi) if n.startswith("TC_ACT_")}
XDP_REDIRECT = int(XdpAction.REDIRECT)


def verdict_name(prog_type: P | None, retval: int) -> str:
    """The symbolic name of a return value, or the number where none applies."""
    r32 = retval & 0xFFFFFFFF
    s32 = r32 - (1 << 32) if r32 & 0x80000000 else r32
    if prog_type is P.XDP:
        try:
            return "XDP_" + XdpAction(r32).name
        except ValueError:
            return f"{r32} (invalid: dropped)"
    if prog_type in (P.SCHED_CLS, P.SCHED_ACT):
        return TC_ACT.get(s32, str(s32))
    if prog_type in (P.SK_SKB, P.SK_MSG, P.SK_LOOKUP, P.SK_REUSEPORT):
        try:
            return "SK_" + SkAction(r32).name
        except ValueError:
            return str(r32)
    if prog_type in (P.LWT_IN, P.LWT_OUT, P.LWT_XMIT, P.LWT_SEG6LOCAL):
        try:
            return "BPF_" + RetCode(r32).name
        except ValueError:
            return str(r32)
    if prog_type is P.SOCKET_FILTER:
        return "drop" if r32 == 0 else f"keep {r32} bytes"
    if prog_type is P.CGROUP_SKB:
        return {0: "drop", 1: "allow"}.get(r32 & 1, str(r32)) + (" +cn" if r32 & 2 else "")
    return str(s32)


def is_redirect(prog_type: P | None, retval: int) -> bool:
    r32 = retval & 0xFFFFFFFF
    if prog_type is P.XDP:
        return r32 == XDP_REDIRECT
    if prog_type in (P.SCHED_CLS, P.SCHED_ACT):
        return r32 == TC_ACT_REDIRECT
    if prog_type in (P.LWT_XMIT,):
        return r32 == int(RetCode.REDIRECT)
    if prog_type is P.SK_SKB:
        return r32 == int(SkAction.PASS)
    return False
