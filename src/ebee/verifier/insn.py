"""The verifier's view of instructions: raw fields, exactly as the kernel sees them.

The verifier must diagnose encodings the decoder would refuse (reserved
fields, unknown opcodes) in the order and words Linux uses, so it works on
raw ``(code, dst, src, off, imm)`` slots.  ``Insn`` precomputes the fields the
handlers dispatch on.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from .. import uapi as U
from ..isa import SLOT as _SLOT, Instruction, lookup
from ..errors import DecodeError


class Insn:
    __slots__ = ("idx", "code", "dst", "src", "off", "imm", "imm_hi", "cls", "op", "mode",
                 "size", "srcx", "spec", "text")

    def __init__(self, idx: int, code: int, dst: int, src: int, off: int, imm: int,
                 imm_hi: int = 0):
        self.idx = idx
        self.code = code
        self.dst = dst
        self.src = src
        self.off = off
        self.imm = imm
        self.imm_hi = imm_hi
        self.cls = code & 0x07
        self.op = code & 0xF0
        self.mode = code & 0xE0
        self.size = code & 0x18
        self.srcx = code & 0x08
        try:
            self.spec = lookup(code, dst, src, off, imm)
        except DecodeError:
            self.spec = None
        self.text = None

    def is_ldimm64(self) -> bool:
        return self.code == (U.BPF_LD | U.BPF_IMM | U.BPF_DW)

    @property
    def imm64(self) -> int:
        return (self.imm & 0xFFFFFFFF) | ((self.imm_hi & 0xFFFFFFFF) << 32)

    def is_pseudo_call(self) -> bool:
        return self.code == (U.BPF_JMP | U.BPF_CALL) and self.src == U.BPF_PSEUDO_CALL

    def is_helper_call(self) -> bool:
        return self.code == (U.BPF_JMP | U.BPF_CALL) and self.src == 0

    def is_kfunc_call(self) -> bool:
        return self.code == (U.BPF_JMP | U.BPF_CALL) and self.src == U.BPF_PSEUDO_KFUNC_CALL

    def is_pseudo_func(self) -> bool:
        return self.is_ldimm64() and self.src == U.BPF_PSEUDO_FUNC

    def is_may_goto(self) -> bool:
        return self.code == (U.BPF_JMP | U.BPF_JCOND) and self.src == U.CondPseudoJmp.MAY_GOTO

    def instruction(self) -> Instruction | None:
        if self.spec is None:
            return None
        return Instruction(self.spec, self.dst, self.src, self.off, self.imm, self.imm_hi, self.idx)

    def __repr__(self) -> str:
        return f"<Insn {self.idx}: {self.code:#04x} d{self.dst} s{self.src} o{self.off} i{self.imm}>"


def from_bytes(data: bytes) -> list[Insn]:
    """Slots of a raw program; the second slot of lddw stays as its own Insn."""
    n = len(data) // 8
    raw = [_SLOT.unpack_from(data, i * 8) for i in range(n)]
    out = []
    for i, (code, regs, off, imm) in enumerate(raw):
        hi = raw[i + 1][3] if i + 1 < n else 0
        out.append(Insn(i, code, regs & 0xF, regs >> 4, off, imm, hi))
    return out


def from_instructions(insns: Iterable[Instruction]) -> list[Insn]:
    out: list[Insn] = []
    for i in insns:
        pc = len(out)
        out.append(Insn(pc, i.opcode, i.dst, i.src, i.off, i.imm, i.imm_hi))
        if i.spec.wide:
            out.append(Insn(pc + 1, 0, 0, 0, 0, i.imm_hi, 0))
    return out


def to_bytes(insns: Sequence[Insn]) -> bytes:
    return b"".join(_SLOT.pack(i.code, (i.src << 4) | i.dst, i.off, i.imm) for i in insns)
