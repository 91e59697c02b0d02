"""Compiled programs bound to machines: the JIT's side of the engine interface.

* :class:`JitProgram` -- a program compiled once (cached per instruction
  digest and mode within the process), holding its native entry points.
* :class:`CpuState` -- the native state of one :class:`~ebee.vm.Machine`
  (one virtual CPU): its ``ThreadState``, the region table checked code
  searches, and the bindings made on it.
* :class:`JitBinding` -- a program bound to a machine, with the same
  ``run(r1..r5) -> Execution`` shape as the interpreter's ``Interpreter``.

Helpers that have no native implementation are called back into Python
through ctypes with the registry's ``impl(machine, r1..r5)`` signature; the
callbacks reuse the interpreter's own environment (``vm.machine._Env``), so
a helper, kfunc or failure behaves identically under both engines.  ctypes
releases the GIL around the native call and re-acquires it for callbacks, so
programs on different machines run in parallel.
"""
from __future__ import annotations

import ctypes
import hashlib
import threading
import time
from collections import OrderedDict
from typing import Any

from .. import uapi as U
from ..errors import BudgetExceeded, MemoryFault, VMError
from ..isa import Instruction, Kind, encode
from ..vm.machine import Execution, Machine, _Env
from ..vm.memory import Region
from . import abi, irgen, is_verified
from .codegen import Codegen
from . import natives, natives_maps  # noqa: F401  (register the native helper implementations)

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


class _Abort(Exception):
    """LD_ABS/LD_IND ended the program inside a callback; the run returns r0 = 0."""


class JitProgram:
    """A program translated to native code once; bound to machines on demand."""

    # Each compiled program keeps an execution engine (about 1 MB): keep the most
    # recently used ones; machines still bound to an evicted program keep it alive.
    _cache: "OrderedDict[tuple[bytes, bool], JitProgram]" = OrderedDict()
    CACHE_SIZE = 128
    _lock = threading.Lock()

    def __init__(self, insns: list[Instruction], *, checked: bool):
        t0 = time.perf_counter_ns()
        self.insns = list(insns)
        self.by_pc = {i.pc: i for i in self.insns}
        self.checked = checked
        self.image = encode(self.insns)
        self.digest = hashlib.sha256(self.image).hexdigest()
        module, self.layout = irgen.generate(self.insns, checked=checked, name=f"ebee_{self.digest[:16]}")
        self.irgen_ns = time.perf_counter_ns() - t0
        self.library = Codegen.get().compile(module)
        self.compile_ns = time.perf_counter_ns() - t0
        self.run_addr = self.library.address(abi.RUN_SYMBOL)
        self.batch_addr = self.library.address(abi.BATCH_SYMBOL)
        self.main_addr = self.library.address(abi.MAIN_SYMBOL)
        self._callfn = abi.CALLFN(self.library.address(abi.CALLFN_SYMBOL))
        self._run = abi.RUN(self.run_addr)
        self._batch = abi.BATCH(self.batch_addr)

    @classmethod
    def get(cls, insns: list[Instruction], *, checked: bool) -> "JitProgram":
        key = (hashlib.sha256(encode(insns)).digest(), checked)
        with cls._lock:
            prog = cls._cache.get(key)
            if prog is not None and prog.insns == list(insns):
                cls._cache.move_to_end(key)
                return prog
        prog = JitProgram(insns, checked=checked)
        with cls._lock:
            cls._cache[key] = prog
            while len(cls._cache) > cls.CACHE_SIZE:
                cls._cache.popitem(last=False)
        return prog

    def text(self, pc: int) -> str | None:
        i = self.by_pc.get(pc)
        if i is None:
            return None
        from ..asm.disasm import format_kernel
        return format_kernel(i)

    @property
    def uses_prandom(self) -> bool:
        return int(U.FuncId.get_prandom_u32) in self.layout.natives


class CpuState:
    """Native state of one machine: its thread state, region table and bindings."""

    def __init__(self, machine: Machine):
        self.machine = machine
        self.ts = abi.ThreadState()
        self.ts_addr = ctypes.addressof(self.ts)
        self.bindings: dict[tuple[int, bool], JitBinding] = {}
        self.by_pt: dict[int, JitBinding] = {}
        self.exc: BaseException | None = None
        self.cur_fp = 0          # frame pointer of the program calling a helper (0: none runs)
        self._regions_seen: object = None
        self._table = None
        self._mt_synced: tuple | None = None
        ts = self.ts
        ts.stack_lo = machine.stack.start
        ts.stack_hi = machine.stack.start + machine.stack.size

    def binding(self, prog: JitProgram, machine: Machine) -> "JitBinding":
        key = (id(prog), prog.checked)
        b = self.bindings.get(key)
        if b is None or b.program is not prog:
            b = self.bindings[key] = JitBinding(machine, prog, self)
            self.by_pt[b.pt_addr] = b
        return b

    def find_function(self, addr: int):
        """The program function at code address ``addr`` among this machine's bindings."""
        for b in list(self.bindings.values()):
            fn = b._faddr.get(addr)
            if fn is not None:
                return fn
        return None

    def refresh_regions(self) -> None:
        """Give checked code the current set of live regions.

        ``Memory`` publishes a new list on every change, so comparing the
        list's identity tells (for free) whether the table is stale.
        """
        mem = self.machine.memory
        current = getattr(mem, "_regions", None)
        if current is not None and current is self._regions_seen:
            return
        regions = list(mem)
        table = (abi.RegionEntry * max(len(regions), 1))()
        for k, r in enumerate(regions):
            table[k].start, table[k].end, table[k].writable = r.start, r.end, int(r.writable)
        self._table = table
        self.ts.regions = ctypes.addressof(table)
        self.ts.nregions = len(regions)
        self._regions_seen = current

    # -- MT19937 shared with machine.random ----------------------------------------------
    # bpf_get_prandom_u32 runs natively on a copy of the machine's Mersenne
    # Twister state, so both engines draw the same numbers from the same seed.

    def mt_load(self) -> None:
        state = self.machine.random.getstate()
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
        self.machine.random.setstate(state)
        self.ts.mt_calls = 0
        self._mt_synced = state


