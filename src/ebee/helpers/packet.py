"""Packet helpers that reach beyond the packet: redirects, FIB lookups, tunnels, sockets.

Redirects are recorded in the run's context (``machine.progctx``) as Linux
records them in ``bpf_redirect_info``; the test run reports them as
``RunResult.redirect``.  FIB lookups, tunnel metadata and socket lookups use
the :class:`ebee.packet.Network` the run was given.
"""
from __future__ import annotations

import errno
import ipaddress
import struct

from ..uapi import (AF_INET, AF_INET6, BPF_FIB_LKUP_RET_BLACKHOLE, BPF_FIB_LKUP_RET_FRAG_NEEDED,
                    BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_NO_NEIGH,
                    BPF_FIB_LKUP_RET_PROHIBIT, BPF_FIB_LKUP_RET_UNREACHABLE, BPF_FIB_LOOKUP_DIRECT,
                    BPF_FIB_LOOKUP_MARK, BPF_FIB_LOOKUP_OUTPUT, BPF_FIB_LOOKUP_SKIP_NEIGH,
                    BPF_FIB_LOOKUP_SRC, BPF_FIB_LOOKUP_TBID, BPF_F_BROADCAST, BPF_F_DONT_FRAGMENT,
                    BPF_F_EXCLUDE_INGRESS, BPF_F_INGRESS, BPF_F_NO_TUNNEL_KEY, BPF_F_SEQ_NUMBER,
                    BPF_F_TUNINFO_IPV6, BPF_F_ZERO_CSUM_TX, BPF_SK_LOOKUP_F_NO_REUSEPORT,
                    BPF_SK_LOOKUP_F_REPLACE, IPPROTO_TCP, IPPROTO_UDP, TC_ACT_REDIRECT,
                    TC_ACT_SHOT, FuncId as F, MapType, ProgType as P, XdpAction)
from ..layouts.kernel import BPF_SK_LOOKUP_KERN
from ..runtime.context import Redirect
from .registry import implements
from ..errors import VMError
from ..maps import by_addr
from ..packet.skbuff import from_ctx
from ..packet.xdpbuff import from_ctx as xdp_from_ctx
from ..uapi import BPF_F_TUNINFO_FLAGS
from ..packet.net import TunnelKey

M64 = (1 << 64) - 1
XDP_ACTION_MASK = 3
FIB_LOOKUP_SIZE = 64
TUNNEL_KEY_SIZE = 44


def neg(e: int) -> int:
    return -e & M64


def _rc(m):
    rc = m.progctx
    if rc is None:
        raise VMError("this helper needs a program run (a packet and its network)")
    return rc


def _is_xdp(m) -> bool:
    rc = m.progctx
    return rc is not None and rc.prog_type is P.XDP


# -- redirects --------------------------------------------------------------------------

@implements(F.redirect)
def redirect(m, ifindex, flags, *_):
    rc = _rc(m)
    if rc.prog_type is P.XDP:
        if flags:
            return int(XdpAction.ABORTED)
        rc.redirect = Redirect("ifindex", ifindex=ifindex & 0xFFFFFFFF)
        return int(XdpAction.REDIRECT)
    if flags & ~BPF_F_INGRESS:
        return TC_ACT_SHOT
    rc.redirect = Redirect("ifindex", ifindex=ifindex & 0xFFFFFFFF, flags=flags,
                           ingress=bool(flags & BPF_F_INGRESS))
    return TC_ACT_REDIRECT


@implements(F.redirect_peer)
def redirect_peer(m, ifindex, flags, *_):
    rc = _rc(m)
    if flags:
        return TC_ACT_SHOT
    rc.redirect = Redirect("peer", ifindex=ifindex & 0xFFFFFFFF)
    return TC_ACT_REDIRECT


