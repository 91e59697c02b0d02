#!/usr/bin/env python3
"""Build the example captures in examples/pcap/ (deterministic: same bytes every run).

    python examples/make_pcaps.py            # writes examples/pcap/mixed.pcap and .pcapng
    python examples/make_pcaps.py --count 100000 --out /tmp/bench.pcap   (bench/xdp.py does this)

The traffic is a mix a firewall sees: IPv4 UDP/TCP/ICMP from a handful of
sources (10.0.0.1 and 10.0.0.2 are the ones examples block), IPv6, ARP, an
802.1Q-tagged frame, and malformed frames (a truncated IPv4 header, a runt).
"""
from __future__ import annotations

import argparse
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from ebee.packet import pcap  # noqa: E402
from ebee.packet.build import icmp_packet, tcp_packet, udp_packet  # noqa: E402

SOURCES = ["10.0.0.1", "10.0.0.2", "192.168.1.10", "192.168.1.11", "172.16.5.4", "8.8.8.8"]
DESTS = ["10.0.0.100", "10.0.0.200", "1.1.1.1"]


def arp() -> bytes:
    return bytes.fromhex("ffffffffffff020000000001" "0806" "0001080006040001" "020000000001"
                         "0a000001" "000000000000" "0a000064")


def vlan(frame: bytes, vid: int = 100) -> bytes:
    return frame[:12] + bytes.fromhex("8100") + vid.to_bytes(2, "big") + frame[12:]


def frames(n: int, seed: int = 1) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        k = rnd.random()
        src, dst = rnd.choice(SOURCES), rnd.choice(DESTS)
        if k < 0.40:
            f = udp_packet(src, dst, rnd.randrange(1024, 65535), rnd.choice([53, 123, 443]),
                           bytes(rnd.randrange(0, 64)))
        elif k < 0.75:
            f = tcp_packet(src, dst, rnd.randrange(1024, 65535), rnd.choice([22, 80, 443]),
                           bytes(rnd.randrange(0, 200)), flags=rnd.choice([0x02, 0x10, 0x18]))
        elif k < 0.85:
            f = icmp_packet(src, dst)
        elif k < 0.90:
            f = udp_packet("fd00::1", "fd00::2", 5353, 5353, b"v6")
        elif k < 0.94:
            f = arp()
        elif k < 0.97:
            f = vlan(udp_packet(src, dst, 4000, 53, b"tagged"))
        elif k < 0.99:
            f = udp_packet(src, dst, 1, 2)[:14 + 12]         # IPv4 header cut short
        else:
            f = bytes.fromhex("ffffffffffff0200000000010800")  # Ethernet header, nothing after
        out.append(f)
    return out


def write(path: str, n: int, seed: int = 1) -> None:
    with pcap.Writer(path) as w:
        for i, f in enumerate(frames(n, seed)):
            w.write(f, 1_700_000_000 + i * 0.001)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--out", help="one capture (default: examples/pcap/mixed.pcap and .pcapng)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.out:
        write(args.out, args.count, args.seed)
        return
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pcap")
    os.makedirs(here, exist_ok=True)
    for name in ("mixed.pcap", "mixed.pcapng"):
        write(os.path.join(here, name), args.count, args.seed)
        print(f"wrote {os.path.join('examples', 'pcap', name)}")


if __name__ == "__main__":
    main()
