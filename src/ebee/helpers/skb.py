"""Socket-buffer helpers (net/core/filter.c): bytes, checksums, geometry, VLANs, hashes.

Each works on the :class:`ebee.packet.SkBuff` behind the program's ctx pointer
and follows Linux's checks and return codes; after any change to the packet's
geometry the data pointers programs read (data, data_end, data_meta) are
recomputed, and packet regions that moved are released so stale pointers fault.
"""
from __future__ import annotations

import errno
import struct

from ..uapi import (BPF_F_ADJ_ROOM_FIXED_GSO, BPF_F_ADJ_ROOM_NO_CSUM_RESET, BPF_F_HDR_FIELD_MASK,
                    BPF_F_INVALIDATE_HASH, BPF_F_IPV6, BPF_F_MARK_ENFORCE, BPF_F_MARK_MANGLED_0,
                    BPF_F_PSEUDO_HDR, BPF_F_RECOMPUTE_CSUM, ENOTSUPP, ETH_HLEN, ETH_P_8021AD,
                    ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, AdjRoomMode, FuncId as F, HdrStartOff)
from .registry import implements
from ..packet.skbuff import from_ctx
from ..packet.skbuff import HEADER_UNSET
from ..packet import csum
from .. import uapi as U
from ..uapi import ProgType
from ..packet.flowhash import skb_flow_hash

M64 = (1 << 64) - 1
INT_MAX = 0x7FFFFFFF
PACKET_OTHERHOST = 3
SKB_MAX_ALLOC = 4 * 4096 - 320          # SKB_WITH_OVERHEAD(PAGE_SIZE << 2): BPF_SKB_MAX_LEN
CSUM_MANGLED_0 = 0xFFFF
BPF_F_ADJ_ROOM_MASK = 0x3FF             # every BPF_F_ADJ_ROOM_* flag this kernel knows


def neg(e: int) -> int:
    return -e & M64


def skb_of(m, ctx: int):
    return from_ctx(ctx)


def _done(skb) -> None:
    skb.compute_data_pointers()


@implements(F.skb_load_bytes)
def skb_load_bytes(m, ctx, offset, to, length, _r5):
    skb = skb_of(m, ctx)
    offset &= 0xFFFFFFFF
    length &= 0xFFFFFFFF
    if offset > INT_MAX or offset + length > skb.len:
        m.zero(to, length)
        return neg(errno.EFAULT)
    m.write(to, skb.read(offset, length))
    return 0


@implements(F.skb_load_bytes_relative)
def skb_load_bytes_relative(m, ctx, offset, to, length, start_header):
    skb = skb_of(m, ctx)
    offset &= 0xFFFFFFFF
    length &= 0xFFFFFFFF
    start = None
    if offset <= 0xFFFF:
        if start_header == HdrStartOff.MAC and skb.mac_header != HEADER_UNSET:
            start = skb.mac_header
        elif start_header == HdrStartOff.NET:
            start = skb.network_header
    if start is None or start + offset + length > skb.tail:
        m.zero(to, length)
        return neg(errno.EFAULT)
    m.write(to, bytes(skb.headbuf.buf[start + offset:start + offset + length]))
    return 0


def _make_writable(skb, write_len: int) -> bool:
    """bpf_try_make_writable(): the first write_len bytes must be in the linear data."""
    ok = write_len <= skb.headlen()
    skb.compute_data_pointers()
    return ok


@implements(F.skb_store_bytes)
def skb_store_bytes(m, ctx, offset, frm, length, flags):
    skb = skb_of(m, ctx)
    if flags & ~(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH):
        return neg(errno.EINVAL)
    offset &= 0xFFFFFFFF
    if offset > INT_MAX or not _make_writable(skb, offset + length):
        return neg(errno.EFAULT)
    skb.write(offset, m.read(frm, length))
    if flags & BPF_F_INVALIDATE_HASH:
        skb.clear_hash()
    return 0


def _sum16(skb, offset: int) -> int:
    return struct.unpack_from("<H", skb.headbuf.buf, skb.data_off + offset)[0]


def _put16(skb, offset: int, v: int) -> None:
    struct.pack_into("<H", skb.headbuf.buf, skb.data_off + offset, v & 0xFFFF)


