"""Virtual CPUs are bounded: no per-CPU access indexes past a map's memory.

A map keeps the CPU count it was created with.  A program on a higher virtual
CPU stops at its first use of a per-CPU map (``Map.cpu_slot``) in the
interpreter, the checked JIT and the verified JIT (whose inline lookup computes
``values + cpu * elem_size``), and shares a lower CPU's bookkeeping in other maps; ``ebee run --threads N`` raises the CPU count
before the maps exist, so per-CPU sums and atomic totals are exact for any
``N``; ``replay_parallel`` refuses threads the maps have no slot for.
"""
from __future__ import annotations

import errno
import json
import struct
from pathlib import Path

import pytest

import ebee
from ebee.asm import assemble
from ebee.engines import Machine
from ebee.errors import VMError
from ebee.maps import num_cpus, set_num_cpus, set_user_cpu
from ebee.program import Program
from ebee.testrun.parallel import replay_parallel
from ebee.testrun.runner import Runner
from ebee.uapi import MapType, ProgType

ROOT = Path(__file__).resolve().parent.parent
OBJ = ROOT / "tests" / "data" / "safety" / "percpu_count.o"
PCAP = ROOT / "examples" / "pcap" / "mixed.pcap"
KEY0 = struct.pack("<I", 0)
MAPS = ("pcpu_array", "pcpu_hash", "total")


@pytest.fixture
def cpus():
    """Restores the virtual CPU count (and the user CPU) a test changes."""
    old = num_cpus()
    yield
    set_user_cpu(0)
    set_num_cpus(old)


def _packets() -> int:
    from ebee.packet import pcap
    return sum(1 for _ in pcap.read(str(PCAP)))


def _count(m) -> int:
    v = m[KEY0]
    vals = v if isinstance(v, list) else [v]
    return sum(x if isinstance(x, int) else int.from_bytes(x, "little") for x in vals)


def _program(m, lookup_only: bool) -> str:
    update = "" if lookup_only else f"""*(u64 *)(r10 -16) = 1
r2 = r10
r2 += -4
r3 = r10
r3 += -16
r1 = map[id:{m.id}]
r4 = 0
call bpf_map_update_elem
"""
    return f"""*(u32 *)(r10 -4) = 0
{update}r2 = r10
r2 += -4
r1 = map[id:{m.id}]
call bpf_map_lookup_elem
if r0 == 0 goto out
r1 = 7
*(u64 *)(r0 +0) = r1
out:
r0 = 2
exit
"""


PER_CPU = [MapType.PERCPU_ARRAY, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH]
# per-CPU bookkeeping only (spare elements, LRU lists): any CPU is served
SHARED_CPU = [MapType.HASH, MapType.LRU_HASH, MapType.ARRAY]


def _run(prog, engine, cpu):
    with Machine(cpu=cpu) as mach, Runner(prog, engine=engine, machine=mach) as r:
        return r.run(bytes(64))


@pytest.mark.parametrize("engine", ["interp", "jit"])
@pytest.mark.parametrize("verified", [True, False], ids=["verified", "unverified"])
@pytest.mark.parametrize("lookup_only", [True, False], ids=["lookup", "update+lookup"])
@pytest.mark.parametrize("mt", PER_CPU + SHARED_CPU, ids=lambda t: t.name)
def test_cpu_beyond_the_map(cpus, mt, lookup_only, verified, engine):
    set_num_cpus(2)
    m = ebee.Map(mt, 4, 8, 4)
    guard = ebee.Map(MapType.ARRAY, 4, 8, 64)     # memory a stray write could reach
    try:
        if lookup_only and mt not in (MapType.ARRAY, MapType.PERCPU_ARRAY):
            m[KEY0] = [0, 0] if m.percpu else 0
        before = bytes(m.value_region.buf), bytes(guard.value_region.buf)
        prog = Program.from_insns(assemble(_program(m, lookup_only)), ProgType.XDP,
                                  verify=verified)
        if m.percpu:
            with pytest.raises(VMError, match=r"virtual CPU 2 has no slot in per-CPU map "
                                              r"\d+: the map was created with 2 CPUs"):
                _run(prog, engine, 2)
            assert (bytes(m.value_region.buf), bytes(guard.value_region.buf)) == before
            # the CPUs it was created for are served, in the same engine
            assert _run(prog, engine, 1).retval == 2
            assert m[KEY0][1] in (7, struct.pack("<Q", 7))
        else:
            for cpu in (2, 5, 1):
                assert _run(prog, engine, cpu).retval == 2
                assert m[KEY0] == struct.pack("<Q", 7)
            assert bytes(guard.value_region.buf) == before[1]
    finally:
        m.close()
        guard.close()


