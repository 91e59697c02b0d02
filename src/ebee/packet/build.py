"""Packet builders for tests and benchmarks: Ethernet frames with correct lengths and
checksums (dpkt underneath; scapy packets work wherever these are accepted -- anything
``bytes()`` accepts)."""
from __future__ import annotations

import socket
from typing import Any

import dpkt


def as_bytes(pkt: Any) -> bytes:
    if isinstance(pkt, (bytes, bytearray, memoryview)):
        return bytes(pkt)
    return bytes(pkt)       # dpkt and scapy packets both support bytes()


def _eth(payload, ethertype: int, src_mac: str, dst_mac: str) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=bytes.fromhex(src_mac.replace(":", "")),
                                        dst=bytes.fromhex(dst_mac.replace(":", "")),
                                        type=ethertype, data=payload))


def _ip(proto: int, src: str, dst: str, l4, ttl: int = 64):
    if ":" in src:
        ip6 = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src),
                           dst=socket.inet_pton(socket.AF_INET6, dst), nxt=proto, hlim=ttl,
                           data=l4, plen=len(bytes(l4)))
        return ip6, 0x86DD
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=ttl, data=l4)
    ip.len = 20 + len(bytes(l4))
    return ip, 0x0800


def udp_packet(src: str = "10.0.0.1", dst: str = "10.0.0.2", sport: int = 12345,
               dport: int = 53, payload: bytes = b"", *, src_mac: str = "02:00:00:00:00:01",
               dst_mac: str = "02:00:00:00:00:02", ttl: int = 64) -> bytes:
    """An Ethernet/IPv4-or-IPv6/UDP frame with correct lengths and checksums."""
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = 8 + len(payload)
    ip, et = _ip(17, src, dst, udp, ttl)
    return _eth(ip, et, src_mac, dst_mac)


def tcp_packet(src: str = "10.0.0.1", dst: str = "10.0.0.2", sport: int = 12345,
               dport: int = 80, payload: bytes = b"", *, flags: int = 0x02,
               src_mac: str = "02:00:00:00:00:01", dst_mac: str = "02:00:00:00:00:02",
               ttl: int = 64) -> bytes:
    """An Ethernet/IP/TCP frame (SYN by default)."""
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, data=payload)
    ip, et = _ip(6, src, dst, tcp, ttl)
    return _eth(ip, et, src_mac, dst_mac)


def icmp_packet(src: str = "10.0.0.1", dst: str = "10.0.0.2", *, payload: bytes = b"ping",
                src_mac: str = "02:00:00:00:00:01", dst_mac: str = "02:00:00:00:00:02") -> bytes:
    """An Ethernet/IPv4/ICMP echo request."""
    icmp = dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(id=1, seq=1, data=payload))
    ip, et = _ip(1, src, dst, icmp)
    return _eth(ip, et, src_mac, dst_mac)
