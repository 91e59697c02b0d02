from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
CONFORMANCE = CORPUS / "conformance"

SLOW = os.environ.get("EBEE_SLOW") == "1"

# Every landing runs the same examples (a bounded, deterministic sample); long runs
# (EBEE_SLOW=1, or EBEE_HYPOTHESIS_RANDOM=1) explore with fresh random seeds.
settings.register_profile("default", deadline=None,
                          derandomize=not (SLOW or os.environ.get("EBEE_HYPOTHESIS_RANDOM") == "1"),
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("default")


def pytest_configure(config):
    # the suite's verdicts, JIT images and parsed BTF come from this run, not from
    # a developer's earlier one (subprocesses inherit it); EBEE_CACHE_DIR overrides
    if "EBEE_CACHE_DIR" not in os.environ:
        os.environ["EBEE_CACHE_DIR"] = _CACHE = tempfile.mkdtemp(prefix="ebee-test-cache-")
        config.add_cleanup(lambda: shutil.rmtree(_CACHE, ignore_errors=True))


def pytest_collection_modifyitems(config, items):
    if SLOW:
        return
    skip = pytest.mark.skip(reason="long differential run; set EBEE_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    d = CONFORMANCE / "tests"
    if not d.is_dir():
        pytest.skip(f"conformance corpus not found at {d}")
    return d


@pytest.fixture(scope="session")
def negative_dir() -> Path:
    d = CONFORMANCE / "negative"
    if not d.is_dir():
        pytest.skip(f"conformance corpus not found at {d}")
    return d


def pytest_report_header(config):
    from ebee import kernel_model
    return f"ebee {kernel_model.describe()}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that compared ebee with the running kernel says which kernel ebee
    emulates and which one ran: a different release is a reason of its own."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and ("kernel" in getattr(item, "fixturenames", ()) or
                       item.get_closest_marker("kernel")):
        from ebee import kernel_model
        rep.sections.append(("kernel model", f"ebee {kernel_model.describe()}"))


@pytest.fixture(scope="session")
def kernel():
    """Skips the test, with the reason, where bpf() cannot load programs."""
    from ebee import kernel_model
    from ebee.kernel import bpf_available
    why = bpf_available()
    if why:
        pytest.skip(f"{why} (ebee {kernel_model.describe()})")
    return True


@pytest.fixture
def tracing(kernel):
    """The kernel's ring buffer switched on for the test (an oops earlier in the machine's
    life switches it off), and back as it was after."""
    from ebee.kernel.fs import tracefs
    path = tracefs() / "tracing_on"
    was = path.read_text().strip()
    if was == "0":
        path.write_text("1")
    yield path
    if was == "0":
        path.write_text("0")


@pytest.fixture(scope="session")
def llvm_objdump() -> str:
    for name in ("llvm-objdump-19", "llvm-objdump"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("llvm-objdump not installed")


@pytest.fixture(scope="session", autouse=True)
def kernel_leftovers(tmp_path_factory):
    """Session check: nothing the suite attached or pinned in the kernel is left behind.

    Links and pins made through ebee.kernel -- in this process or in the CLI
    subprocesses tests start -- are recorded in a ledger (EBEE_KERNEL_LEDGER);
    at the end every one of them must be gone, whatever else the machine runs.
    """
    from ebee.kernel.ledger import LEDGER_ENV
    path = tmp_path_factory.mktemp("kernel-ledger") / "ledger.jsonl"
    old = os.environ.get(LEDGER_ENV)
    os.environ[LEDGER_ENV] = str(path)
    yield path
    if old is None:
        os.environ.pop(LEDGER_ENV, None)
    else:
        os.environ[LEDGER_ENV] = old
    import gc
    gc.collect()
    from ebee.kernel.ledger import leftovers
    from ebee.kernel.links import live_attachments
    left = [f"{a!r} is still attached" for a in live_attachments()] + leftovers(str(path))
    assert not left, "the test suite left kernel objects behind: " + "; ".join(left)
