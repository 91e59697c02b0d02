"""bpf_flow_dissect(): how a FLOW_DISSECTOR program runs (net/core/flow_dissector.c)."""
from __future__ import annotations

import struct

from ..uapi import ETH_HLEN
from ..vm.memory import SHARED, Region
from ..layouts.kernel import BPF_FLOW_DISSECTOR

FLOW_KEYS_SIZE = 56      # sizeof(struct bpf_flow_keys)


def dissect(machine, bound, data: bytes, flags: int) -> tuple[int, bytes, int]:
    """Run the program on a frame: (retval, struct bpf_flow_keys, insns executed).

    The keys start with n_proto from the Ethernet header and nhoff/thoff at
    ETH_HLEN; afterwards nhoff and thoff are clamped into the packet, as Linux does.
    """
    hlen = len(data)
    pkt = SHARED.add(Region(bytes(data), "flow dissector packet", writable=False))
    keys = SHARED.add(Region(FLOW_KEYS_SIZE, "bpf_flow_keys"))
    ctx = SHARED.add(Region(BPF_FLOW_DISSECTOR.size, "bpf_flow_dissector", writable=False))
    try:
        kb = keys.buf
        struct.pack_into("<HH", kb, 0, ETH_HLEN, ETH_HLEN)
        kb[10:12] = data[12:14]                     # n_proto: eth->h_proto, big-endian
        struct.pack_into("<I", kb, 48, flags)
        cb = ctx.buf
        struct.pack_into("<Q", cb, BPF_FLOW_DISSECTOR.off("flow_keys"), keys.start)
        struct.pack_into("<Q", cb, BPF_FLOW_DISSECTOR.off("data"), pkt.start)
        struct.pack_into("<Q", cb, BPF_FLOW_DISSECTOR.off("data_end"), pkt.start + hlen)
        ex = bound.run(ctx.start)
        nhoff, thoff = struct.unpack_from("<HH", kb, 0)
        nhoff = min(max(nhoff, ETH_HLEN), hlen) & 0xFFFF
        thoff = min(max(thoff, nhoff), hlen) & 0xFFFF
        struct.pack_into("<HH", kb, 0, nhoff, thoff)
        return ex.retval & 0xFFFFFFFF, bytes(kb), ex.insns
    finally:
        for r in (pkt, keys, ctx):
            SHARED.remove(r)
