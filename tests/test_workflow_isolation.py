"""The pytest plugin's isolation: a pin store per test, an opt-in to share, pytest-xdist."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ebee
from ebee.fs import PinStore

ROOT = Path(__file__).resolve().parents[1]
FIREWALL = ROOT / "examples" / "c" / "xdp_firewall.o"

# Two tests that each add a block-list entry to a map the firewall pins by name and assert
# it starts empty: if pins leaked from one test (or one run) to the next, the second fails.
LEAKY = f"""
import socket
import pytest

OBJ = {str(FIREWALL)!r}

def entries(obj):
    return len(list(obj.maps["blocklist"].keys()))

@pytest.mark.parametrize("n", range(4))
def test_block_one(ebee_object, n):
    obj = ebee_object(OBJ)
    assert entries(obj) == 0
    obj.maps["blocklist"].update(socket.inet_aton(f"10.0.0.{{n}}"), bytes(8))
    assert entries(obj) == 1
"""

SHARED = f"""
import socket
import pytest

@pytest.mark.ebee_shared_pins
def test_pin_for_later(ebee_object, ebee_pin_store):
    obj = ebee_object({str(FIREWALL)!r})
    obj.maps["blocklist"].update(socket.inet_aton("10.9.9.9"), bytes(8))
    assert ebee_pin_store.exists("/sys/fs/bpf/blocklist")
"""


CPUS = """
import ebee

START = (ebee.maps.num_cpus(), ebee.maps.user_cpu())

def test_changes_cpus():
    ebee.maps.set_num_cpus(START[0] + 2)
    ebee.maps.set_user_cpu(START[0] + 1)

def test_sees_them_restored():
    assert (ebee.maps.num_cpus(), ebee.maps.user_cpu()) == START
"""


def run_pytest(tmp_path: Path, *args: str, store: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, EBEE_PIN_STORE=str(store))
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def pins_in(store: Path) -> list[str]:
    if not store.exists():
        return []
    st = PinStore(store)
    try:
        return [p for p, _, _ in st.list()]
    finally:
        st.close()


def test_pins_and_cpus_do_not_leak_between_tests_or_runs(tmp_path):
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    (tmp_path / "test_cpus.py").write_text(CPUS)
    outer = tmp_path / "user-store.sqlite3"
    for _ in range(2):                       # the second run sees nothing of the first
        r = run_pytest(tmp_path, "test_leaky.py", "test_cpus.py", store=outer)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "6 passed" in r.stdout
    assert pins_in(outer) == []              # the user's store was never written


def test_shared_pins_marker_uses_the_real_store(tmp_path):
    (tmp_path / "test_shared.py").write_text(SHARED)
    outer = tmp_path / "user-store.sqlite3"
    r = run_pytest(tmp_path, "test_shared.py", store=outer)
    assert r.returncode == 0, r.stdout + r.stderr
    assert pins_in(outer) == ["/sys/fs/bpf/blocklist"]
    st = PinStore(outer)
    try:
        assert [bytes(k) for k in st.get("/sys/fs/bpf/blocklist").keys()] == \
            [bytes([10, 9, 9, 9])]
    finally:
        st.close()


def test_ini_option_shares_every_test(tmp_path):
    (tmp_path / "test_leaky.py").write_text(LEAKY.replace("range(4)", "range(1)"))
    (tmp_path / "pytest.ini").write_text("[pytest]\nebee_pins = shared\n")
    outer = tmp_path / "user-store.sqlite3"
    r = run_pytest(tmp_path, "test_leaky.py", store=outer)
    assert r.returncode == 0, r.stdout + r.stderr
    assert pins_in(outer) == ["/sys/fs/bpf/blocklist"]
    r = run_pytest(tmp_path, "test_leaky.py", store=outer)     # shared: the entry is still there
    assert r.returncode == 1 and "assert 1 == 0" in r.stdout


def test_bad_ini_value_is_a_usage_error(tmp_path):
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    (tmp_path / "pytest.ini").write_text("[pytest]\nebee_pins = sometimes\n")
    r = run_pytest(tmp_path, "test_leaky.py", store=tmp_path / "s.sqlite3")
    assert r.returncode == 4 and "ebee_pins = 'sometimes'" in r.stderr




def test_examples_under_xdist(tmp_path):
    pytest.importorskip("xdist")
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    outer = tmp_path / "user-store.sqlite3"
    r = run_pytest(tmp_path, "-n", "2", str(ROOT / "examples" / "test_xdp_firewall.py"),
                   "test_leaky.py", store=outer)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "7 passed" in r.stdout
    assert pins_in(outer) == []


def test_pin_store_fixture_is_temporary(ebee_pin_store):
    # this suite runs with the plugin too: the store is not the user's default
    assert ebee_pin_store.location.name.startswith("pins-")
    assert os.environ["EBEE_PIN_STORE"] == str(ebee_pin_store.location)
    assert ebee.fs.default_store() is ebee_pin_store
