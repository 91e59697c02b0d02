"""Instruction builders for context rewrites, named like the kernel's BPF_* macros."""
from __future__ import annotations

from functools import lru_cache

from ..isa import TABLE, Instruction, OpSpec

AX = 11          # BPF_REG_AX: the kernel's scratch register for rewrites
_SUFFIX = {1: "b", 2: "h", 4: "w", 8: "dw"}


@lru_cache(maxsize=None)
def _spec(name: str, use_reg: bool | None = None) -> OpSpec:
    for s in TABLE:
        if s.name == name and (use_reg is None or s.use_reg == use_reg):
            return s
    raise KeyError(name)


def _mk(spec: OpSpec, dst=0, src=0, off=0, imm=0) -> Instruction:
    imm &= 0xFFFFFFFF
    return Instruction(spec, dst, src, off, imm - (1 << 32) if imm & 0x80000000 else imm, 0, 0)


def ldx(size: int, dst: int, src: int, off: int) -> Instruction:
    """BPF_LDX_MEM: dst = *(size *)(src + off)."""
    return _mk(_spec("ldx" + _SUFFIX[size]), dst, src, off)


def stx(size: int, dst: int, src: int, off: int) -> Instruction:
    """BPF_STX_MEM: *(size *)(dst + off) = src."""
    return _mk(_spec("stx" + _SUFFIX[size]), dst, src, off)


def st(size: int, dst: int, off: int, imm: int) -> Instruction:
    return _mk(_spec("st" + _SUFFIX[size]), dst, 0, off, imm)


def alu64_imm(op: str, dst: int, imm: int) -> Instruction:
    return _mk(_spec(op, False), dst, 0, 0, imm)


def alu32_imm(op: str, dst: int, imm: int) -> Instruction:
    return _mk(_spec(op + "32", False), dst, 0, 0, imm)


def alu64_reg(op: str, dst: int, src: int) -> Instruction:
    return _mk(_spec(op, True), dst, src)


def alu32_reg(op: str, dst: int, src: int) -> Instruction:
    return _mk(_spec(op + "32", True), dst, src)


def mov64_imm(dst: int, imm: int) -> Instruction:
    return alu64_imm("mov", dst, imm)


def mov32_imm(dst: int, imm: int) -> Instruction:
    return alu32_imm("mov", dst, imm)


def mov64_reg(dst: int, src: int) -> Instruction:
    return alu64_reg("mov", dst, src)


def jmp_imm(op: str, dst: int, imm: int, off: int) -> Instruction:
    return _mk(_spec(op, False), dst, 0, off, imm)


def jmp32_imm(op: str, dst: int, imm: int, off: int) -> Instruction:
    return _mk(_spec(op + "32", False), dst, 0, off, imm)


def ja(off: int) -> Instruction:
    return _mk(_spec("ja"), 0, 0, off)
