"""Test runs of the sk_buff-based types: socket filter, tc, cgroup_skb, lwt, sk_skb
(bpf_prog_test_run_skb): an sk_buff from the loopback device, eth_type_trans, the
``__sk_buff`` fields ctx_in may set, the zeroed MAC header socket filters get back."""
from __future__ import annotations

import errno
import struct

from ..layouts.kernel import SOCK
from ..memory import SHARED, Region
from ..packet.net import Network
from ..packet.skbuff import ETH_HLEN, ETH_P_IP, ETH_P_IPV6, NET_IP_ALIGN, NET_SKB_PAD, SkBuff
from ..progtypes.skb import SK_BUFF_CTX
from ..runtime import RunContext
from ..uapi import AF_INET, AF_INET6, ProgType as P
from .common import (SKB_TAILROOM, U32_MAX, RunResult, TestRun, TestRunError, ctx_init,
                     finish_ctx, finish_data, native_batch, range_zero, redirect_outcome,
                     test_init, timed, u32)

GSO_LEGACY_MAX_SIZE = 65536
GSO_MAX_SEGS = 65535
SKB_SIZEOF = SK_BUFF_CTX.size   # sizeof(struct __sk_buff)


_SKB_IN_ALLOWED = (("mark", 8, 4), ("priority", 32, 4), ("ingress_ifindex", 36, 4),
                   ("ifindex", 40, 4), ("cb", 48, 20), ("tstamp", 152, 8), ("wire_len", 160, 4),
                   ("gso_segs", 164, 4), ("gso_size", 176, 4), ("hwtstamp", 184, 8))


def _convert_ctx_to_skb(skb: SkBuff, ctx: bytearray) -> None:
    """convert___skb_to_skb(): only these __sk_buff fields may be set in ctx_in."""
    pos = 0
    for name, off, size in _SKB_IN_ALLOWED:
        if not range_zero(ctx, pos, off):
            raise TestRunError(errno.EINVAL, f"ctx_in: __sk_buff bytes {pos}..{off - 1} must be "
                                             f"zero (only mark, priority, ingress_ifindex, "
                                             f"ifindex, cb, tstamp, wire_len, gso_segs, gso_size "
                                             f"and hwtstamp may be set)")
        pos = off + size
    if not range_zero(ctx, pos, SKB_SIZEOF):
        raise TestRunError(errno.EINVAL, f"ctx_in: __sk_buff bytes {pos}.. must be zero")
    skb.mark = u32(ctx, 8)
    skb.priority = u32(ctx, 32)
    skb.skb_iif = u32(ctx, 36)
    skb.tstamp = struct.unpack_from("<Q", ctx, 152)[0]
    skb.cb_data = bytes(ctx[48:68])
    wire_len = u32(ctx, 160)
    if wire_len == 0:
        skb.cb_pkt_len = skb.len
    else:
        if wire_len < skb.len or wire_len > GSO_LEGACY_MAX_SIZE:
            raise TestRunError(errno.EINVAL, f"ctx_in: wire_len {wire_len} must be between the "
                                             f"packet length {skb.len} and {GSO_LEGACY_MAX_SIZE}")
        skb.cb_pkt_len = wire_len
    gso_segs = u32(ctx, 164)
    if gso_segs > GSO_MAX_SEGS:
        raise TestRunError(errno.EINVAL, f"ctx_in: gso_segs {gso_segs} > {GSO_MAX_SEGS}")
    skb.gso_segs = gso_segs
    skb.gso_size = u32(ctx, 176) & 0xFFFF
    skb.hwtstamp = struct.unpack_from("<Q", ctx, 184)[0]


def _convert_skb_to_ctx(skb: SkBuff, ctx: bytearray) -> None:
    """convert_skb_to___skb(): what Linux copies back into ctx_out."""
    struct.pack_into("<I", ctx, 8, skb.mark)
    struct.pack_into("<I", ctx, 32, skb.priority)
    struct.pack_into("<I", ctx, 36, skb.skb_iif)
    struct.pack_into("<I", ctx, 40, skb.dev.ifindex)
    struct.pack_into("<Q", ctx, 152, skb.tstamp)
    ctx[48:68] = skb.cb_data
    struct.pack_into("<I", ctx, 160, skb.cb_pkt_len)
    struct.pack_into("<I", ctx, 164, skb.gso_segs)
    struct.pack_into("<Q", ctx, 184, skb.hwtstamp)


