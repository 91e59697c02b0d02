"""An XDP buffer modelled on Linux's ``struct xdp_buff``, in real memory.

One 4 KiB frame (like a page in the driver's page pool): ``XDP_PACKET_HEADROOM``
(256) bytes of headroom, the packet, and ``skb_shared_info`` at the end.  The
``xdp_buff`` region holds real pointers into the frame, and ``rxq``/``txq``
regions point at the receiving device, as the kernel's do; so ``xdp_md->data``
(a u32 in uapi) becomes a 64-bit load of a real address after rewriting.
"""
from __future__ import annotations

import struct
import weakref

from ..errors import VMError
from ..layouts.kernel import XDP_BUFF, XDP_RXQ_INFO, XDP_TXQ_INFO
from ..memory import SHARED, Memory, Region
from .skbuff import SHINFO_SIZE

from ..uapi import XDP_PACKET_HEADROOM  # noqa: E402
XDP_FRAME_SIZE = 4096
# xdp_metalen_invalid(): metadata length is 4-aligned and fits skb_shared_info.meta_len (u8)
XDP_METALEN_MAX = 255
XDP_FLAGS_HAS_FRAGS = 1 << 0

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_RXQ_DEV = XDP_RXQ_INFO.off("dev")
_RXQ_QUEUE = XDP_RXQ_INFO.off("queue_index")
_BUFF_DATA = XDP_BUFF.off("data")
_BUFF_META = XDP_BUFF.off("data_meta")
_BUFF_END = XDP_BUFF.off("data_end")

_live: "weakref.WeakValueDictionary[int, XdpBuff]" = weakref.WeakValueDictionary()


def from_ctx(addr: int) -> "XdpBuff":
    x = _live.get(addr)
    if x is None:
        raise VMError(f"{addr:#x} is not an XDP buffer")
    return x


class _Ptr:
    def __init__(self, name: str, layout=XDP_BUFF):
        off, size = layout.members[name]
        self.off = off
        self.st = struct.Struct({4: "<I", 8: "<Q"}[size])

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return self.st.unpack_from(obj.region.buf, self.off)[0]

    def __set__(self, obj, v: int) -> None:
        self.st.pack_into(obj.region.buf, self.off, v)


