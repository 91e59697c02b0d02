"""Pinned HASH / PERCPU_HASH maps are one table in every process that opens the pin, as on
bpffs: program atomics on looked-up values and user-space updates from several processes meet
in the same table, a process killed in the middle of an update wedges no one, and the errnos
are Linux's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import settings, strategies as st

from ebee import maps, uapi as U
from ebee.fs import PinStore
from ebee.kernel.maps import possible_cpus
from ebee.maps.base import Map
from ebee.maps.shared import ATOMICS
from ebee.uapi import BPF_F_ZERO_SEED, MapType as T

from test_maps_kernel_diff import EXAMPLES, STEPS, MapDiff

ROOT = Path(__file__).resolve().parents[1]
N = int(os.environ.get("EBEE_SHARED_HASH_RUNS", "200"))


def spawn(code: str, db: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, EBEE_PIN_STORE=str(db))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_together(procs: list[subprocess.Popen]) -> list[str]:
    """Wait until each says ready, start them at once, return what each printed last."""
    out = []
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            line = p.stdout.readline().strip()
            assert line.startswith("done"), p.stderr.read()
            assert p.wait(120) == 0
            out.append(line)
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    return out


# a program that looks key 7 up and adds 1 to its u64 with an atomic instruction
COUNTER = """
    import sys
    from ebee import assemble
    from ebee.engines import Machine
    from ebee.fs import default_store
    m = default_store().get("/sys/fs/bpf/hcnt")
    prog = assemble(f'''
        r1 = 7
        *(u32 *)(r10 - 4) = r1
        r2 = r10
        r2 += -4
        r1 = map[id:{m.id}] ll
        call bpf_map_lookup_elem
        if r0 == 0 goto +2
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        r0 = 0
        exit
    ''', "kernel")
    b = Machine().bind(prog, engine=sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(int(sys.argv[2])):
        b.run()
    print("done", flush=True)
"""


@pytest.mark.skipif(ATOMICS is None, reason="no libatomic: interpreter atomics are per-process")
@pytest.mark.parametrize("map_type", [T.HASH, T.PERCPU_HASH])
@pytest.mark.parametrize("engines", [("interp", "interp"), ("jit", "jit"), ("interp", "jit")])
def test_two_processes_count_on_one_pinned_hash_value(tmp_path, engines, map_type):
    db = tmp_path / "pins.sqlite3"
    m = Map(map_type, 4, 8, 16, name="hcnt")
    m.update(7, 0 if map_type is T.HASH else [0] * m.ncpus)
    PinStore(db).pin_map("/sys/fs/bpf/hcnt", m)
    run_together([spawn(COUNTER, db, e, str(N)) for e in engines])
    got = m.lookup(7)
    # both processes run as CPU 0: on a per-CPU table they count on the same slot
    total = got if map_type is T.HASH else got[0]
    assert int.from_bytes(total, "little") == 2 * N


WRITER = """
    import sys
    from ebee.fs import default_store
    m = default_store().get("/sys/fs/bpf/hw")
    base = int(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(base, base + int(sys.argv[2])):
        m.update(i, i * 3)
        assert m.lookup(i) == (i * 3).to_bytes(8, "little")
    try:
        m.update(base, 0, flags=1)          # BPF_NOEXIST on a key it wrote
        err = 0
    except OSError as e:
        err = e.errno
    print("done", err, flush=True)
"""


def test_two_processes_update_one_pinned_hash_from_python(tmp_path):
    """Inserts from two processes all land in one table; the 2N+1st key is E2BIG for both."""
    db = tmp_path / "pins.sqlite3"
    m = Map(T.HASH, 4, 8, 2 * N, name="hw")
    PinStore(db).pin_map("/sys/fs/bpf/hw", m)
    out = run_together([spawn(WRITER, db, "0", str(N)), spawn(WRITER, db, str(N), str(N))])
    assert out == ["done 17", "done 17"]                     # EEXIST
    keys = sorted(int.from_bytes(k, "little") for k in m._raw_keys())
    assert keys == list(range(2 * N))
    assert all(m.lookup(i) == (i * 3).to_bytes(8, "little") for i in range(2 * N))
    assert m.count == 2 * N
    with pytest.raises(OSError) as e:
        m.update(10 ** 6, 1)
    assert e.value.errno == 7                                # E2BIG: full, across processes


KILLED = """
    import os, signal, sys
    from ebee.fs import default_store
    from ebee.maps.hashtab import HashMap
    m = default_store().get("/sys/fs/bpf/hk")
    where = sys.argv[1]
    orig = getattr(HashMap, where)
    def die(self, *a):
        if where == "_link_head":
            orig(self, *a)           # the new element is linked; the old one still is too
        os.kill(os.getpid(), signal.SIGKILL)
    setattr(HashMap, where, die)
    m.update(3, 333)                  # replaces key 3: killed holding the lock, mid-edit
"""

CHECK = """
    import json
    from ebee.fs import default_store
    m = default_store().get("/sys/fs/bpf/hk")
    m.update(100, 1)
    m.delete(100)
    keys = [int.from_bytes(k, "little") for k in m._raw_keys()]
    vals = {k: int.from_bytes(m.lookup(k), "little") for k in keys}
    count = m.count
    errs = []
    for k in range(200, 300):                 # fill it up: E2BIG exactly at max_entries
        try:
            m.update(k, k)
        except OSError as e:
            errs.append(e.errno)
            break
    print(json.dumps({"keys": keys, "vals": vals, "count": count, "errs": errs,
                      "n": len(list(m._raw_keys()))}))
"""


@pytest.mark.parametrize("where", ["_write_value", "_link_head", "_unlink"])
def test_a_process_killed_holding_the_lock_wedges_no_one(tmp_path, where):
    db = tmp_path / "pins.sqlite3"
    m = Map(T.HASH, 4, 8, 8, name="hk")
    for k in range(5):
        m.update(k, k * 10)
    PinStore(db).pin_map("/sys/fs/bpf/hk", m)
    p = spawn(KILLED, db, where)
    p.communicate(timeout=60)
    assert p.returncode == -9
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(CHECK)], cwd=ROOT, timeout=60,
                       env=dict(os.environ, EBEE_PIN_STORE=str(db)), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert sorted(out["keys"]) == [0, 1, 2, 3, 4] and len(out["keys"]) == 5   # each key once
    # the killed update either happened or did not; every other value is intact
    assert out["vals"] == {**{str(k): k * 10 for k in range(5)}, "3": out["vals"]["3"]}
    assert out["vals"]["3"] in (30, 333)
    assert out["count"] == 5
    assert out["errs"] == [7] and out["n"] == 8                     # E2BIG at max_entries
    # and this process, holding the pinner's mapping, sees the same table
    assert m.count == 8 and len(list(m._raw_keys())) == 8


# -- Linux's errnos and iteration order, on a shared table seen through two processes' views


class _TwoViews:
    """One shared table through two Map objects (the pinner's and an opener's mapping):
    operations alternate between them, as two processes' would."""

    def __init__(self, a: Map, b: Map):
        self.views, self.i = (a, b), 0

    def __getattr__(self, name):
        self.i ^= 1
        return getattr(self.views[self.i], name)


class SharedDiff(MapDiff):
    def __init__(self):
        super().__init__()
        self._dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"ebee-shdiff-{os.getpid()}"
        self._dir.mkdir(exist_ok=True)
        db = self._dir / f"{id(self)}.sqlite3"
        pinner = self.e
        self._stores = (PinStore(db), PinStore(db))
        self._stores[0].pin_map("/sys/fs/bpf/d", pinner)
        opened = self._stores[1].get("/sys/fs/bpf/d")
        assert opened is not pinner and opened.shared is not None
        self.e = _TwoViews(pinner, opened)

    def teardown(self):
        self.k.close()
        for st in self._stores:
            st.close()


def _machine(name, mt, **attrs):
    cls = type(name, (SharedDiff,), {"map_type": mt, **attrs})
    cls.TestCase.settings = settings(max_examples=max(EXAMPLES // 2, 5),
                                     stateful_step_count=STEPS, deadline=None, database=None)
    return cls


MACHINES = [
    _machine("SharedHashZeroSeed", T.HASH, flags=BPF_F_ZERO_SEED),
    _machine("SharedHashSmall", T.HASH, flags=BPF_F_ZERO_SEED, max_entries=3,
             keys=st.integers(0, 5)),
    _machine("SharedPercpuHash", T.PERCPU_HASH, flags=BPF_F_ZERO_SEED, value_size=4),
]


@pytest.fixture(scope="module")
def pinned(kernel):
    """Run as CPU 0 on both sides, with as many CPUs as the kernel's possible CPUs."""
    old_aff = os.sched_getaffinity(0)
    old_n, old_u = maps.num_cpus(), maps.user_cpu()
    os.sched_setaffinity(0, {0})
    maps.set_num_cpus(possible_cpus())
    maps.set_user_cpu(0)
    yield
    maps.set_num_cpus(old_n)
    maps.set_user_cpu(old_u)
    os.sched_setaffinity(0, old_aff)


@pytest.mark.kernel
@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.__name__)
def test_shared_hash_agrees_with_the_kernel(pinned, machine):
    machine.TestCase().runTest()