def _sock_for(net: Network, skb: SkBuff) -> Region:
    """The dummy socket test_run attaches (family and addresses from the packet)."""
    sk = SHARED.add(Region(SOCK.size, "sock"))
    b = sk.buf
    proto = skb.protocol
    hl = skb.headlen()
    if proto == ETH_P_IP:
        struct.pack_into("<H", b, SOCK.off("skc_family"), AF_INET)
        if hl >= 20:
            ip = skb.read(0, 20)
            b[SOCK.off("skc_rcv_saddr"):SOCK.off("skc_rcv_saddr") + 4] = ip[12:16]
            b[SOCK.off("skc_daddr"):SOCK.off("skc_daddr") + 4] = ip[16:20]
    elif proto == ETH_P_IPV6:
        struct.pack_into("<H", b, SOCK.off("skc_family"), AF_INET6)
        if hl >= 40:
            ip = skb.read(0, 40)
            o = SOCK.off("skc_v6_rcv_saddr")
            b[o:o + 16] = ip[8:24]
            o = SOCK.off("skc_v6_daddr")
            b[o:o + 16] = ip[24:40]
    struct.pack_into("<H", b, SOCK.off("skc_rx_queue_mapping"), 0xFFFF)
    return sk


def run_skb(t: TestRun) -> RunResult:
    """bpf_prog_test_run_skb().

    ``link_layer`` runs a socket filter as a packet (AF_PACKET) socket sees the
    frame -- data at the MAC header, as tcpdump's filters expect -- instead of
    the test run's network-layer view.
    """
    p, machine, bound, data, ctx_in, repeat, flags, cpu, batch_size, data_size_out, \
        ctx_size_out, want_ctx_out, net = t.unpack()
    link_layer = t.link_layer
    if flags or cpu or batch_size:
        raise TestRunError(errno.EINVAL, "flags, cpu and batch_size must be 0 for this "
                                         "program type")
    size = len(data)
    test_init(size, size, NET_SKB_PAD + NET_IP_ALIGN, SKB_TAILROOM)
    ctx = ctx_init(ctx_in, want_ctx_out, SKB_SIZEOF)
    pt = p.info.prog_type
    is_l2 = pt in (P.SCHED_CLS, P.SCHED_ACT) or link_layer
    direct = pt in (P.SCHED_CLS, P.SCHED_ACT) or pt in (P.LWT_IN, P.LWT_OUT, P.LWT_XMIT)
    dev = net.loopback
    if ctx is not None and u32(ctx, 40) > 1:
        try:
            dev = net.device(u32(ctx, 40))
        except KeyError:
            raise TestRunError(errno.ENODEV, f"ctx_in: no device with ifindex {u32(ctx, 40)}") \
                from None
    skb = SkBuff(data, dev=dev)
    sk = None
    try:
        skb.eth_type_trans()
        skb.reset_network_header()
        # 6.18 refuses IPv4/IPv6 frames too short for their network header
        need = {ETH_P_IP: 20, ETH_P_IPV6: 40}.get(skb.protocol, 0)
        if skb.headlen() < need:
            raise TestRunError(errno.EINVAL, f"an {'IPv4' if need == 20 else 'IPv6'} frame needs "
                                             f"{need} bytes after the Ethernet header; it has "
                                             f"{skb.headlen()}")
        sk = _sock_for(net, skb)
        struct.pack_into("<Q", skb.region.buf, 24, sk.start)
        if is_l2:
            skb.push(ETH_HLEN)
        if direct:
            skb.compute_data_pointers()
        if ctx is not None:
            _convert_ctx_to_skb(skb, ctx)
        rc = RunContext(net, pt, skb)
        machine.progctx = rc
        ex, duration = timed(lambda: bound.run(skb.addr), repeat, native_batch(bound, skb.addr))
        if not is_l2:
            if skb.headroom() < ETH_HLEN:
                skb.expand_head((ETH_HLEN - skb.headroom() + 15) & ~15, 0)
            skb.push(ETH_HLEN)
            skb.write(0, bytes(ETH_HLEN))
        if ctx is not None:
            _convert_skb_to_ctx(skb, ctx)
        out, full, err = finish_data(skb.payload(), data_size_out)
        res = RunResult(ex.retval & U32_MAX, out, None, duration, redirect_outcome(pt, ex.retval, rc),
                        rc.trace, full, ex.insns, pt, rc.clones)
        if err:
            raise TestRunError(err, f"data_out is smaller than the {full}-byte result")
        res.ctx_out, err = finish_ctx(ctx, ctx_size_out)
        if err:
            raise TestRunError(err, "ctx_out is smaller than the context")
        return res
    finally:
        machine.progctx = None
        skb.close()
        if sk is not None:
            SHARED.remove(sk)