class XdpBuff:
    """The frame, its pointers, and the receive queue it arrived on."""

    data = _Ptr("data")
    data_end = _Ptr("data_end")
    data_meta = _Ptr("data_meta")
    data_hard_start = _Ptr("data_hard_start")
    frame_sz = _Ptr("frame_sz")
    flags = _Ptr("flags")

    def __init__(self, payload: bytes, *, dev, queue_index: int = 0,
                 headroom: int = XDP_PACKET_HEADROOM, frame_size: int = XDP_FRAME_SIZE,
                 frags: list[bytes] | None = None, memory: Memory = SHARED):
        self.memory = memory
        self.dev = dev
        self.frame = memory.add(Region(frame_size, "xdp frame"))
        self.region = memory.add(Region(XDP_BUFF.size, "xdp_buff", writable=False))
        self.rxq = memory.add(Region(XDP_RXQ_INFO.size, "xdp_rxq_info", writable=False))
        self.txq = memory.add(Region(XDP_TXQ_INFO.size, "xdp_txq_info", writable=False))
        struct.pack_into("<Q", self.rxq.buf, XDP_RXQ_INFO.off("dev"), dev.addr)
        struct.pack_into("<I", self.rxq.buf, XDP_RXQ_INFO.off("queue_index"), queue_index)
        struct.pack_into("<I", self.rxq.buf, XDP_RXQ_INFO.off("frag_size"), frame_size)
        struct.pack_into("<Q", self.region.buf, XDP_BUFF.off("rxq"), self.rxq.start)
        struct.pack_into("<Q", self.region.buf, XDP_BUFF.off("txq"), 0)
        self.egress_dev = None
        start = self.frame.start
        if headroom + len(payload) + SHINFO_SIZE > frame_size:
            raise ValueError("packet does not fit the XDP frame")
        self.frame.buf[headroom:headroom + len(payload)] = payload
        self.data_hard_start = start
        self.data = self.data_meta = start + headroom
        self.data_end = start + headroom + len(payload)
        self.frame_sz = frame_size
        self.frags: list[bytearray] = [bytearray(f) for f in (frags or [])]
        self.flags = XDP_FLAGS_HAS_FRAGS if self.frags else 0
        _live[self.region.start] = self

    def reset(self, payload: bytes, *, dev, queue_index: int = 0,
              headroom: int = XDP_PACKET_HEADROOM, frags: list[bytes] | None = None) -> None:
        """Reuse this buffer for another packet (what a driver's page pool does)."""
        if headroom + len(payload) + SHINFO_SIZE > self.frame_sz:
            raise ValueError("packet does not fit the XDP frame")
        # a reset runs per packet: offsets and formats are module constants
        rxq = self.rxq.buf
        if dev is not self.dev:
            self.dev = dev
            _U64.pack_into(rxq, _RXQ_DEV, dev.addr)
        _U32.pack_into(rxq, _RXQ_QUEUE, queue_index)
        if self.egress_dev is not None:
            self.egress_dev = None
            struct.pack_into("<Q", self.region.buf, XDP_BUFF.off("txq"), 0)
        buf = self.frame.buf
        buf[:] = bytes(len(buf))
        buf[headroom:headroom + len(payload)] = payload
        start = self.frame.start + headroom
        ctl = self.region.buf
        _U64.pack_into(ctl, _BUFF_DATA, start)
        _U64.pack_into(ctl, _BUFF_META, start)
        _U64.pack_into(ctl, _BUFF_END, start + len(payload))
        if frags:
            self.frags = [bytearray(f) for f in frags]
            self.flags = XDP_FLAGS_HAS_FRAGS
        else:
            if self.frags:
                self.frags = []
            if self.flags:
                self.flags = 0

    @property
    def addr(self) -> int:
        return self.region.start

    @property
    def queue_index(self) -> int:
        return struct.unpack_from("<I", self.rxq.buf, XDP_RXQ_INFO.off("queue_index"))[0]

    def set_egress(self, dev) -> None:
        """A devmap program runs with txq->dev set (xdp_md->egress_ifindex)."""
        self.egress_dev = dev
        struct.pack_into("<Q", self.txq.buf, XDP_TXQ_INFO.off("dev"), dev.addr)
        struct.pack_into("<Q", self.region.buf, XDP_BUFF.off("txq"), self.txq.start)

    def frame_offset(self, ptr: int) -> int:
        """Where address ``ptr`` lies in the frame's buffer."""
        return ptr - self.frame.start

    def linear(self) -> bytes:
        return bytes(self.frame.buf[self.frame_offset(self.data):self.frame_offset(self.data_end)])

    def meta(self) -> bytes:
        return bytes(self.frame.buf[self.frame_offset(self.data_meta):self.frame_offset(self.data)])

    def frags_size(self) -> int:
        return sum(len(f) for f in self.frags)

    def buff_len(self) -> int:
        return self.data_end - self.data + self.frags_size()

    def tailroom_end(self) -> int:
        """The last byte the packet may grow into: the start of skb_shared_info."""
        return self.data_hard_start + self.frame_sz - SHINFO_SIZE

    def read(self, offset: int, n: int) -> bytes:
        """Bytes at ``offset`` of the whole (linear + frags) packet."""
        lin = self.linear()
        whole = lin + b"".join(self.frags) if offset + n > len(lin) else lin
        return bytes(whole[offset:offset + n])

    def write(self, offset: int, b: bytes) -> None:
        lin_len = self.data_end - self.data
        i = 0
        while i < len(b):
            pos = offset + i
            if pos < lin_len:
                k = min(len(b) - i, lin_len - pos)
                o = self.frame_offset(self.data) + pos
                self.frame.buf[o:o + k] = b[i:i + k]
            else:
                pos -= lin_len
                for f in self.frags:
                    if pos < len(f):
                        k = min(len(b) - i, len(f) - pos)
                        f[pos:pos + k] = b[i:i + k]
                        break
                    pos -= len(f)
                else:
                    raise ValueError("write past the end of the packet")
            i += k

    def close(self) -> None:
        _live.pop(self.region.start, None)
        for r in (self.region, self.rxq, self.txq, self.frame):
            self.memory.remove(r)

    def __enter__(self) -> "XdpBuff":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
