"""`ebee run` (raw, typed, object, pcap, cBPF), pcap I/O, classic BPF, tracing events, plugin."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import ebee
from ebee import Program, progtypes, testrun
from ebee.cli.main import main
from ebee.packet import pcap
from ebee.progtypes import cbpf
from ebee.pytest_plugin import tcp_packet, udp_packet
from ebee.uapi import ProgType as P

ROOT = Path(__file__).resolve().parent.parent
MIXED = ROOT / "examples" / "pcap" / "mixed.pcap"

DROP_UDP = """
    r2 = *(u32 *)(r1 +0)
    r3 = *(u32 *)(r1 +4)
    r4 = r2
    r4 += 34
    if r4 > r3 goto +6
    r5 = *(u16 *)(r2 +12)
    if r5 != 0x8 goto +4
    r5 = *(u8 *)(r2 +23)
    if r5 != 17 goto +2
    r0 = 1
    exit
    r0 = 2
    exit
"""


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def drop_udp(tmp_path):
    p = tmp_path / "drop_udp.s"
    p.write_text(DROP_UDP)
    return str(p)


def test_raw_run_keeps_its_json_shape(capsys, tmp_path):
    p = tmp_path / "p.s"
    p.write_text("r0 = *(u32 *)(r1 +0)\nr0 *= 3\nexit\n")
    code, out, _ = run_cli(capsys, "run", str(p), "--mem", "0e000000", "--json")
    assert code == 0 and json.loads(out) == {"retval": 42, "insns": 3}


def test_typed_run_json_fields(capsys, drop_udp):
    pkt = udp_packet()
    code, out, _ = run_cli(capsys, "run", drop_udp, "--type", "xdp", "--data-hex", pkt.hex(),
                           "--json")
    doc = json.loads(out)
    assert code == 0 and doc["retval"] == 1 and doc["data_out_hex"] == pkt.hex()
    assert isinstance(doc["duration_ns"], int)


def test_typed_run_errors(capsys, drop_udp):
    code, _, err = run_cli(capsys, "run", drop_udp, "--type", "xdp", "--data-hex", "ffff")
    assert code == 1 and "EINVAL" in err
    code, _, err = run_cli(capsys, "run", drop_udp, "--type", "nosuch", "--data-hex", "00")
    assert code == 2 and "unknown program type" in err
    code, _, err = run_cli(capsys, "run", drop_udp, "--data-hex", "00")
    assert code == 2 and "--type" in err


def test_pcap_summary_and_output(capsys, drop_udp, tmp_path):
    out_path = tmp_path / "out.pcapng"
    code, out, _ = run_cli(capsys, "run", drop_udp, "--type", "xdp", "--pcap", str(MIXED),
                           "--pcap-out", str(out_path), "--json")
    doc = json.loads(out)
    frames = list(pcap.read(str(MIXED)))
    assert code == 0 and doc["packets"] == len(frames)
    assert sum(doc["verdicts"].values()) == len(frames)
    kept = list(pcap.read(str(out_path)))
    assert len(kept) == doc["written"] == doc["verdicts"]["XDP_PASS"]
    code, out, _ = run_cli(capsys, "run", drop_udp, "--type", "xdp", "--pcap", str(MIXED))
    assert "XDP_DROP" in out and "packets/s" in out


def test_pcap_bad_input_is_one_line(capsys, drop_udp, tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    code, _, err = run_cli(capsys, "run", drop_udp, "--type", "xdp", "--pcap", str(bad))
    assert code == 2 and err.count("\n") == 1 and "not a pcap" in err
    good = MIXED.read_bytes()
    bad.write_bytes(good[:-7])
    out_path = tmp_path / "o.pcap"
    code, _, err = run_cli(capsys, "run", drop_udp, "--type", "xdp", "--pcap", str(bad),
                           "--pcap-out", str(out_path))
    assert code == 2 and "truncated" in err and not out_path.exists()


def test_pcap_roundtrip_and_marks(tmp_path):
    frames = [udp_packet(), tcp_packet()]
    for name in ("a.pcap", "a.pcapng"):
        path = str(tmp_path / name)
        with pcap.Writer(path) as w:
            for i, f in enumerate(frames):
                w.write(f, 1.5 + i, comment="XDP_TX" if i else None)
        back = list(pcap.read(path))
        assert [b.data for b in back] == frames and abs(back[1].ts - 2.5) < 1e-6


def test_xdp_tx_and_redirect_are_marked(tmp_path):
    from ebee.testrun.replay import replay
    insns = ebee.assemble("r1 = 5\nr2 = 0\ncall 23\nexit")
    with testrun.Runner(Program.from_insns(insns, P.XDP)) as r:
        marks = []
        s = replay(r, pcap.read(str(MIXED)), on_packet=lambda o: marks.append(o.mark))
    assert s.redirects == {"ifindex 5": s.packets - s.errors.total()}
    assert all(m == "XDP_REDIRECT -> ifindex 5" for m in marks if m)


# -- classic BPF ---------------------------------------------------------------------------

# tcpdump -dd "udp dst port 53" (IPv4 only)
UDP53 = """{ 0x28, 0, 0, 0x0000000c },
{ 0x15, 0, 8, 0x00000800 },
{ 0x30, 0, 0, 0x00000017 },
{ 0x15, 0, 6, 0x00000011 },
{ 0x28, 0, 0, 0x00000014 },
{ 0x45, 4, 0, 0x00001fff },
{ 0xb1, 0, 0, 0x0000000e },
{ 0x48, 0, 0, 0x00000010 },
{ 0x15, 0, 1, 0x00000035 },
{ 0x6, 0, 0, 0x00040000 },
{ 0x6, 0, 0, 0x00000000 },
"""


def test_cbpf_converted_filter_matches_tcpdump_semantics():
    insns = cbpf.convert(cbpf.parse(UDP53))
    with testrun.Runner(Program.from_insns(insns, P.SOCKET_FILTER), link_layer=True) as r:
        assert r.run(udp_packet(dport=53)).retval == 0x40000
        assert r.run(udp_packet(dport=54)).retval == 0
        assert r.run(tcp_packet(dport=53)).retval == 0
    # the three textual forms parse to the same program
    prog = cbpf.parse(UDP53)
    ddd = f"{len(prog)}\n" + "\n".join(f"{f.code} {f.jt} {f.jf} {f.k}" for f in prog)
    assert cbpf.parse(ddd) == prog
    assert cbpf.parse(b"".join(f.pack() for f in prog)) == prog


@pytest.mark.parametrize("src,msg", [
    ("{ 0x6, 0, 0, 0 },\n{ 0x28, 0, 0, 12 },", "last instruction"),
    ("{ 0x34, 0, 0, 0 },\n{ 0x6, 0, 0, 0 },", "division by constant zero"),
    ("{ 0x60, 0, 0, 3 },\n{ 0x16, 0, 0, 0 },", "read before it is written"),
    ("{ 0x15, 5, 0, 1 },\n{ 0x6, 0, 0, 0 },", "jump out of range"),
    ("{ 0xff, 0, 0, 0 },\n{ 0x6, 0, 0, 0 },", "unknown opcode"),
])
def test_cbpf_checks(src, msg):
    with pytest.raises(cbpf.CbpfError, match=msg):
        cbpf.convert(cbpf.parse(src))


def test_cbpf_division_by_zero_x_returns_zero_and_scratch_memory():
    src = """{ 0x0, 0, 0, 7 },
{ 0x2, 0, 0, 3 },
{ 0x1, 0, 0, 0 },
{ 0x3c, 0, 0, 0 },
{ 0x6, 0, 0, 99 },"""
    insns = cbpf.convert(cbpf.parse(src))
    assert testrun.run(Program.from_insns(insns, P.SOCKET_FILTER), udp_packet()).retval == 0
    src2 = "{ 0x0, 0, 0, 7 },\n{ 0x2, 0, 0, 3 },\n{ 0x61, 0, 0, 3 },\n{ 0x87, 0, 0, 0 },\n{ 0x16, 0, 0, 0 },"
    insns = cbpf.convert(cbpf.parse(src2))
    assert testrun.run(Program.from_insns(insns, P.SOCKET_FILTER), udp_packet()).retval == 7


def test_cli_cbpf_over_pcap(capsys, tmp_path):
    f = tmp_path / "udp53.txt"
    f.write_text(UDP53)
    code, out, _ = run_cli(capsys, "run", "--cbpf", str(f), "--pcap", str(MIXED), "--json")
    doc = json.loads(out)
    assert code == 0 and "keep 262144 bytes" in doc["verdicts"] and "drop" in doc["verdicts"]
    f.write_text("{ 0x6, 0, 0 }")
    code, _, err = run_cli(capsys, "run", "--cbpf", str(f), "--data-hex", "00" * 20)
    assert code == 2 and ":1: error:" in err


# -- tracing programs on synthetic events ---------------------------------------------------

def test_kprobe_reads_arguments_from_pt_regs():
    src = "r0 = *(u64 *)(r1 +112)\nr2 = *(u64 *)(r1 +104)\nr0 += r2\nexit"   # di + si
    res = testrun.run_event(Program.from_insns(ebee.assemble(src), P.KPROBE), progtypes.pt_regs(40, 2))
    assert res.retval == 42


def test_tracepoint_record_from_format():
    fmt = progtypes.tracepoint_format("sched", "sched_switch")
    off = fmt.field("next_pid").offset
    rec = fmt.record({"next_pid": 4242, "prev_comm": "bash"})
    src = f"r0 = *(u32 *)(r1 +{off})\nexit"
    assert testrun.run_event(Program.from_insns(ebee.assemble(src), P.TRACEPOINT), rec).retval == 4242
    with pytest.raises(KeyError, match="no field"):
        fmt.field("nope")


def test_bundled_tracepoint_formats_parse():
    from ebee.progtypes.tracing import _bundled, parse_format
    for name, text in _bundled().items():
        fmt = parse_format(text, name)
        assert fmt.fields[0].name == "common_type" and fmt.size > 8


def test_perf_event_and_raw_tp():
    src = "r0 = *(u64 *)(r1 +168)\nr2 = *(u64 *)(r1 +176)\nr0 += r2\nexit"
    res = testrun.run_event(Program.from_insns(ebee.assemble(src), P.PERF_EVENT), progtypes.pt_regs(), sample_period=40, addr=2)
    assert res.retval == 42
    res = testrun.run_event(Program.from_insns(ebee.assemble("r0 = *(u64 *)(r1 +8)\nexit"), P.RAW_TRACEPOINT), progtypes.u64_args(1, 42))
    assert res.retval == 42


def test_example_pytest_file_passes():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(ROOT / "examples" / "test_xdp_firewall.py")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 passed" in r.stdout


def test_plugin_assertions_fail_readably():
    from ebee.pytest_plugin import assert_packet, assert_verdict
    res = testrun.run(Program.from_insns(ebee.assemble("r0 = 1\nexit"), P.XDP), udp_packet())
    assert_verdict(res, "XDP_DROP")
    with pytest.raises(pytest.fail.Exception, match="XDP_DROP"):
        assert_verdict(res, "XDP_PASS")
    with pytest.raises(pytest.fail.Exception, match="differs at byte 12"):
        assert_packet(res, udp_packet()[:12] + b"\x86\xdd" + udp_packet()[14:])



def test_fentry_args_typed_by_btf():
    import os
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("no /sys/kernel/btf/vmlinux")
    args = progtypes.btf_args("bpf_fentry_test2", 2, b=3, ret=5)
    assert struct.unpack("<3Q", args) == (2, 3, 5)
    src = "r0 = *(u64 *)(r1 +0)\nr2 = *(u64 *)(r1 +8)\nr0 += r2\nexit"
    res = testrun.run_event(Program.from_insns(ebee.assemble(src), P.TRACING), args)
    assert res.retval == 5
    with pytest.raises(ValueError, match="no parameter"):
        progtypes.btf_args("bpf_fentry_test2", zz=1)
