"""The JIT against the interpreter: same results, same memory, same errors.

Every comparison runs a program on two fresh machines, one per engine, and
compares r0, the instruction count, the bytes of the memory region and the
stack, and -- when the program fails -- the exception type and message
(addresses are made relative to the region, whose address differs per run).
``EBEE_JIT_EXAMPLES`` raises the number of hypothesis programs (default a
bounded sample that keeps this module well under a minute).
"""
from __future__ import annotations

import os
import re
import struct
import threading

import pytest
from hypothesis import given, settings, strategies as st

import ebee
from ebee import assemble, isa
from ebee.conformance import parse
from ebee.errors import BudgetExceeded, MemoryFault, SourceError, VMError
from ebee.runtime.clock import Clock
from ebee.uapi import FuncId
from ebee.engines import Machine, engine_name
from ebee.helpers import RUNTIME, Runtime
from ebee.runtime import RawProgram
from ebee.memory import SHARED, Region

jit = pytest.importorskip("ebee.engines.jit.runtime", reason="llvmlite is not installed")

from jit_strategies import MEM_SIZE, memory_programs  # noqa: E402
from strategies import programs  # noqa: E402

EXAMPLES = int(os.environ.get("EBEE_JIT_EXAMPLES", "40"))


class Verified:
    """Verification evidence for programs that are verifier-safe by construction."""
    accepted = True


def outcome(insns, engine: str, mem: bytes | None = None, *, verified=None, runtime=RUNTIME,
            budget: int = 100_000, args=()):
    m = Machine(budget=budget, runtime=runtime)
    reg = m.memory.add(Region(bytes(mem), "mem")) if mem is not None else None
    try:
        b = m.bind(insns) if engine == "interp" else m.bind(insns, engine="jit", verified=verified)
        r1 = reg.start if reg is not None and reg.size else 0
        try:
            res = b.run(*(args or (r1, len(mem) if mem is not None else 0)))
            out = ("ok", res.retval, res.insns)
        except VMError as e:
            base = reg.start if reg is not None else 0
            msg = re.sub(r"0x[0-9a-f]{9,}", lambda mm: f"MEM{int(mm.group(0), 16) - base:+d}", str(e))
            out = ("err", type(e).__name__, msg)
        return out, bytes(reg.buf) if reg is not None else None, bytes(m.stack.buf)
    finally:
        if reg is not None:
            m.memory.remove(reg)
        m.close()


def same(insns, mem=None, **kw):
    a = outcome(insns, "interp", mem, **kw)
    b = outcome(insns, "jit", mem, **kw)
    assert a[0] == b[0]
    assert a[1] == b[1], "memory differs"
    assert a[2] == b[2], "stack differs"
    return a[0]


# -- the conformance suite ----------------------------------------------------------------

def test_conformance_suite_agrees(conformance_dir):
    compared = 0
    for path in sorted(conformance_dir.glob("*.data")):
        try:
            tc = parse(path)
            insns = tc.program()
        except SourceError:
            continue
        mem = tc.mem if tc.has_mem else None
        assert outcome(insns, "interp", mem) == outcome(insns, "jit", mem), path.name
        compared += 1
    assert compared > 250


# -- generated programs -------------------------------------------------------------------

@settings(max_examples=EXAMPLES)
@given(programs())
def test_alu_and_stack_programs_agree_in_both_modes(insns):
    ref = same(insns)
    assert outcome(insns, "jit", verified=Verified())[0] == ref


@settings(max_examples=EXAMPLES)
@given(memory_programs())
def test_memory_call_and_loop_programs_agree(insns):
    same(insns, bytes(range(MEM_SIZE)))


# -- faults name the same pc, instruction and address --------------------------------------

def K(src: str):
    return assemble(src, "kernel")


@pytest.mark.parametrize("src, exc", [
    ("r0 = *(u64 *)(r1 + 60)\nexit", MemoryFault),           # crosses the region's end
    ("*(u32 *)(r1 - 4) = 1\nr0 = 0\nexit", MemoryFault),
    ("r0 = *(u8 *)(r10 + 0)\nexit", VMError),                 # caught at translation
    ("r10 = 1\nexit", VMError),
    ("r0 = 1\nif r0 > 0 goto +5\nexit", VMError),             # jump out of the program
    ("r0 = 0\nr0 += 1", VMError),                             # falls off the end
    ("l:\nr0 += 1\ngoto l", BudgetExceeded),
    ("call 1\nexit", VMError),                                # no map behind r1: helper raises
    ("call 999999\nexit", VMError),                           # unknown helper
])
def test_faults_agree(src, exc):
    out = same(K(src), bytes(64))
    assert out[0] == "err" and out[1] == exc.__name__, out


