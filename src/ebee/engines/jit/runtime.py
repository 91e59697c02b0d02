"""Compiled programs bound to machines: the JIT's side of the engine interface.

* :class:`JitImage` -- a program compiled once (cached per instruction
  digest and mode within the process), holding its native entry points.
* :class:`CpuState` -- the native state of one :class:`~ebee.runtime.Cpu`:
  its ``ThreadState``, the region table checked code searches, and the
  bindings made on it.
* :class:`JitBinding` -- a program bound to a CPU (an engine ``Bound``).

Helpers that have no native implementation are called back into Python
through ctypes with the runtime's ``impl(cpu, r1..r5)`` signature; the
callbacks go through the environment both engines share
(:class:`ebee.engines.env.CallEnv`), so a helper, kfunc or failure behaves
identically under both engines.  ctypes
releases the GIL around the native call and re-acquires it for callbacks, so
programs on different machines run in parallel.
"""
from __future__ import annotations

import ctypes
import hashlib
import marshal
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import llvmlite.binding as llvm

from ... import cache, uapi as U
from ...errors import BudgetExceeded, MemoryFault, VMError
from ...isa import Instruction, Kind, encode
from ...memory import Region
from ...runtime.clock import Clock as HostClock
from ...runtime.cpu import Cpu
from ..base import Bound, Engine, Execution, Image, Services, is_verified
from ..env import CallEnv, ProgramText
from ..probes import COVERAGE, Counters
from . import abi, irgen
from .codegen import Codegen
from .xdp_batch import FrameBatch
from . import natives, natives_maps  # noqa: F401  (register the native helper implementations)

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


class LdAbsInCallback(Exception):
    """LD_ABS/LD_IND ended the program inside a callback; the run returns r0 = 0."""



# -- the on-disk image cache (ebee.cache) -------------------------------------------------
# An image is a pure function of the instructions, checked or not, the code that
# translates them and the LLVM/host that compiles them: that is the key.  The entry holds
# the native object and the program-table layout, so a hit skips IR generation and LLVM.

_IMAGE_FORMAT = 1
_HERE = Path(__file__).resolve().parent
_SOURCES = tuple(str(p) for p in (
    *sorted(_HERE.glob("*.py")), _HERE.parent / "blocks.py", _HERE.parents[1] / "isa.py",
    _HERE.parents[1] / "uapi.py", *sorted((_HERE.parents[1] / "layouts").glob("*.py")),
    _HERE.parents[1] / "maps" / "jhash.py"))


def image_cache() -> cache.Cache:
    env = os.environ.get("EBEE_JIT_CACHE")       # the JIT's own directory, if given
    return cache.Cache("jit", Path(env) if env else None)


def image_key(codegen: Codegen, image: bytes, checked: bool, counted: bool = False) -> str:
    return cache.digest("jit image", str(_IMAGE_FORMAT), image, "checked" if checked else "",
                        "counted" if counted else "",
                        cache.source_digest(*_SOURCES), str(llvm.llvm_version_info), codegen.triple,
                        codegen.cpu, codegen.features, str(codegen.opt))


def load_image(codegen: Codegen, key: str):
    payload = image_cache().get(key)
    if payload is None:
        return None
    try:
        fmt, obj, slots, messages, entries, natives = marshal.loads(payload)
        if fmt != _IMAGE_FORMAT:
            return None
        layout = irgen.Layout([tuple(s) for s in slots], list(messages), list(entries),
                              set(natives))
        return layout, codegen.load_object(obj, key)
    except Exception:      # checksummed: only an unreadable object lands here; recompile
        return None


def store_image(key: str, layout: "irgen.Layout", obj: bytes) -> None:
    image_cache().put(key, marshal.dumps((_IMAGE_FORMAT, obj, layout.slots, layout.messages,
                                          layout.entries, sorted(layout.natives))))