@implements(F.redirect_neigh)
def redirect_neigh(m, ifindex, params, plen, flags, *_):
    rc = _rc(m)
    if (plen and plen < 20) or flags:
        return TC_ACT_SHOT
    rc.redirect = Redirect("neigh", ifindex=ifindex & 0xFFFFFFFF)
    return TC_ACT_REDIRECT


@implements(F.redirect_map)
def redirect_map(m, map_ptr, key, flags, *_):
    rc = _rc(m)
    mp = by_addr(map_ptr)
    devmap = mp is not None and mp.type in (MapType.DEVMAP, MapType.DEVMAP_HASH)
    flag_mask = (BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS) if devmap else 0
    if flags & ~(XDP_ACTION_MASK | flag_mask):
        return int(XdpAction.ABORTED)
    key &= 0xFFFFFFFF
    target = mp.target(key) if mp is not None and hasattr(mp, "target") else None
    if target is None and not flags & BPF_F_BROADCAST:
        return flags & XDP_ACTION_MASK
    ifindex = None
    if devmap and isinstance(target, (bytes, bytearray)) and len(target) >= 4:
        ifindex = struct.unpack_from("<I", target)[0]
    rc.redirect = Redirect("map", ifindex=ifindex, map_id=mp.id, map_name=mp.name,
                           key=None if flags & BPF_F_BROADCAST else key, flags=flags)
    return int(XdpAction.REDIRECT)


@implements(F.clone_redirect)
def clone_redirect(m, ctx, ifindex, flags, *_):
    rc = _rc(m)
    if flags & ~BPF_F_INGRESS:
        return neg(errno.EINVAL)
    if (ifindex & 0xFFFFFFFF) not in rc.net.devices:
        return neg(errno.EINVAL)
    rc.clones.append(Redirect("clone", ifindex=ifindex & 0xFFFFFFFF, flags=flags,
                              ingress=bool(flags & BPF_F_INGRESS)))
    return 0


# -- FIB lookups ---------------------------------------------------------------------------

@implements(F.fib_lookup)
def fib_lookup(m, ctx, params, plen, flags, *_):
    rc = _rc(m)
    if plen < FIB_LOOKUP_SIZE:
        return neg(errno.EINVAL)
    if flags & ~(BPF_FIB_LOOKUP_DIRECT | BPF_FIB_LOOKUP_OUTPUT | BPF_FIB_LOOKUP_SKIP_NEIGH |
                 BPF_FIB_LOOKUP_TBID | BPF_FIB_LOOKUP_SRC | BPF_FIB_LOOKUP_MARK):
        return neg(errno.EINVAL)
    p = bytearray(m.read(params, FIB_LOOKUP_SIZE))
    family = p[0]
    ifindex = struct.unpack_from("<I", p, 8)[0]
    net = rc.net
    if ifindex not in net.devices:
        return neg(errno.ENODEV)
    if family == AF_INET:
        dst = ipaddress.IPv4Address(bytes(p[32:36]))
    elif family == AF_INET6:
        dst = ipaddress.IPv6Address(bytes(p[32:48]))
    else:
        return neg(errno.EAFNOSUPPORT)
    route = net.route(dst)
    if route is None:
        return BPF_FIB_LKUP_RET_NOT_FWDED
    if route.blackhole:
        return BPF_FIB_LKUP_RET_BLACKHOLE
    if route.unreachable:
        return BPF_FIB_LKUP_RET_UNREACHABLE
    if route.prohibit:
        return BPF_FIB_LKUP_RET_PROHIBIT
    dev = net.devices[route.ifindex]
    struct.pack_into("<I", p, 8, dev.ifindex)
    nexthop = route.gateway or dst
    if route.gateway is not None:
        if family == AF_INET:
            p[32:36] = route.gateway.packed
        else:
            p[32:48] = route.gateway.packed
    tot_len = struct.unpack_from("<H", p, 6)[0]
    if tot_len and tot_len > dev.mtu:
        struct.pack_into("<H", p, 6, dev.mtu)
        m.write(params, bytes(p))
        return BPF_FIB_LKUP_RET_FRAG_NEEDED
    ret = 0
    if not flags & BPF_FIB_LOOKUP_SKIP_NEIGH:
        neigh = net.neighbour(nexthop, dev.ifindex)
        if neigh is None:
            ret = BPF_FIB_LKUP_RET_NO_NEIGH
        else:
            p[52:58] = dev.mac
            p[58:64] = neigh.mac
    if ret == 0:
        struct.pack_into("<HH", p, 48, 0, 0)       # h_vlan_proto, h_vlan_TCI
        struct.pack_into("<H", p, 6, dev.mtu)      # mtu_result
    m.write(params, bytes(p))
    return ret