def test_write_to_read_only_region_agrees():
    m = Machine()
    ro = m.memory.add(Region(bytes(16), "rodata", writable=False))
    prog = K("*(u64 *)(r1 + 0) = 7\nr0 = 0\nexit")
    try:
        msgs = []
        for b in (m.bind(prog), m.bind(prog, engine="jit")):
            with pytest.raises(MemoryFault) as e:
                b.run(ro.start)
            msgs.append(str(e.value))
        assert msgs[0] == msgs[1] and "read-only" in msgs[0]
    finally:
        m.memory.remove(ro)
        m.close()


def test_recursion_depth_agrees():
    prog = K("call f\nexit\nf:\ncall f\nexit")
    out = same(prog)
    assert out[0] == "err" and "deeper than 8 frames" in out[2]


def test_bpf_to_bpf_calls_callx_and_function_pointers():
    src = """
        r6 = 5
        r1 = 7
        call double
        r6 += r0
        r2 = subprog[double] ll
        r1 = 20
        callx r2
        r0 += r6
        exit
    double:
        *(u64 *)(r10 - 8) = r1
        r0 = *(u64 *)(r10 - 8)
        r0 *= 2
        exit
    """
    try:
        prog = K(src)
    except SourceError:
        pytest.skip("assembler does not take function references")
    assert same(prog)[:2] == ("ok", 59)


def test_atomics_and_may_goto():
    # cmpxchg finds 8 and stores 100; r3 fetched 3; the may_goto loop ends with r6 = 0
    src = """
        r1 = 0
        *(u64 *)(r10 - 8) = r1
        r2 = 3
        lock *(u64 *)(r10 - 8) += r2
        r3 = 5
        r3 = atomic_fetch_add((u64 *)(r10 - 8), r3)
        r0 = 8
        r4 = 100
        r0 = cmpxchg_64(r10 - 8, r0, r4)
        r5 = *(u64 *)(r10 - 8)
        r0 += r5
        r0 += r3
        r6 = 3
    l:
        may_goto +3
        r6 -= 1
        if r6 == 0 goto +1
        goto l
        r0 += r6
        exit
    """
    out = same(K(src))
    assert out[:2] == ("ok", 8 + 100 + 3)


# -- helpers --------------------------------------------------------------------------------

def test_prandom_draws_the_same_numbers_as_the_interpreter():
    prog = K("call 7\nr6 = r0\ncall 7\nr6 <<= 32\nr0 |= r6\nexit")
    m1, m2 = Machine(seed=42), Machine(seed=42)
    try:
        a = [m1.bind(prog).run().retval for _ in range(700)]      # crosses a twist (624 words)
        b = [m2.bind(prog, engine="jit").run().retval for _ in range(700)]
        assert a == b
        assert m1.random.getstate() == m2.random.getstate()
        m1.random.random(), m2.random.random()                   # Python draws in between
        assert m1.bind(prog).run() == m2.bind(prog, engine="jit").run()
    finally:
        m1.close()
        m2.close()


class FakeClock(Clock):
    def __init__(self):
        self.t = 1000

    def monotonic_ns(self):
        self.t += 10
        return self.t


def test_clock_helpers_use_a_virtual_clock_when_there_is_one():
    prog = K("call 5\nr6 = r0\ncall 5\nr0 -= r6\nexit")
    m = Machine(clock=FakeClock())
    try:
        assert m.bind(prog, engine="jit").run().retval == 10
    finally:
        m.close()
    m = Machine()
    try:
        assert 0 <= m.bind(prog, engine="jit").run().retval < 10**9      # the host clock, natively
    finally:
        m.close()


def test_cpu_id_and_numa_node():
    prog = K(f"call {int(FuncId.get_smp_processor_id)}\nr6 = r0\n"
             f"call {int(FuncId.get_numa_node_id)}\nr0 += r6\nexit")
    m = Machine(cpu=3, numa_node=0)
    try:
        assert m.bind(prog, engine="jit").run().retval == m.bind(prog).run().retval == 3
    finally:
        m.close()


