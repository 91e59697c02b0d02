"""The interpreter: a virtual CPU that runs translated programs.

A :class:`Machine` owns what one CPU needs to run programs -- its memory
(the set of live regions), a stack of ``MAX_CALL_FRAMES`` 512-byte frames,
a CPU number, a clock and a random source -- and the runtime hooks that
later layers fill in (maps for ``lddw`` map references, tail-call targets,
kfuncs, the socket buffer behind LD_ABS).  :meth:`Machine.load` binds a
program's translated code to the machine; :meth:`Interpreter.run` runs it.
"""
from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass
from typing import Callable

from .. import uapi as U
from ..btf.core import POISON_HELPER_ID as CORE_POISON_HELPER_ID
from ..btf.core import poisoned_reason as core_poisoned_reason
from ..errors import BudgetExceeded, MemoryFault, VMError
from ..helpers import REGISTRY
from ..helpers.base import Clock
from ..isa import Instruction, encode
from ..protos.helpers import helper_name
from .codegen import M32, M64, translate
from .memory import SHARED, Memory, Region

DEFAULT_BUDGET = 10_000_000


class _LdAbsAbort(Exception):
    """LD_ABS/LD_IND out of bounds: Linux ends the program with r0 = 0."""

    def __init__(self, n: int):
        self.n = n


@dataclass(frozen=True)
class Execution:
    """The outcome of one run."""
    retval: int           # r0 as a u64
    insns: int            # instructions executed, across calls and tail calls


class CompiledProgram:
    """A program translated to Python code once; bound to machines on demand."""

    _cache: dict[bytes, "CompiledProgram"] = {}

    def __init__(self, insns: list[Instruction]):
        self.insns = insns
        self.by_pc = {i.pc: i for i in insns}
        self.translation = translate(insns)
        self.code = compile(self.translation.source, "<ebee-program>", "exec")
        self.image = encode(insns)

    @classmethod
    def get(cls, insns: list[Instruction]) -> "CompiledProgram":
        key = hashlib.sha256(encode(insns)).digest()
        prog = cls._cache.get(key)
        if prog is None or prog.insns != insns:
            if len(cls._cache) > 512:
                cls._cache.clear()
            prog = cls._cache[key] = CompiledProgram(insns)
        return prog

    def text(self, pc: int) -> str | None:
        i = self.by_pc.get(pc)
        if i is None:
            return None
        from ..asm.disasm import format_kernel
        return format_kernel(i)


def _sdiv(a: int, b: int, bits: int) -> int:
    mask = (1 << bits) - 1
    a &= mask
    b &= mask
    if b == 0:
        return 0
    sign = 1 << (bits - 1)
    sa, sb = a - ((a & sign) << 1), b - ((b & sign) << 1)
    q = abs(sa) // abs(sb)
    return (-q if (sa < 0) != (sb < 0) else q) & mask


def _smod(a: int, b: int, bits: int) -> int:
    mask = (1 << bits) - 1
    a &= mask
    b &= mask
    if b == 0:
        return a
    sign = 1 << (bits - 1)
    sa, sb = a - ((a & sign) << 1), b - ((b & sign) << 1)
    r = abs(sa) % abs(sb)
    return (-r if sa < 0 else r) & mask


