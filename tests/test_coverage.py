"""Coverage (ebee.coverage, pytest --ebee-cov, ebee run --coverage): exact counts on the
example firewall over the shipped capture, checked against the interpreter's own
instruction trace; both engines agree; xdist workers merge; lcov parses."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ebee import coverage
from ebee.debug import SourceMap
from ebee.engines import jit
from ebee.engines.probes import COVERAGE, stepping
from ebee.isa import Kind
from ebee.packet import pcap
from ebee.testrun import Runner
from ebee.testrun.replay import replay

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
OBJ = ROOT / "examples" / "c" / "xdp_firewall.o"
PCAP = ROOT / "examples" / "pcap" / "mixed.pcap"
needs_jit = pytest.mark.skipif(not jit.available(), reason=f"no JIT: {jit.unavailable_reason()}")


@pytest.fixture
def counting():
    COVERAGE.clear()
    COVERAGE.enable()
    yield
    COVERAGE.disable()
    COVERAGE.clear()


def _firewall(ebee_object):
    obj = ebee_object(str(OBJ))
    frames = list(pcap.read(str(PCAP)))
    # block the source of the first IPv4 packet, so that the drop path runs too
    ip = next(f.data for f in frames if f.data[12:14] == b"\x08\x00")
    obj.maps["blocklist"].update(ip[26:30], (0).to_bytes(8, "little"))
    return obj.programs["xdp_firewall"], frames


def _run(prog, frames, engine):
    with Runner(prog, engine=engine) as r:
        return replay(r, frames)


def _trace(prog, frames):
    """Per-pc starts, per-jump taken counts and per-line entries from the interpreter's
    stepping hook (coverage off: nothing here reads a counter)."""
    seen: list[tuple[int, int]] = []
    with stepping(lambda bound, pc, depth, regs: seen.append((pc, depth))):
        with Runner(prog, engine="interp") as r:
            for fr in frames:
                seen.append((-1, -1))            # a run starts
                r.run(fr.data)
    exe = prog.executable()
    insns = {i.pc: i for i in exe.insns}
    src = SourceMap(prog, list(exe.insns))
    hits, taken, entries = Counter(), Counter(), Counter()
    last: dict[int, int] = {}                    # depth -> last pc started there
    for (pc, depth), nxt in zip(seen, seen[1:] + [(-1, -1)]):
        if pc < 0:
            last.clear()
            continue
        hits[pc] += 1
        i = insns[pc]
        if i.kind is Kind.JCC and nxt[1] == depth and nxt[0] == i.jump_target():
            taken[pc] += 1
        sl = src.line(pc)
        prev = last.get(depth)
        psl = src.line(prev) if prev is not None else None
        if sl is not None and (psl is None or (psl.file, psl.line) != (sl.file, sl.line)):
            entries[sl.line] += 1
        last[depth] = pc
    return hits, taken, entries, src


def test_exact_counts_match_the_interpreter_trace(ebee_object, counting):
    prog, frames = _firewall(ebee_object)
    s = _run(prog, frames, "interp")
    data = coverage.collect()
    COVERAGE.disable()
    hits, taken, entries, src = _trace(prog, frames)
    (rows,) = [p.insns for p in data.programs.values()]
    assert {pc: n for pc, _, n, _, _, _ in rows if n} == dict(hits)
    assert {pc: t for pc, _, _, t, _, _ in rows if t} == dict(taken)
    (fd,) = data.files.values()
    assert {ln: n for ln, n in fd.lines.items() if n} == dict(entries)
    # and what the program's outcomes say on their own
    drops = s.verdicts["XDP_DROP"]
    assert 0 < drops < len(frames)
    assert fd.functions["xdp_firewall"] == [38, len(frames)]
    assert fd.lines[57] == drops                 # return XDP_DROP
    # `if (hits)` (line 56): not taken once per drop
    (block,) = {b for (ln, b, _) in fd.branches if ln == 56}
    assert fd.branches[(56, block, 1)] == fd.lines[57]
    assert sum(1 for i in src.insns if i.kind is Kind.JCC) * 2 == len(fd.branches)


@needs_jit
def test_both_engines_count_the_same(ebee_object, counting):
    prog, frames = _firewall(ebee_object)
    _run(prog, frames, "interp")
    a = coverage.collect().to_json()
    COVERAGE.clear()
    _run(prog, frames, "jit")         # XDP on the JIT: the native batch driver
    b = coverage.collect().to_json()
    assert a == b
    assert a["programs"]


@needs_jit
def test_jit_compiles_no_counter_unless_asked():
    from ebee.engines.jit import irgen
    from ebee.session import load
    with load(str(OBJ)) as obj:
        insns = list(obj.programs["xdp_firewall"].executable().insns)
    plain = irgen.generate(insns, checked=False)
    counted = irgen.generate(insns, checked=False, count=True)
    kinds = lambda layout: {k for k, _ in layout.slots}    # noqa: E731
    assert not kinds(plain[1]) & {"cov_hits", "cov_taken"}
    assert {"cov_hits", "cov_taken"} <= kinds(counted[1])
    assert str(plain[0]).count("atomicrmw") < str(counted[0]).count("atomicrmw")


def test_lcov_round_trips_and_genhtml_reads_it(ebee_object, counting, tmp_path):
    prog, frames = _firewall(ebee_object)
    _run(prog, frames, "interp")
    data = coverage.collect()
    info = tmp_path / "cov.info"
    coverage.write_lcov(data, info)
    back = coverage.parse_lcov(info.read_text())
    (path,) = data.files
    assert back.files[path].lines == data.files[path].lines
    assert back.files[path].branches == data.files[path].branches
    assert back.files[path].functions == data.files[path].functions
    with pytest.raises(ValueError, match="line 2"):
        coverage.parse_lcov("SF:x\nDA:zz\n")
    coverage.write_html(data, tmp_path / "index.html", search=[str(OBJ.parent)])
    page = (tmp_path / "index.html").read_text()
    assert "<script" not in page and "http" not in page.split("<body>")[1]
    assert "class='part'" in page and "class='hit'" in page   # some jumps never jumped
    if shutil.which("genhtml") is None:
        pytest.skip("genhtml is not installed (the parser check above ran)")
    subprocess.run(["genhtml", "-q", "--branch-coverage", "-o", str(tmp_path / "gen"), str(info)],
                   check=True, capture_output=True)
    assert (tmp_path / "gen" / "index.html").exists()


def test_ebee_run_coverage(tmp_path):
    out = tmp_path / "run.info"
    p = subprocess.run([sys.executable, "-m", "ebee", "run", str(OBJ), "--pcap", str(PCAP),
                        "--engine", "interp", f"--coverage={out}"],
                       capture_output=True, text=True, env={"EBEE_PIN_STORE": str(tmp_path / "p"),
                                                            "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    data = coverage.parse_lcov(out.read_text())
    (fd,) = data.files.values()
    assert fd.functions["xdp_firewall"][1] == len(list(pcap.read(str(PCAP))))
    assert Path(f"{out}.html").exists()


_WORKER_TEST = """
from pathlib import Path
from ebee.packet import pcap
from ebee.testrun import Runner
OBJ = Path({obj!r})
FRAMES = list(pcap.read({pcap!r}))

