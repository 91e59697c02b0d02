"""Test runs of XDP programs (bpf_prog_test_run_xdp): an xdp_buff with 256 bytes of
headroom, metadata and linear-size rules, fragments, live frames refused."""
from __future__ import annotations

import errno
import struct
from time import perf_counter_ns
from typing import Protocol

from ..packet.xdpbuff import XDP_METALEN_MAX, XDP_PACKET_HEADROOM, XdpBuff
from ..engines import Bound, Machine
from ..layouts.kernel import XDP_BUFF
from ..packet.net import Network
from ..progtypes.contexts import XDP_MD
from ..runtime import RunContext
from ..uapi import BPF_F_TEST_XDP_LIVE_FRAMES, AttachType as A, ProgType as P
from .common import (PAGE_SIZE, SKB_TAILROOM, TEST_XDP_MAX_BATCH, U32_MAX, RunResult, TestRun,
                     TestRunError, ctx_init, finish_ctx, finish_data, native_batch,
                     redirect_outcome, test_init, timed, u32)
from ..packet.skbuff import ETH_HLEN

XDP_MD_SIZEOF = XDP_MD.size
# the data_in sizes a run with no ctx_in takes without fragments (bpf_test_init's limits)
PLAIN_MIN = ETH_HLEN
PLAIN_MAX = PAGE_SIZE - XDP_PACKET_HEADROOM - SKB_TAILROOM
_OFF_DATA = XDP_BUFF.off("data")
_OFF_DATA_META = XDP_BUFF.off("data_meta")
_OFF_DATA_END = XDP_BUFF.off("data_end")
_U64 = struct.Struct("<Q")


class FrameHolder(Protocol):
    """What :func:`plain_xdp` runs on (a ``Runner`` that owns its CPU)."""
    machine: Machine
    bound: Bound
    net: Network
    frames: XdpBuff | None


def plain_xdp(r: FrameHolder, data: bytes) -> RunResult:
    """bpf_prog_test_run_xdp() for its everyday call: data only (PLAIN_MIN..PLAIN_MAX
    bytes), no ctx_in or ctx_out, no flags, batch or repeat, on the frame ``r`` keeps
    between runs.  The same outcome as :func:`run_xdp` for such a call, without
    re-deciding per call what the arguments already settle -- what a pytest loop or a
    replay packet by packet runs."""
    net, machine, bound = r.net, r.machine, r.bound
    xdp = r.frames
    dev = net.loopback
    if xdp is None:
        xdp = r.frames = XdpBuff(data, dev=dev)
    else:
        xdp.reset(data, dev=dev)
    rc = RunContext(net, P.XDP, xdp)
    machine.progctx = rc
    try:
        t0 = perf_counter_ns()
        ex = bound.run(xdp.addr)
        duration = min(perf_counter_ns() - t0, U32_MAX)
    finally:
        machine.progctx = None
    ctl = xdp.region.buf
    start = xdp.frame.start
    out = bytes(xdp.frame.buf[_U64.unpack_from(ctl, _OFF_DATA_META)[0] - start:
                              _U64.unpack_from(ctl, _OFF_DATA_END)[0] - start])
    if xdp.frags:
        out += b"".join(bytes(f) for f in xdp.frags)
    retval = ex.retval & U32_MAX
    return RunResult(retval, out, None, duration,
                     redirect_outcome(P.XDP, retval, rc) if retval > 2 else None,
                     rc.trace, len(out), ex.insns, P.XDP, rc.clones)