class _Env:
    """What generated code sees as ``E`` (see codegen.factory)."""

    U8 = struct.Struct("<B").unpack_from
    U16 = struct.Struct("<H").unpack_from
    U32 = struct.Struct("<I").unpack_from
    U64 = struct.Struct("<Q").unpack_from
    S8 = struct.Struct("<b").unpack_from
    S16 = struct.Struct("<h").unpack_from
    S32 = struct.Struct("<i").unpack_from
    P8 = struct.Struct("<B").pack_into
    P16 = struct.Struct("<H").pack_into
    P32 = struct.Struct("<I").pack_into
    P64 = struct.Struct("<Q").pack_into

    sdiv64 = staticmethod(lambda a, b: _sdiv(a, b, 64))
    smod64 = staticmethod(lambda a, b: _smod(a, b, 64))
    sdiv32 = staticmethod(lambda a, b: _sdiv(a, b, 32))
    smod32 = staticmethod(lambda a, b: _smod(a, b, 32))

    def __init__(self, machine: "Machine", prog: CompiledProgram, code: Region, limit: int):
        self.machine = machine
        self.prog = prog
        self.stack = machine.stack.buf
        self.stack_addr = machine.stack.start
        self.code_addr = code.start
        self.limit = limit
        self.max_depth = U.MAX_CALL_FRAMES - 1
        mem = machine.memory

        def find(a: int, size: int, pc: int, write: bool):
            r = mem.find(a, size) if 0 <= a <= M64 else None
            if r is None:
                kind = "write" if write else "read"
                raise MemoryFault(f"invalid {kind} of {size} bytes at {a & M64:#x}: no live region "
                                  f"holds it", pc=pc, insn=prog.text(pc))
            if write and not r.writable:
                raise MemoryFault(f"invalid write of {size} bytes at {a:#x}: region "
                                  f"'{r.name}' is read-only", pc=pc, insn=prog.text(pc))
            return r.buf, r.start, r.size

        self.rfind = lambda a, size, pc: find(a, size, pc, False)
        self.wfind = lambda a, size, pc: find(a, size, pc, True)

    # -- faults ----------------------------------------------------------------

    def fault(self, pc: int, reason: str):
        raise VMError(reason, pc=pc, insn=self.prog.text(pc))

    def budget_exceeded(self, pc: int, n: int):
        raise BudgetExceeded(f"instruction budget of {self.limit} exceeded ({n} executed)",
                             pc=pc, insn=self.prog.text(pc))

    def too_deep(self, pc: int):
        raise VMError(f"call stack is deeper than {U.MAX_CALL_FRAMES} frames", pc=pc,
                      insn=self.prog.text(pc))

    # -- calls -------------------------------------------------------------------

    def helper(self, fid: int) -> Callable[..., int]:
        h = REGISTRY.get(fid)
        m = self.machine
        prog = self.prog
        if h is None:
            name = helper_name(fid)
            why = f"unknown helper id {fid}" if name == "unknown" else \
                f"helper {name}#{fid} is not implemented by ebee"
            if fid == CORE_POISON_HELPER_ID:    # libbpf's marker for a failed CO-RE relocation
                def poisoned(a, b, c, d, e, pc):
                    raise VMError(core_poisoned_reason(prog.image, pc), pc=pc, insn=prog.text(pc))
                return poisoned

            def missing(a, b, c, d, e, pc):
                raise VMError(why, pc=pc, insn=prog.text(pc))
            return missing
        impl = h.impl

        def call(a, b, c, d, e, pc):
            try:
                return impl(m, a, b, c, d, e) & M64
            except VMError as err:
                if err.pc is None:
                    raise type(err)(err.reason, pc=pc, insn=prog.text(pc)) from None
                raise
        return call

    def callx_helper(self, target: int, a, b, c, d, e, pc: int) -> int:
        if 0 <= target <= M32 and target in REGISTRY:
            return self.helper(target)(a, b, c, d, e, pc)
        raise VMError(f"callx to {target:#x}: neither a function of this program nor a helper id",
                      pc=pc, insn=self.prog.text(pc))

    def kfunc(self, btf_id: int, btf_off: int, a, b, c, d, e, pc: int) -> int:
        impl = self.machine.kfunc_impl(btf_id, btf_off)
        if impl is None:
            raise VMError(f"kfunc with BTF id {btf_id} is not known to this runtime", pc=pc,
                          insn=self.prog.text(pc))
        return impl(self.machine, a, b, c, d, e) & M64

    def tail_call(self, ctx: int, map_ptr: int, index: int, pc: int):
        m = self.machine
        if m.tail_call_count >= U.MAX_TAIL_CALL_CNT:
            return None
        target = m.tail_call_target(map_ptr, index & M32, pc)
        if target is None:
            return None
        m.tail_call_count += 1
        return m.bind(target).entry

    def ld_abs(self, ctx: int, offset: int, size: int, pc: int, n: int = 0) -> int:
        val = self.machine.ld_abs(ctx, offset, size, pc)
        if val is None:
            raise _LdAbsAbort(n)
        return val

    def ld_imm64(self, pc: int) -> int:
        insn = self.prog.by_pc[pc]
        return self.machine.resolve_ld_imm64(insn)


class Interpreter:
    """A program bound to a machine, ready to run."""

    def __init__(self, machine: "Machine", prog: CompiledProgram, limit: int):
        self.machine = machine
        self.program = prog
        # the code image gives function pointers (lddw src=4) real addresses
        self._code = Region(prog.image, "code", writable=False)
        env = _Env(machine, prog, self._code, limit)
        ns: dict = {}
        exec(prog.code, ns)
        self.functions, self._faddr = ns["factory"](env)
        self.entry = self.functions[0]

    def run(self, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0, r5: int = 0) -> Execution:
        m = self.machine
        m.tail_call_count = 0
        try:
            r0, n = self.entry(r1 & M64, r2 & M64, r3 & M64, r4 & M64, r5 & M64, 0, 0)
        except _LdAbsAbort as abort:
            return Execution(0, abort.n)
        return Execution(r0, n)


