"""Context access rules and rewrites: the registry against Linux.

For every offset and size of each context structure, ebee's answer to "may
this program type load/store here?" is compared with the kernel's verifier,
and for the structures ebee keeps in kernel layout the rewritten
instructions are compared with what ``bpftool prog dump xlated`` would show.
"""
from __future__ import annotations

import pytest

import ebee
from ebee import progtypes
from ebee.runtime.rewrite import find_ctx_accesses, rewrite
from ebee.isa import Kind
from ebee.progtypes.ctx import CtxAccessError, convert_access
from ebee.uapi import AttachType as A, ProgType as P

# (type, attach type, bytes to probe, compare the rewrite too)
CASES = [
    (P.SOCKET_FILTER, None, 196, True), (P.SCHED_CLS, None, 196, True),
    (P.SCHED_ACT, None, 196, True), (P.CGROUP_SKB, A.CGROUP_INET_INGRESS, 196, True),
    (P.LWT_XMIT, None, 196, True), (P.SK_SKB, A.SK_SKB_STREAM_VERDICT, 196, True),
    (P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, 196, True), (P.XDP, None, 28, True),
    (P.XDP, A.XDP_DEVMAP, 28, True), (P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, 84, True),
    (P.SK_LOOKUP, A.SK_LOOKUP, 76, True), (P.PERF_EVENT, None, 188, True),
    (P.CGROUP_DEVICE, A.CGROUP_DEVICE, 16, True),
    (P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, 12, False),
    (P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, 44, False),
    (P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT, 44, False),
    (P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, 76, False),
    (P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG, 76, False),
    (P.SOCK_OPS, None, 228, False), (P.SK_MSG, A.SK_MSG_VERDICT, 84, False),
    (P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT, 60, False),
]
SZ = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}


def _src(off: int, size: int, write: bool) -> str:
    if write:
        return f"r2 = 0\n*({SZ[size]} *)(r1 +{off}) = r2\nr0 = 0\nexit"
    return f"r2 = *({SZ[size]} *)(r1 +{off})\nr0 = 0\nexit"


def _accesses(limit: int):
    for off in range(limit):
        for size in (1, 2, 4, 8):
            if off % size == 0:
                for write in (False, True):
                    yield off, size, write


@pytest.mark.kernel
@pytest.mark.parametrize("pt,at,limit,rewrites", CASES,
                         ids=[f"{c[0].name}-{c[1].name if c[1] is not None else 0}" for c in CASES])
def test_ctx_access_matches_kernel(kernel, pt, at, limit, rewrites):
    from ebee.kernel import KernelProgram
    from ebee.kernel.info import prog_xlated
    info = progtypes.get(pt, at)
    bad = []
    for off, size, write in _accesses(limit):
        insns = ebee.assemble(_src(off, size, write))
        acc = info.ctx_access(off, size, write)
        try:
            kp = KernelProgram(insns, pt, expected_attach_type=int(at) if at is not None else 0)
        except OSError:
            if acc is not None:
                bad.append(f"off={off} size={size} write={write}: ebee accepts, kernel rejects")
            continue
        with kp:
            if acc is None:
                bad.append(f"off={off} size={size} write={write}: kernel accepts, ebee rejects")
                continue
            if rewrites:
                mem = next(i for i in insns if i.kind in (Kind.LDX, Kind.STX))
                k = insns.index(mem)
                ours = [str(i) for i in insns[:k] + convert_access(mem, acc) + insns[k + 1:]]
                theirs = [str(i) for i in ebee.decode(prog_xlated(kp.fd), strict=False)]
                if ours != theirs:
                    bad.append(f"off={off} size={size} write={write}: ebee {ours} kernel {theirs}")
    assert not bad, "\n".join(bad[:20])


def test_every_prog_type_is_registered():
    names = {t.prog_type for t in progtypes.all_types()}
    assert names == {p for p in P if p is not P.UNSPEC}
    xdp = progtypes.get(P.XDP)
    assert xdp.ctx.name == "xdp_md" and xdp.test_run == "xdp"
    assert xdp.helper_allowed(ebee.uapi.FuncId.xdp_adjust_head)
    assert not xdp.helper_allowed(ebee.uapi.FuncId.skb_load_bytes)
    assert progtypes.get(P.CGROUP_SKB, A.CGROUP_INET_EGRESS).ret_range.hi == 3
    assert progtypes.get(P.KPROBE).ctx_kind == "pt_regs"