@implements(F.l3_csum_replace)
def l3_csum_replace(m, ctx, offset, frm, to, flags):
    skb = skb_of(m, ctx)
    if flags & ~BPF_F_HDR_FIELD_MASK:
        return neg(errno.EINVAL)
    offset &= 0xFFFFFFFF
    if offset > 0xFFFF or offset & 1 or not _make_writable(skb, offset + 2):
        return neg(errno.EFAULT)
    s = _sum16(skb, offset)
    kind = flags & BPF_F_HDR_FIELD_MASK
    if kind == 0:
        if frm:
            return neg(errno.EINVAL)
        s = csum.csum_replace_by_diff(s, to)
    elif kind == 2:
        s = csum.csum_replace2(s, frm & 0xFFFF, to & 0xFFFF)
    elif kind == 4:
        s = csum.csum_replace4(s, frm & 0xFFFFFFFF, to & 0xFFFFFFFF)
    else:
        return neg(errno.EINVAL)
    _put16(skb, offset, s)
    return 0


@implements(F.l4_csum_replace)
def l4_csum_replace(m, ctx, offset, frm, to, flags):
    skb = skb_of(m, ctx)
    mmzero = bool(flags & BPF_F_MARK_MANGLED_0)
    mforce = bool(flags & BPF_F_MARK_ENFORCE)
    if flags & ~(BPF_F_MARK_MANGLED_0 | BPF_F_MARK_ENFORCE | BPF_F_PSEUDO_HDR |
                 BPF_F_HDR_FIELD_MASK | BPF_F_IPV6):
        return neg(errno.EINVAL)
    offset &= 0xFFFFFFFF
    if offset > 0xFFFF or offset & 1 or not _make_writable(skb, offset + 2):
        return neg(errno.EFAULT)
    s = _sum16(skb, offset)
    if mmzero and not mforce and not s:
        return 0
    # test-run packets are CHECKSUM_NONE: the pseudo-header flag changes nothing here
    kind = flags & BPF_F_HDR_FIELD_MASK
    if kind == 0:
        if frm:
            return neg(errno.EINVAL)
        s = csum.csum_replace_by_diff(s, to)
    elif kind == 2:
        s = csum.csum_replace2(s, frm & 0xFFFF, to & 0xFFFF)
    elif kind == 4:
        s = csum.csum_replace4(s, frm & 0xFFFFFFFF, to & 0xFFFFFFFF)
    else:
        return neg(errno.EINVAL)
    if mmzero and not s:
        s = CSUM_MANGLED_0
    _put16(skb, offset, s)
    return 0


@implements(F.skb_pull_data)
def skb_pull_data(m, ctx, length, *_):
    skb = skb_of(m, ctx)
    length &= 0xFFFFFFFF                # u32 len
    if not _make_writable(skb, length or skb.headlen()):
        return neg(errno.ENOMEM)
    return 0


@implements(F.skb_change_head)
def skb_change_head(m, ctx, head_room, flags, *_):
    skb = skb_of(m, ctx)
    head_room &= 0xFFFFFFFF
    new_len = skb.len + head_room
    if flags or new_len > SKB_MAX_ALLOC or new_len < skb.len:
        return neg(errno.EINVAL)
    skb.ensure_headroom(head_room)
    skb.push(head_room)
    skb.write(0, bytes(head_room))
    skb.reset_mac_header()
    skb.mac_len = (skb.network_header - skb.mac_header) & 0xFFFF
    _done(skb)
    return 0


def _min_len(skb) -> int:
    if skb.transport_header != HEADER_UNSET:
        return skb.transport_header - skb.data_off
    return skb.network_header - skb.data_off


def _change_tail(skb, new_len: int) -> None:
    if new_len > skb.len:
        grow = new_len - skb.len
        skb.ensure_tailroom(grow)
        skb.put(grow)
    else:
        skb.trim(new_len)


@implements(F.skb_change_tail)
def skb_change_tail(m, ctx, new_len, flags, *_):
    skb = skb_of(m, ctx)
    new_len &= 0xFFFFFFFF
    pc = m.progctx
    min_len = 0 if pc is not None and pc.prog_type is ProgType.SK_SKB else _min_len(skb)
    if flags or new_len > SKB_MAX_ALLOC or new_len < min_len:
        return neg(errno.EINVAL)
    _change_tail(skb, new_len)
    _done(skb)
    return 0