class Machine:
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
        self._bound: dict[int, Interpreter] = {}

    def close(self) -> None:
        """Release the machine's stack from the address space."""
        self.memory.remove(self.stack)

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- programs ----------------------------------------------------------------

    def bind(self, insns: list[Instruction] | CompiledProgram, *, engine: str = "interp",
             verified=None) -> Interpreter:
        """Bind a program to this machine.  ``engine`` "jit" or "auto" may compile it to
        native code (``ebee.jit``): same ``run(r1..r5) -> Execution``, same memory;
        ``verified`` (a verifier result) lets the JIT drop its per-access checks."""
        if engine != "interp":
            from .. import jit
            if jit.select_engine(engine, verified=verified) == "jit":
                return jit.bind(self, insns.insns if isinstance(insns, CompiledProgram) else insns,
                                verified=verified)
        prog = insns if isinstance(insns, CompiledProgram) else CompiledProgram.get(insns)
        it = self._bound.get(id(prog))
        if it is None or it.program is not prog:
            it = self._bound[id(prog)] = Interpreter(self, prog, self.budget)
        return it

    def run(self, insns: list[Instruction], r1: int = 0, r2: int = 0, r3: int = 0,
            r4: int = 0, r5: int = 0, *, engine: str = "interp") -> Execution:
        return self.bind(insns, engine=engine).run(r1, r2, r3, r4, r5)

    # -- memory conveniences for helpers -----------------------------------------

    def read(self, addr: int, size: int) -> bytes:
        r = self.memory.find(addr, size) if size else None
        if r is None:
            if size == 0:
                return b""
            raise MemoryFault(f"helper read of {size} bytes at {addr:#x}: no live region holds it")
        off = addr - r.start
        return bytes(r.buf[off:off + size])

    def write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        r = self.memory.find(addr, len(data))
        if r is None or not r.writable:
            raise MemoryFault(f"helper write of {len(data)} bytes at {addr:#x}: no writable region holds it")
        off = addr - r.start
        r.buf[off:off + len(data)] = data

    # -- hooks the runtime layers provide (maps, program types) ---------------------

    # The maps/helpers packages implement these in ebee.helpers.runtime; the imports
    # are local because those packages import this module.

    def resolve_ld_imm64(self, insn: Instruction) -> int:
        """Value of ``lddw`` with a pseudo source: map pointers (src 1) and
        direct map-value addresses (src 2); see ebee.helpers.runtime."""
        from ..helpers.runtime import resolve_ld_imm64
        return resolve_ld_imm64(self, insn)

    def tail_call_target(self, map_ptr: int, index: int, pc: int):
        """The program in slot ``index`` of a PROG_ARRAY (None: fall through)."""
        from ..helpers.runtime import tail_call_target
        return tail_call_target(self, map_ptr, index, pc)

    def kfunc_impl(self, btf_id: int, btf_off: int):
        from ..helpers.runtime import kfunc_impl
        return kfunc_impl(self, btf_id, btf_off)

    def call_function(self, addr: int, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0,
                      r5: int = 0) -> int:
        """Run the bound program function at code address ``addr`` (a callback:
        bpf_loop, for_each_map_elem, timers, rbtree ``less``) and return its r0."""
        from ..helpers.calls import call_function
        return call_function(self, addr, r1, r2, r3, r4, r5)

    def ld_abs(self, ctx: int, offset: int, size: int, pc: int) -> int | None:
        raise VMError("LD_ABS/LD_IND need a socket-buffer context (a socket filter or tc program)",
                      pc=pc)


def run(insns: list[Instruction], mem: bytes | None = None, *, budget: int = DEFAULT_BUDGET,
        machine: Machine | None = None, engine: str = "interp") -> Execution:
    """Run raw instructions the way the conformance suite does: r1 = mem, r2 = len(mem)."""
    own = machine is None
    m = machine or Machine(budget=budget)
    region = None
    if mem is not None:
        region = m.memory.add(Region(mem, "mem"))
    try:
        r1 = region.start if region is not None and region.size else 0
        return m.run(insns, r1, len(mem) if mem is not None else 0, engine=engine)
    finally:
        if region is not None:
            m.memory.remove(region)
        if own:
            m.close()