_states_lock = threading.Lock()


def cpu_state(machine: Machine) -> CpuState:
    """The machine's native state, created on first use.

    It lives on the machine (like the interpreter's bindings in
    ``Machine._bound``), so it dies with it; a side table keyed by the
    machine would keep every machine alive through its bindings.
    """
    st = machine.__dict__.get("_jit_state")
    if st is None:
        with _states_lock:
            st = machine.__dict__.get("_jit_state")
            if st is None:
                st = machine.__dict__["_jit_state"] = CpuState(machine)
    return st


class _ProgView:
    """What the interpreter's environment needs to know about a program."""

    def __init__(self, prog: JitProgram):
        self.by_pc = prog.by_pc
        self.text = prog.text


class JitBinding:
    """A compiled program bound to one machine: ``run(r1..r5) -> Execution``."""

    def __init__(self, machine: Machine, prog: JitProgram, state: CpuState):
        self.machine = machine
        self.program = prog
        self.state = state
        self.limit = machine.budget
        # function pointers (lddw src=4) point into the program image, as in the interpreter
        self._code = Region(prog.image, "code", writable=False)
        self.env = _Env(machine, _ProgView(prog), self._code, self.limit)
        layout = prog.layout
        self.pt = (ctypes.c_uint64 * layout.size)()
        self.pt_addr = ctypes.addressof(self.pt)
        self.pt[abi.PT_CODE_ADDR] = self._code.start
        self._callbacks = []
        for k, (kind, key) in enumerate(layout.slots, abi.PT_CODE_ADDR + 1):
            if kind == "const":
                self.pt[k] = self.env.ld_imm64(key) & M64
            else:
                cb = abi.CALLBACK(self._wrap(getattr(self, f"_cb_{kind}")(key)))
                self._callbacks.append(cb)
                self.pt[k] = ctypes.cast(cb, ctypes.c_void_p).value
        # the interpreter's entry, so that an interpreted tail call can land here
        self.entry = self._entry
        # callbacks (bpf_loop, for_each_map_elem, timers) find functions by code address
        self._faddr = {self._code.start + pc * 8: self._function(pc) for pc in layout.entries}

    # -- callbacks into Python -----------------------------------------------------------

    def _wrap(self, fn):
        state = self.state
        ts = state.ts

        def callback(pc, x, a, b, c, d, e):
            try:
                v = fn(pc, x, a, b, c, d, e)
            except _Abort:                     # LD_ABS failed inside a callback: end the run
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

        def call(pc, x, a, b, c, d, e):
            outer, state.cur_fp = state.cur_fp, x
            try:
                return fn(pc, x, a, b, c, d, e)
            finally:
                state.cur_fp = outer
        return call

    def _cb_helper(self, fid: int):
        call = self.env.helper(fid)
        return self._framed(lambda pc, x, a, b, c, d, e: call(a, b, c, d, e, pc))

    def _cb_kfunc(self, _key):
        by_pc, kfunc = self.program.by_pc, self.env.kfunc
        return self._framed(lambda pc, x, a, b, c, d, e:
                            kfunc(by_pc[pc].imm, by_pc[pc].off, a, b, c, d, e, pc))

    def _function(self, pc: int):
        """``f(r1..r5, depth, n) -> (r0, n)`` running function ``pc`` natively, as the
        interpreter's functions do for ``helpers.calls.call_function``.  The frame is
        the one below the helper's caller (``depth`` is the interpreter's view and
        is ignored); the callback's instructions are not counted, as in the interpreter."""
        state, ts, prog = self.state, self.state.ts, self.program

        def fn(r1, r2, r3, r4, r5, depth=0, n=0):
            running = state.cur_fp != 0
            depth = (state.cur_fp - ts.stack_lo) // U.MAX_BPF_STACK if running else 0
            if depth >= U.MAX_CALL_FRAMES:
                raise VMError(f"call stack is deeper than {U.MAX_CALL_FRAMES} frames")
            if not running:
                self._enter()
            fp = ts.stack_lo + (depth + 1) * U.MAX_BPF_STACK
            r0 = prog._callfn(state.ts_addr, self.pt_addr, pc, r1 & M64, r2 & M64, r3 & M64,
                              r4 & M64, r5 & M64, fp)
            if ts.status:
                if ts.status == abi.Status.ABORT:
                    raise _Abort()
                self._failed()
            return r0, n
        return fn

    def _cb_callx(self, _key):
        callx = self.env.callx_helper
        return lambda pc, x, a, b, c, d, e: callx(x, a, b, c, d, e, pc)

    def _cb_ld_abs(self, _key):
        by_pc, m, ts = self.program.by_pc, self.machine, self.state.ts

        def ld_abs(pc, ctx, src, b, c, d, e):
            i = by_pc[pc]
            offset = i.imm if i.kind is Kind.LD_ABS else src + i.imm
            v = m.ld_abs(ctx, offset, i.spec.size, pc)
            if v is None:            # Linux ends the program with r0 = 0
                ts.status = abi.Status.ABORT
                return 0
            return v
        return ld_abs

    def _cb_tail_call(self, _key):
        m, state, ts = self.machine, self.state, self.state.ts

        def tail_call(pc, x, ctx, map_ptr, index, d, e):
            target = m.tail_call_target(map_ptr, index & M32, pc)
            if target is None:
                ts.tc_fn = 0
                return 0
            b = bind(m, _insns_of(target), verified=getattr(target, "verification", None))
            ts.tc_fn = b.program.main_addr
            ts.tc_pt = b.pt_addr
            return 0
        return tail_call

    # -- running -------------------------------------------------------------------------

    def _enter(self) -> abi.ThreadState:
        st = self.state
        m = self.machine
        ts = st.ts
        ts.status = 0
        ts.tail_calls = 0
        ts.limit = self.limit
        ts.cpu = m.cpu
        ts.numa_node = m.numa_node
        ts.native_clock = 1 if type(m.clock) is _HostClock else 0
        st.refresh_regions()
        if self.program.uses_prandom:
            st.mt_load()
        return ts

    def _leave(self) -> None:
        if self.program.uses_prandom:
            self.state.mt_store()

    def run(self, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0, r5: int = 0) -> Execution:
        ts = self._enter()
        try:
            r0 = self.program._run(self.state.ts_addr, self.pt_addr, r1 & M64, r2 & M64, r3 & M64,
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
            r0 = self.program._batch(self.state.ts_addr, self.pt_addr, r1 & M64, r2 & M64, r3 & M64,
                                     r4 & M64, r5 & M64, repeat)
            elapsed = time.thread_time_ns() - t0
        finally:
            self._leave()
        if ts.status:
            return self._failed(), elapsed
        return Execution(r0, ts.n), elapsed

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
        prog = owner.program
        pc = int(ts.fault_pc)
        ts.status = 0
        if status is abi.Status.ABORT:
            return Execution(0, ts.n)
        if status is abi.Status.PYEXC:
            exc, st.exc = st.exc, None
            raise exc
        insn = prog.text(pc)
        if status is abi.Status.MEM:
            a, size, write = int(ts.fault_addr), int(ts.fault_size), bool(ts.fault_write)
            r = self.machine.memory.find(a, size)
            if r is not None and write and not r.writable:
                raise MemoryFault(f"invalid write of {size} bytes at {a:#x}: region '{r.name}' is "
                                  f"read-only", pc=pc, insn=insn)
            kind = "write" if write else "read"
            raise MemoryFault(f"invalid {kind} of {size} bytes at {a:#x}: no live region holds it",
                              pc=pc, insn=insn)
        if status is abi.Status.STATIC:
            raise VMError(prog.layout.messages[ts.fault_arg], pc=pc, insn=insn)
        if status is abi.Status.BUDGET:
            raise BudgetExceeded(f"instruction budget of {owner.limit} exceeded ({ts.fault_arg} "
                                 f"executed)", pc=pc, insn=insn)
        if status is abi.Status.DEPTH:
            raise VMError(f"call stack is deeper than {U.MAX_CALL_FRAMES} frames", pc=pc, insn=insn)
        raise VMError(f"native code stopped with unknown status {int(status)}", pc=pc, insn=insn)


from ..helpers.base import Clock as _HostClock   # noqa: E402  (only the host clock runs natively)


def _insns_of(target) -> list[Instruction]:
    """Instructions of a tail-call target (instruction list, interpreter or loaded program)."""
    if isinstance(target, list):
        return target
    for attr in ("insns", "program"):
        v = getattr(target, attr, None)
        if isinstance(v, list):
            return v
        if v is not None and isinstance(getattr(v, "insns", None), list):
            return v.insns
    raise VMError(f"tail call target {target!r} has no instructions")


def bind(machine: Machine, insns: list[Instruction], *, verified: Any = None) -> JitBinding:
    """Compile (or reuse) ``insns`` and bind them to ``machine``.

    Without verification evidence the code is compiled in checked mode:
    every access is checked against the machine's live regions and the
    instruction budget is enforced, exactly like the interpreter.
    """
    prog = JitProgram.get(insns, checked=not is_verified(verified))
    return cpu_state(machine).binding(prog, machine)
