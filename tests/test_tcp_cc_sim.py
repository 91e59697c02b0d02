"""A BPF tcp_congestion_ops (examples/c/tcp_reno_cc.c, NewReno) on ebee's modelled TCP
flow, and the same object registered in the kernel driving real loopback connections.

The simulator's cwnd curve has Reno's shape: exponential in slow start (doubling per
RTT), linear in congestion avoidance (one segment per RTT), halved on loss; its
goodput under random loss is what the Mathis formula predicts.  The example counts
its own calls in .bss: those counters equal the calls the flow made -- and in the
kernel, they show Linux's TCP called it.
"""
from __future__ import annotations

import math
import shutil
import socket
import struct
import subprocess
import threading
import uuid

import pytest

import ebee
from ebee.btf import BTF
from ebee.cli.main import main as cli_main
from ebee.cli.struct_ops_cmds import parse_rate, parse_ratio, parse_time, svg_plot
from ebee.testrun.tcp_cc import PathModel, SimError, simulate

from kernel_helpers import EXAMPLES, ROOT

EXAMPLE = EXAMPLES / "tcp_reno_cc.o"
STATS = ("init", "release", "ssthresh", "cong_avoid", "set_state", "cwnd_event", "pkts_acked",
         "undo_cwnd", "loss_state", "acked_segs", "max_cwnd", "last_rtt_us")


@pytest.fixture(scope="module", autouse=True)
def _vmlinux():
    try:
        BTF.load_vmlinux()
    except OSError as e:
        pytest.skip(f"no kernel BTF: {e}")


def stats(value) -> dict[str, int]:
    """The counters, from the typed global (a record) or the raw .bss bytes."""
    if isinstance(value, (bytes, bytearray)):
        return dict(zip(STATS, struct.unpack_from("<10QII", value)))
    return {name: getattr(value, name) for name in STATS}


def _cwnd_at(trace, t):
    return next(c for tt, c in trace if tt >= t - 1e-9)


def test_cwnd_curve_shape():
    obj = ebee.load(EXAMPLE)
    path = PathModel(rtt=0.010, rate=100e6, loss=0.0)
    r = simulate(obj, path, 3.0, interval=0.01)
    first = r.losses[0]
    rtt = 0.01125                 # propagation + the step: what the flow measures
    # slow start: cwnd doubles every RTT from the initial 10
    # (while the queue is empty: beyond one BDP, the RTT grows with cwnd)
    ss = [_cwnd_at(r.trace, (k + 0.5) * rtt) for k in range(1, int(first / rtt))]
    grow = [(a, b) for a, b in zip(ss, ss[1:]) if b <= path.bdp()]
    assert ss[0] == 20 and len(grow) >= 2 and all(1.7 <= b / a <= 2.3 for a, b in grow)
    # a loss halves cwnd (Reno's ssthresh = cwnd / 2)
    for t in r.losses:
        before = max(c for tt, c in r.trace if t - 2 * rtt <= tt < t)
        after = _cwnd_at(r.trace, t)
        assert after <= 0.55 * before, t
    # congestion avoidance: one segment per RTT, between two reductions
    a, b = r.losses[1] + 5 * rtt, r.losses[2] - 2 * rtt
    assert b - a > 0.5
    s = [s for s in r.samples if a <= s.t <= b]
    assert all(y.cwnd >= x.cwnd for x, y in zip(s, s[1:]))         # never shrinks there
    for x, y in zip(s, s[10:]):                                   # 10 samples: ~9 RTTs
        per_rtt = (y.cwnd - x.cwnd) / ((y.t - x.t) / (y.rtt_ms / 1e3))
        assert 0.6 <= per_rtt <= 1.4, (x, y)
    # the path is full: goodput near the rate less the headers
    assert 0.85 * 100e6 * 1448 / 1500 <= r.goodput <= 100e6


