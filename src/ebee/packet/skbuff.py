"""A socket buffer modelled on Linux's ``struct sk_buff``, in real memory.

The ``sk_buff`` region is laid out as the kernel lays it out (see
:mod:`ebee.layouts.kernel`), so rewritten context accesses load and store
the very bytes this class reads: ``skb.mark`` *is* the u32 at offset 164.
The packet lives in a separate head buffer -- headroom, data, tailroom, then
``skb_shared_info`` at ``head + end`` -- sized as kmalloc would size it, so
helpers that grow the packet reallocate exactly when Linux would.
"""
from __future__ import annotations

import struct
import weakref

from ..errors import VMError
from ..layouts.kernel import (BPF_SKB_DATA_END, PKT_TYPE_MAX, QDISC_SKB_CB, SK_BUFF, SKB_SHARED_INFO,
                              TSTAMP_TYPE_MASK)
from ..memory import SHARED, Memory, Region

from ..uapi import (ETH_ALEN, ETH_HLEN, ETH_P_802_2, ETH_P_802_3, ETH_P_802_3_MIN,  # noqa: F401
                    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, PACKET_BROADCAST,
                    PACKET_HOST, PACKET_MULTICAST, PACKET_OTHERHOST, SKF_LL_OFF, SKF_NET_OFF)

NET_SKB_PAD = 64
NET_IP_ALIGN = 0          # x86_64
SMP_CACHE_BYTES = 64
SHINFO_SIZE = (SKB_SHARED_INFO.size + SMP_CACHE_BYTES - 1) & ~(SMP_CACHE_BYTES - 1)
HEADER_UNSET = 0xFFFF

_KMALLOC = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)


def skb_data_align(n: int) -> int:
    return (n + SMP_CACHE_BYTES - 1) & ~(SMP_CACHE_BYTES - 1)


def kmalloc_size(n: int) -> int:
    """The size kmalloc really hands out for a request of ``n`` bytes (ksize())."""
    for b in _KMALLOC:
        if n <= b:
            return b
    size = 8192
    while size < n:
        size <<= 1
    return size


_live: "weakref.WeakValueDictionary[int, SkBuff]" = weakref.WeakValueDictionary()


def from_ctx(addr: int) -> "SkBuff":
    """The socket buffer whose ``sk_buff`` region starts at ``addr`` (a program's ctx)."""
    skb = _live.get(addr)
    if skb is None:
        raise VMError(f"{addr:#x} is not a socket buffer")
    return skb