@implements(F.skb_change_type)
def skb_change_type(m, ctx, pkt_type, *_):
    skb = skb_of(m, ctx)
    if skb.pkt_type > PACKET_OTHERHOST or (pkt_type & 0xFFFFFFFF) > PACKET_OTHERHOST:
        return neg(errno.EINVAL)
    skb.pkt_type = pkt_type
    return 0


def _generic_push(skb, off: int, length: int) -> None:
    """bpf_skb_generic_push(): open ``length`` zero bytes at ``off`` from data."""
    trans_same = skb.transport_header == skb.network_header
    skb.ensure_headroom(length)
    head = skb.read(0, off)
    skb.push(length)
    skb.write(0, head)
    skb.write(off, bytes(length))
    skb.mac_header = (skb.mac_header - length) & 0xFFFF
    skb.network_header = (skb.network_header - length) & 0xFFFF
    if trans_same:
        skb.transport_header = skb.network_header


def _generic_pop(skb, off: int, length: int) -> bool:
    """bpf_skb_generic_pop(): remove ``length`` bytes at ``off`` from data."""
    if off + length > skb.headlen():
        return False
    head = skb.read(0, off)
    skb.write(length, head)
    skb.pull(length)
    skb.mac_header = (skb.mac_header + length) & 0xFFFF
    skb.network_header = (skb.network_header + length) & 0xFFFF
    return True


def _mac_header_len(skb) -> int:
    return skb.network_header - skb.mac_header


@implements(F.skb_change_proto)
def skb_change_proto(m, ctx, proto, flags, *_):
    skb = skb_of(m, ctx)
    if flags:
        return neg(errno.EINVAL)
    to = ((proto & 0xFF) << 8) | ((proto >> 8) & 0xFF)     # __be16 argument
    frm = skb.protocol
    off = _mac_header_len(skb)
    if frm == ETH_P_IP and to == ETH_P_IPV6:
        _generic_push(skb, off, 20)     # ipv6hdr - iphdr
        skb.protocol = ETH_P_IPV6
    elif frm == ETH_P_IPV6 and to == ETH_P_IP:
        if not _generic_pop(skb, off, 20):
            return neg(errno.ENOMEM)
        skb.protocol = ETH_P_IP
    else:
        return neg(ENOTSUPP)
    _done(skb)
    return 0


@implements(F.skb_adjust_room)
def skb_adjust_room(m, ctx, len_diff, mode, flags, _r5):
    skb = skb_of(m, ctx)
    mode &= 0xFFFFFFFF                  # s32 len_diff, u32 mode, u64 flags
    diff = len_diff - (1 << 64) if len_diff & (1 << 63) else len_diff
    diff = (diff & 0xFFFFFFFF) - (1 << 32) if diff & 0x80000000 else diff & 0xFFFFFFFF
    shrink = diff < 0
    n = abs(diff)
    proto = skb.protocol
    if n > 0xFFF:
        return neg(errno.EFAULT)
    if proto not in (ETH_P_IP, ETH_P_IPV6):
        return neg(524)
    if flags & ~BPF_F_ADJ_ROOM_MASK:
        return neg(errno.EINVAL)
    len_min = 20 if proto == ETH_P_IP else 40       # bpf_skb_net_base_len()
    if mode == AdjRoomMode.NET:                      # between the L3 and L4 headers
        off = _mac_header_len(skb) + len_min
    elif mode == AdjRoomMode.MAC:                    # between the L2 and L3 headers
        off = _mac_header_len(skb)
    else:
        return neg(524)
    if shrink and flags & ~(BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_NO_CSUM_RESET | 0x300):
        return neg(errno.EINVAL)
    len_cur = skb.len - (skb.network_header - skb.data_off)
    if (shrink and (n >= len_cur or len_cur - n < len_min)) or \
            (not shrink and skb.len + n > SKB_MAX_ALLOC):
        return neg(524)
    if shrink:
        if not _generic_pop(skb, off, n):
            return neg(errno.ENOMEM)
    else:
        _generic_push(skb, off, n)
    _done(skb)
    return 0


def _vlan_insert(skb, proto: int, tci: int) -> None:
    """__vlan_insert_tag(): a 4-byte 802.1Q header after the MAC addresses."""
    mac_off = skb.mac_header - skb.data_off
    skb.ensure_headroom(4)
    skb.push(4)
    addrs = skb.read(4 + mac_off, 12)
    skb.write(mac_off, addrs + struct.pack(">HH", proto, tci))
    skb.mac_header = (skb.mac_header - 4) & 0xFFFF