def test_counters_are_the_calls():
    obj = ebee.load(EXAMPLE)
    r = simulate(obj, PathModel(rtt=0.02, rate=50e6, loss=0.002), 5.0, seed=3)
    c = stats(obj.bss.stats)
    for op in ("init", "release", "ssthresh", "cong_avoid", "set_state", "cwnd_event",
               "pkts_acked", "undo_cwnd"):
        assert c[op] == r.calls[op], op
    assert c["init"] == c["release"] == 1 and c["ssthresh"] == len(r.losses) > 0
    assert c["max_cwnd"] == max(cw for _, cw in r.trace)
    assert 20_000 <= c["last_rtt_us"] <= 40_000


def test_goodput_follows_mathis():
    """Reno under random loss p: MSS/RTT * sqrt(3/2)/sqrt(p), within a factor of 1.6."""
    obj = ebee.load(EXAMPLE)
    p = 0.001
    r = simulate(obj, PathModel(rtt=0.010, rate=1e9, loss=p), 10.0, seed=1)
    rtt = sum(s.rtt_ms for s in r.samples) / len(r.samples) / 1e3
    mathis = 1448 * 8 / rtt * math.sqrt(1.5) / math.sqrt(p)
    assert mathis / 1.6 <= r.goodput <= mathis * 1.6, (r.goodput, mathis)


def test_reordering_is_undone():
    obj = ebee.load(EXAMPLE)
    r = simulate(obj, PathModel(rtt=0.01, rate=100e6, loss=0.001, reorder=1.0), 3.0)
    assert r.calls["undo_cwnd"] > 0
    assert stats(obj.bss.stats)["undo_cwnd"] == r.calls["undo_cwnd"]
    plain = simulate(ebee.load(EXAMPLE), PathModel(rtt=0.01, rate=100e6, loss=0.001), 3.0)
    assert plain.calls["undo_cwnd"] == 0 and r.goodput > plain.goodput


def test_cong_control_replaces_cong_avoid():
    """A table with cong_control gets a rate_sample per ACK and sets cwnd itself."""
    obj = ebee.load(ROOT / "tests" / "data" / "struct_ops" / "fixed_window.o")
    r = simulate(obj, PathModel(loss=0.001), 2.0)
    assert r.calls["cong_avoid"] == 0 and r.calls["cong_control"] == obj.bss.controls > 0
    assert obj.bss.acked * 1448 == r.delivered_bytes      # rate_sample.acked_sacked
    assert obj.bss.lossy == r.calls["ssthresh"] == len(r.losses) > 0
    assert {c for _, c in r.trace} == {10, 44, 50}          # 50, less an eighth on loss


def test_deterministic():
    a = simulate(ebee.load(EXAMPLE), PathModel(loss=0.01), 1.0, seed=7)
    b = simulate(ebee.load(EXAMPLE), PathModel(loss=0.01), 1.0, seed=7)
    assert a.trace == b.trace and a.calls == b.calls


def test_objects_without_a_table():
    with pytest.raises(SimError, match="no tcp_congestion_ops"):
        simulate(ebee.load(EXAMPLES / "xdp_firewall.o"), PathModel(), 1.0)


def test_units():
    assert parse_time("10ms") == pytest.approx(0.01) and parse_time("2s") == 2
    assert parse_rate("100mbit") == 100e6 and parse_rate("1gbit") == 1e9
    assert parse_rate("12.5mbps") == 100e6
    assert parse_ratio("0.1%") == pytest.approx(0.001) and parse_ratio("0.02") == 0.02