class _Member:
    """A descriptor reading/writing one sk_buff member in the region."""

    def __init__(self, name: str, fmt: str | None = None):
        off, size = SK_BUFF.members[name]
        self.off = off
        self.st = struct.Struct(fmt or {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[size])

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return self.st.unpack_from(obj.region.buf, self.off)[0]

    def __set__(self, obj, value: int) -> None:
        self.st.pack_into(obj.region.buf, self.off, value & ((1 << (8 * self.st.size)) - 1))


class SkBuff:
    """One linear socket buffer: the ``sk_buff`` region plus its head buffer."""

    len = _Member("len")
    data_len = _Member("data_len")
    mac_len = _Member("mac_len")
    queue_mapping = _Member("queue_mapping")
    tc_index = _Member("tc_index")
    priority = _Member("priority")
    skb_iif = _Member("skb_iif")
    hash = _Member("hash")
    vlan_proto = _Member("vlan_proto")
    vlan_tci = _Member("vlan_tci")
    vlan_all = _Member("vlan_all")
    napi_id = _Member("napi_id")
    mark = _Member("mark")
    protocol_raw = _Member("protocol")          # network byte order, as the kernel stores it
    transport_header = _Member("transport_header")
    network_header = _Member("network_header")
    mac_header = _Member("mac_header")
    tail = _Member("tail")
    end = _Member("end")
    head = _Member("head")
    data = _Member("data")
    dev_ptr = _Member("dev")
    sk_ptr = _Member("sk")
    tstamp = _Member("tstamp")
    csum = _Member("csum")
    _flags1 = _Member("__pkt_type_offset")
    _flags2 = _Member("__flags2_offset")
    _mono_tc = _Member("__mono_tc_offset")

    def __init__(self, payload: bytes, *, dev, headroom: int = NET_SKB_PAD + NET_IP_ALIGN,
                 memory: Memory = SHARED):
        self.memory = memory
        self.dev = dev
        self.sk = None
        self.region = memory.add(Region(SK_BUFF.size, "sk_buff"))
        size = len(payload)
        alloc = kmalloc_size(skb_data_align(size) + headroom + SHINFO_SIZE)
        self.headbuf = memory.add(Region(alloc, "skb data"))
        self.head = self.headbuf.start
        self.end = alloc - SHINFO_SIZE
        self.data = self.head + headroom
        self.tail = headroom + size
        self.len = size
        self.headbuf.buf[headroom:headroom + size] = payload
        self.dev_ptr = dev.addr
        self.mac_header = self.network_header = self.transport_header = HEADER_UNSET
        self.truesize = alloc
        self.tunnel = None          # tunnel metadata (set_tunnel_key / the receive side)
        _live[self.region.start] = self

    # -- checksum state (bitfields: ip_summed bits 5-6 of __pkt_type_offset, csum_level
    # bits 6-7 of the byte after it, as Linux 6.18 lays them out)
    @property
    def ip_summed(self) -> int:
        return (self._flags1 >> 5) & 3

    @ip_summed.setter
    def ip_summed(self, v: int) -> None:
        self._flags1 = (self._flags1 & ~0x60) | ((v & 3) << 5)

    @property
    def tstamp_type(self) -> int:
        return self._mono_tc & TSTAMP_TYPE_MASK

    @tstamp_type.setter
    def tstamp_type(self, v: int) -> None:
        self._mono_tc = (self._mono_tc & ~TSTAMP_TYPE_MASK) | (v & TSTAMP_TYPE_MASK)

    @property
    def csum_level(self) -> int:
        return (self._mono_tc >> 6) & 3

    @csum_level.setter
    def csum_level(self, v: int) -> None:
        self._mono_tc = (self._mono_tc & 0x3F) | ((v & 3) << 6)

    # -- geometry ------------------------------------------------------------------

    @property
    def addr(self) -> int:
        return self.region.start

    @property
    def data_off(self) -> int:
        return self.data - self.head

    def headroom(self) -> int:
        return self.data_off

    def tailroom(self) -> int:
        return self.end - self.tail

    def headlen(self) -> int:
        return self.len - self.data_len

    def payload(self) -> bytes:
        o = self.data_off
        return bytes(self.headbuf.buf[o:o + self.headlen()])

    @property
    def pkt_type(self) -> int:
        return self._flags1 & PKT_TYPE_MAX

    @pkt_type.setter
    def pkt_type(self, v: int) -> None:
        self._flags1 = (self._flags1 & ~PKT_TYPE_MAX) | (v & PKT_TYPE_MAX)

    @property
    def protocol(self) -> int:
        """skb->protocol in host order (the kernel stores __be16)."""
        v = self.protocol_raw
        return ((v & 0xFF) << 8) | (v >> 8)

    @protocol.setter
    def protocol(self, v: int) -> None:
        self.protocol_raw = ((v & 0xFF) << 8) | ((v >> 8) & 0xFF)

    def sw_hash(self) -> bool:
        return bool(self._flags2 & 0x4)

    def hash_valid(self) -> bool:
        """skb->l4_hash or skb->sw_hash: the hash was computed (skb_get_hash keeps it)."""
        return bool(self._flags2 & 0x6)

    def set_hash(self, h: int, *, l4: bool = False, sw: bool = False) -> None:
        self.hash = h
        f = self._flags2 & ~0x6
        self._flags2 = f | (0x2 if l4 else 0) | (0x4 if sw else 0)

    def clear_hash(self) -> None:
        self.set_hash(0)

    # -- the control block and shared info -----------------------------------------

    def _cb_off(self, member: str, layout=QDISC_SKB_CB) -> int:
        return SK_BUFF.off("cb") + layout.off(member)

    @property
    def cb_pkt_len(self) -> int:
        return struct.unpack_from("<I", self.region.buf, self._cb_off("pkt_len"))[0]

    @cb_pkt_len.setter
    def cb_pkt_len(self, v: int) -> None:
        struct.pack_into("<I", self.region.buf, self._cb_off("pkt_len"), v)

    @property
    def cb_data(self) -> bytes:
        o = self._cb_off("data")
        return bytes(self.region.buf[o:o + QDISC_SKB_CB.size_of("data")])

    @cb_data.setter
    def cb_data(self, v: bytes) -> None:
        o = self._cb_off("data")
        self.region.buf[o:o + len(v)] = v

    @property
    def tc_classid(self) -> int:
        return struct.unpack_from("<H", self.region.buf, self._cb_off("tc_classid"))[0]

    @property
    def shinfo_off(self) -> int:
        return self.end

    def _shinfo(self, member: str, fmt: str, value: int | None = None) -> int:
        o = self.end + SKB_SHARED_INFO.off(member)
        if value is None:
            return struct.unpack_from(fmt, self.headbuf.buf, o)[0]
        struct.pack_into(fmt, self.headbuf.buf, o, value)
        return value

    gso_size = property(lambda s: s._shinfo("gso_size", "<H"),
                        lambda s, v: s._shinfo("gso_size", "<H", v))
    gso_segs = property(lambda s: s._shinfo("gso_segs", "<H"),
                        lambda s, v: s._shinfo("gso_segs", "<H", v))
    gso_type = property(lambda s: s._shinfo("gso_type", "<I"),
                        lambda s, v: s._shinfo("gso_type", "<I", v))
    hwtstamp = property(lambda s: s._shinfo("hwtstamps", "<Q"),
                        lambda s, v: s._shinfo("hwtstamps", "<Q", v))
    meta_len = property(lambda s: s._shinfo("meta_len", "<B"),
                        lambda s, v: s._shinfo("meta_len", "<B", v))

    def compute_data_pointers(self) -> None:
        """bpf_compute_data_pointers(): the packet bounds programs read as data_meta/data_end."""
        base = SK_BUFF.off("cb")
        struct.pack_into("<Q", self.region.buf, base + BPF_SKB_DATA_END.off("data_meta"),
                         self.data - self.meta_len)
        struct.pack_into("<Q", self.region.buf, base + BPF_SKB_DATA_END.off("data_end"),
                         self.data + self.headlen())

    # -- moving the data pointer -----------------------------------------------------

    def push(self, n: int) -> None:
        if n > self.headroom():
            raise ValueError("skb_push under head")
        self.data -= n
        self.len += n

    def pull(self, n: int) -> None:
        if n > self.headlen():
            raise ValueError("skb_pull past tail")
        self.data += n
        self.len -= n

    def put(self, n: int) -> None:
        if n > self.tailroom():
            raise ValueError("skb_put over end")
        o = self.tail
        self.headbuf.buf[o:o + n] = bytes(n)
        self.tail += n
        self.len += n

    def trim(self, new_len: int) -> None:
        if new_len < self.len:
            self.tail -= self.len - new_len
            self.len = new_len

    def expand_head(self, nhead: int, ntail: int) -> None:
        """pskb_expand_head(): a bigger head buffer; every packet pointer moves."""
        old = self.headbuf
        shinfo = bytes(old.buf[self.end:self.end + SKB_SHARED_INFO.size])
        size = skb_data_align(nhead + self.end + ntail)
        alloc = kmalloc_size(size + SHINFO_SIZE)
        new = Region(alloc, "skb data")
        new.buf[nhead:nhead + self.tail] = old.buf[:self.tail]
        new_end = alloc - SHINFO_SIZE
        new.buf[new_end:new_end + len(shinfo)] = shinfo
        data_off = self.data_off + nhead
        self.memory.add(new)
        self.headbuf = new
        self.head = new.start
        self.data = new.start + data_off
        self.tail += nhead
        self.end = new_end
        for name in ("mac_header", "network_header", "transport_header"):
            v = getattr(self, name)
            if v != HEADER_UNSET:
                setattr(self, name, v + nhead)
        self.memory.remove(old)

    def ensure_headroom(self, n: int) -> None:
        if self.headroom() < n:
            self.expand_head(skb_data_align(n - self.headroom()), 0)

    def ensure_tailroom(self, n: int) -> None:
        if self.tailroom() < n:
            self.expand_head(0, n - self.tailroom())

    # -- bytes -------------------------------------------------------------------------

    def read(self, offset: int, n: int) -> bytes:
        o = self.data_off + offset
        return bytes(self.headbuf.buf[o:o + n])

    def write(self, offset: int, b: bytes) -> None:
        o = self.data_off + offset
        self.headbuf.buf[o:o + len(b)] = b

    def mac_offset(self) -> int:
        """skb_mac_offset(): mac header relative to data."""
        return self.mac_header - self.data_off

    def network_offset(self) -> int:
        return self.network_header - self.data_off

    def reset_network_header(self) -> None:
        self.network_header = self.data_off

    def reset_mac_header(self) -> None:
        self.mac_header = self.data_off

    def load_abs(self, offset: int, size: int) -> int | None:
        """LD_ABS/LD_IND: big-endian load, or None (the program then returns 0)."""
        fmt = {1: ">B", 2: ">H", 4: ">I"}[size]
        buf = self.headbuf.buf
        if offset >= 0:
            if offset + size <= self.headlen():
                return struct.unpack_from(fmt, buf, self.data_off + offset)[0]
            return None
        if offset >= SKF_NET_OFF:
            base = self.network_header
            k = offset - SKF_NET_OFF
        elif offset >= SKF_LL_OFF:
            base = self.mac_header
            k = offset - SKF_LL_OFF
        else:
            return None
        if base == HEADER_UNSET:
            return None
        start = base + k
        if start < 0 or start + size > self.tail:
            return None
        return struct.unpack_from(fmt, buf, start)[0]

    def eth_type_trans(self) -> None:
        """Linux's eth_type_trans() for a frame received on ``self.dev``."""
        self.reset_mac_header()
        eth = self.read(0, ETH_HLEN)
        self.pull(ETH_HLEN)
        self.mac_len = ETH_HLEN
        dest = eth[:6]
        if dest[0] & 1:
            self.pkt_type = PACKET_BROADCAST if dest == self.dev.broadcast else PACKET_MULTICAST
        elif dest != self.dev.mac:
            self.pkt_type = PACKET_OTHERHOST
        proto = struct.unpack_from(">H", eth, 12)[0]
        if proto >= ETH_P_802_3_MIN:
            self.protocol = proto
        elif self.headlen() >= 2 and self.read(0, 2) == b"\xff\xff":
            self.protocol = ETH_P_802_3
        else:
            self.protocol = ETH_P_802_2

    def close(self) -> None:
        _live.pop(self.region.start, None)
        self.memory.remove(self.region)
        self.memory.remove(self.headbuf)

    def __enter__(self) -> "SkBuff":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