@implements(F.skb_vlan_push)
def skb_vlan_push(m, ctx, vlan_proto, vlan_tci, *_):
    skb = skb_of(m, ctx)
    proto = ((vlan_proto & 0xFF) << 8) | ((vlan_proto >> 8) & 0xFF)
    if proto not in (ETH_P_8021Q, ETH_P_8021AD):
        proto = ETH_P_8021Q
    if skb.vlan_all:
        # the tag already offloaded moves into the packet (skb_vlan_push)
        mac_len = skb.network_header - skb.mac_header
        if skb.mac_header == 0xFFFF or mac_len < ETH_HLEN - 2:
            return neg(errno.EINVAL)
        old_proto = ((skb.vlan_proto & 0xFF) << 8) | (skb.vlan_proto >> 8)
        _vlan_insert(skb, old_proto, skb.vlan_tci)
        skb.protocol = old_proto
        skb.mac_len = (skb.mac_len + 4) & 0xFFFF
    skb.vlan_proto = ((proto & 0xFF) << 8) | (proto >> 8)
    skb.vlan_tci = vlan_tci & 0xFFFF
    _done(skb)
    return 0


def _vlan_pop_payload(skb) -> tuple[int, int] | None:
    mac_off = skb.mac_header - skb.data_off
    if skb.headlen() < mac_off + ETH_HLEN + 4:
        return None
    hdr = skb.read(mac_off, 18)
    tpid, tci, inner = struct.unpack(">HHH", hdr[12:18])
    addrs = hdr[:12]
    skb.write(mac_off + 4, addrs)
    skb.pull(4)
    skb.mac_header = (skb.mac_header + 4) & 0xFFFF
    skb.protocol = inner
    return tpid, tci


@implements(F.skb_vlan_pop)
def skb_vlan_pop(m, ctx, *_):
    skb = skb_of(m, ctx)
    vlan = (ETH_P_8021Q, ETH_P_8021AD)
    if skb.vlan_all:
        skb.vlan_all = 0
    else:
        if skb.protocol not in vlan:
            _done(skb)
            return 0
        if _vlan_pop_payload(skb) is None:
            return neg(errno.ENOMEM)
    if skb.protocol in vlan:
        popped = _vlan_pop_payload(skb)
        if popped is None:
            return neg(errno.ENOMEM)
        tpid, tci = popped
        skb.vlan_proto = ((tpid & 0xFF) << 8) | (tpid >> 8)
        skb.vlan_tci = tci
    _done(skb)
    return 0


@implements(F.get_hash_recalc)
def get_hash_recalc(m, ctx, *_):
    skb = skb_of(m, ctx)
    if skb.hash and skb.hash_valid():
        return skb.hash
    h, l4 = skb_flow_hash(skb)
    skb.set_hash(h, l4=l4)
    return h


@implements(F.set_hash)
def set_hash(m, ctx, h, *_):
    skb_of(m, ctx).set_hash(h & 0xFFFFFFFF, l4=True, sw=True)
    return 0


@implements(F.set_hash_invalid)
def set_hash_invalid(m, ctx, *_):
    skb_of(m, ctx).clear_hash()
    return 0


# ------------------------------------------------------------------------------- checksum state
CHECKSUM_NONE, CHECKSUM_UNNECESSARY, CHECKSUM_COMPLETE, CHECKSUM_PARTIAL = range(4)
SKB_MAX_CSUM_LEVEL = 3


@implements(F.csum_update)
def csum_update(m, ctx, value, *_):
    """Fold a checksum difference (bpf_csum_diff's) into skb->csum; only a CHECKSUM_COMPLETE
    skb has one to update (a test run's is CHECKSUM_NONE: -ENOTSUPP)."""
    skb = skb_of(m, ctx)
    if skb.ip_summed != CHECKSUM_COMPLETE:
        return neg(ENOTSUPP)
    skb.csum = csum.csum_add(skb.csum, value & 0xFFFFFFFF)
    return skb.csum