class Hooks(Runtime):
    """Runtime services with tail-call targets, LD_ABS data and a kfunc."""
    targets: dict = {}

    def tail_call_target(self, map_ptr, index, pc):
        t = self.targets.get(index)
        return RawProgram(t) if t is not None else None

    def ld_abs(self, cpu, ctx, offset, size, pc):
        data = bytes(range(1, 65))
        if offset < 0 or offset + size > len(data):
            return None
        return int.from_bytes(data[offset:offset + size], "big")

    def kfunc(self, btf_id, btf_off):
        return (lambda m, a, b, c, d, e: a * 1000 + btf_id) if btf_id == 77 else None


HOOKS = Hooks()


def test_tail_calls_stop_after_33():
    # each program in the chain adds 1 and tail-calls index 0 (itself): 33 succeed
    prog = K("r6 = r1\nr0 = *(u64 *)(r6 + 0)\nr0 += 1\n*(u64 *)(r6 + 0) = r0\n"
             "r1 = r6\nr2 = 0\nr3 = 0\ncall 12\nr0 = 99\nexit")
    HOOKS.targets = {0: prog}
    out_i = outcome(prog, "interp", bytes(8), runtime=HOOKS)
    out_j = outcome(prog, "jit", bytes(8), runtime=HOOKS)
    assert out_i == out_j
    assert struct.unpack("<Q", out_j[1])[0] == 34 and out_j[0][1] == 99
    HOOKS.targets = {}
    assert same(prog, bytes(8), runtime=HOOKS)[1] == 99          # no target: falls through


def test_ld_abs_ld_ind_and_kfuncs():
    prog = K("r6 = r1\nr0 = *(u16 *)skb[4]\nr7 = r0\nr2 = 2\nr0 = *(u32 *)skb[r2 + 3]\n"
             "r0 += r7\nexit")
    assert same(prog, bytes(8), runtime=HOOKS)[:2] == ("ok", 0x0506 + 0x06070809)
    abort = K("r6 = r1\nr0 = 5\nr0 = *(u32 *)skb[62]\nr0 = 7\nexit")
    assert same(abort, bytes(8), runtime=HOOKS)[:2] == ("ok", 0)
    kf = [isa.make("mov", dst=1, imm=3, use_reg=False),
          isa.make("call kfunc", imm=77), isa.make("exit")]
    kf = isa.renumber(kf)
    assert same(kf, runtime=HOOKS)[:2] == ("ok", 3077)
    bad = isa.renumber([isa.make("call kfunc", imm=78), isa.make("exit")])
    assert same(bad, runtime=HOOKS)[0] == "err"


# -- engines, modes, caching ---------------------------------------------------------------------

def test_engine_selection(monkeypatch):
    assert engine_name("interp") == "interp"
    assert engine_name("jit") == "jit"
    assert engine_name(None) == "interp"                  # unverified: the interpreter
    assert engine_name("auto", evidence=Verified()) == "jit"
    with pytest.raises(ValueError):
        engine_name("gcc")
    import ebee.engines.jit as J
    monkeypatch.setattr(J, "WHY_NOT", "llvmlite is not installed (test)")
    assert engine_name("auto", evidence=Verified()) == "interp"
    with pytest.raises(J.JitError, match="unavailable"):
        engine_name("jit")


def test_machine_bind_engine_and_compile_cache():
    prog = K("r0 = 41\nr0 += 1\nexit")
    m = Machine()
    try:
        b = m.bind(prog, engine="jit")
        assert isinstance(b, jit.JitBinding) and b.program.checked
        assert b.run().retval == 42
        assert m.bind(prog, engine="jit") is b
        assert jit.JIT.compile(list(prog)) is b.program
        u = m.bind(prog, engine="auto", verified=Verified())
        assert not u.program.checked and u.run().retval == 42
        assert m.run(prog, engine="jit").retval == 42
    finally:
        m.close()


def test_unchecked_mode_needs_evidence():
    class Rejected:
        accepted = False
    m = Machine()
    try:
        prog = K("r0 = 0\nexit")
        assert m.bind(prog, engine="jit", verified=Rejected()).program.checked
        assert m.bind(prog, engine="jit", verified=True).program.checked        # a bare True is no evidence
    finally:
        m.close()


