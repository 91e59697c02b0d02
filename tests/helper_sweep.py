"""A harness that calls any helper with any arguments, from a program, in any engine.

One program per program type holds a call of every helper in the registry;
the packet it runs on says which helper to call and how to build each of the
five arguments: a plain value, or an offset from the frame pointer, the
context, the packet, or one of the harness's maps.  So a whole sweep of
helpers and hostile arguments compiles once per program type and engine.

Packet layout: ``u64 helper index``, then for r1..r5 ``u64 tag, u64 value``;
the program returns the helper's r0 (as the program type's u32 return value).
"""
from __future__ import annotations

import struct

from ebee.helpers import REGISTRY
from ebee.uapi import ProgType

# where the packet's start is in each context (xdp_md.data, __sk_buff.data)
DATA_OFF = {ProgType.XDP: 0, ProgType.SCHED_CLS: 76}
PLAIN, STACK, CTX, PKT = 0, 1, 2, 3
MAP0 = 4                   # tags MAP0 + k: the k-th harness map's pointer + value
HELPERS = sorted(REGISTRY)
HEADER = 8 + 5 * 16
PACKET_SIZE = 256


def program(prog_type: ProgType, map_ids: list[int]) -> str:
    d = DATA_OFF[prog_type]
    lines = ["r9 = r1", f"r8 = *(u32 *)(r1 +{d})", "r6 = *(u64 *)(r8 +0)"]
    for i in range(5):
        t, v = 8 + 16 * i, 16 + 16 * i
        lines += [f"r2 = *(u64 *)(r8 +{t})", f"r4 = *(u64 *)(r8 +{v})",
                  f"if r2 == {STACK} goto stk{i}", f"if r2 == {CTX} goto ctx{i}",
                  f"if r2 == {PKT} goto pkt{i}"]
        lines += [f"if r2 == {MAP0 + k} goto map{i}_{k}" for k in range(len(map_ids))]
        lines += [f"goto put{i}",
                  f"stk{i}:", "r4 += r10", f"goto put{i}",
                  f"ctx{i}:", "r4 += r9", f"goto put{i}",
                  f"pkt{i}:", "r4 += r8", f"goto put{i}"]
        for k, mid in enumerate(map_ids):
            lines += [f"map{i}_{k}:", f"r3 = map[id:{mid}] ll", "r4 += r3", f"goto put{i}"]
        lines += [f"put{i}:", f"*(u64 *)(r10 -{8 * (i + 1)}) = r4"]
    lines += [f"r{i + 1} = *(u64 *)(r10 -{8 * (i + 1)})" for i in range(5)]
    for k, fid in enumerate(HELPERS):
        lines.append(f"if r6 == {k} goto h{k}")
    lines += ["r0 = 0", "exit"]
    for k, fid in enumerate(HELPERS):
        lines += [f"h{k}:", f"call {int(fid)}", "exit"]
    return "\n".join(lines) + "\n"


def packet(helper: int, args) -> bytes:
    """``args``: five (tag, value) pairs."""
    out = struct.pack("<Q", HELPERS.index(helper))
    for tag, value in args:
        out += struct.pack("<QQ", tag, value & (1 << 64) - 1)
    return out + bytes(range(PACKET_SIZE - len(out)))
