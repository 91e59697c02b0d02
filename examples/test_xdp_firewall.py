"""Testing an XDP program with ebee and pytest -- no kernel, no root.

    pytest examples/test_xdp_firewall.py

The fixtures (``ebee_object``, ``ebee_net``) and helpers come with ebee
(the ``ebee.pytest_plugin`` module is registered as a pytest plugin when ebee
is installed).  Packets are built with dpkt here; scapy packets work the same
(anything ``bytes()`` accepts).
"""
import socket
from pathlib import Path

from ebee.packet import tcp_packet, udp_packet
from ebee.pytest_plugin import assert_packet, assert_verdict, run_all

OBJ = Path(__file__).parent / "c" / "xdp_firewall.o"


def load(ebee_object):
    # The firewall pins its block list by name; ebee's pytest plugin gives each test a
    # temporary pin store, so an entry added here never reaches the next test or run.
    return ebee_object(str(OBJ))


def test_passes_unlisted_sources(ebee_object):
    obj = load(ebee_object)
    pkt = udp_packet(src="192.168.1.10", dst="10.0.0.100", dport=53)
    res = obj.programs["xdp_firewall"].run(data=pkt)
    assert_verdict(res, "XDP_PASS")
    assert_packet(res, pkt)                      # XDP_PASS leaves the frame untouched


def test_drops_blocked_source_and_counts(ebee_object):
    obj = load(ebee_object)
    blocklist, stats = obj.maps["blocklist"], obj.maps["stats"]
    blocklist.update(socket.inet_aton("10.0.0.1"), (0).to_bytes(8, "little"))
    results = run_all(obj.programs["xdp_firewall"],
                      [udp_packet(src="10.0.0.1"), tcp_packet(src="10.0.0.1"),
                       udp_packet(src="10.0.0.9")])
    assert [r.verdict for r in results] == ["XDP_DROP", "XDP_DROP", "XDP_PASS"]
    hits = int.from_bytes(bytes(blocklist.lookup(socket.inet_aton("10.0.0.1"))), "little")
    drops = int.from_bytes(bytes(stats.lookup(1)), "little")
    assert (hits, drops) == (2, 2)


def test_non_ip_and_short_frames_pass(ebee_object):
    obj = load(ebee_object)
    arp = bytes.fromhex("ffffffffffff0200000000010806") + bytes(28)
    runt = bytes.fromhex("ffffffffffff0200000000010800")      # an IPv4 ethertype, no header
    for frame in (arp, runt):
        assert_verdict(obj.programs["xdp_firewall"].run(data=frame), "XDP_PASS")
