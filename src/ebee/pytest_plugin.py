"""pytest integration: test your own eBPF programs with ebee, no kernel needed.

Installed with ebee (entry point ``pytest11``), so in any project::

    def test_drops_blocked_source(ebee_object):
        obj = ebee_object("build/xdp_firewall.o")
        obj.maps["blocklist"].update(socket.inet_aton("10.0.0.1"), 0)
        res = obj.programs["xdp_firewall"].run(data=udp_packet(src="10.0.0.1"))
        assert_verdict(res, "XDP_DROP")

Fixtures:

- ``ebee_object(path, **load_options)``: load an object (closed after the test).
- ``ebee_net``: a fresh :class:`ebee.packet.Network` (devices, routes, sockets) for runs
  that redirect, look up the FIB or sockets: ``prog.run(data=..., net=ebee_net)``.

Helpers (import from ``ebee.pytest_plugin``): packet builders ``udp_packet``,
``tcp_packet``, ``icmp_packet`` (they live in :mod:`ebee.packet`, which needs no pytest;
scapy packets work too -- anything ``bytes()`` accepts), ``run_all`` to run one program over many packets, and
assertions ``assert_verdict``, ``assert_packet`` (with a byte diff) and
``assert_trace``.

Isolation
---------
Each test gets a pin store of its own (a temporary SQLite file): maps pinned by name
(``LIBBPF_PIN_BY_NAME``), ``ebee.pin`` and the ``ebee`` command line run from the test
(``$EBEE_PIN_STORE`` is set for subprocesses too) all see that store, and it is thrown
away after the test, so one test's block-list entry never reaches the next test or the
next run.  To use the real store instead (``$EBEE_PIN_STORE`` as set outside pytest, or
``~/.local/state/ebee/bpffs.sqlite3``) -- for a test that checks state a previous
``ebee map update`` left -- mark the test (or module, with ``pytestmark``)::

    @pytest.mark.ebee_shared_pins
    def test_uses_what_the_cli_pinned(ebee_pin_store): ...

or set ``ebee_pins = shared`` in the pytest ini file for every test.  The
``ebee_pin_store`` fixture is the :class:`ebee.fs.PinStore` the test uses.  The number of
virtual CPUs and the CPU user space runs as (:func:`ebee.maps.set_num_cpus`,
:func:`ebee.maps.set_user_cpu`) are restored after each test.

Under pytest-xdist (``pytest -n auto``) each worker is its own process: its own virtual
CPUs, live maps and temporary pin stores (under the worker's ``basetemp``).  The JIT's
disk cache (``$EBEE_JIT_CACHE``) is content-addressed and written by rename, so workers
may share it.
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest

from . import coverage, fs
from .maps import num_cpus, set_num_cpus, set_user_cpu, user_cpu
from .packet import Network, as_bytes, icmp_packet, tcp_packet, udp_packet
from .session import load as load_object
from .testrun import Runner


def run_all(prog, packets: Iterable[Any], **run_options) -> list:
    """Run ``prog`` on each packet (one test run each); the RunResults in order."""
    net = run_options.pop("net", None)
    engine = run_options.pop("engine", None)
    with Runner(prog, net=net, engine=engine) as r:
        return [r.run(as_bytes(p), **run_options) for p in packets]


def assert_verdict(result, expected: str | int) -> None:
    """The run's return value, by name (``"XDP_DROP"``, ``"TC_ACT_SHOT"``) or number."""
    if isinstance(expected, int):
        ok = (result.retval & 0xFFFFFFFF) == (expected & 0xFFFFFFFF)
    else:
        ok = result.verdict == expected
    if not ok:
        pytest.fail(f"verdict {result.verdict} (retval {result.retval}), expected {expected}",
                    pytrace=False)


def assert_packet(result, expected: Any) -> None:
    """data_out equals ``expected``; on a mismatch, show where the bytes differ."""
    want = as_bytes(expected)
    got = result.data_out
    if got == want:
        return
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    lo = max(0, first - 8)
    pytest.fail(f"output packet differs at byte {first} (lengths {len(got)} vs {len(want)}):\n"
                f"  got      [{lo}:] {got[lo:first + 16].hex(' ')}\n"
                f"  expected [{lo}:] {want[lo:first + 16].hex(' ')}", pytrace=False)


def assert_trace(result, *fragments: str) -> None:
    """Each fragment appears in the run's bpf_printk output, in order."""
    lines = list(result.trace_output)
    pos = 0
    for frag in fragments:
        while pos < len(lines) and frag not in lines[pos]:
            pos += 1
        if pos == len(lines):
            pytest.fail(f"trace output has no {frag!r} (in order); got: {lines!r}",
                        pytrace=False)
        pos += 1


SHARED_MARK = "ebee_shared_pins"
PINS_INI = "ebee_pins"


COV_OPTION = "--ebee-cov"
COV_DEFAULT = "ebee-cov"