class JitImage(Image):
    """A program translated to native code once; bound to CPUs on demand."""

    def __init__(self, insns: list[Instruction], *, checked: bool,
                 counters: Counters | None = None):
        t0 = time.perf_counter_ns()
        self.insns = list(insns)
        self.checked = checked
        #: coverage counters the code increments (bound into its program table), or None
        self.counters = counters
        counted = counters is not None
        self.image = encode(self.insns)
        self.text_of = ProgramText(self.insns, self.image)
        self.by_pc = self.text_of.by_pc
        self.digest = hashlib.sha256(self.image).hexdigest()
        codegen = Codegen.get()
        key = image_key(codegen, self.image, checked, counted) if cache.enabled() else None
        cached = load_image(codegen, key) if key else None
        self.from_cache = cached is not None
        if cached is not None:
            self.layout, self.library = cached
            self.irgen_ns = 0
        else:
            module, self.layout = irgen.generate(self.insns, checked=checked, count=counted,
                                                 name=f"ebee_{self.digest[:16]}")
            self.irgen_ns = time.perf_counter_ns() - t0
            self.library = codegen.compile(module, keep_object=key is not None)
            if key and self.library.object is not None:
                store_image(key, self.layout, self.library.object)
        self.compile_ns = time.perf_counter_ns() - t0
        self.run_addr = self.library.address(abi.RUN_SYMBOL)
        self.batch_addr = self.library.address(abi.BATCH_SYMBOL)
        self.main_addr = self.library.address(abi.MAIN_SYMBOL)
        self._callfn = abi.CALLFN(self.library.address(abi.CALLFN_SYMBOL))
        self._run = abi.RUN(self.run_addr)
        self._batch = abi.BATCH(self.batch_addr)
        self.prandom = self.uses_prandom

    def text(self, pc: int) -> str | None:
        return self.text_of.text(pc)

    @property
    def uses_prandom(self) -> bool:
        return int(U.FuncId.get_prandom_u32) in self.layout.natives

    def bind(self, cpu: Cpu, runtime: Services) -> "JitBinding":
        return cpu_state(cpu).binding(self, runtime)


class CpuState:
    """Native state of one CPU: its thread state, region table and bindings."""

    def __init__(self, cpu: Cpu):
        self.cpu = cpu
        self.ts = abi.ThreadState()
        self.ts_addr = ctypes.addressof(self.ts)
        self.bindings: dict[tuple[int, bool], JitBinding] = {}
        self.by_pt: dict[int, JitBinding] = {}
        self.exc: BaseException | None = None
        self.cur_fp = 0          # frame pointer of the program calling a helper (0: none runs)
        self._regions_seen: object = None
        self._table = None
        self._mt_synced: tuple | None = None
        self.entered: tuple | None = None     # (limit, cpu, numa node, host clock) written
        ts = self.ts
        ts.stack_lo = cpu.stack.start
        ts.stack_hi = cpu.stack.start + cpu.stack.size

    def binding(self, image: JitImage, runtime: Services) -> "JitBinding":
        key = (id(image), image.checked)
        b = self.bindings.get(key)
        if b is None or b.image is not image or b.runtime is not runtime:
            b = self.bindings[key] = JitBinding(image, self, runtime)
            self.by_pt[b.pt_addr] = b
        return b

    def refresh_regions(self) -> None:
        """Give checked code the current set of live regions.

        ``Memory`` publishes a new list on every change, so comparing the
        list's identity tells (for free) whether the table is stale.
        """
        mem = self.cpu.memory
        current = mem.generation
        if current is self._regions_seen:
            return
        regions = list(mem)
        table = (abi.RegionEntry * max(len(regions), 1))()
        for k, r in enumerate(regions):
            table[k].start, table[k].end, table[k].writable = r.start, r.end, int(r.writable)
        self._table = table
        self.ts.regions = ctypes.addressof(table)
        self.ts.nregions = len(regions)
        self._regions_seen = current

    # -- MT19937 shared with cpu.random ----------------------------------------------------
    # bpf_get_prandom_u32 runs natively on a copy of the CPU's Mersenne Twister
    # state, so both engines draw the same numbers from the same seed.

    def mt_load(self) -> None:
        state = self.cpu.random.getstate()
        if state == self._mt_synced:    # nothing drew from it since our last run
            return
        words = state[1]
        ctypes.memmove(self.ts.mt, (ctypes.c_uint32 * abi.MT_N)(*words[:abi.MT_N]), 4 * abi.MT_N)
        self.ts.mt_pos = words[abi.MT_N]
        self.ts.mt_calls = 0
        self._mt_gauss = state[2]

    def mt_store(self) -> None:
        if not self.ts.mt_calls:
            return
        state = (3, tuple(self.ts.mt) + (int(self.ts.mt_pos),), self._mt_gauss)
        self.cpu.random.setstate(state)
        self.ts.mt_calls = 0
        self._mt_synced = state