def test_reg_types_of_pointer_fields():
    tc = progtypes.get(P.SCHED_CLS)
    R = progtypes.RegType
    assert tc.ctx_access(76, 4, False).reg_type is R.PTR_TO_PACKET
    assert tc.ctx_access(80, 4, False).reg_type is R.PTR_TO_PACKET_END
    assert tc.ctx_access(140, 4, False).reg_type is R.PTR_TO_PACKET_META
    assert tc.ctx_access(168, 8, False).reg_type is R.PTR_TO_SOCK_COMMON_OR_NULL
    assert progtypes.get(P.FLOW_DISSECTOR).ctx_access(144, 8, False).reg_type is R.PTR_TO_FLOW_KEYS
    assert progtypes.get(P.SK_LOOKUP).ctx_access(0, 8, False).reg_type is R.PTR_TO_SOCKET_OR_NULL
    assert tc.ctx_access(0, 4, False).reg_type is R.SCALAR_VALUE


def test_rewrite_relinks_jumps_around_expanded_accesses():
    src = """
        r6 = r1
        r2 = *(u32 *)(r6 +40)
        if r2 == 0 goto +2
        r0 = *(u64 *)(r6 +168)
        goto +1
        r0 = 7
        exit
    """
    insns = ebee.assemble(src)
    out = rewrite(insns, progtypes.get(P.SOCKET_FILTER).rules)
    text = [str(i) for i in out]
    # ifindex grew into three instructions; the branch and goto still land on the same code
    assert text[1:4] == ["r2 = *(u64 *)(r6 +16)", "if r2 == 0x0 goto pc+1",
                         "r2 = *(u32 *)(r2 +224)"]
    assert text[4] == "if r2 == 0x0 goto pc+2" and text[6] == "goto pc+1"
    assert text[7] == "r0 = 7"


def test_ctx_tracked_through_spill_and_subprogram():
    src = """
        *(u64 *)(r10 -8) = r1
        r1 = 0
        r3 = *(u64 *)(r10 -8)
        r0 = *(u32 *)(r3 +0)
        r1 = r3
        call pc+1
        exit
        r0 = *(u32 *)(r1 +8)
        exit
    """
    insns = ebee.assemble(src)
    found = find_ctx_accesses(insns)
    assert sorted(found) == [3, 7]
    out = [str(i) for i in rewrite(insns, progtypes.get(P.SCHED_CLS).rules)]
    assert "r0 = *(u32 *)(r3 +112)" in out and "r0 = *(u32 *)(r1 +164)" in out


def test_invalid_and_ambiguous_ctx_accesses_are_rejected():
    rules = progtypes.get(P.SOCKET_FILTER).rules
    with pytest.raises(CtxAccessError, match="invalid bpf_context access off=8 size=4"):
        rewrite(ebee.assemble("r2 = 1\n*(u32 *)(r1 +8) = r2\nexit"), rules)
    amb = "if r2 == 0 goto +1\nr1 = r10\nr0 = *(u32 *)(r1 -8)\nexit"
    with pytest.raises(CtxAccessError, match="different pointers"):
        rewrite(ebee.assemble(amb), rules)


@pytest.mark.kernel
def test_object_xlated_matches_bpftool(kernel, tmp_path):
    """A whole clang-built tc program: ebee's xlated form is the kernel's, instruction for
    instruction (this program has no map lookups or helper calls the kernel also patches)."""
    import os
    from pathlib import Path

    from ebee.kernel.info import prog_xlated
    root = Path(__file__).resolve().parent.parent
    obj = ebee.load(str(root / "examples" / "c" / "tc_classifier.o"), pin_root=str(tmp_path))
    pins = Path("/sys/fs/bpf") / f"ebee-xlated-{os.getpid()}"
    pins.mkdir(exist_ok=True)
    try:
        ours, moved = obj.programs["tc_classify"].xlated()
        kobj = obj.load_kernel(pin_root=str(pins))
        theirs = ebee.decode(prog_xlated(kobj.programs["tc_classify"].fd), strict=False)
        kobj.close()
    finally:
        pins.rmdir()
        obj.close()
    assert [str(i) for i in ours] == [str(i) for i in theirs]
    assert moved[0] == 0