# -- tunnels ---------------------------------------------------------------------------------

def _tunnel_of(m, ctx):
    skb = from_ctx(ctx)
    return skb, (skb.tunnel if skb.tunnel is not None else _rc(m).net.tunnel)


@implements(F.skb_get_tunnel_key)
def skb_get_tunnel_key(m, ctx, to, size, flags, *_):
    skb, info = _tunnel_of(m, ctx)
    ipv6 = bool(flags & BPF_F_TUNINFO_IPV6)
    err = None
    if info is None or flags & ~(BPF_F_TUNINFO_IPV6 | BPF_F_TUNINFO_FLAGS):
        err = errno.EINVAL
    elif info.ipv6 != ipv6:
        err = errno.EPROTO
    elif size != TUNNEL_KEY_SIZE and size not in (28, 24, 22):
        err = errno.EINVAL
    if err is not None:
        m.zero(to, size & 0xFFFFFFFF)
        return neg(err)
    k = bytearray(TUNNEL_KEY_SIZE)
    struct.pack_into("<I", k, 0, info.tunnel_id & 0xFFFFFFFF)
    k[20] = info.tunnel_tos & 0xFF
    k[21] = info.tunnel_ttl & 0xFF
    if ipv6:
        k[4:20] = info.remote_ipv6
        k[28:44] = info.local_ipv6
        struct.pack_into("<I", k, 24, info.tunnel_label)
    else:
        struct.pack_into("<I", k, 4, info.remote_ipv4)
        struct.pack_into("<I", k, 28, info.local_ipv4)
    m.write(to, bytes(k[:size]))
    return 0


@implements(F.skb_set_tunnel_key)
def skb_set_tunnel_key(m, ctx, frm, size, flags, *_):
    skb = from_ctx(ctx)
    if flags & ~(BPF_F_TUNINFO_IPV6 | BPF_F_ZERO_CSUM_TX | BPF_F_DONT_FRAGMENT |
                 BPF_F_SEQ_NUMBER | BPF_F_NO_TUNNEL_KEY):
        return neg(errno.EINVAL)
    if size != TUNNEL_KEY_SIZE and size not in (28, 24, 22, 8):
        return neg(errno.EINVAL)
    k = bytearray(m.read(frm, size)) + bytearray(TUNNEL_KEY_SIZE - size)
    ipv6 = bool(flags & BPF_F_TUNINFO_IPV6)
    label = struct.unpack_from("<I", k, 24)[0]
    ext = struct.unpack_from("<H", k, 22)[0]
    if (not ipv6 and label) or ext:
        return neg(errno.EINVAL)
    skb.tunnel = TunnelKey(tunnel_id=struct.unpack_from("<I", k, 0)[0],
                           remote_ipv4=0 if ipv6 else struct.unpack_from("<I", k, 4)[0],
                           remote_ipv6=bytes(k[4:20]) if ipv6 else bytes(16),
                           tunnel_tos=k[20], tunnel_ttl=k[21], tunnel_label=label,
                           local_ipv4=0 if ipv6 else struct.unpack_from("<I", k, 28)[0],
                           local_ipv6=bytes(k[28:44]) if ipv6 else bytes(16), ipv6=ipv6)
    return 0


# -- sockets ---------------------------------------------------------------------------------