def test_cli(tmp_path, capsys):
    out = tmp_path / "cwnd.svg"
    assert cli_main(["struct-ops", "simulate", str(EXAMPLE), "--rtt", "10ms", "--rate",
                     "100mbit", "--loss", "0.1%", "--duration", "2s", "--plot",
                     str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("ebee_reno: 10 ms RTT, 100 Mbit/s")
    assert "goodput" in text and "cong_avoid" in text
    svg = out.read_text()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count("<polyline") == 2          # cwnd and ssthresh
    for bad in (["--rtt", "fast"], ["--loss", "200%"], ["--rate=-1mbit"],
                ["--queue", "0"]):
        assert cli_main(["struct-ops", "simulate", str(EXAMPLE), *bad]) == 2
    assert cli_main(["struct-ops", "simulate", str(EXAMPLES / "xdp_firewall.o")]) == 2
    assert "no tcp_congestion_ops" in capsys.readouterr().err


def test_svg_scales_to_the_curve():
    r = simulate(ebee.load(EXAMPLE), PathModel(), 1.0)
    svg = svg_plot(r)
    pts = svg.split('stroke="#1f5fbf" stroke-width="1.5" points="')[1].split('"')[0].split()
    xs = [float(p.split(",")[0]) for p in pts]
    ys = [float(p.split(",")[1]) for p in pts]
    assert min(xs) >= 60 and max(xs) <= 780 and min(ys) >= 30 and max(ys) <= 355


# --- the kernel -----------------------------------------------------------------------------

def _transfer(nbytes: int, cc: bytes) -> bytes:
    """One TCP connection over loopback using ``cc``; returns the name the socket used."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    c = socket.socket()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc)
    c.connect(srv.getsockname())
    s, _ = srv.accept()
    got = []

    def rx():
        n = 0
        while n < nbytes:
            b = s.recv(1 << 20)
            if not b:
                break
            n += len(b)
        got.append(n)
    t = threading.Thread(target=rx)
    t.start()
    c.sendall(b"x" * nbytes)
    t.join(30)
    used = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0")
    for x in (c, s, srv):
        x.close()
    assert got == [nbytes]
    return used


@pytest.mark.kernel
def test_the_kernel_calls_the_example(kernel):
    from ebee.kernel import netns
    avail = "/proc/sys/net/ipv4/tcp_available_congestion_control"
    obj = ebee.load(EXAMPLE)
    nbytes = 8 << 20
    with obj.load_kernel() as k:
        link = k.attach_struct_ops("ebee_reno")
        assert "ebee_reno" in open(avail).read().split()
        ip = shutil.which("ip")
        ns = f"ebee-cc{uuid.uuid4().hex[:6]}"
        made = ip is not None and subprocess.run([ip, "netns", "add", ns],
                                                 capture_output=True).returncode == 0
        try:
            if made:
                subprocess.run([ip, "-n", ns, "link", "set", "lo", "up"], check=True)
                with netns.enter(ns):
                    used = _transfer(nbytes, b"ebee_reno")
            else:
                used = _transfer(nbytes, b"ebee_reno")
        finally:
            if made:
                subprocess.run([ip, "netns", "del", ns], capture_output=True)
        assert used == b"ebee_reno"
        kc = stats(bytes(k.maps[".bss"].lookup(0)))
        link.detach()
        assert "ebee_reno" not in open(avail).read().split()
    assert kc["init"] >= 1 and kc["release"] >= 1          # the client's (and listener's)
    assert kc["cong_avoid"] > 0 and kc["pkts_acked"] > 0 and kc["cwnd_event"] > 0
    # every segment was acked through cong_avoid: at most 64 KiB each on loopback
    assert kc["acked_segs"] >= nbytes // 65536
    assert 0 < kc["last_rtt_us"] < 1_000_000
    # the simulator, on a loss-free path, calls the same operations of the same object
    r = simulate(obj, PathModel(rtt=0.001, rate=10e9, loss=0.0, queue=100_000), 0.05)
    sc = stats(obj.bss.stats)
    for op in ("init", "release", "cong_avoid", "pkts_acked", "cwnd_event"):
        assert kc[op] > 0 and sc[op] == r.calls[op] > 0, op
    assert kc["ssthresh"] == sc["ssthresh"] == 0 and kc["loss_state"] == sc["loss_state"] == 0
