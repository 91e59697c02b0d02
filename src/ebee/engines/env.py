"""What compiled code calls out to: helpers, kfuncs, tail calls, LD_ABS, faults.

Both engines use one :class:`CallEnv` per bound program -- the interpreter's
generated Python reads it as ``E``, the JIT's Python callbacks go through it --
so a helper, a kfunc or a failure behaves and reads identically in both.
"""
from __future__ import annotations

import struct
from typing import Any, Callable

from .. import uapi as U
from ..isa import format_kernel
from ..errors import BudgetExceeded, MemoryFault, VMError
from ..isa import Instruction
from ..memory import Region
from ..runtime.cpu import Cpu, Function
from .base import Services

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


class LdAbsAbort(Exception):
    """LD_ABS/LD_IND out of bounds: Linux ends the program with r0 = 0."""

    def __init__(self, n: int = 0):
        self.n = n


class ProgramText:
    """An image's instructions by pc, for messages that name the faulting instruction."""

    def __init__(self, insns: list[Instruction], image: bytes):
        self.insns = insns
        self.by_pc = {i.pc: i for i in insns}
        self.image = image

    def text(self, pc: int) -> str | None:
        i = self.by_pc.get(pc)
        return None if i is None else format_kernel(i)


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


class CallEnv:
    """The environment of one program bound to one CPU.

    ``tail_entry(executable)`` binds a tail-call target with the caller's own engine
    and returns its entry function (the caller passes it in: the environment does
    not know which engine it serves).
    """

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

    def __init__(self, cpu: Cpu, runtime: Services, prog: ProgramText, code: Region, limit: int,
                 tail_entry: Callable[[Any], Function]):
        self.cpu = cpu
        self.runtime = runtime
        self.prog = prog
        self.stack = cpu.stack.buf
        self.stack_addr = cpu.stack.start
        self.code_addr = code.start
        self.limit = limit
        self.max_depth = U.MAX_CALL_FRAMES - 1
        self._tail_entry = tail_entry
        mem = cpu.memory

        stack = cpu.stack

        def find(a: int, size: int, pc: int, write: bool, fp: int):
            r = mem.find(a, size) if 0 <= a <= M64 else None
            if r is None:
                kind = "write" if write else "read"
                raise MemoryFault(f"invalid {kind} of {size} bytes at {a & M64:#x}: no live region "
                                  f"holds it", pc=pc, insn=prog.text(pc))
            if write and not r.writable:
                raise MemoryFault(f"invalid write of {size} bytes at {a:#x}: region "
                                  f"'{r.name}' is read-only", pc=pc, insn=prog.text(pc))
            if r is stack:
                # the live stack ends at the running function's r10: frames above it
                # belong to functions that returned
                if a + size > fp:
                    kind = "write" if write else "read"
                    raise MemoryFault(f"invalid {kind} of {size} bytes at {a:#x}: above the "
                                      f"running function's frame (a returned function's "
                                      f"frame)", pc=pc, insn=prog.text(pc))
                return r.buf, r.start, fp - r.start
            return r.buf, r.start, r.size

        self.rfind = lambda a, size, pc, fp: find(a, size, pc, False, fp)
        self.wfind = lambda a, size, pc, fp: find(a, size, pc, True, fp)

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
        """``call(r1..r5, pc, depth) -> r0`` for helper ``fid``; ``depth`` is the frame of
        the calling function (callbacks the helper runs go one below it)."""
        impl = self.runtime.helper(fid)
        cpu = self.cpu
        prog = self.prog
        if impl is None:
            why = self.runtime.missing_helper(fid, prog.image, 0)
            runtime = self.runtime

            def missing(a, b, c, d, e, pc, depth=0):
                raise VMError(runtime.missing_helper(fid, prog.image, pc) or why, pc=pc,
                              insn=prog.text(pc))
            return missing

        def call(a, b, c, d, e, pc, depth=0):
            cpu.frame_depth = depth
            try:
                return impl(cpu, a, b, c, d, e) & M64
            except VMError as err:
                if err.pc is None:
                    raise type(err)(err.reason, pc=pc, insn=prog.text(pc)) from None
                raise
        return call

    def callx_helper(self, target: int, a, b, c, d, e, pc: int, depth: int = 0) -> int:
        if 0 <= target <= M32 and self.runtime.helper(target) is not None:
            return self.helper(target)(a, b, c, d, e, pc, depth)
        raise VMError(f"callx to {target:#x}: neither a function of this program nor a helper id",
                      pc=pc, insn=self.prog.text(pc))

    def kfunc(self, btf_id: int, btf_off: int, a, b, c, d, e, pc: int, depth: int = 0) -> int:
        impl = self.runtime.kfunc(btf_id, btf_off)
        if impl is None:
            raise VMError(f"kfunc with BTF id {btf_id} is not known to this runtime", pc=pc,
                          insn=self.prog.text(pc))
        self.cpu.frame_depth = depth
        return impl(self.cpu, a, b, c, d, e) & M64

    def tail_call(self, ctx: int, map_ptr: int, index: int, pc: int):
        cpu = self.cpu
        if cpu.tail_call_count >= U.MAX_TAIL_CALL_CNT:
            return None
        target = self.runtime.tail_call_target(map_ptr, index & M32, pc)
        if target is None:
            return None
        cpu.tail_call_count += 1
        return self._tail_entry(target)

    def ld_abs(self, ctx: int, offset: int, size: int, pc: int, n: int = 0) -> int:
        val = self.runtime.ld_abs(self.cpu, ctx, offset, size, pc)
        if val is None:
            raise LdAbsAbort(n)
        return val

    def ld_imm64(self, pc: int) -> int:
        return self.runtime.ld_imm64(self.prog.by_pc[pc])
