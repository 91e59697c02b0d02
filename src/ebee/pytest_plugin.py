"""pytest integration: test your own eBPF programs with ebee, no kernel needed.

Installed with ebee (entry point ``pytest11``), so in any project::

    def test_drops_blocked_source(ebee_object):
        obj = ebee_object("build/xdp_firewall.o")
        obj.maps["blocklist"].update(socket.inet_aton("10.0.0.1"), 0)
        res = obj.programs["xdp_firewall"].run(data=udp_packet(src="10.0.0.1"))
        assert_verdict(res, "XDP_DROP")

Fixtures:

- ``ebee_object(path, **load_options)``: load an object (closed after the test).
- ``ebee_net``: a fresh :class:`ebee.packet.Network` (devices, routes, sockets) for runs
  that redirect, look up the FIB or sockets: ``prog.run(data=..., net=ebee_net)``.

Helpers (import from ``ebee.pytest_plugin``): packet builders ``udp_packet``,
``tcp_packet``, ``icmp_packet`` (dpkt; scapy packets work too -- anything
``bytes()`` accepts), ``run_all`` to run one program over many packets, and
assertions ``assert_verdict``, ``assert_packet`` (with a byte diff) and
``assert_trace``.
"""
from __future__ import annotations

import socket
from typing import Any, Iterable

import pytest


def _bytes(pkt: Any) -> bytes:
    if isinstance(pkt, (bytes, bytearray, memoryview)):
        return bytes(pkt)
    return bytes(pkt)       # dpkt and scapy packets both support bytes()


def _eth(payload, ethertype: int, src_mac: str, dst_mac: str) -> bytes:
    import dpkt
    return bytes(dpkt.ethernet.Ethernet(src=bytes.fromhex(src_mac.replace(":", "")),
                                        dst=bytes.fromhex(dst_mac.replace(":", "")),
                                        type=ethertype, data=payload))


def _ip(proto: int, src: str, dst: str, l4, ttl: int = 64):
    import dpkt
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
    import dpkt
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = 8 + len(payload)
    ip, et = _ip(17, src, dst, udp, ttl)
    return _eth(ip, et, src_mac, dst_mac)


def tcp_packet(src: str = "10.0.0.1", dst: str = "10.0.0.2", sport: int = 12345,
               dport: int = 80, payload: bytes = b"", *, flags: int = 0x02,
               src_mac: str = "02:00:00:00:00:01", dst_mac: str = "02:00:00:00:00:02",
               ttl: int = 64) -> bytes:
    """An Ethernet/IP/TCP frame (SYN by default)."""
    import dpkt
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, data=payload)
    ip, et = _ip(6, src, dst, tcp, ttl)
    return _eth(ip, et, src_mac, dst_mac)


def icmp_packet(src: str = "10.0.0.1", dst: str = "10.0.0.2", *, payload: bytes = b"ping",
                src_mac: str = "02:00:00:00:00:01", dst_mac: str = "02:00:00:00:00:02") -> bytes:
    """An Ethernet/IPv4/ICMP echo request."""
    import dpkt
    icmp = dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(id=1, seq=1, data=payload))
    ip, et = _ip(1, src, dst, icmp)
    return _eth(ip, et, src_mac, dst_mac)


def run_all(prog, packets: Iterable[Any], **run_options) -> list:
    """Run ``prog`` on each packet (one test run each); the RunResults in order."""
    from .testrun import Runner
    net = run_options.pop("net", None)
    engine = run_options.pop("engine", None)
    with Runner(prog, net=net, engine=engine) as r:
        return [r.run(_bytes(p), **run_options) for p in packets]


def assert_verdict(result, expected: str | int) -> None:
    """The run's return value, by name (``"XDP_DROP"``, ``"TC_ACT_SHOT"``) or number."""
    if isinstance(expected, int):
        ok = (result.retval & 0xFFFFFFFF) == (expected & 0xFFFFFFFF)
    else:
        ok = result.verdict == expected
    if not ok:
        pytest.fail(f"verdict {result.verdict} (retval {result.retval}), expected {expected}",
                    pytrace=False)


def assert_packet(result, expected: Any) -> None:
    """data_out equals ``expected``; on a mismatch, show where the bytes differ."""
    want = _bytes(expected)
    got = result.data_out
    if got == want:
        return
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    lo = max(0, first - 8)
    pytest.fail(f"output packet differs at byte {first} (lengths {len(got)} vs {len(want)}):\n"
                f"  got      [{lo}:] {got[lo:first + 16].hex(' ')}\n"
                f"  expected [{lo}:] {want[lo:first + 16].hex(' ')}", pytrace=False)


def assert_trace(result, *fragments: str) -> None:
    """Each fragment appears in the run's bpf_printk output, in order."""
    lines = list(result.trace_output)
    pos = 0
    for frag in fragments:
        while pos < len(lines) and frag not in lines[pos]:
            pos += 1
        if pos == len(lines):
            pytest.fail(f"trace output has no {frag!r} (in order); got: {lines!r}",
                        pytrace=False)
        pos += 1


@pytest.fixture
def ebee_object():
    """A factory: ``ebee_object(path, **load_options) -> ebee.Object``, closed after the test."""
    import ebee
    opened = []

    def load(path, **options):
        obj = ebee.load(path, **options)
        opened.append(obj)
        return obj
    yield load
    for obj in opened:
        obj.close()


@pytest.fixture
def ebee_net():
    """A fresh modelled network (``lo`` only); add devices, routes, neighbours, sockets."""
    from .packet import Network
    net = Network()
    yield net
    net.close()


__all__ = ["assert_packet", "assert_trace", "assert_verdict", "icmp_packet", "run_all",
           "tcp_packet", "udp_packet"]
