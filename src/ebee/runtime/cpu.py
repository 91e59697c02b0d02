"""One virtual CPU: the state a running program and its helpers share.

A :class:`Cpu` owns what Linux keeps per CPU and per task for a running
program -- the memory it may touch (the set of live regions), a stack of
``MAX_CALL_FRAMES`` 512-byte frames, the CPU number that selects per-CPU map
slots, a clock, a random source, the current task and the run's context --
and nothing about how instructions execute.  Helpers receive it as their
first argument; engines bind programs to it (``ebee.engines``) and register
the program functions callbacks may reach (:meth:`call_function`).
"""
from __future__ import annotations

import random
from typing import Any, Callable

from .. import uapi as U
from ..errors import MemoryFault, VMError
from ..memory import SHARED, Memory, Region
from .clock import Clock
from .context import RunContext

DEFAULT_BUDGET = 10_000_000
M64 = (1 << 64) - 1

#: a program function as engines expose it: ``f(r1, r2, r3, r4, r5, depth, n) -> (r0, n)``
Function = Callable[[int, int, int, int, int, int, int], tuple[int, int]]


class Cpu:
    """One virtual CPU and the memory its programs may touch."""

    def __init__(self, memory: Memory | None = None, *, cpu: int = 0, numa_node: int = 0,
                 clock: Clock | None = None, seed: int | None = None,
                 budget: int = DEFAULT_BUDGET):
        self.memory = memory if memory is not None else SHARED
        self.cpu = cpu
        self.numa_node = numa_node
        self.clock = clock or Clock()
        self.random = random.Random(seed)
        self.budget = budget
        self.stack = self.memory.add(Region(U.MAX_CALL_FRAMES * U.MAX_BPF_STACK, "stack"))
        self.tail_call_count = 0
        # what the running program's helpers see (set by whoever runs it)
        self.progctx: RunContext | None = None
        self.task: Any = None            # an ebee.helpers.task.Task; None: the process's
        self.btf: Any = None             # the program's BTF (bpf_obj_new sizes objects from it)
        self.func_ip = 0                 # bpf_get_func_ip of a tracing run
        self.func_event: Any = None      # the traced call (ebee.helpers.tracing.FuncEvent)
        # bpf_cg_run_ctx.retval of a cgroup program run: what bpf_get_retval reads and
        # bpf_set_retval writes (the runner starts it at the hook's return value)
        self.cg_retval = 0
        # bpf_get_local_storage's answer per cgroup storage map id: the address (CPU 0's
        # value) of the storage the running program has -- a test run's own, or the
        # (cgroup, attach type) element of an attached run (set by whoever runs it)
        self.cgroup_storage: dict[int, int] = {}
        # frame of the program function that called the helper now running (-1: none);
        # engines set it before each helper call, callbacks run one frame below it
        self.frame_depth = -1
        # program functions by code address (BPF_PSEUDO_FUNC values), registered by the
        # engines at bind time: callbacks (bpf_loop, timers, ...) find them here
        self.functions: dict[int, Function] = {}
        # per-engine native state (e.g. the JIT's thread state), keyed by engine name
        self.engine_state: dict[str, Any] = {}

    def close(self) -> None:
        """Release the CPU's stack from the address space."""
        self.memory.remove(self.stack)

    def __enter__(self) -> "Cpu":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- memory for helpers ------------------------------------------------------------

    def live_end(self, r: Region) -> int:
        """Where the live part of region ``r`` ends.  The stack ends at the frame pointer
        of the function that called the running helper: frames above it belong to
        functions that returned, and are gone."""
        if r is self.stack and self.frame_depth >= 0:
            return min(r.end, r.start + (self.frame_depth + 1) * U.MAX_BPF_STACK)
        return r.end

    def find(self, addr: int, size: int = 1) -> Region | None:
        """The region whose live part holds all of ``[addr, addr+size)``, or None."""
        r = self.memory.find(addr, size) if size > 0 else None
        if r is not None and addr + size > self.live_end(r):
            return None
        return r

    def read(self, addr: int, size: int) -> bytes:
        if size < 0:
            raise MemoryFault(f"helper read of {size} bytes at {addr:#x}: negative size")
        r = self.find(addr, size) if size else None
        if r is None:
            if size == 0:
                return b""
            raise MemoryFault(f"helper read of {size} bytes at {addr:#x}: no live region holds it")
        off = addr - r.start
        return bytes(r.buf[off:off + size])

    def write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        r = self.find(addr, len(data))
        if r is None or not r.writable:
            raise MemoryFault(f"helper write of {len(data)} bytes at {addr:#x}: no writable region "
                              f"holds it")
        off = addr - r.start
        r.buf[off:off + len(data)] = data

    def zero(self, addr: int, size: int) -> None:
        """Clear ``size`` bytes at ``addr`` (a helper wiping its output buffer), checked
        before anything is allocated: a program-chosen size stays bounded by the memory
        that is really there."""
        if size <= 0:
            if size < 0:
                raise MemoryFault(f"helper write of {size} bytes at {addr:#x}: negative size")
            return
        r = self.find(addr, size)
        if r is None or not r.writable:
            raise MemoryFault(f"helper write of {size} bytes at {addr:#x}: no writable region "
                              f"holds it")
        off = addr - r.start
        r.buf[off:off + size] = bytes(size)

    # -- callbacks ---------------------------------------------------------------------

    def find_function(self, addr: int) -> Function | None:
        return self.functions.get(addr)

    def call_function(self, addr: int, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0,
                      r5: int = 0, fn: Function | None = None) -> int:
        """Run the program function at code address ``addr`` one frame below the helper's
        caller, as Linux runs callbacks (bpf_loop, for_each_map_elem, timers, rbtree
        ``less``), and return its r0."""
        fn = fn or self.functions.get(addr)
        if fn is None:
            raise VMError(f"callback {addr:#x} is not a function of a program bound to this CPU")
        outer = self.frame_depth
        depth = outer + 1
        if depth >= U.MAX_CALL_FRAMES:
            raise VMError(f"call stack is deeper than {U.MAX_CALL_FRAMES} frames")
        try:
            r0, _ = fn(r1 & M64, r2 & M64, r3 & M64, r4 & M64, r5 & M64, depth, 0)
        finally:
            self.frame_depth = outer
        return r0