def pytest_addoption(parser) -> None:
    parser.getgroup("ebee").addoption(
        COV_OPTION, nargs="?", const=COV_DEFAULT, default=None, metavar="DIR", dest="ebee_cov",
        help="record which instructions, branches and C lines of eBPF programs the tests ran "
             f"(both engines); writes DIR/lcov.info and DIR/index.html (default {COV_DEFAULT})")
    parser.addini(PINS_INI, "ebee's pin store in tests: 'isolated' (default: a temporary store "
                            "per test) or 'shared' (the real one, $EBEE_PIN_STORE or "
                            "~/.local/state/ebee/bpffs.sqlite3)", default="isolated")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", f"{SHARED_MARK}: use the real ebee pin store instead of "
                                       "a temporary one for this test")
    if config.getoption("ebee_cov", None):
        coverage.enable()
    mode = config.getini(PINS_INI)
    if mode not in ("isolated", "shared"):
        raise pytest.UsageError(f"{PINS_INI} = {mode!r}: expected 'isolated' or 'shared'")


# -- coverage: each process counts; pytest-xdist workers write a data file each and the
# controller (which runs no test) merges them with its own into the reports

def _cov_dir(config) -> Path | None:
    d = config.getoption("ebee_cov", None)
    return Path(d) if d else None


@pytest.hookimpl(optionalhook=True)      # a pytest-xdist hook
def pytest_testnodedown(node, error) -> None:
    path = getattr(node, "workeroutput", {}).get("ebee_cov")
    if path:
        node.config.stash.setdefault(_COV_FILES, []).append(path)


_COV_FILES = pytest.StashKey[list]()


def pytest_sessionfinish(session) -> None:
    config = session.config
    d = _cov_dir(config)
    if d is None:
        return
    d.mkdir(parents=True, exist_ok=True)
    own = coverage.collect()
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        path = d / f".ebee-cov.{worker['workerid']}.json"
        own.save(path)
        config.workeroutput["ebee_cov"] = str(path)
        return
    files = config.stash.get(_COV_FILES, [])
    data = coverage.merge_files(files, into=own)
    for f in files:
        Path(f).unlink(missing_ok=True)
    data.save(d / "coverage.json")
    coverage.write_lcov(data, d / "lcov.info")
    coverage.write_html(data, d / "index.html", search=[str(config.rootpath)])
    lines = sum(len(f.lines) for f in data.files.values())
    hit = sum(1 for f in data.files.values() for n in f.lines.values() if n)
    config.stash[_COV_SUMMARY] = (f"ebee coverage: {hit}/{lines} C lines ran in "
                                  f"{len(data.files)} files; {d / 'lcov.info'}, "
                                  f"{d / 'index.html'}")


_COV_SUMMARY = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, config) -> None:
    line = config.stash.get(_COV_SUMMARY, None)
    if line:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def _ebee_pin_dir(request) -> Iterator[Path]:
    try:
        factory = request.getfixturevalue("tmp_path_factory")
    except pytest.FixtureLookupError:       # -p no:tmpdir
        d = Path(tempfile.mkdtemp(prefix="ebee-pins-"))
        yield d
        shutil.rmtree(d, ignore_errors=True)
        return
    yield factory.mktemp("ebee-pins")


_TEST_NUMBER = itertools.count(1)


@pytest.fixture(autouse=True)
def ebee_pin_store(request, _ebee_pin_dir) -> Iterator[fs.PinStore]:
    """The pin store this test uses: a temporary one unless the test is marked
    ``ebee_shared_pins`` (or ``ebee_pins = shared`` is set).  Also restores the virtual CPU
    settings afterwards."""
    cpus, ucpu = num_cpus(), user_cpu()
    shared = (request.node.get_closest_marker(SHARED_MARK) is not None
              or request.config.getini(PINS_INI) == "shared")
    saved = os.environ.get(fs.ENV_VAR)
    location = None
    if not shared:
        location = str(_ebee_pin_dir / f"pins-{next(_TEST_NUMBER)}.sqlite3")
        os.environ[fs.ENV_VAR] = location
    try:
        yield fs.default_store()
    finally:
        if location is not None:
            fs.release_default(location)
            if saved is None:
                os.environ.pop(fs.ENV_VAR, None)
            else:
                os.environ[fs.ENV_VAR] = saved
        set_num_cpus(cpus)
        set_user_cpu(ucpu)


@pytest.fixture
def ebee_object(ebee_pin_store):
    """A factory: ``ebee_object(path, **load_options) -> ebee.Object``, closed after the test
    (before its pin store goes away)."""
    opened = []

    def load(path, **options):
        obj = load_object(path, **options)
        opened.append(obj)
        return obj
    yield load
    for obj in opened:
        obj.close()


@pytest.fixture
def ebee_net():
    """A fresh modelled network (``lo`` only); add devices, routes, neighbours, sockets."""
    net = Network()
    yield net
    net.close()


__all__ = ["assert_packet", "assert_trace", "assert_verdict", "icmp_packet", "run_all",
           "tcp_packet", "udp_packet"]
