"""Parity with Linux: the example packet programs on generated frames, ebee vs the kernel.

Each example object is loaded twice -- into ebee and, through the kernel backend,
into the running kernel -- with the same map contents.  Every generated frame
(valid and malformed; lengths from 14 to 1,514) is run through both with
BPF_PROG_TEST_RUN semantics; retval, data_out and ctx_out must be equal, and so
must every map afterwards.  CI runs a bounded sample; ``EBEE_SLOW=1`` also
runs every length from 14 to 1,514 for every program.
"""
from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import ebee
from ebee.pytest_plugin import icmp_packet, tcp_packet, udp_packet

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "c"
SLOW = os.environ.get("EBEE_SLOW") == "1"

# (object, program, map setup, compare ctx_out)
PROGRAMS = [
    ("xdp_firewall.o", "xdp_firewall", {"blocklist": [("10.0.0.1", 0), ("10.0.0.2", 5)]}, False),
    ("xdp_reflect.o", "xdp_reflect", {}, False),
    ("tc_classifier.o", "tc_classify", {}, True),
    ("socket_bytes.o", "socket_bytes", {}, True),
    ("cgroup_skb_counter.o", "count_ingress", {}, True),
]

ADDRS = ["10.0.0.1", "10.0.0.2", "10.0.0.9", "192.168.1.1"]
PORTS = [7, 22, 23, 53, 80, 443, 1234]


def _frames():
    """Valid frames of every kind the examples branch on, and malformed ones."""
    l4 = st.sampled_from(["udp", "tcp", "icmp", "udp6"])
    valid = st.builds(
        lambda kind, src, dst, sp, dp, ttl, payload, vlan: _frame(kind, src, dst, sp, dp, ttl,
                                                                  payload, vlan),
        l4, st.sampled_from(ADDRS), st.sampled_from(ADDRS), st.sampled_from(PORTS),
        st.sampled_from(PORTS), st.sampled_from([0, 1, 2, 64, 255]),
        st.binary(max_size=1400), st.booleans())
    cut = st.tuples(valid, st.integers(14, 1514)).map(lambda t: t[0][:t[1]] if len(t[0]) > 14 else t[0])
    junk = st.integers(14, 1514).flatmap(lambda n: st.binary(min_size=n, max_size=n))
    ethtype_junk = st.tuples(st.sampled_from([b"\x08\x00", b"\x81\x00", b"\x86\xdd", b"\x08\x06"]),
                             st.binary(min_size=0, max_size=200)).map(
        lambda t: bytes.fromhex("020000000002020000000001") + t[0] + t[1])
    return st.one_of(valid, cut, junk, ethtype_junk).filter(lambda f: 14 <= len(f) <= 1514)


def _frame(kind, src, dst, sport, dport, ttl, payload, vlan) -> bytes:
    if kind == "udp":
        f = udp_packet(src, dst, sport, dport, payload, ttl=ttl)
    elif kind == "tcp":
        f = tcp_packet(src, dst, sport, dport, payload, ttl=ttl)
    elif kind == "icmp":
        f = icmp_packet(src, dst, payload=payload)
    else:
        f = udp_packet("fd00::1", "fd00::2", sport, dport, payload)
    if vlan:
        f = f[:12] + bytes.fromhex("81000064") + f[12:]
    return f[:1514]


class Pair:
    """One example loaded into ebee and into the kernel, with the same maps."""

    def __init__(self, obj_name: str, prog: str, maps: dict, tmp: Path):
        self.ebee_obj = ebee.load(str(EXAMPLES / obj_name), pin_root=str(tmp))
        for name, entries in maps.items():
            for k, v in entries:
                self.ebee_obj.maps[name].update(socket.inet_aton(k), v.to_bytes(8, "little"))
        # pinned maps go to a private directory of the real bpffs, removed by close()
        self.pin_dir = Path("/sys/fs/bpf") / f"ebee-parity-{os.getpid()}-{tmp.name}"
        self.pin_dir.mkdir(exist_ok=True)
        self.kern_obj = self.ebee_obj.load_kernel(pin_root=str(self.pin_dir))
        for name, entries in maps.items():
            for k, v in entries:
                self.kern_obj.maps[name].update(socket.inet_aton(k), v.to_bytes(8, "little"))
        self.prog = self.ebee_obj.programs[prog]
        self.kprog = self.kern_obj.programs[prog]
        self.runner = __import__("ebee.testrun", fromlist=["Runner"]).Runner(self.prog)
        self.compared = 0

    def compare(self, frame: bytes, ctx_out: bool) -> None:
        from ebee.testrun import TestRunError
        try:
            e = self.runner.run(frame, ctx_out=ctx_out)
        except TestRunError as err:
            e = err
        try:
            k = self.kprog.run(frame, ctx_out=ctx_out)
        except TestRunError as err:
            k = err
        if isinstance(e, OSError) or isinstance(k, OSError):
            assert (getattr(e, "errno", None), getattr(k, "errno", None)) == \
                (getattr(k, "errno", None), getattr(e, "errno", None)) and \
                isinstance(e, OSError) and isinstance(k, OSError), \
                f"ebee {e!r} kernel {k!r} for {frame.hex()}"
            return
        self.compared += 1
        assert e.retval == k.retval, f"retval {e.retval} != kernel {k.retval} for {frame.hex()}"
        assert e.data_out == k.data_out, f"data_out differs for {frame.hex()}"
        if ctx_out:
            assert e.ctx_out == k.ctx_out, f"ctx_out differs for {frame.hex()}"

    def maps_equal(self) -> None:
        for name, m in self.ebee_obj.maps.items():
            if name.startswith("."):
                continue
            assert _dump(m) == _dump(self.kern_obj.maps[name]), f"map {name} differs"

    def close(self) -> None:
        self.runner.close()
        self.kern_obj.close()
        self.ebee_obj.close()
        for f in self.pin_dir.iterdir():
            f.unlink()
        self.pin_dir.rmdir()


def _dump(m) -> dict:
    out = {}
    key = None
    while True:
        try:
            key = m.get_next_key(key)
        except (OSError, KeyError):
            break
        out[bytes(key) if isinstance(key, (bytes, bytearray)) else key] = repr(m.lookup(key))
    return out


@pytest.fixture(params=PROGRAMS, ids=[p[1] for p in PROGRAMS])
def pair(request, kernel, tmp_path):
    obj, prog, maps, ctx = request.param
    if not (EXAMPLES / obj).exists():
        pytest.skip(f"examples/c/{obj} not built")
    p = Pair(obj, prog, maps, tmp_path)
    p.want_ctx = ctx
    yield p
    p.close()


@pytest.mark.kernel
def test_parity_generated_frames(pair):
    seen = []

    @settings(max_examples=2000 if SLOW else 300, database=None, derandomize=True)
    @given(_frames())
    def check(frame):
        seen.append(len(frame))
        pair.compare(frame, pair.want_ctx)

    check()
    pair.maps_equal()
    assert len(seen) >= 100
    print(f"\n{pair.prog.name}: {len(seen)} frames, {pair.compared} compared outputs")


@pytest.mark.kernel
def test_parity_every_length(pair):
    """Lengths 14..1514: every one with EBEE_SLOW=1, every 23rd otherwise."""
    rnd = random.Random(1514)
    base = udp_packet("10.0.0.1", "10.0.0.9", 1000, 7, bytes(1500))
    step = 1 if SLOW else 23
    for n in range(14, 1515, step):
        pair.compare(base[:n], pair.want_ctx)
        pair.compare(bytes(rnd.getrandbits(8) for _ in range(n)), pair.want_ctx)
    pair.maps_equal()