def _tuple(m, tup: int, length: int):
    if length == 12:
        raw = m.read(tup, 12)
        return (AF_INET, ipaddress.IPv4Address(raw[0:4]), ipaddress.IPv4Address(raw[4:8]),
                struct.unpack_from(">H", raw, 8)[0], struct.unpack_from(">H", raw, 10)[0])
    if length == 36:
        raw = m.read(tup, 36)
        return (AF_INET6, ipaddress.IPv6Address(raw[0:16]), ipaddress.IPv6Address(raw[16:32]),
                struct.unpack_from(">H", raw, 32)[0], struct.unpack_from(">H", raw, 34)[0])
    return None


def _lookup(m, tup, length, netns, flags, proto) -> int:
    rc = _rc(m)
    t = _tuple(m, tup, length)
    netns_id = netns & 0xFFFFFFFF
    if t is None or flags or not (netns_id == 0xFFFFFFFF or netns_id <= 0x7FFFFFFF):
        return 0
    family, saddr, daddr, sport, dport = t
    listener = None
    for s in rc.net.sockets:
        if s.family != family or s.protocol != proto or s.local[1] != dport:
            continue
        if s.local[0] != daddr and not s.local[0].is_unspecified:
            continue
        if s.remote is not None:
            if s.remote == (saddr, sport):
                return s.addr
            continue
        if listener is None:
            listener = s
    return listener.addr if listener is not None else 0


@implements(F.sk_lookup_tcp)
def sk_lookup_tcp(m, ctx, tup, length, netns, flags):
    return _lookup(m, tup, length, netns, flags, IPPROTO_TCP)


@implements(F.sk_lookup_udp)
def sk_lookup_udp(m, ctx, tup, length, netns, flags):
    return _lookup(m, tup, length, netns, flags, IPPROTO_UDP)


@implements(F.skc_lookup_tcp)
def skc_lookup_tcp(m, ctx, tup, length, netns, flags):
    return _lookup(m, tup, length, netns, flags, IPPROTO_TCP)


@implements(F.sk_release)
def sk_release(m, sk, *_):
    return 0


@implements(F.sk_assign)   # tc: bpf_sk_assign_proto
def sk_assign(m, ctx, sk, flags, *_):
    rc = _rc(m)
    if rc.prog_type is not P.SK_LOOKUP:
        # tc's bpf_sk_assign: steer the packet to a local socket
        if flags:
            return neg(errno.EINVAL)
        return 0 if sk else neg(errno.ENOENT)
    L = BPF_SK_LOOKUP_KERN
    kern = rc.ctx_obj
    if flags & ~(BPF_SK_LOOKUP_F_REPLACE | BPF_SK_LOOKUP_F_NO_REUSEPORT):
        return neg(errno.EINVAL)
    selected = struct.unpack_from("<Q", kern.buf, L.off("selected_sk"))[0]
    if selected and not flags & BPF_SK_LOOKUP_F_REPLACE:
        return neg(errno.EEXIST)
    sock = next((s for s in rc.net.sockets if s.addr == sk), None) if sk else None
    if sock is not None:
        if sock.protocol == IPPROTO_TCP and sock.remote is not None:
            return neg(errno.ESOCKTNOSUPPORT)       # only RCU-freed sockets (listeners, UDP)
        proto = struct.unpack_from("<H", kern.buf, L.off("protocol"))[0]
        family = struct.unpack_from("<H", kern.buf, L.off("family"))[0]
        if sock.protocol != proto:
            return neg(errno.EPROTOTYPE)
        if sock.family != family and sock.family == AF_INET:
            return neg(errno.EAFNOSUPPORT)
    struct.pack_into("<Q", kern.buf, L.off("selected_sk"), sk if sock is not None else 0)
    kern.buf[L.off("no_reuseport")] = 1 if flags & BPF_SK_LOOKUP_F_NO_REUSEPORT else 0
    return 0