def test_user_space_update_on_a_cpu_beyond_the_map(cpus):
    """The syscall side shares a lower CPU's LRU list and spare element, as programs do."""
    set_num_cpus(2)
    maps = [ebee.Map(t, 4, 8, 2) for t in (MapType.LRU_HASH, MapType.HASH)]
    set_num_cpus(4)
    set_user_cpu(3)
    for m in maps:
        for k in range(2):
            m[struct.pack("<I", k)] = k + 1
        m[KEY0] = 9                        # an existing key in a full table: the spare
        assert m[KEY0] == struct.pack("<Q", 9)
        m.close()


@pytest.mark.parametrize("engine", ["jit", "interp"])
@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_cli_threads_above_the_cpu_count_give_exact_totals(cpus, tmp_path, monkeypatch, capsys,
                                                         threads, engine):
    from ebee.cli.main import main
    monkeypatch.setenv("EBEE_PIN_STORE", str(tmp_path / "pins.sqlite3"))
    set_num_cpus(2)
    assert main(["run", str(OBJ), "--pcap", str(PCAP), "--threads", str(threads), "--json",
                 "--engine", engine]) == 0
    n = json.loads(capsys.readouterr().out)["packets"]
    assert n == _packets() > 0
    maps = {name: ebee.get_pinned(f"/sys/fs/bpf/{name}") for name in MAPS}
    assert maps["pcpu_array"].ncpus == maps["pcpu_hash"].ncpus == max(2, threads)
    assert {name: _count(m) for name, m in maps.items()} == dict.fromkeys(MAPS, n)


def test_cli_refuses_threads_a_pinned_map_has_no_slot_for(cpus, tmp_path, monkeypatch, capsys):
    from ebee.cli.main import main
    monkeypatch.setenv("EBEE_PIN_STORE", str(tmp_path / "pins.sqlite3"))
    set_num_cpus(2)
    assert main(["run", str(OBJ), "--pcap", str(PCAP), "--threads", "2", "--json"]) == 0
    capsys.readouterr()
    # the pins (made with 2 CPUs) are reused: 4 threads would share slots
    assert main(["run", str(OBJ), "--pcap", str(PCAP), "--threads", "4"]) == 2
    err = capsys.readouterr().err
    assert "error: --threads 4: 4 threads need 4 virtual CPUs, but map pcpu_array was " \
           "created with 2" in err
    assert "Traceback" not in err
    assert _count(ebee.get_pinned("/sys/fs/bpf/total")) == _packets()


def _frames():
    from ebee.packet import pcap
    return list(pcap.read(str(PCAP)))


def _load(tmp_path):
    from ebee.fs.store import PinStore
    return ebee.load(str(OBJ), store=PinStore(str(tmp_path / "pins.sqlite3")))


def test_replay_parallel_refuses_threads_the_maps_have_no_slot_for(cpus, tmp_path):
    set_num_cpus(2)
    obj = _load(tmp_path)
    try:
        with pytest.raises(ValueError, match=r"3 threads need 3 virtual CPUs, but map "
                                             r"pcpu_array was created with 2: call "
                                             r"ebee.maps.set_num_cpus\(3\)"):
            replay_parallel(obj.programs["count"], _frames(), 3, engine="jit")
        assert _count(obj.maps["total"]) == 0          # refused before any packet ran
    finally:
        obj.close()


@pytest.mark.parametrize("engine", ["jit", "interp"])
def test_replay_parallel_after_raising_the_cpu_count_is_exact(cpus, tmp_path, engine):
    threads = num_cpus() + 2
    set_num_cpus(threads)
    obj = _load(tmp_path)
    try:
        frames = _frames()
        s = replay_parallel(obj.programs["count"], frames, threads, engine=engine)
        assert s.packets == len(frames)
        assert {name: _count(obj.maps[name]) for name in MAPS} == dict.fromkeys(MAPS,
                                                                                len(frames))
        v = obj.maps["pcpu_array"][KEY0]
        assert len(v) == threads and all(int.from_bytes(x, "little") > 0 for x in v)
    finally:
        obj.close()


@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_raw_tp_test_run_on_cpu_runs_there(cpus, engine):
    """BPF_F_TEST_RUN_ON_CPU: the run is on that CPU; a CPU the runtime lacks is ENXIO."""
    from ebee.testrun.common import TestRunError
    from ebee.uapi import BPF_F_TEST_RUN_ON_CPU
    set_num_cpus(4)
    prog = Program.from_insns(assemble("call bpf_get_smp_processor_id\nexit"),
                              ProgType.RAW_TRACEPOINT)
    with Runner(prog, engine=engine) as r:
        assert r.run(flags=BPF_F_TEST_RUN_ON_CPU, cpu=3).retval == 3
        with pytest.raises(TestRunError) as e:
            r.run(flags=BPF_F_TEST_RUN_ON_CPU, cpu=4)
        assert e.value.errno == errno.ENXIO
