"""Malformed ELF, BTF, assembly, raw instructions and captures through the CLI.

A bounded deterministic sample by default (a fixed seed, ``EBEE_FUZZ_CLI_CASES``
cases, a few seconds); ``EBEE_SLOW=1`` runs more seeds and cases.  The driver
(``fuzz_cli.py``) runs in a child process, so a signal or a hang is the child's
death or timeout, not this test run's; it reports tracebacks, bad exit statuses,
error messages that are not one line, and cases that outlived their alarm.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ebee.packet import pcap

HERE = Path(__file__).resolve().parent
SLOW = bool(os.environ.get("EBEE_SLOW"))
CASES = int(os.environ.get("EBEE_FUZZ_CLI_CASES", "6000" if SLOW else "180"))
SEEDS = [0, 1, 2, 3] if SLOW else [0]


@pytest.mark.parametrize("seed", SEEDS)
def test_malformed_inputs_through_the_cli(seed, tmp_path):
    report = tmp_path / "report.json"
    # the driver's per-case alarm catches hangs in Python; this bound catches the rest
    limit = 60 + CASES * 2
    try:
        r = subprocess.run([sys.executable, str(HERE / "fuzz_cli.py"), "--seed", str(seed),
                            "--cases", str(CASES), "--report", str(report)],
                           capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        current = Path(str(report) + ".current")
        pytest.fail(f"fuzz driver hung; last case: "
                    f"{current.read_text()[:2000] if current.exists() else '?'}")
    if r.returncode < 0:
        current = Path(str(report) + ".current")
        pytest.fail(f"fuzz driver killed by {signal.Signals(-r.returncode).name}; case: "
                    f"{current.read_text()[:2000] if current.exists() else '?'}")
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(report.read_text())
    assert doc["cases"] == CASES
    assert set(doc["by_format"]) == {"elf", "btf", "asm", "bin", "pcap"}
    # the sample exercises both the failure paths and the success paths
    assert doc["by_exit"].get("2", 0) > CASES // 4 and doc["by_exit"].get("0", 0) > CASES // 20
    failures = [(f["kind"], f["format"], f["argv"], f["detail"][-500:]) for f in doc["failures"]
                if f["kind"] != "slow-verify"]
    assert not failures, json.dumps(failures[:5], indent=1)
    # programs that only reach the complexity limit slowly: few, and all of them assembly
    slow = [f for f in doc["failures"] if f["kind"] == "slow-verify"]
    assert len(slow) <= max(1, CASES // 200) and all(f["format"] in ("asm", "bin") for f in slow)


# ----------------------------------------------------------------- pcapng headers

def _pcapng(tmp_path) -> bytes:
    path = tmp_path / "good.pcapng"
    with pcap.Writer(str(path), pcapng=True) as w:
        w.write(b"\x00" * 60, 1.0)
    return path.read_bytes()


def _shb_cases(good: bytes) -> dict[str, tuple[bytes, str]]:
    n = struct.unpack("<I", good[4:8])[0]

    def patch(at: int, raw: bytes) -> bytes:
        return good[:at] + raw + good[at + len(raw):]
    return {
        "truncated": (good[:20], "truncated section header block (20 of at least 28 bytes)"),
        "byte order": (patch(8, b"\0\0\0\0"), "byte-order magic 00000000 at byte 8 "
                                                "(expected 4d3c2b1a or 1a2b3c4d)"),
        "short length": (patch(4, struct.pack("<I", 8)), "section header block length 8 at "
                                                           "byte 4 (it must be a multiple of 4"),
        "odd length": (patch(4, struct.pack("<I", n + 2)), f"section header block length "
                                                            f"{n + 2} at byte 4 (it must be"),
        "long length": (patch(4, struct.pack("<I", 1 << 20)), "runs past the end of the file"),
        "version": (patch(12, struct.pack("<H", 2)), "version 2.0 at byte 12 (expected 1.x)"),
        "trailer": (patch(n - 4, struct.pack("<I", 99)), f"section header block length {n} at "
                                                          f"byte 4 but 99 at byte {n - 4}"),
        "no interface": (good[:n], "no interface description block follows it"),
    }


@pytest.mark.parametrize("case", ["truncated", "byte order", "short length", "odd length",
                                  "long length", "version", "trailer", "no interface"])
def test_pcapng_section_header_errors_say_what_is_wrong(case, tmp_path):
    data, want = _shb_cases(_pcapng(tmp_path))[case]
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(data)
    with pytest.raises(pcap.PcapError) as ei:
        list(pcap.read(str(bad)))
    msg = str(ei.value)
    assert msg.startswith(f"{bad}: error: bad pcapng section header: ") and want in msg, msg
    assert "\n" not in msg


def test_pcapng_errors_reach_the_cli_as_one_line(tmp_path, capsys):
    from ebee.cli.main import main
    data, want = _shb_cases(_pcapng(tmp_path))["byte order"]
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(data)
    code = main(["run", str(HERE.parent / "examples" / "c" / "xdp_firewall.o"), "--pcap",
                 str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and want in err
