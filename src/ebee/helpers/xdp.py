"""XDP buffer helpers (net/core/filter.c): moving head, tail and metadata; bytes; length."""
from __future__ import annotations

import errno

from ..uapi import ENOTSUPP, ETH_HLEN, FuncId as F
from .registry import implements
from ..packet.xdpbuff import from_ctx
from ..packet.xdpbuff import XDP_METALEN_MAX

M64 = (1 << 64) - 1
XDP_FRAME_SIZE = 40          # sizeof(struct xdp_frame): kept at the start of the headroom


def neg(e: int) -> int:
    return -e & M64


def s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def xdp_of(ctx: int):
    return from_ctx(ctx)


@implements(F.xdp_adjust_head)
def xdp_adjust_head(m, ctx, offset, *_):
    x = xdp_of(ctx)
    off = s32(offset)
    metalen = x.data - x.data_meta
    data_start = x.data_hard_start + XDP_FRAME_SIZE + metalen
    data = x.data + off
    if data < data_start or data > x.data_end - ETH_HLEN:
        return neg(errno.EINVAL)
    if metalen:
        meta = bytes(x.frame.buf[x.frame_offset(x.data_meta):x.frame_offset(x.data_meta) + metalen])
        o = x.frame_offset(x.data_meta + off)
        x.frame.buf[o:o + metalen] = meta
    x.data_meta += off
    x.data = data
    return 0


@implements(F.xdp_adjust_meta)
def xdp_adjust_meta(m, ctx, offset, *_):
    x = xdp_of(ctx)
    meta = x.data_meta + s32(offset)
    if x.data_meta > x.data:
        return neg(ENOTSUPP)
    if meta < x.data_hard_start + XDP_FRAME_SIZE or meta > x.data:
        return neg(errno.EINVAL)
    metalen = x.data - meta
    if metalen & 3 or metalen > XDP_METALEN_MAX:
        return neg(errno.EACCES)
    x.data_meta = meta
    return 0


@implements(F.xdp_adjust_tail)
def xdp_adjust_tail(m, ctx, offset, *_):
    x = xdp_of(ctx)
    off = s32(offset)
    if x.frags:
        return _frags_adjust_tail(x, off)
    data_end = x.data_end + off
    if data_end > x.tailroom_end() or data_end < x.data + ETH_HLEN:
        return neg(errno.EINVAL)
    if off > 0:
        o = x.frame_offset(x.data_end)
        x.frame.buf[o:o + off] = bytes(off)
    x.data_end = data_end
    return 0


def _frags_adjust_tail(x, off: int) -> int:
    """bpf_xdp_frags_increase_tail / shrink_tail: the tail is in the last fragment."""
    if off >= 0:
        last = x.frags[-1]
        # a fragment is a page: it may grow up to the page's end
        if len(last) + off > 4096:
            return neg(errno.EINVAL)
        last.extend(bytes(off))
        return 0
    shrink = -off
    lin = x.data_end - x.data
    if shrink >= x.frags_size() + lin - ETH_HLEN:
        return neg(errno.EINVAL)
    while shrink and x.frags:
        last = x.frags[-1]
        k = min(shrink, len(last))
        del last[len(last) - k:]
        shrink -= k
        if not last:
            x.frags.pop()
    if shrink:
        x.data_end -= shrink
    if not x.frags:
        x.flags = 0
    return 0


def _xdp_pointer_check(x, offset: int, length: int) -> int | None:
    if offset > 0xFFFF or length > 0xFFFF:
        return neg(errno.EFAULT)
    if offset + length > x.buff_len():
        return neg(errno.EINVAL)
    return None


@implements(F.xdp_load_bytes)
def xdp_load_bytes(m, ctx, offset, buf, length, _r5):
    x = xdp_of(ctx)
    offset &= 0xFFFFFFFF
    err = _xdp_pointer_check(x, offset, length)
    if err is not None:
        return err
    m.write(buf, x.read(offset, length))
    return 0


@implements(F.xdp_store_bytes)
def xdp_store_bytes(m, ctx, offset, buf, length, _r5):
    x = xdp_of(ctx)
    offset &= 0xFFFFFFFF
    err = _xdp_pointer_check(x, offset, length)
    if err is not None:
        return err
    x.write(offset, m.read(buf, length))
    return 0


@implements(F.xdp_get_buff_len)
def xdp_get_buff_len(m, ctx, *_):
    return xdp_of(ctx).buff_len()