# -- MTU checks ----------------------------------------------------------------------------

BPF_MTU_CHK_SEGS = 1
BPF_MTU_CHK_RET_SUCCESS, BPF_MTU_CHK_RET_FRAG_NEEDED, BPF_MTU_CHK_RET_SEGS_TOOBIG = range(3)
HARD_HEADER_LEN = 14        # ETH_HLEN: what ethernet devices and lo give dev->hard_header_len


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


@implements(F.check_mtu)
def check_mtu(m, ctx, ifindex, mtu_len, len_diff, flags):
    """bpf_skb_check_mtu / bpf_xdp_check_mtu: would the packet (or an L3 length given in
    *mtu_len), grown by len_diff, fit the device's MTU?  *mtu_len gets the MTU."""
    rc = _rc(m)
    xdp = rc.prog_type is P.XDP
    if xdp:
        from_xdp = xdp_from_ctx(ctx)
        if flags:
            return neg(errno.EINVAL)
    else:
        skb = from_ctx(ctx)
        if flags & ~BPF_MTU_CHK_SEGS:
            return neg(errno.EINVAL)
    want = struct.unpack("<I", m.read(mtu_len, 4))[0]
    if not xdp and flags & BPF_MTU_CHK_SEGS and (len_diff & 0xFFFFFFFF or want):
        return neg(errno.EINVAL)
    ifindex &= 0xFFFFFFFF
    if ifindex == 0:
        dev = from_xdp.dev if xdp else skb.dev
    else:
        dev = rc.net.devices.get(ifindex)
        if dev is None:
            return neg(errno.ENODEV)
    mtu = dev.mtu
    dev_len = mtu + HARD_HEADER_LEN
    if xdp:
        length = from_xdp.data_end - from_xdp.data
    else:
        length = skb.len
    if want:
        length = want + HARD_HEADER_LEN
    length += _s32(len_diff)
    if xdp:
        ret = BPF_MTU_CHK_RET_FRAG_NEEDED if length > dev_len else BPF_MTU_CHK_RET_SUCCESS
    elif length <= dev_len:
        ret = BPF_MTU_CHK_RET_SUCCESS
    elif skb.gso_size:
        # a GSO packet is re-segmented on transmit; BPF_MTU_CHK_SEGS asks about each segment
        ret = BPF_MTU_CHK_RET_SUCCESS
        if flags & BPF_MTU_CHK_SEGS:
            raise VMError("bpf_check_mtu with BPF_MTU_CHK_SEGS on a GSO packet: ebee does not "
                          "segment packets")
    else:
        ret = BPF_MTU_CHK_RET_FRAG_NEEDED
    m.write(mtu_len, struct.pack("<I", mtu & 0xFFFFFFFF))
    return ret


IP_TUNNEL_OPTS_MAX = 255        # options_len is a u8


@implements(F.skb_set_tunnel_opt)
def skb_set_tunnel_opt(m, ctx, frm, size, *_):
    # only onto the metadata bpf_skb_set_tunnel_key attached (the per-CPU md_dst)
    skb = from_ctx(ctx)
    info = skb.tunnel
    if info is None or size & 3:
        return neg(errno.EINVAL)
    if size > IP_TUNNEL_OPTS_MAX:
        return neg(errno.ENOMEM)
    info.options = m.read(frm, size) if size else b""
    if size:
        info.options_present = True
    return 0


@implements(F.skb_get_tunnel_opt)
def skb_get_tunnel_opt(m, ctx, to, size, *_):
    skb = from_ctx(ctx)
    info = skb.tunnel if skb.tunnel is not None else (m.progctx.net.tunnel
                                                      if m.progctx is not None else None)
    if info is None or not info.options_present:
        m.write(to, bytes(size))
        return neg(errno.ENOENT)
    n = len(info.options)
    if size < n:
        m.write(to, bytes(size))
        return neg(errno.ENOMEM)
    m.write(to, info.options + bytes(size - n))
    return n