def test_batch_runs_in_one_native_loop():
    prog = K("r0 = *(u64 *)(r1 + 0)\nr0 += 1\n*(u64 *)(r1 + 0) = r0\nexit")
    m = Machine()
    reg = m.memory.add(Region(bytes(8), "mem"))
    try:
        res, ns = m.bind(prog, engine="jit").run_batch(1000, reg.start)
        assert res.retval == 1000 and struct.unpack("<Q", bytes(reg.buf))[0] == 1000
        assert ns > 0
    finally:
        m.memory.remove(reg)
        m.close()


def test_disk_cache_round_trip(tmp_path):
    from ebee.engines.jit.codegen import Codegen
    from ebee.engines.jit.irgen import generate
    cg = Codegen.get()
    old = cg.cache_dir
    cg.cache_dir = tmp_path
    try:
        prog = K("r0 = 6\nr0 *= 7\nexit")
        lib1 = cg.compile(generate(prog, checked=True)[0])
        assert not lib1.from_disk and list(tmp_path.glob("*.o"))
        lib2 = cg.compile(generate(prog, checked=True)[0])
        assert lib2.from_disk and lib2.key == lib1.key
        from ebee.engines.jit import abi
        fn = abi.RUN(lib2.address(abi.RUN_SYMBOL))
        m = Machine()
        try:
            st = jit.cpu_state(m)
            st.refresh_regions()
            st.ts.limit = 1000
            pt = (jit.ctypes.c_uint64 * 1)()
            assert fn(st.ts_addr, jit.ctypes.addressof(pt), 0, 0, 0, 0, 0) == 42
        finally:
            m.close()
    finally:
        cg.cache_dir = old


# -- threads: each its own virtual CPU, atomics shared ----------------------------------------------

