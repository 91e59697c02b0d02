"""Test runs of FLOW_DISSECTOR programs (bpf_prog_test_run_flow_dissector), and how
such a program runs on a frame (bpf_flow_dissect, net/core/flow_dissector.c)."""
from __future__ import annotations

import errno
import struct

from ..memory import SHARED, Region
from ..layouts.kernel import BPF_FLOW_DISSECTOR
from ..runtime import RunContext
from ..uapi import ETH_HLEN, ProgType as P
from .common import (RunResult, TestRun, TestRunError, ctx_init, finish_ctx, finish_data,
                     range_zero, test_init, timed, u32)

FLOW_KEYS_SIZEOF = 56      # sizeof(struct bpf_flow_keys)


def dissect(machine, bound, data: bytes, flags: int) -> tuple[int, bytes, int]:
    """Run the program on a frame: (retval, struct bpf_flow_keys, insns executed).

    The keys start with n_proto from the Ethernet header and nhoff/thoff at
    ETH_HLEN; afterwards nhoff and thoff are clamped into the packet, as Linux does.
    """
    hlen = len(data)
    pkt = SHARED.add(Region(bytes(data), "flow dissector packet", writable=False))
    keys = SHARED.add(Region(FLOW_KEYS_SIZEOF, "bpf_flow_keys"))
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


def run_flow_dissector(t: TestRun) -> RunResult:
    p, machine, bound, data, ctx_in, repeat, flags, cpu, batch_size, data_size_out, \
        ctx_size_out, want_ctx_out, net = t.unpack()
    if flags or cpu or batch_size:
        raise TestRunError(errno.EINVAL, "flags, cpu and batch_size must be 0 for this "
                                         "program type")
    size = len(data)
    if size < ETH_HLEN:
        raise TestRunError(errno.EINVAL, f"data_in is {size} bytes; less than ETH_HLEN")
    test_init(size, size, 0, 0)
    uctx = ctx_init(ctx_in, want_ctx_out, FLOW_KEYS_SIZEOF)
    fflags = 0
    if uctx is not None:
        # verify_user_bpf_flow_keys(): only flags (offset 48) may be set
        if not range_zero(uctx, 0, 48) or not range_zero(uctx, 52, FLOW_KEYS_SIZEOF):
            raise TestRunError(errno.EINVAL, "ctx_in: only bpf_flow_keys.flags may be set")
        fflags = u32(uctx, 48)
    rc = RunContext(net, P.FLOW_DISSECTOR)
    machine.progctx = rc
    try:
        (retval, keys, n), duration = timed(
            lambda: dissect(machine, bound, data, fflags), repeat)
    finally:
        machine.progctx = None
    out, full, err = finish_data(keys, data_size_out)
    res = RunResult(retval, out, None, duration, None, rc.trace, full, n, P.FLOW_DISSECTOR)
    if err:
        raise TestRunError(err, "data_out is smaller than struct bpf_flow_keys")
    res.ctx_out, err = finish_ctx(uctx, ctx_size_out)
    if err:
        raise TestRunError(err, "ctx_out is smaller than the context")
    return res
