"""``ebee --kernel verify`` and ``ebee --kernel run``: the kernel's verdict, log and test
run, not ebee's (which runs without ``--kernel``), agreeing with ebee where both judge."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ebee.cli import main
from ebee.kernel.prog import bpf_available
from ebee.packet import udp_packet

ROOT = Path(__file__).resolve().parent.parent
FIREWALL = ROOT / "examples" / "c" / "xdp_firewall.o"
TAILS = ROOT / "examples" / "c" / "tail_calls.o"
MIXED = ROOT / "examples" / "pcap" / "mixed.pcap"

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(bpf_available() is not None, reason=str(bpf_available()))]


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _bpffs() -> set[str]:
    return set(os.listdir("/sys/fs/bpf"))


def test_kernel_verify_object(capsys):
    before = _bpffs()
    code, out, err = _cli(capsys, "--kernel", "verify", str(TAILS), "--json")
    assert code == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    assert {r["prog"] for r in rows} == {"dispatcher", "handle_tcp", "handle_udp", "handle_icmp"}
    assert all(r["accepted"] and r["verifier"] == "kernel" for r in rows)
    # the kernel's own log line, which ebee's verifier also prints in its own words
    assert all(r["log"].startswith("processed ") or "processed " in r["log"] for r in rows)
    assert _bpffs() == before                  # no pins left behind


def test_kernel_verify_rejects_with_the_kernels_log(capsys, tmp_path):
    src = tmp_path / "bad.s"
    src.write_text("r0 = *(u64 *)(r1 + 1000)\nexit\n")
    code, out, _ = _cli(capsys, "--kernel", "verify", str(src))
    assert code == 1
    assert "invalid bpf_context access off=1000 size=8" in out
    assert out.splitlines()[-1].startswith("rejected by the kernel: ")
    code, ours, _ = _cli(capsys, "verify", str(src))
    assert code == 1 and "invalid bpf_context access off=1000 size=8" in ours
    assert "by the kernel" not in ours          # without --kernel it is ebee's verifier


def test_kernel_run_single_packet_matches_ebee(capsys, ebee_pin_store):
    pkt = udp_packet(src="10.0.0.1").hex()
    code, theirs, err = _cli(capsys, "--kernel", "run", str(FIREWALL), "--data-hex", pkt,
                             "--json", "--map-update", "blocklist", "0x0a000001", "0")
    assert code == 0, err
    code, ours, err = _cli(capsys, "run", str(FIREWALL), "--data-hex", pkt, "--json",
                           "--map-update", "blocklist", "0x0a000001", "0")
    assert code == 0, err
    t, o = json.loads(theirs), json.loads(ours)
    assert t["retval"] == o["retval"] == 1        # XDP_DROP in both
    assert t["data_out_hex"] == o["data_out_hex"]


def test_kernel_run_pcap_agrees_with_ebee(capsys, ebee_pin_store):
    upd = ["--map-update", "blocklist", "0x0a000001", "0"]
    code, theirs, err = _cli(capsys, "--kernel", "run", str(FIREWALL), "--pcap", str(MIXED),
                             "--json", *upd)
    assert code == 0, err
    code, ours, err = _cli(capsys, "run", str(FIREWALL), "--pcap", str(MIXED), "--json", *upd)
    assert code == 0, err
    assert json.loads(theirs)["verdicts"] == json.loads(ours)["verdicts"]
    assert json.loads(theirs)["native_packets"] == 0     # one BPF_PROG_TEST_RUN each


def test_kernel_run_refuses_what_only_ebee_has(capsys):
    code, _, err = _cli(capsys, "--kernel", "run", str(FIREWALL), "--data-hex", "00" * 14,
                        "--engine", "jit")
    assert code == 2 and "ebee's" in err