def test_parallel_runs_atomic_counter_and_per_cpu_slots():
    threads, repeat = 4, 20_000
    shared = SHARED.add(Region(8 + 8 * threads, "counters"))
    prog = K(f"""
        r6 = r1
        r2 = 1
        lock *(u64 *)(r6 + 0) += r2
        call {int(FuncId.get_smp_processor_id)}
        r0 <<= 3
        r6 += r0
        r1 = *(u64 *)(r6 + 8)
        r1 += 1
        *(u64 *)(r6 + 8) = r1
        r0 = 0
        exit
    """)
    errors = []

    def work(cpu):
        m = Machine(cpu=cpu)
        try:
            m.bind(prog, engine="jit").run_batch(repeat, shared.start)
        except Exception as e:   # pragma: no cover - reported below
            errors.append(e)
        finally:
            m.close()
    try:
        ts = [threading.Thread(target=work, args=(c,)) for c in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors
        vals = struct.unpack(f"<{threads + 1}Q", bytes(shared.buf))
        assert vals[0] == threads * repeat                 # the atomic counter lost nothing
        assert list(vals[1:]) == [repeat] * threads        # each CPU's slot is its own
    finally:
        SHARED.remove(shared)


# -- maps: native lookups on the maps' own memory ----------------------------------------------------

def test_native_map_lookups_agree_with_the_runtime():
    from ebee import Map
    from ebee.uapi import BPF_F_ZERO_SEED, MapType, ProgType
    from ebee.verifier import verify
    h = Map(MapType.HASH, 4, 8, 64)
    lru = Map(MapType.LRU_HASH, 12, 8, 64, BPF_F_ZERO_SEED)        # jhash, 12-byte keys
    pa = Map(MapType.PERCPU_ARRAY, 4, 8, 4)
    for k in range(0, 40, 3):
        h[struct.pack("<I", k)] = k * 10
        lru[struct.pack("<III", k, k + 1, k + 2)] = k * 100
    prog = K(f"""
        call bpf_get_prandom_u32
        r6 = r0
        r6 &= 63
        *(u32 *)(r10 - 4) = r6
        r2 = r10
        r2 += -4
        r1 = map[id:{h.id}] ll
        call bpf_map_lookup_elem
        r7 = 0
        if r0 == 0 goto +1
        r7 = *(u64 *)(r0 + 0)
        *(u32 *)(r10 - 16) = r6
        r1 = r6
        r1 += 1
        *(u32 *)(r10 - 12) = r1
        r1 += 1
        *(u32 *)(r10 - 8) = r1
        r2 = r10
        r2 += -16
        r1 = map[id:{lru.id}] ll
        call bpf_map_lookup_elem
        if r0 == 0 goto +2
        r1 = *(u64 *)(r0 + 0)
        r7 += r1
        r6 &= 3
        *(u32 *)(r10 - 4) = r6
        r2 = r10
        r2 += -4
        r1 = map[id:{pa.id}] ll
        call bpf_map_lookup_elem
        if r0 == 0 goto +3
        r1 = *(u64 *)(r0 + 0)
        r1 += 1
        *(u64 *)(r0 + 0) = r1
        r0 = r7
        exit
    """)
    v = verify(prog, prog_type=ProgType.SOCKET_FILTER)
    assert v.accepted, v.error
    m1, m2 = Machine(cpu=1, seed=5), Machine(cpu=1, seed=5)
    try:
        native = m2.bind(prog, engine="jit", verified=v)
        assert not native.program.checked
        runs = 60
        got = [(m1.bind(prog).run().retval, native.run().retval) for _ in range(runs)]
        assert all(a == b for a, b in got) and any(a for a, _ in got)
        # both engines counted into CPU 1's slots, and only there
        slots = [struct.unpack("<2Q", b"".join(pa[struct.pack("<I", i)]))
                 for i in range(4)]
        assert sum(s[1] for s in slots) == 2 * runs and all(s[0] == 0 for s in slots)
    finally:
        m1.close()
        m2.close()
        for mp in (h, lru, pa):
            mp.close()


def test_bpf_loop_callbacks_run_natively_one_frame_below():
    # the callback keeps a running sum in the caller's stack (through ctx) and
    # scribbles in its own frame; the stack bytes must match the interpreter's
    prog = K(f"""
        r1 = 0
        *(u64 *)(r10 - 8) = r1
        r1 = 10
        r2 = subprog[cb] ll
        r3 = r10
        r3 += -8
        r4 = 0
        call {int(FuncId.loop)}
        r1 = *(u64 *)(r10 - 8)
        r0 <<= 32
        r0 += r1
        exit
    cb:
        r3 = *(u64 *)(r2 + 0)
        r3 += r1
        *(u64 *)(r2 + 0) = r3
        *(u64 *)(r10 - 16) = r3
        r0 = 0
        if r1 < 6 goto +1
        r0 = 1
        exit
    """)
    out = same(prog)
    assert out[:2] == ("ok", (7 << 32) + sum(range(7)))


# -- ebee prog dump jited --------------------------------------------------------------------------------

def test_prog_dump_jited(capsys, monkeypatch):
    from pathlib import Path
    from ebee.cli.main import main
    obj = Path(__file__).resolve().parent.parent / "examples" / "c" / "xdp_firewall.o"
    assert main(["prog", "dump", "jited", str(obj)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("xdp_firewall:")
    marks = [ln for ln in out.splitlines() if ln.startswith("; ")]
    assert any("bpf_map_lookup_elem" in ln for ln in marks) and len(marks) > 10
    assert re.search(r"^\s+[0-9a-f]+:\t\S+", out, re.M)          # offset: instruction
    import ebee.engines.jit.dump as D
    monkeypatch.setattr(D, "_disassembler", lambda machine: None)  # no capstone: bytes
    assert main(["prog", "dump", "jited", str(obj)]) == 0
    raw = capsys.readouterr().out
    assert re.search(r"^\s+[0-9a-f]+:\t([0-9a-f]{2} )*[0-9a-f]{2}$", raw, re.M)


def test_pcap_replay_split_across_threads(tmp_path, capsys):
    import json
    from pathlib import Path
    from ebee.cli.main import main
    ex = Path(__file__).resolve().parent.parent / "examples"
    pcap = ex / "pcap" / "mixed.pcap"
    if not pcap.exists():
        pytest.skip("example capture missing")
    outs = []
    for threads in (1, 3):
        dest = tmp_path / f"out{threads}.pcap"
        assert main(["run", str(ex / "c" / "xdp_firewall.o"), "--pcap", str(pcap), "--threads",
                     str(threads), "--pcap-out", str(dest), "--json"]) == 0
        res = json.loads(capsys.readouterr().out)
        res.pop("seconds"), res.pop("packets_per_second"), res.pop("pcap_out")
        outs.append((res, dest.read_bytes()))
    assert outs[0] == outs[1]                # same counts, same packets in the same order
    assert main(["run", str(ex / "c" / "xdp_firewall.o"), "--threads", "2"]) == 2


def test_cli_engines(conformance_dir, capsys, tmp_path):
    from ebee.cli.main import main
    assert main(["conformance", "-q", "--engine", "jit", str(conformance_dir)]) == 0
    assert capsys.readouterr().out.strip().endswith(" passed, 0 failed")
    src = tmp_path / "p.s"
    src.write_text("r0 = 7\nr0 *= 6\nexit\n")
    for engine in ("interp", "jit", "auto"):
        assert main(["run", str(src), "--engine", engine, "--json"]) == 0
        assert '"retval": 42' in capsys.readouterr().out


# -- every example program: both engines, same packets, same maps afterwards ------------------------------

def _example_names():
    from kernel_helpers import EXAMPLES
    return sorted(p.name for p in EXAMPLES.glob("*.o"))


@pytest.mark.parametrize("name", _example_names())
def test_example_programs_agree_across_engines(tmp_path, name):
    from ebee.fs import PinStore
    from ebee.testrun import TestRunError
    from kernel_helpers import EXAMPLES
    from test_kernel_objects import PACKETS, RUNNABLE, SETUP, _contents
    results, contents = {}, {}
    for engine in ("interp", "jit"):
        pins = tmp_path / engine
        pins.mkdir()
        with ebee.load(EXAMPLES / name, store=PinStore(tmp_path / f"{engine}.sqlite3"),
                       pin_root=str(pins)) as obj:
            for mname, entries in SETUP.get(name[:-2], {}).items():
                for key, value in entries.items():
                    obj.maps[mname][key] = value
            out = []
            for pname, prog in obj.programs.items():
                if prog.type not in RUNNABLE:
                    continue
                if engine == "jit" and prog.executable().evidence is None:
                    out.append((pname, "not verified"))      # then both would interpret
                    continue
                for pkt in PACKETS:
                    try:
                        r = prog.run(pkt, engine=engine, ctx_out=True)
                        out.append((pname, r.retval, r.data_out, r.ctx_out, r.insns))
                    except TestRunError as e:
                        out.append((pname, "error", e.errno))
            results[engine] = out
            contents[engine] = {m: _contents(obj.maps[m]) for m in obj.maps
                                if obj.maps[m].type not in (ebee.uapi.MapType.RINGBUF,
                                                            ebee.uapi.MapType.PERF_EVENT_ARRAY)}
    assert all(o[1] != "not verified" for o in results["jit"]), "the verifier rejects an example"
    assert results["interp"] == results["jit"]
    assert contents["interp"] == contents["jit"]


def test_parallel_runs_with_per_cpu_and_hash_maps():
    """Verified code on 2 threads: per-CPU array slots are each thread's own, an atomic
    add on a hash value (looked up natively) loses nothing."""
    from ebee import Map
    from ebee.maps import cpus
    from ebee.uapi import MapType, ProgType
    from ebee.verifier import verify
    from ebee.testrun.parallel import run_threads
    threads, repeat = 2, 50_000
    old = cpus.num_cpus()
    cpus.set_num_cpus(max(old, threads))
    pa = Map(MapType.PERCPU_ARRAY, 4, 8, 1)
    h = Map(MapType.HASH, 4, 8, 8)
    cpus.set_num_cpus(old)
    h[struct.pack("<I", 7)] = 0
    prog = K(f"""
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r2 = r10
        r2 += -4
        r1 = map[id:{pa.id}] ll
        call bpf_map_lookup_elem
        if r0 == 0 goto +3
        r1 = *(u64 *)(r0 + 0)
        r1 += 1
        *(u64 *)(r0 + 0) = r1
        r1 = 7
        *(u32 *)(r10 - 4) = r1
        r2 = r10
        r2 += -4
        r1 = map[id:{h.id}] ll
        call bpf_map_lookup_elem
        if r0 == 0 goto +2
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        r0 = 0
        exit
    """)
    v = verify(prog, prog_type=ProgType.SOCKET_FILTER)
    assert v.accepted, v.error

    def job(cpu):
        def run():
            m = Machine(cpu=cpu)
            try:
                b = m.bind(prog, engine="jit", verified=v)
                assert not b.program.checked
                return b.run_batch(repeat)[0].retval
            finally:
                m.close()
        return run
    try:
        assert run_threads([job(c) for c in range(threads)]) == [0] * threads
        slots = [struct.unpack("<Q", s)[0] for s in pa[struct.pack("<I", 0)]]
        assert slots[:threads] == [repeat] * threads
        assert struct.unpack("<Q", h[struct.pack("<I", 7)])[0] == threads * repeat
    finally:
        pa.close()
        h.close()


def test_without_llvmlite_everything_runs_interpreted(tmp_path):
    """A Python where llvmlite cannot be imported: auto falls back, "jit" says why."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    code = f"""
import sys
sys.modules["llvmlite"] = None           # import llvmlite -> ImportError
import ebee, ebee.engines.jit
from ebee.cli.main import main
assert not ebee.engines.jit.available() and "llvmlite" in ebee.engines.jit.unavailable_reason()
obj = ebee.load({str(root / "examples/c/xdp_firewall.o")!r}, pin_root={str(tmp_path)!r})
prog = obj.programs["xdp_firewall"]
assert prog.run(bytes(64)).retval == prog.run(bytes(64), engine="interp").retval
try:
    prog.run(bytes(64), engine="jit")
except ebee.engines.JitError as e:
    print("JIT:", e)
sys.exit(main(["prog", "dump", "jited", {str(root / "examples/c/xdp_firewall.o")!r}]))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert "JIT: the JIT is unavailable: llvmlite is not installed" in r.stdout, r.stderr
    assert r.returncode == 2 and r.stderr.strip().startswith("error: no JIT:"), r.stderr


def test_native_runs_release_the_gil():
    """A program marks that it started, then spins until Python, on another thread, writes
    a flag into its memory: it can only end normally if the GIL is free while native
    code runs (else its instruction budget runs out first)."""
    mem = SHARED.add(Region(16, "flag"))
    prog = K("r2 = 1\n*(u64 *)(r1 + 8) = r2\nl:\nr0 = *(u64 *)(r1 + 0)\nif r0 == 0 goto l\nexit")
    m = Machine(budget=20_000_000_000)          # seconds of spinning: a GIL holder fails, not hangs
    b = m.bind(prog, engine="jit")
    result = []

    def spin():
        try:
            result.append(b.run(mem.start))
        except VMError as e:
            result.append(e)
    t = threading.Thread(target=spin)
    try:
        t.start()
        while not struct.unpack_from("<Q", mem.buf, 8)[0] and t.is_alive():
            pass                                     # Python runs while native code spins
        struct.pack_into("<Q", mem.buf, 0, 5)
        t.join()
        assert result and not isinstance(result[0], VMError), result
        assert result[0].retval == 5
    finally:
        SHARED.remove(mem)
        m.close()


@pytest.mark.parametrize("map_type", ["LRU_HASH", "HASH", "LRU_PERCPU_HASH", "PERCPU_HASH"])
def test_lookup_or_insert_keeps_the_same_table(map_type):
    """Native lookups (and the LRU reference bits they set) interleaved with Python-side
    inserts and evictions leave the same table as the interpreter, key for key."""
    from ebee import Map
    from ebee.uapi import MapType, ProgType
    from ebee.verifier import verify
    tables = []
    for engine in ("interp", "jit"):
        mp = Map(MapType[map_type], 4, 8, 8)
        prog = K(f"""
            call bpf_get_prandom_u32
            r0 &= 15
            *(u32 *)(r10 - 4) = r0
            r2 = r10
            r2 += -4
            r1 = map[id:{mp.id}] ll
            call bpf_map_lookup_elem
            if r0 == 0 goto insert
            r1 = *(u64 *)(r0 + 0)
            r1 += 1
            *(u64 *)(r0 + 0) = r1
            goto out
        insert:
            r1 = 1
            *(u64 *)(r10 - 16) = r1
            r2 = r10
            r2 += -4
            r3 = r10
            r3 += -16
            r1 = map[id:{mp.id}] ll
            r4 = 0
            call bpf_map_update_elem
        out:
            r0 = 0
            exit
        """)
        v = verify(prog, prog_type=ProgType.SOCKET_FILTER)
        assert v.accepted, v.error
        m = Machine(seed=11)
        try:
            b = m.bind(prog) if engine == "interp" else m.bind(prog, engine="jit", verified=v)
            for _ in range(300):
                b.run()
            tables.append(sorted((bytes(k), [bytes(x) for x in v] if isinstance(v, list) else bytes(v))
                                 for k, v in mp.items()))
        finally:
            m.close()
            mp.close()
    assert tables[0] == tables[1] and tables[0]
