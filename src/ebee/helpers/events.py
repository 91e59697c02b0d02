"""Ring buffer, dynptr and perf event output helpers.

``struct bpf_dynptr`` (16 bytes in the program's memory) is laid out as the
kernel's ``bpf_dynptr_kern``: ``u64 data``, ``u32 size`` (low 24 bits the
size, bits 28-30 the type, bit 31 read-only), ``u32 offset``.
"""
from __future__ import annotations

import errno as E
import struct

from ..errors import VMError
from ..uapi import FuncId
from .maps import map_of
from .registry import implements
from ..maps.ringbuf import BPF_MAX_USER_RINGBUF_SAMPLES, RingBuf, UserRingBuf
from ..memory import Region
from ..maps.base import live_maps
from ..maps.perf import PerfEventArray
from ..packet.skbuff import from_ctx as skb_from_ctx
from ..packet.xdpbuff import from_ctx as xdp_from_ctx
from .. import uapi as U

M64 = (1 << 64) - 1
DYNPTR = struct.Struct("<QII")
DYNPTR_SIZE_MASK = 0xFFFFFF
DYNPTR_MAX_SIZE = DYNPTR_SIZE_MASK
DYNPTR_RDONLY_BIT = 1 << 31
DYNPTR_TYPE_SHIFT = 28
DYNPTR_TYPE_LOCAL, DYNPTR_TYPE_RINGBUF = 1, 2


def _ringbuf(mp):
    rb = map_of(mp)
    if not isinstance(rb, RingBuf):
        raise VMError(f"map {rb.id} is a {rb.type.name}, not a RINGBUF")
    return rb


def _ring_of(addr: int):
    for mp in live_maps():
        if isinstance(mp, RingBuf) and mp.owns(addr):
            return mp
    raise VMError(f"{addr:#x} is not a ring buffer record")


@implements(FuncId.ringbuf_output)
def ringbuf_output(m, mp, data, size, flags, _):
    return _ringbuf(mp).output(m.read(data, size), flags)


@implements(FuncId.ringbuf_reserve)
def ringbuf_reserve(m, mp, size, flags, *_):
    if flags:
        return 0
    return _ringbuf(mp).reserve(size)


@implements(FuncId.ringbuf_submit)
def ringbuf_submit(m, data, flags, *_):
    _ring_of(data).commit(data, flags, False)
    return 0


@implements(FuncId.ringbuf_discard)
def ringbuf_discard(m, data, flags, *_):
    _ring_of(data).commit(data, flags, True)
    return 0


@implements(FuncId.ringbuf_query)
def ringbuf_query(m, mp, flags, *_):
    return _ringbuf(mp).query(flags)


# -- dynptrs ----------------------------------------------------------------------------

def _dyn_get(m, ptr: int) -> tuple[int, int, int, int, bool]:
    data, size, off = DYNPTR.unpack(m.read(ptr, 16))
    return data, size & DYNPTR_SIZE_MASK, off, (size >> DYNPTR_TYPE_SHIFT) & 7, bool(size & DYNPTR_RDONLY_BIT)


def _dyn_set(m, ptr: int, data: int, size: int, typ: int, off: int = 0, rdonly: bool = False) -> None:
    m.write(ptr, DYNPTR.pack(data, size | (typ << DYNPTR_TYPE_SHIFT) |
                             (DYNPTR_RDONLY_BIT if rdonly else 0), off))


def _dyn_null(m, ptr: int) -> None:
    m.write(ptr, bytes(16))


def _check_off_len(size: int, offset: int, length: int) -> int:
    if length > size or offset > size - length:
        return -E.E2BIG
    return 0


@implements(FuncId.dynptr_from_mem)
def dynptr_from_mem(m, data, size, flags, ptr, _):
    if flags:
        _dyn_null(m, ptr)
        return -E.EINVAL
    if size > DYNPTR_MAX_SIZE:
        _dyn_null(m, ptr)
        return -E.E2BIG
    _dyn_set(m, ptr, data, size, DYNPTR_TYPE_LOCAL)
    return 0


@implements(FuncId.ringbuf_reserve_dynptr)
def ringbuf_reserve_dynptr(m, mp, size, flags, ptr, _):
    if flags:
        _dyn_null(m, ptr)
        return -E.EINVAL
    if size > DYNPTR_MAX_SIZE:
        _dyn_null(m, ptr)
        return -E.E2BIG
    addr = _ringbuf(mp).reserve(size)
    if not addr:
        _dyn_null(m, ptr)
        return -E.EINVAL
    _dyn_set(m, ptr, addr, size, DYNPTR_TYPE_RINGBUF)
    return 0


def _commit_dynptr(m, ptr, flags, discard: bool) -> int:
    data, *_ = _dyn_get(m, ptr)
    if not data:
        return 0
    _ring_of(data).commit(data, flags, discard)
    _dyn_null(m, ptr)
    return 0


@implements(FuncId.ringbuf_submit_dynptr)
def ringbuf_submit_dynptr(m, ptr, flags, *_):
    return _commit_dynptr(m, ptr, flags, False)


@implements(FuncId.ringbuf_discard_dynptr)
def ringbuf_discard_dynptr(m, ptr, flags, *_):
    return _commit_dynptr(m, ptr, flags, True)