@implements(F.csum_level)
def csum_level(m, ctx, level, *_):
    skb = skb_of(m, ctx)
    summed, lvl = skb.ip_summed, skb.csum_level
    if level == U.BPF_CSUM_LEVEL_INC:          # __skb_incr_checksum_unnecessary
        if summed == CHECKSUM_UNNECESSARY:
            if lvl < SKB_MAX_CSUM_LEVEL:
                skb.csum_level = lvl + 1
        elif summed == CHECKSUM_NONE:
            skb.ip_summed, skb.csum_level = CHECKSUM_UNNECESSARY, 0
    elif level == U.BPF_CSUM_LEVEL_DEC:        # __skb_decr_checksum_unnecessary
        if summed == CHECKSUM_UNNECESSARY:
            if lvl == 0:
                skb.ip_summed = CHECKSUM_NONE
            else:
                skb.csum_level = lvl - 1
    elif level == U.BPF_CSUM_LEVEL_RESET:      # __skb_reset_checksum_unnecessary
        if summed == CHECKSUM_UNNECESSARY:
            skb.ip_summed, skb.csum_level = CHECKSUM_NONE, 0
    elif level == U.BPF_CSUM_LEVEL_QUERY:
        return lvl if summed == CHECKSUM_UNNECESSARY else neg(errno.EACCES)
    else:
        return neg(errno.EINVAL)
    return 0


def _htons(v: int) -> int:
    return ((v & 0xFF) << 8) | ((v >> 8) & 0xFF)


def _ip_ecn_set_ce(buf, nh: int) -> int:
    """IP_ECN_set_ce(): CE into an ECN-capable IPv4 header, its checksum fixed up."""
    tos = buf[nh + 1]
    ecn = (tos + 1) & 3
    if not ecn & 2:
        return int(not ecn)
    # csum16_add on the header checksum as stored (network order)
    add = (_htons(0xFFFB) + _htons(ecn)) & 0xFFFF
    check = int.from_bytes(buf[nh + 10:nh + 12], "little")
    res = (check + add) & 0xFFFF
    res = (res + (res < add)) & 0xFFFF
    buf[nh + 10:nh + 12] = res.to_bytes(2, "little")
    buf[nh + 1] = tos | 3
    return 1


def _ip6_ecn_set_ce(skb, buf, nh: int) -> int:
    first = int.from_bytes(buf[nh:nh + 4], "big")
    if not (first >> 20) & 3:                   # not ECN-capable
        return 0
    to = first | (3 << 20)
    buf[nh:nh + 4] = to.to_bytes(4, "big")
    if skb.ip_summed == CHECKSUM_COMPLETE:
        raw_from = int.from_bytes(first.to_bytes(4, "big"), "little")
        raw_to = int.from_bytes(to.to_bytes(4, "big"), "little")
        skb.csum = csum.csum_add(csum.csum_sub(skb.csum, raw_from), raw_to)
    return 1


@implements(F.skb_ecn_set_ce)
def skb_ecn_set_ce(m, ctx, *_):
    # skb_protocol(skb, true): the protocol under hardware-accelerated VLAN tags; a frame
    # whose tags are still in the packet (skb->protocol a VLAN type) is left alone
    skb = skb_of(m, ctx)
    need = {ETH_P_IP: 20, ETH_P_IPV6: 40}.get(skb.protocol)
    if need is None or skb.headlen() < need:
        return 0
    nh = skb.network_header
    if nh == HEADER_UNSET or nh + need > skb.tail:
        return 0
    buf = skb.headbuf.buf
    return _ip_ecn_set_ce(buf, nh) if need == 20 else _ip6_ecn_set_ce(skb, buf, nh)


SKB_CLOCK_REALTIME, SKB_CLOCK_MONOTONIC, SKB_CLOCK_TAI = range(3)


@implements(F.skb_set_tstamp)
def skb_set_tstamp(m, ctx, tstamp, tstamp_type, *_):
    skb = skb_of(m, ctx)
    if skb.protocol not in (ETH_P_IP, ETH_P_IPV6):
        return neg(errno.EOPNOTSUPP)
    tstamp_type &= 0xFFFFFFFF
    kind = {U.BPF_SKB_CLOCK_REALTIME: SKB_CLOCK_REALTIME,
            U.BPF_SKB_CLOCK_MONOTONIC: SKB_CLOCK_MONOTONIC,
            U.BPF_SKB_CLOCK_TAI: SKB_CLOCK_TAI}.get(tstamp_type)
    if kind is None or (kind != SKB_CLOCK_REALTIME and not tstamp):
        return neg(errno.EINVAL)
    skb.tstamp = tstamp
    skb.tstamp_type = kind
    return 0
