"""Pcap replay through the JIT's native XDP batch driver (ebee.jit.xdp_batch).

The driver must be indistinguishable from one test run per packet: same
verdicts, same output bytes, same redirect notes, same map contents, same
exception at the same packet -- and it must not call into Python per packet.
"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

pytest.importorskip("llvmlite")

import ebee  # noqa: E402
from ebee import Program  # noqa: E402
from ebee import verifier  # noqa: E402
from ebee.errors import MemoryFault  # noqa: E402
from ebee.packet import pcap  # noqa: E402
from ebee.packet.pcap import Frame  # noqa: E402
from ebee.testrun.replay import native_batch_unavailable, replay
from ebee.testrun import Runner
from ebee.pytest_plugin import icmp_packet, tcp_packet, udp_packet  # noqa: E402
from ebee.uapi import FuncId, ProgType as P  # noqa: E402

EX = Path(__file__).resolve().parent.parent / "examples"
CAPTURES = [EX / "pcap" / "mixed.pcap", EX / "pcap" / "mixed.pcapng"]
BLOCKED = ("10.0.0.1", "10.0.0.2")
EXAMPLES = ("xdp_firewall", "xdp_reflect")


def _load(name: str, pin_root: Path):
    obj = ebee.load(str(EX / "c" / f"{name}.o"), pin_root=str(pin_root))
    if name == "xdp_firewall":
        for a in BLOCKED:
            obj.maps["blocklist"].update(socket.inet_aton(a), bytes(8))
    return obj


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """Two independent copies of each example: one replayed per packet, one natively.
    Their maps must stay equal after every replay."""
    out = {}
    for name in EXAMPLES:
        pair = []
        for side in ("a", "b"):
            d = tmp_path_factory.mktemp(f"{name}-{side}")
            pair.append(_load(name, d))
        out[name] = tuple(pair)
    yield out
    for a, b in out.values():
        a.close()
        b.close()


def _maps(obj) -> dict:
    return {name: dict(m.items()) for name, m in obj.maps.items() if not name.startswith(".")}


def _summary(s) -> tuple:
    return (s.packets, dict(s.verdicts), dict(s.redirects), dict(s.errors), s.written,
            s.bytes_in, s.bytes_out)


def _replay(runner_prog, frames, native, *, outcomes: bool, **kw):
    outs: list = []
    with Runner(runner_prog, engine="jit", **kw) as r:
        s = replay(r, frames, on_packet=outs.append if outcomes else None, native=native)
    return s, outs


def _agree(name, pair, frames) -> None:
    a, b = pair
    pa, pb = a.programs[name], b.programs[name]
    for outcomes in (True, False):      # Outcome per packet, and the counts-only path
        sa, oa = _replay(pa, frames, False, outcomes=outcomes)
        sb, ob = _replay(pb, frames, True, outcomes=outcomes)
        assert oa == ob
        assert _summary(sa) == _summary(sb)
        assert sa.native == 0 and sb.native == sum(14 <= len(f.data) <= 3520 for f in frames)
        assert _maps(a) == _maps(b)


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.suffix)
def test_example_captures_agree_with_per_packet_runs(twins, name, capture):
    if not capture.exists():
        pytest.skip("example capture missing")
    _agree(name, twins[name], list(pcap.read(str(capture))))


# -- hypothesis frames: what the examples look at, mutated, plus runts and jumbo frames --------

def _vlan(f: bytes) -> bytes:
    return f[:12] + bytes.fromhex("81000064") + f[12:]


_v4 = st.sampled_from(["10.0.0.1", "10.0.0.2", "192.168.1.10", "8.8.8.8"])
_frames = st.one_of(
    st.builds(udp_packet, _v4, _v4, st.integers(1, 65535), st.sampled_from([7, 53, 9]),
              st.binary(max_size=48), ttl=st.integers(0, 255)),
    st.builds(tcp_packet, _v4, _v4, st.integers(1, 65535), st.sampled_from([7, 80]),
              st.binary(max_size=48), ttl=st.integers(0, 3)),
    st.builds(icmp_packet, _v4, _v4),
    st.just(udp_packet("fd00::1", "fd00::2", 5353, 7, b"v6")),
    st.binary(max_size=64),                                   # anything, runts included
    st.integers(3400, 3700).map(lambda n: udp_packet(payload=bytes(n))),   # fragments
)

@st.composite
def frame_lists(draw):
    out = []
    for k in range(draw(st.integers(1, 24))):
        f = draw(_frames)
        if draw(st.booleans()) and len(f) > 14:
            f = _vlan(f)
        if draw(st.integers(0, 4)) == 0:
            f = f[:draw(st.integers(0, len(f)))]              # cut anywhere
        if f and draw(st.integers(0, 4)) == 0:
            i = draw(st.integers(0, len(f) - 1))               # one byte changed
            f = f[:i] + bytes([draw(st.integers(0, 255))]) + f[i + 1:]
        out.append(Frame(k, 0.0, f, len(f)))
    return out


@pytest.mark.parametrize("name", EXAMPLES)
@settings(max_examples=40)
@given(frames=frame_lists())
def test_generated_frames_agree_with_per_packet_runs(twins, name, frames):
    _agree(name, twins[name], frames)


# -- no Python per packet ------------------------------------------------------------------------

def test_native_replay_makes_no_python_call_per_packet(tmp_path, monkeypatch):
    from ebee.engines.jit.runtime import JitBinding
    from ebee.testrun import runner as testrun
    calls = {"Runner.run": 0, "JitBinding.run": 0, "run_xdp": 0}

    def counting(key, fn):
        def wrapper(*a, **k):
            calls[key] += 1
            return fn(*a, **k)
        return wrapper
    monkeypatch.setattr(Runner, "run", counting("Runner.run", Runner.run))
    monkeypatch.setattr(JitBinding, "run", counting("JitBinding.run", JitBinding.run))
    monkeypatch.setitem(testrun.DRIVERS, "xdp", counting("run_xdp", testrun.DRIVERS["xdp"]))
    frames = list(pcap.read(str(CAPTURES[0])))
    obj = _load("xdp_firewall", tmp_path)          # the twins' maps must not drift apart
    prog = obj.programs["xdp_firewall"]
    with Runner(prog, engine="jit") as r:
        assert native_batch_unavailable(r) is None and not r.bound.program.checked
        before = r.bound.state.ts.callbacks
        s = replay(r, frames, on_packet=lambda o: None)
        # not even a helper callback: the firewall's map lookups are native
        assert r.bound.state.ts.callbacks == before
    assert s.native == s.packets == len(frames) and calls == dict.fromkeys(calls, 0)
    # a runt and a jumbo frame take the test run's own path (one test run each)
    with Runner(prog, engine="jit") as r:
        s = replay(r, frames[:5] + [Frame(5, 0, bytes(13), 13), Frame(6, 0, bytes(4000), 4000)]
                   + frames[5:10])
    assert s.native == 10 and s.errors == {"EINVAL": 1} and calls["Runner.run"] == 2
    assert calls["JitBinding.run"] == 1        # the runt never reaches the program
    obj.close()


def test_reasons_for_the_per_packet_path():
    insns = ebee.assemble("r0 = 2\nexit")
    with Runner(Program.from_insns(insns, P.XDP), engine="interp") as r:
        assert native_batch_unavailable(r) == "the program runs in the interpreter"
        with pytest.raises(ValueError, match="interpreter"):
            replay(r, [], native=True)
    with Runner(Program.from_insns(insns, P.SCHED_CLS), engine="jit") as r:
        assert "one test run per packet" in native_batch_unavailable(r)


# -- what a batch must reset or report ----------------------------------------------------------

def _pair_runs(insns, frames, *, verified=None):
    """(outcomes, summary) per packet and natively for raw instructions."""
    from ebee.engines import JIT
    from ebee.helpers import RUNTIME
    res = []
    for native in (False, True):
        outs: list = []
        with Runner(Program.from_insns(insns, P.XDP), engine="jit") as r:
            if verified is not None:
                r.bound = JIT.compile(r.insns, verified).bind(r.machine, RUNTIME)
            assert r.bound.program.checked is (verified is None)
            s = replay(r, frames, on_packet=outs.append, native=native)
        res.append((outs, _summary(s)))
    return res


def _numbered(n: int) -> list[Frame]:
    return [Frame(k, 0.0, udp_packet(payload=bytes([k]) * k), 0) for k in range(n)]


def test_headroom_written_by_checked_code_is_cleared_between_packets():
    # checked code may write anywhere in the frame: here 8 bytes of headroom,
    # which every test run (a fresh, zeroed frame) sees as 0 again
    insns = ebee.assemble("""
        r2 = *(u32 *)(r1 + 0)
        r7 = *(u64 *)(r2 - 8)
        r3 = -1
        *(u64 *)(r2 - 8) = r3
        r0 = 2
        if r7 == 0 goto out
        r0 = 1
    out:
        exit
    """)
    (a, sa), (b, sb) = _pair_runs(insns, _numbered(6))
    assert a == b and sa == sb and sa[1] == {"XDP_PASS": 6}


ADJUST_HEAD_DIRT = f"""
    r6 = r1
    r2 = -8
    call {int(FuncId.xdp_adjust_head)}
    if r0 != 0 goto fail
    r2 = *(u32 *)(r6 + 0)
    r3 = *(u32 *)(r6 + 4)
    r4 = r2
    r4 += 8
    if r4 > r3 goto fail
    r7 = *(u64 *)(r2 + 0)
    r5 = -1
    *(u64 *)(r2 + 0) = r5
    r1 = r6
    r2 = 8
    call {int(FuncId.xdp_adjust_head)}
    r0 = 2
    if r7 == 0 goto out
    r0 = 1