def test_{name}(ebee_object):
    prog = ebee_object(str(OBJ)).programs["xdp_firewall"]
    with Runner(prog, engine="interp") as r:
        for fr in FRAMES[{lo}:{hi}]:
            r.run(fr.data)
"""


def test_xdist_workers_merge(pytester):
    pytest.importorskip("xdist")
    n = len(list(pcap.read(str(PCAP))))
    for name, lo, hi in (("a", 0, 50), ("b", 50, n)):
        pytester.makepyfile(**{f"test_{name}": _WORKER_TEST.format(
            obj=str(OBJ), pcap=str(PCAP), name=name, lo=lo, hi=hi)})
    res = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--ebee-cov=cov")
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines(["ebee coverage: * C lines ran in 1 files*"])
    d = pytester.path / "cov"
    assert not list(d.glob(".ebee-cov.*.json"))        # merged, then removed
    data = coverage.load(d / "coverage.json")
    (fd,) = data.files.values()
    assert fd.functions["xdp_firewall"][1] == n         # 50 runs on one worker + the rest
    assert (d / "lcov.info").exists() and (d / "index.html").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get "
                    "install chromium)")
def test_report_screenshot(ebee_object, counting, tmp_path):
    """The HTML report in headless Chromium at a fixed size (EBEE_UPDATE_SCREENSHOTS=1
    keeps it as docs/img/coverage-report.png)."""
    prog, frames = _firewall(ebee_object)
    _run(prog, frames, "interp")
    page = tmp_path / "index.html"
    coverage.write_html(coverage.collect(), page, search=[str(OBJ.parent)])
    png = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,900", f"--screenshot={png}", page.as_uri()],
                   capture_output=True, timeout=120)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (1000, 900)
    if os.environ.get("EBEE_UPDATE_SCREENSHOTS") == "1":
        (ROOT / "docs" / "img" / "coverage-report.png").write_bytes(data)