def run_xdp(t: TestRun) -> RunResult:
    """bpf_prog_test_run_xdp()."""
    p, machine, bound, data, ctx_in, repeat, flags, cpu, batch_size, data_size_out, \
        ctx_size_out, want_ctx_out, net = t.unpack()
    at = p.info.expected_attach_type
    if at in (A.XDP_DEVMAP, A.XDP_CPUMAP):
        raise TestRunError(errno.EINVAL, "devmap/cpumap XDP programs cannot be test-run")
    if flags & ~BPF_F_TEST_XDP_LIVE_FRAMES:
        raise TestRunError(errno.EINVAL, f"unknown flags {flags:#x} for XDP")
    live = bool(flags & BPF_F_TEST_XDP_LIVE_FRAMES)
    if live:
        if batch_size > TEST_XDP_MAX_BATCH:
            raise TestRunError(errno.E2BIG, f"batch_size {batch_size} > {TEST_XDP_MAX_BATCH}")
    elif batch_size:
        raise TestRunError(errno.EINVAL, "batch_size needs BPF_F_TEST_XDP_LIVE_FRAMES")
    headroom = XDP_PACKET_HEADROOM
    tailroom = SKB_TAILROOM
    size = len(data)
    ctx = ctx_init(ctx_in, want_ctx_out, XDP_MD_SIZEOF)
    meta_len = 0
    lin_req = size
    if ctx is not None:
        c_data, c_end, c_meta = u32(ctx, 0), u32(ctx, 4), u32(ctx, 8)
        # 6.18: data_end may be below the data size -- it is then the linear part and the
        # rest of data_in goes to fragments
        if c_meta or c_end > size or c_data > c_end or (c_data & 3) or \
                c_data > XDP_METALEN_MAX or (live and (data_size_out is not None or want_ctx_out)):
            raise TestRunError(errno.EINVAL, "ctx_in: xdp_md needs data_meta 0, data <= "
                                             "data_end <= the data size, and data (the metadata "
                                             "length) 4-aligned and at most 255")
        meta_len = c_data
        headroom -= c_data
        lin_req = c_end
    max_data = PAGE_SIZE - headroom - tailroom
    lin = lin_req
    if lin > max_data:
        if live:
            raise TestRunError(errno.EINVAL, "live frames cannot be larger than a page")
        lin = max_data
    if size - meta_len < ETH_HLEN:     # 6.18 rejects runt frames before bpf_test_init()
        raise TestRunError(errno.EINVAL, f"data_in has {size - meta_len} bytes after the "
                                         f"metadata; less than ETH_HLEN")
    test_init(lin, max_data, headroom, tailroom)
    frags = []
    rest = data[lin:]
    while rest:
        frags.append(rest[:PAGE_SIZE])
        rest = rest[PAGE_SIZE:]
    dev, queue = net.loopback, 0
    if ctx is not None:
        if u32(ctx, 20):
            raise TestRunError(errno.EINVAL, "ctx_in: egress_ifindex must be 0")
        ing, q = u32(ctx, 12), u32(ctx, 16)
        if not ing and q:
            raise TestRunError(errno.EINVAL, "ctx_in: rx_queue_index needs ingress_ifindex")
        if ing:
            try:
                dev = net.device(ing)
            except KeyError:
                raise TestRunError(errno.ENODEV, f"ctx_in: no device with ifindex {ing}") \
                    from None
            if q >= dev.rx_queues:
                raise TestRunError(errno.EINVAL, f"ctx_in: rx_queue_index {q} >= the device's "
                                                 f"{dev.rx_queues} queues")
            queue = q
    # xdp_prepare_buff(): data_in lands at the (reduced) headroom; the first ctx.data
    # bytes of it are metadata (xdp_convert_md_to_buff)
    xdp = t.frames
    if xdp is not None:
        t.frames = None
        xdp.reset(data[:lin], dev=dev, queue_index=queue, headroom=headroom, frags=frags)
    else:
        xdp = XdpBuff(data[:lin], dev=dev, queue_index=queue, headroom=headroom, frags=frags)
    try:
        if meta_len:
            xdp.data = xdp.data_meta + meta_len
        rc = RunContext(net, P.XDP, xdp)
        machine.progctx = rc
        ex, duration = timed(lambda: bound.run(xdp.addr), repeat, native_batch(bound, xdp.addr))
        if ctx is not None:
            struct.pack_into("<I", ctx, 0, xdp.data - xdp.data_meta)
            struct.pack_into("<I", ctx, 4, xdp.data_end - xdp.data_meta)
        whole = bytes(xdp.frame.buf[xdp.data_meta - xdp.frame.start:xdp.data_end - xdp.frame.start])
        whole += b"".join(bytes(f) for f in xdp.frags)
        out, full, err = finish_data(whole, data_size_out)
        res = RunResult(ex.retval & U32_MAX, out, None, duration,
                        redirect_outcome(P.XDP, ex.retval & U32_MAX, rc), rc.trace, full,
                        ex.insns, P.XDP, rc.clones)
        if err:
            raise TestRunError(err, f"data_out is smaller than the {full}-byte result")
        res.ctx_out, err = finish_ctx(ctx, ctx_size_out)
        if err:
            raise TestRunError(err, "ctx_out is smaller than the context")
        return res
    finally:
        machine.progctx = None
        if t.keep_frames:
            t.frames = xdp                   # the next run of this Runner reuses the frame
        else:
            xdp.close()