_states_lock = threading.Lock()
ENGINE_NAME = "jit"


def cpu_state(cpu: Cpu) -> CpuState:
    """The CPU's native state, created on first use.  It lives on the CPU, so it dies
    with it; a side table keyed by the CPU would keep every CPU alive through its
    bindings."""
    st = cpu.engine_state.get(ENGINE_NAME)
    if st is None:
        with _states_lock:
            st = cpu.engine_state.get(ENGINE_NAME)
            if st is None:
                st = cpu.engine_state[ENGINE_NAME] = CpuState(cpu)
    return st


#: program-table slots of coverage counters -> the Counters attribute holding the address
_COUNTER_SLOTS = {"cov_hits": "hits_addr", "cov_taken": "taken_addr"}


class JitBinding(Bound):
    """A compiled program bound to one CPU."""

    def __init__(self, image: JitImage, state: CpuState, runtime: Services):
        self.image = image
        self.cpu = cpu = state.cpu
        self.state = state
        self.runtime = runtime
        self.limit = cpu.budget
        # function pointers (lddw src=4) point into the program image, as in the interpreter
        self._code = Region(image.image, "code", writable=False)
        self.env = CallEnv(cpu, runtime, image.text_of, self._code, self.limit, self._tail_entry)
        layout = image.layout
        self.pt = (ctypes.c_uint64 * layout.size)()
        self.pt_addr = ctypes.addressof(self.pt)
        self.pt[abi.PT_CODE_ADDR] = self._code.start
        self._callbacks = []
        for k, (kind, key) in enumerate(layout.slots, abi.PT_CODE_ADDR + 1):
            if kind == "const":
                self.pt[k] = self.env.ld_imm64(key) & M64
            elif kind in _COUNTER_SLOTS:
                self.pt[k] = getattr(image.counters, _COUNTER_SLOTS[kind])
            else:
                cb = abi.CALLBACK(self._wrap(getattr(self, f"_cb_{kind}")(key)))
                self._callbacks.append(cb)
                self.pt[k] = ctypes.cast(cb, ctypes.c_void_p).value
        # the interpreter's calling convention, so that an interpreted tail call can land here
        self.entry = self._entry
        # callbacks (bpf_loop, for_each_map_elem, timers) find functions by code address
        cpu.functions.update({self._code.start + pc * 8: self._function(pc)
                              for pc in layout.entries})

    @property
    def program(self) -> JitImage:
        return self.image

    # -- callbacks into Python -----------------------------------------------------------

    def _wrap(self, fn):
        state = self.state
        ts = state.ts

        def callback(pc, x, a, b, c, d, e):
            try:
                v = fn(pc, x, a, b, c, d, e)
            except LdAbsInCallback:            # LD_ABS failed inside a callback: end the run
                ts.status = abi.Status.ABORT
                return 0
            except BaseException as exc:       # never let an exception unwind native frames
                state.exc = exc
                ts.status = abi.Status.PYEXC
                return 0
            state.refresh_regions()            # a helper may have created or freed regions
            return v & M64
        return callback

    def _framed(self, fn):
        """Record the caller's frame (``x``) while ``fn`` runs: callbacks go one below it."""
        state = self.state
        lo = state.ts.stack_lo

        def call(pc, x, a, b, c, d, e):
            outer, state.cur_fp = state.cur_fp, x
            try:
                return fn(pc, (x - lo) // U.MAX_BPF_STACK - 1, a, b, c, d, e)
            finally:
                state.cur_fp = outer
        return call

    def _cb_helper(self, fid: int):
        call = self.env.helper(fid)
        return self._framed(lambda pc, depth, a, b, c, d, e: call(a, b, c, d, e, pc, depth))

    def _cb_kfunc(self, _key):
        by_pc, kfunc = self.image.by_pc, self.env.kfunc
        return self._framed(lambda pc, depth, a, b, c, d, e:
                            kfunc(by_pc[pc].imm, by_pc[pc].off, a, b, c, d, e, pc, depth))

    def _function(self, pc: int):
        """``f(r1..r5, depth, n) -> (r0, n)`` running function ``pc`` natively, as the
        interpreter's functions do for ``Cpu.call_function``.  The frame is the one
        below the helper's caller; the callback's instructions are not counted, as in
        the interpreter."""
        state, ts, image = self.state, self.state.ts, self.image

        def fn(r1, r2, r3, r4, r5, depth=0, n=0):
            running = state.cur_fp != 0
            depth = (state.cur_fp - ts.stack_lo) // U.MAX_BPF_STACK if running else 0
            if depth >= U.MAX_CALL_FRAMES:
                raise VMError(f"call stack is deeper than {U.MAX_CALL_FRAMES} frames")
            if not running:
                self._enter()
            fp = ts.stack_lo + (depth + 1) * U.MAX_BPF_STACK
            r0 = image._callfn(state.ts_addr, self.pt_addr, pc, r1 & M64, r2 & M64, r3 & M64,
                               r4 & M64, r5 & M64, fp)
            if ts.status:
                if ts.status == abi.Status.ABORT:
                    raise LdAbsInCallback()
                self._failed()
            return r0, n
        return fn

    def _cb_callx(self, _key):
        callx = self.env.callx_helper
        # ``x`` is the call target here, not a frame: a helper reached through callx
        # runs as if called from the entry frame
        return lambda pc, x, a, b, c, d, e: callx(x, a, b, c, d, e, pc)

    def _cb_ld_abs(self, _key):
        by_pc, cpu, runtime, ts = self.image.by_pc, self.cpu, self.runtime, self.state.ts

        def ld_abs(pc, ctx, src, b, c, d, e):
            i = by_pc[pc]
            offset = i.imm if i.kind is Kind.LD_ABS else src + i.imm
            v = runtime.ld_abs(cpu, ctx, offset, i.spec.size, pc)
            if v is None:            # Linux ends the program with r0 = 0
                ts.status = abi.Status.ABORT
                return 0
            return v
        return ld_abs

    def _tail_entry(self, target) -> "JitBinding":
        exe = target.executable()
        return JIT.compile(exe.insns, exe.evidence).bind(self.cpu, self.runtime)

    def _cb_tail_call(self, _key):
        runtime, ts = self.runtime, self.state.ts

        def tail_call(pc, x, ctx, map_ptr, index, d, e):
            target = runtime.tail_call_target(map_ptr, index & M32, pc)
            if target is None:
                ts.tc_fn = 0
                return 0
            b = self._tail_entry(target)
            ts.tc_fn = b.image.main_addr
            ts.tc_pt = b.pt_addr
            return 0
        return tail_call

    # -- running -------------------------------------------------------------------------

    def _enter(self) -> abi.ThreadState:
        st = self.state
        cpu = self.cpu
        ts = st.ts
        ts.status = 0
        ts.tail_calls = 0
        # every run enters: ctypes field writes cost, so write the CPU's settings only
        # when they differ from the last run's on this thread state
        entered = (self.limit, cpu.cpu, cpu.numa_node, type(cpu.clock) is HostClock)
        if entered != st.entered:
            ts.limit, ts.cpu, ts.numa_node = entered[0], entered[1], entered[2]
            ts.native_clock = 1 if entered[3] else 0
            st.entered = entered
        if cpu.memory.generation is not st._regions_seen:
            st.refresh_regions()
        if self.image.prandom:
            st.mt_load()
        return ts

    def _leave(self) -> None:
        if self.image.prandom:
            self.state.mt_store()
        self.cpu.frame_depth = -1

    def run(self, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0, r5: int = 0) -> Execution:
        ts = self._enter()
        try:
            r0 = self.image._run(self.state.ts_addr, self.pt_addr, r1 & M64, r2 & M64, r3 & M64,
                                 r4 & M64, r5 & M64)
        finally:
            self._leave()
        if ts.status:
            return self._failed()
        return Execution(r0, ts.n)

    def run_batch(self, repeat: int, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0,
                  r5: int = 0) -> tuple[Execution, int]:
        """Run ``repeat`` times in one native loop; (last result, total ns).

        The time is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID): like the
        kernel's test-run timer, which stops while the task is rescheduled, it
        leaves out time other tasks had the CPU."""
        if repeat < 1:
            raise ValueError("repeat must be at least 1")
        ts = self._enter()
        try:
            t0 = time.thread_time_ns()
            r0 = self.image._batch(self.state.ts_addr, self.pt_addr, r1 & M64, r2 & M64, r3 & M64,
                                   r4 & M64, r5 & M64, repeat)
            elapsed = time.thread_time_ns() - t0
        finally:
            self._leave()
        if ts.status:
            return self._failed(), elapsed
        return Execution(r0, ts.n), elapsed

    def native_frames(self, xdp: Any) -> FrameBatch:
        return FrameBatch(self, xdp)

    @property
    def native_unavailable(self) -> str | None:
        return None

    def _entry(self, r1, r2, r3, r4, r5, depth, n):
        """Interpreter calling convention (``f(r1..r5, depth, n) -> (r0, n)``) for tail calls
        from interpreted programs."""
        res = self.run(r1, r2, r3, r4, r5)
        return res.retval, n + res.insns

    def _failed(self) -> Execution:
        st = self.state
        ts = st.ts
        status = abi.Status(ts.status)
        owner = st.by_pt.get(ts.fault_pt, self)
        image = owner.image
        pc = int(ts.fault_pc)
        ts.status = 0
        if status is abi.Status.ABORT:
            return Execution(0, ts.n)
        if status is abi.Status.PYEXC:
            exc, st.exc = st.exc, None
            raise exc
        insn = image.text(pc)
        if status is abi.Status.MEM:
            a, size, write = int(ts.fault_addr), int(ts.fault_size), bool(ts.fault_write)
            r = self.cpu.memory.find(a, size)
            if r is not None and write and not r.writable:
                raise MemoryFault(f"invalid write of {size} bytes at {a:#x}: region '{r.name}' is "
                                  f"read-only", pc=pc, insn=insn)
            kind = "write" if write else "read"
            if r is self.cpu.stack:
                raise MemoryFault(f"invalid {kind} of {size} bytes at {a:#x}: above the running "
                                  f"function's frame (a returned function's frame)", pc=pc,
                                  insn=insn)
            raise MemoryFault(f"invalid {kind} of {size} bytes at {a:#x}: no live region holds it",
                              pc=pc, insn=insn)
        if status is abi.Status.STATIC:
            raise VMError(image.layout.messages[ts.fault_arg], pc=pc, insn=insn)
        if status is abi.Status.BUDGET:
            raise BudgetExceeded(f"instruction budget of {owner.limit} exceeded ({ts.fault_arg} "
                                 f"executed)", pc=pc, insn=insn)
        if status is abi.Status.DEPTH:
            raise VMError(f"call stack is deeper than {U.MAX_CALL_FRAMES} frames", pc=pc, insn=insn)
        raise VMError(f"native code stopped with unknown status {int(status)}", pc=pc, insn=insn)


class JitEngine(Engine):
    name = ENGINE_NAME
    # Each compiled program keeps an execution engine (about 1 MB): keep the most
    # recently used ones; CPUs still bound to an evicted image keep it alive.
    CACHE_SIZE = 128

    def __init__(self) -> None:
        self._cache: "OrderedDict[tuple[bytes, bool, bool], JitImage]" = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, insns, evidence: Any = None) -> JitImage:
        """Compile (or reuse) ``insns``.  Without verification evidence the code is
        compiled in checked mode: every access is checked against the CPU's live
        regions and the instruction budget is enforced, exactly like the interpreter."""
        insns = list(insns)
        checked = not is_verified(evidence)
        counters = COVERAGE.counters(insns) if COVERAGE.active else None
        key = (hashlib.sha256(encode(insns)).digest(), checked, counters is not None)
        with self._lock:
            img = self._cache.get(key)
            if img is not None and img.insns == insns and img.counters is counters:
                self._cache.move_to_end(key)
                return img
        img = JitImage(insns, checked=checked, counters=counters)
        with self._lock:
            self._cache[key] = img
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return img


JIT = JitEngine()