@implements(FuncId.dynptr_read)
def dynptr_read(m, dst, length, src, offset, flags):
    offset &= 0xFFFFFFFF              # u32 offset and length
    length &= 0xFFFFFFFF
    data, size, off, typ, _ = _dyn_get(m, src)
    if not data or flags:
        return -E.EINVAL
    err = _check_off_len(size, offset, length)
    if err:
        return err
    m.write(dst, m.read(data + off + offset, length))
    return 0


@implements(FuncId.dynptr_write)
def dynptr_write(m, dst, offset, src, length, flags):
    offset &= 0xFFFFFFFF              # u32 offset and length
    length &= 0xFFFFFFFF
    data, size, off, typ, rdonly = _dyn_get(m, dst)
    if not data or rdonly:
        return -E.EINVAL
    err = _check_off_len(size, offset, length)
    if err:
        return err
    if flags:
        return -E.EINVAL
    m.write(data + off + offset, m.read(src, length))
    return 0


@implements(FuncId.dynptr_data)
def dynptr_data(m, ptr, offset, length, *_):
    offset &= 0xFFFFFFFF              # u32 offset and length
    length &= 0xFFFFFFFF
    data, size, off, typ, rdonly = _dyn_get(m, ptr)
    if not data or _check_off_len(size, offset, length) or rdonly:
        return 0
    return data + off + offset


@implements(FuncId.user_ringbuf_drain)
def user_ringbuf_drain(m, mp, cb, cb_ctx, flags, _):
    """bpf_user_ringbuf_drain as kernel/bpf/ringbuf.c runs it: each sample goes to the
    callback as a read-only local dynptr; the return is the number of samples the
    callback saw (a discarded one is consumed, not counted), or the reader's -errno
    for a corrupted ring, -EBUSY while another drain of the ring is running."""
    rb = map_of(mp)
    if not isinstance(rb, UserRingBuf):
        raise VMError(f"map {rb.id} is a {rb.type.name}, not a USER_RINGBUF")
    if flags & ~(U.BPF_RB_NO_WAKEUP | U.BPF_RB_FORCE_WAKEUP):
        return -E.EINVAL
    with rb.lock:
        if rb.busy:
            return -E.EBUSY
        rb.busy = True
    fn = m.find_function(cb)
    dyn = m.memory.add(Region(16, "user ringbuf dynptr"))
    try:
        samples = discarded = ret = 0
        while samples < BPF_MAX_USER_RINGBUF_SAMPLES and ret == 0:
            err, addr, size = rb.peek()
            if err == -E.ENODATA:
                break
            if err == -E.EAGAIN:
                discarded += 1
                samples += 1
                continue
            if err:
                return err
            dyn.buf[:] = DYNPTR.pack(addr, size | (DYNPTR_TYPE_LOCAL << DYNPTR_TYPE_SHIFT), 0)
            ret = m.call_function(cb, dyn.start, cb_ctx, 0, 0, 0, fn=fn)
            rb.release(size)
            samples += 1
        return samples - discarded
    finally:
        m.memory.remove(dyn)
        rb.busy = False


# -- perf event output ---------------------------------------------------------------------

def _perf_array(mp):
    pe = map_of(mp)
    if not isinstance(pe, PerfEventArray):
        raise VMError(f"map {pe.id} is a {pe.type.name}, not a PERF_EVENT_ARRAY")
    return pe


def _packet_of(ctx: int):
    """The packet behind a packet program's context (an skb or an xdp_buff), else None."""
    for from_ctx in (skb_from_ctx, xdp_from_ctx):
        try:
            return from_ctx(ctx)
        except VMError:
            pass
    return None


def _packet_bytes(pkt, n: int) -> bytes | None:
    """The first ``n`` bytes of the packet (bpf_skb_copy / bpf_xdp_copy), None past it."""
    if hasattr(pkt, "headbuf"):                 # an SkBuff
        return pkt.read(0, n) if n <= pkt.len else None
    if n > pkt.data_end - pkt.data:
        return None
    return bytes(pkt.frame.buf[pkt.frame_offset(pkt.data):pkt.frame_offset(pkt.data) + n])


def _output_with_packet(m, pkt, mp, flags, data, size) -> int:
    """bpf_skb_event_output / bpf_xdp_event_output: the record is the meta data followed by
    the first (flags & BPF_F_CTXLEN_MASK) >> 32 bytes of the packet."""
    pe = _perf_array(mp)
    if flags & ~(U.BPF_F_CTXLEN_MASK | U.BPF_F_INDEX_MASK):
        return -E.EINVAL
    n = (flags & U.BPF_F_CTXLEN_MASK) >> 32
    body = _packet_bytes(pkt, n) if pkt is not None else None
    if body is None:
        return -E.EFAULT
    return pe.output(flags & U.BPF_F_INDEX_MASK, m.read(data, size) + body, m.cpu)


@implements(FuncId.perf_event_output)
def perf_event_output(m, ctx, mp, flags, data, size):
    pkt = _packet_of(ctx)
    if pkt is not None:                         # the packet programs' prototype
        return _output_with_packet(m, pkt, mp, flags, data, size)
    return _perf_array(mp).output(flags, m.read(data, size), m.cpu)


@implements(FuncId.skb_output)
def skb_output(m, skb, mp, flags, data, size):
    # tracing programs: an sk_buff pointer they were given (an ebee socket buffer)
    return _output_with_packet(m, _packet_of(skb), mp, flags, data, size)


@implements(FuncId.xdp_output)
def xdp_output(m, xdp, mp, flags, data, size):
    return _output_with_packet(m, _packet_of(xdp), mp, flags, data, size)
