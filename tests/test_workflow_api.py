"""The Python API's everyday edges: verifier errors that say why, packet builders without
pytest, py.typed, event readers (drops, Ctrl-C)."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

import ebee
from ebee import uapi as U
from ebee.events import Record
from ebee.maps import Map
from ebee.verifier import VerifierError

ROOT = Path(__file__).resolve().parents[1]
OOB = ROOT / "tests" / "data" / "verifier" / "array_oob.o"
EXAMPLES = ROOT / "examples" / "c"


# ----------------------------------------------------------------------- verifier errors

def _rejected() -> VerifierError:
    obj = ebee.load(OOB)
    try:
        with pytest.raises(VerifierError) as e:
            next(iter(obj.programs.values())).run(data=bytes(64))
        return e.value
    finally:
        obj.close()


def test_verifier_error_says_where_and_why():
    e = _rejected()
    text = str(e)
    lines = text.splitlines()
    assert lines[0] == e.summary == ("program 'array_oob' rejected by the verifier: R0 max value "
                                     "is outside of the allowed memory range")
    assert lines[1] == "  at insn 17: (79) r1 = *(u64 *)(r0 +0)"
    assert lines[2] == "  source: c->slot[i]++; (array_oob.c:32)"
    assert lines[3].startswith("  verifier log (last ")
    tail = [t.removeprefix("    ") for t in lines[4:]]
    assert tail == e.log.rstrip("\n").splitlines()[-len(tail):]
    assert "invalid access to map value, value_size=64 off=64 size=8" in tail
    assert 0 < len(tail) <= VerifierError.TAIL


def test_verifier_error_from_object_verify_has_the_log():
    with ebee.load(OOB) as obj:
        with pytest.raises(VerifierError) as e:
            obj.verify()               # log_level 0 asked for; the error still carries one
    assert e.value.log and "at insn 17:" in str(e.value)


def test_failing_insn_and_source_line_match_linux(kernel):
    """Linux's own log for the same object names the same instruction and source line."""
    e = _rejected()
    with ebee.load(OOB) as obj:
        with pytest.raises(OSError) as k:
            obj.load_kernel(log_level=1)
    log = getattr(k.value, "log", "")
    if not log:
        pytest.skip(f"no kernel verifier log: {k.value}")
    insns = [ln for ln in log.splitlines() if re.match(r"^\d+: \([0-9a-f]{2}\) ", ln)]
    assert insns and insns[-1].split(";")[0].rstrip() == e.insn
    sources = [ln for ln in log.splitlines() if ln.startswith("; ")]
    assert sources[-1] == "; c->slot[i]++; @ array_oob.c:32"


# -------------------------------------------------------------------- the library itself

def test_packet_builders_need_no_pytest():
    code = ("import sys; sys.modules['pytest'] = None\n"
            "from ebee.packet import udp_packet, tcp_packet, icmp_packet\n"
            "import ebee.pytest_plugin\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # the builders import; the plugin (which needs pytest) is the only thing that fails
    assert "import of pytest halted" in r.stderr and "ebee/pytest_plugin.py" in r.stderr
    r = subprocess.run([sys.executable, "-c", code.rsplit("import ebee.pytest_plugin", 1)[0]],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_plugin_keeps_the_old_names():
    from ebee import packet
    from ebee import pytest_plugin
    for name in ("udp_packet", "tcp_packet", "icmp_packet"):
        assert getattr(pytest_plugin, name) is getattr(packet, name)
    frame = packet.udp_packet(src="10.0.0.1", dst="10.0.0.2", sport=1, dport=2, payload=b"x")
    assert len(frame) == 14 + 20 + 8 + 1 and frame[12:14] == b"\x08\x00"


def test_py_typed_ships():
    assert resources.files("ebee").joinpath("py.typed").is_file()
    import tomllib
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in conf["tool"]["setuptools"]["package-data"]["ebee"]


# ------------------------------------------------------------------------------- readers

def test_ring_buffer_drops_are_counted_and_visible():
    rb = Map(U.MapType.RINGBUF, 0, 0, 4 * 4096)
    r = rb.reader()
    sent = [bytes([i]) * 1000 for i in range(100)]       # 100 records, room for 16
    rets = [rb.output(s, 0) for s in sent]
    written = sum(1 for x in rets if x == 0)
    assert 0 < written < 100 and rets.count(-11) == 100 - written      # -EAGAIN
    got = r.drain()
    data = [g.data for g in got if not g.lost]
    assert data == [s for s, x in zip(sent, rets) if x == 0]
    assert got[-1] == Record(b"", -1, lost=100 - written)
    assert r.lost == 100 - written
    # with a lost_callback the notices go there instead of into the stream
    heard = []
    r2 = rb.reader(lost_callback=lambda cpu, n: heard.append((cpu, n)))
    rb.output(b"x" * 20000, 0)                             # never fits
    assert r2.drain() == [] and heard == [(-1, 1)] and r2.lost == 1


def test_perf_losses_are_counted():
    m = Map(U.MapType.PERF_EVENT_ARRAY, 4, 4, 1)
    r = m.reader(page_cnt=1)
    rets = [m.output(0, bytes(1000), 0) for _ in range(10)]
    lost = rets.count(-28)                                 # -ENOSPC
    assert lost > 0
    items = r.drain()
    assert [i.lost for i in items if i.lost] == [lost] and r.lost == lost


def test_ctrl_c_ends_the_loop_cleanly():
    """A real SIGINT while ``for rec in reader`` waits: the loop ends, the reader closes."""
    with ebee.load(EXAMPLES / "ringbuf_events.o") as obj:
        reader = obj.maps["events"].reader()
        obj.maps["events"].output(b"one record", 0)
        waits = []
        inner = reader._wait

        def wait_then_interrupt(timeout):
            waits.append(timeout)
            signal.raise_signal(signal.SIGINT)             # what Ctrl-C sends
            return inner(timeout)

        reader._wait = wait_then_interrupt
        got = [rec.data for rec in reader]                  # returns instead of raising
    assert got == [b"one record"] and waits and reader.closed