out:
    exit
fail:
    r0 = 0
    exit
"""


def test_headroom_exposed_by_a_helper_is_cleared_between_packets():
    # verified code writes the headroom only after bpf_xdp_adjust_head (a Python
    # callback) exposed it: the driver then clears the whole frame
    insns = ebee.assemble(ADJUST_HEAD_DIRT)
    v = verifier.verify(insns, prog_type=P.XDP, license="GPL")
    assert v.accepted
    (a, sa), (b, sb) = _pair_runs(insns, _numbered(6), verified=v)
    assert a == b and sa == sb and sa[1] == {"XDP_PASS": 6}


def test_redirects_are_reported_per_packet():
    # bpf_redirect to ifindex (byte 13 & 7); bit 3 of it then returns XDP_PASS instead,
    # so some packets set a redirect and do not use it
    insns = ebee.assemble(f"""
        r6 = r1
        r0 = 2
        r2 = *(u32 *)(r6 + 0)
        r3 = *(u32 *)(r6 + 4)
        r4 = r2
        r4 += 14
        if r4 > r3 goto out
        r7 = *(u8 *)(r2 + 13)
        r1 = r7
        r1 &= 7
        r2 = 0
        call {int(FuncId.redirect)}
        r7 &= 8
        if r7 == 0 goto out
        r0 = 2
    out:
        exit
    """)
    v = verifier.verify(insns, prog_type=P.XDP, license="GPL")
    assert v.accepted
    frames = [Frame(k, 0.0, bytes(12) + bytes([0x08, k]) + bytes(20), 0) for k in range(20)]
    (a, sa), (b, sb) = _pair_runs(insns, frames, verified=v)
    assert a == b and sa == sb
    assert sum(sa[2].values()) == 12 and {o.mark for o in a} >= {"XDP_REDIRECT -> ifindex 3"}


def test_a_fault_stops_at_the_same_packet_with_the_same_error():
    insns = ebee.assemble("""
        r0 = 2
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r4 = r2
        r4 += 14
        if r4 > r3 goto out
        r5 = *(u8 *)(r2 + 13)
        if r5 != 0xee goto out
        r0 = *(u8 *)(r5 + 0)
    out:
        exit
    """)
    frames = [Frame(k, 0.0, bytes(13) + bytes([0xEE if k == 3 else 0]) + bytes(20), 0)
              for k in range(6)]
    seen = []
    for native in (False, True):
        outs: list = []
        with Runner(Program.from_insns(insns, P.XDP), engine="jit") as r:
            with pytest.raises(MemoryFault) as e:
                replay(r, frames, on_packet=outs.append, native=native)
        seen.append((outs, str(e.value)))
    assert seen[0] == seen[1] and len(seen[0][0]) == 3


def test_threads_use_the_native_path_and_agree(twins):
    from ebee.testrun.parallel import replay_parallel
    frames = list(pcap.read(str(CAPTURES[0])))
    a, b = twins["xdp_reflect"]
    res = []
    for obj, native in ((a, False), (b, True)):
        outs: list = []
        s = replay_parallel(obj.programs["xdp_reflect"], frames, 2, engine="jit",
                            on_packet=outs.append, native=native)
        res.append((outs, _summary(s), s.native))
    assert res[0][:2] == res[1][:2] and res[0][2] == 0 and res[1][2] == len(frames)
    assert _maps(a) == _maps(b)


def test_tail_grown_by_a_helper_shows_zeros_after_a_longer_packet():
    # the longer packet before ran without callbacks (the driver then clears only the
    # bytes it held beyond the new one); the grown tail must read as zeros, as in a
    # fresh frame (bpf_xdp_adjust_tail also clears it, as Linux does)
    insns = ebee.assemble(f"""
        r6 = r1
        r0 = 2
        r2 = *(u32 *)(r6 + 0)
        r3 = *(u32 *)(r6 + 4)
        r4 = r2
        r4 += 14
        if r4 > r3 goto out
        r7 = *(u8 *)(r2 + 13)
        if r7 == 0 goto out
        r1 = r6
        r2 = 64
        call {int(FuncId.xdp_adjust_tail)}
        r0 = 0
        r2 = *(u32 *)(r6 + 0)
        r3 = *(u32 *)(r6 + 4)
        r4 = r2
        r4 += 64
        if r4 > r3 goto out
        r5 = *(u64 *)(r2 + 56)
        r0 = 2
        if r5 == 0 goto out
        r0 = 1
    out:
        exit
    """)
    v = verifier.verify(insns, prog_type=P.XDP, license="GPL")
    assert v.accepted
    frames = [Frame(k, 0.0, bytes(13) + bytes([k & 1]) + b"\xaa" * (106 if k % 2 == 0 else 6), 0)
              for k in range(8)]
    (a, sa), (b, sb) = _pair_runs(insns, frames, verified=v)
    assert a == b and sa == sb and sa[1] == {"XDP_PASS": 8}


def test_frame_left_as_a_fresh_frame_holding_the_last_packet():
    insns = ebee.assemble("r0 = 2\nexit")
    v = verifier.verify(insns, prog_type=P.XDP, license="GPL")
    from ebee.engines import JIT
    from ebee.helpers import RUNTIME
    from ebee.uapi import XDP_PACKET_HEADROOM as H
    frames = [Frame(k, 0.0, b"\xaa" * n, 0) for k, n in enumerate((300, 14, 200, 60))]
    with Runner(Program.from_insns(insns, P.XDP), engine="jit") as r:
        r.bound = JIT.compile(r.insns, v).bind(r.machine, RUNTIME)
        assert replay(r, frames, native=True).native == 4
        buf = bytes(r.frames.frame.buf)
    assert buf == bytes(H) + b"\xaa" * 60 + bytes(len(buf) - H - 60)


def test_frames_before_a_reader_error_still_run(twins):
    # a capture that goes bad half way (ebee run: a truncated record): the packets
    # read before it have run, in both paths, when the error surfaces
    frames = list(pcap.read(str(CAPTURES[0])))[:30]

    def reader():
        yield from frames
        raise pcap.PcapError("bad record")
    a, b = twins["xdp_firewall"]
    seen = []
    for obj, native in ((a, False), (b, True)):
        outs: list = []
        with Runner(obj.programs["xdp_firewall"], engine="jit") as r:
            with pytest.raises(pcap.PcapError):
                replay(r, reader(), on_packet=outs.append, native=native)
        seen.append(outs)
    assert seen[0] == seen[1] and len(seen[0]) == 30
    assert _maps(a) == _maps(b)
