"""``ebee run``: ``--map-update`` before a run, cBPF EINVAL reasons."""
from __future__ import annotations

import json
import struct
from pathlib import Path

from ebee.cli import main
from ebee.packet import udp_packet

ROOT = Path(__file__).resolve().parent.parent
FIREWALL = ROOT / "examples" / "c" / "xdp_firewall.o"
MIXED = ROOT / "examples" / "pcap" / "mixed.pcap"
CBPF = ROOT / "examples" / "cbpf" / "ip_udp.txt"


def _run(capsys, *argv):
    code = main(["run", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _pcap(path: Path, pkts: list[bytes]) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for p in pkts:
            f.write(struct.pack("<IIII", 1, 0, len(p), len(p)) + p)


def test_map_update_sets_the_blocklist(capsys, tmp_path, ebee_pin_store):
    src = tmp_path / "in.pcap"
    _pcap(src, [udp_packet(src="10.0.0.1"), udp_packet(src="10.0.0.2"),
                udp_packet(src="10.0.0.3")])
    code, out, _ = _run(capsys, str(FIREWALL), "--pcap", str(src), "--json")
    assert code == 0 and json.loads(out)["verdicts"] == {"XDP_PASS": 3}
    # raw bytes (network order, as the program keys) and a JSON value through BTF
    code, out, err = _run(capsys, str(FIREWALL), "--pcap", str(src), "--json",
                          "--map-update", "blocklist", "0x0a000001", "0",
                          "--map-update", "blocklist", "0x0a000003", "7")
    assert code == 0, err
    assert json.loads(out)["verdicts"] == {"XDP_DROP": 2, "XDP_PASS": 1}
    # blocklist is pinned by name (LIBBPF_PIN_BY_NAME): as with libbpf the object's map is
    # the pin's, so the entries stay for the next run (in this test's own pin store)
    code, out, _ = _run(capsys, str(FIREWALL), "--pcap", str(src), "--json")
    assert json.loads(out)["verdicts"] == {"XDP_DROP": 2, "XDP_PASS": 1}


def test_map_update_bad_input(capsys, tmp_path, ebee_pin_store):
    for argv, want in ((["nosuch", "0", "0"], "no map named 'nosuch'"),
                       (["blocklist", "10.0.0.1", "0"], "key '10.0.0.1'"),
                       (["blocklist", "0x0a", "0"], "key '0x0a'"),
                       (["blocklist", "1", "[1, 2]"], "value")):
        code, _, err = _run(capsys, str(FIREWALL), "--pcap", str(MIXED), "--map-update", *argv)
        assert code == 2 and want in err and "Traceback" not in err, (argv, err)
    code, _, err = _run(capsys, "--cbpf", str(CBPF), "--pcap", str(MIXED),
                        "--map-update", "m", "0", "0")
    assert code == 2 and "object file" in err


def test_cbpf_says_why_einval(capsys, tmp_path):
    src = tmp_path / "short.pcap"
    _pcap(src, [bytes(10), bytes(12) + b"\x08\x00" + b"\x45" + bytes(5), udp_packet()])
    code, out, _ = _run(capsys, "--cbpf", str(CBPF), "--pcap", str(src))
    assert code == 0
    assert "EINVAL: data_in is 10 bytes; must be 14.." in out and "first: packet 1)" in out
    assert "IPv4 frame needs 20 bytes after the Ethernet header; it has 6" in out
    code, out, _ = _run(capsys, "--cbpf", str(CBPF), "--pcap", str(src), "--json")
    reasons = json.loads(out)["error_reasons"]
    assert {(r["error"], r["first_packet"]) for r in reasons} == {("EINVAL", 1), ("EINVAL", 2)}
    assert sum(r["packets"] for r in reasons) == json.loads(out)["errors"]["EINVAL"] == 2
