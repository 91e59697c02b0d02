"""``ebee run --pcap --pcap-out``: timestamps pass through exactly (integer arithmetic)."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ebee.cli import main
from ebee.packet import pcap, udp_packet

FIREWALL = Path(__file__).resolve().parent.parent / "examples" / "c" / "xdp_firewall.o"

# timestamps whose float form in seconds is inexact (…123457 µs gained ~120 ns before)
TS_US = [(1733300000, 123457), (1733300000, 999999), (4294967295, 1), (0, 0), (1, 7)]
TS_NS = [(1733300000, 123456789), (1733300000, 999999999), (4294967295, 1), (0, 0)]


def _pcap(path: Path, ts: list[tuple[int, int]], nano: bool) -> None:
    pkt = udp_packet(payload=b"x" * 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0,
                            65535, 1))
        for sec, frac in ts:
            f.write(struct.pack("<IIII", sec, frac, len(pkt), len(pkt)) + pkt)


@pytest.mark.parametrize("nano", [False, True], ids=["us", "ns"])
@pytest.mark.parametrize("out", ["out.pcap", "out.pcapng"])
def test_pcap_out_timestamps_exact(tmp_path, capsys, nano, out, ebee_pin_store):
    ts = TS_NS if nano else TS_US
    src = tmp_path / "in.pcap"
    _pcap(src, ts, nano)
    dst = tmp_path / out
    assert main(["run", str(FIREWALL), "--pcap", str(src), "--pcap-out", str(dst)]) == 0
    want = [sec * 10**9 + frac * (1 if nano else 1000) for sec, frac in ts]
    got = [fr.ts_ns for fr in pcap.read(str(dst))]
    assert got == want
    assert [fr.ts_ns for fr in pcap.read(str(src))] == want


def test_writer_float_and_int_agree(tmp_path):
    w = pcap.Writer(str(tmp_path / "a.pcapng"))
    w.write(b"\0" * 14, 1.5)
    w.write(b"\0" * 14, ts_ns=1733300000_123456789)
    w.close()
    assert [fr.ts_ns for fr in pcap.read(str(tmp_path / "a.pcapng"))] == \
        [1_500_000_000, 1733300000_123456789]
