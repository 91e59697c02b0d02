"""A small eBPF assembler for the code generator: instructions, labels, relocations.

The generator emits symbolic code -- jumps to :class:`Label` objects, ``lddw``
of a map by name, 64-bit constants filled in at load time (``elapsed``'s start,
``cpid``) -- and :meth:`Emitter.link` turns it into :class:`ebee.isa.Instruction`
records, remembering for every instruction the script location that produced it
(so a verifier rejection can name the line).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .. import uapi as U
from ..isa import TABLE, Instruction, Kind, OpSpec
from .ast import Loc

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)

_ALU: dict[tuple[str, bool, bool], OpSpec] = {}
_JMP: dict[tuple[str, bool, bool], OpSpec] = {}
_MEM: dict[str, OpSpec] = {}
for _s in TABLE:
    if _s.kind is Kind.ALU and not _s.signed:
        _ALU[(_s.op, _s.use_reg, _s.is64)] = _s
    elif _s.kind is Kind.JCC:
        _JMP[(_s.op, _s.use_reg, _s.is64)] = _s
    elif _s.kind in (Kind.LDX, Kind.ST, Kind.STX) and not _s.signed:
        _MEM[_s.name] = _s
    elif _s.kind is Kind.NEG and _s.is64:
        _MEM["neg"] = _s
    elif _s.kind is Kind.CALL:
        _MEM["call"] = _s
    elif _s.kind is Kind.EXIT:
        _MEM["exit"] = _s
    elif _s.kind is Kind.JA and _s.is64:
        _MEM["ja"] = _s
    elif _s.kind is Kind.LD_IMM64:
        _MEM[f"lddw.{_s.op}"] = _s
    elif _s.kind is Kind.ATOMIC and _s.op == "add" and not _s.fetch and _s.size == 8:
        _MEM["lock add"] = _s
del _s

SUFFIX = {1: "b", 2: "h", 4: "w", 8: "dw"}


class Label:
    __slots__ = ("name",)

    def __init__(self, name: str = ""):
        self.name = name

    def __repr__(self) -> str:
        return f"<Label {self.name}>"


@dataclass
class _Slot:
    spec: OpSpec
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    imm_hi: int = 0
    target: Label | None = None      # jump target
    reloc: str | None = None         # lddw: map name or "const:NAME"
    loc: Loc | None = None


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def fits_imm(v: int) -> bool:
    return -(1 << 31) <= v < (1 << 31)


class Emitter:
    def __init__(self) -> None:
        self.code: list[_Slot | Label] = []
        self.loc: Loc | None = None

    # -- raw -----------------------------------------------------------------------------

    def _add(self, slot: _Slot) -> None:
        slot.loc = self.loc
        self.code.append(slot)

    def place(self, label: Label) -> None:
        self.code.append(label)

    def alu(self, op: str, dst: int, src: int | None = None, imm: int = 0,
            is64: bool = True) -> None:
        """``dst op= src`` (register) or ``dst op= imm``."""
        if src is None and not fits_imm(imm):
            raise ValueError(f"immediate {imm} does not fit 32 bits")
        spec = _ALU[(op, src is not None, is64)]
        self._add(_Slot(spec, dst, src or 0, 0, 0 if src is not None else _s32(imm)))

    def mov(self, dst: int, src: int) -> None:
        if dst != src:
            self.alu("mov", dst, src)

    def movi(self, dst: int, value: int) -> None:
        value &= (1 << 64) - 1
        sv = value - (1 << 64) if value >> 63 else value
        if fits_imm(sv):
            self.alu("mov", dst, imm=sv)
        elif value < (1 << 32):
            self.alu("mov", dst, imm=_s32(value), is64=False)     # zero-extends
        else:
            self.lddw(dst, value)

    def lddw(self, dst: int, value: int, reloc: str | None = None) -> None:
        value &= (1 << 64) - 1
        self._add(_Slot(_MEM["lddw.imm64"], dst, 0, 0, _s32(value), _s32(value >> 32),
                        reloc=reloc))

    def ld_map(self, dst: int, name: str) -> None:
        self._add(_Slot(_MEM["lddw.map_fd"], dst, U.BPF_PSEUDO_MAP_FD, 0, 0, 0, reloc=name))

    def ld_func(self, dst: int, target: Label) -> None:
        """dst = the address of the subprogram starting at ``target`` (a callback)."""
        self._add(_Slot(_MEM["lddw.func"], dst, U.BPF_PSEUDO_FUNC, target=target))

    def ld_map_value(self, dst: int, name: str, off: int = 0) -> None:
        """dst = the address of ``name``'s value 0, plus ``off`` (an array map)."""
        self._add(_Slot(_MEM["lddw.map_value"], dst, U.BPF_PSEUDO_MAP_VALUE, 0, 0, 0,
                        reloc=f"value:{name}:{off}"))

    def atomic_add(self, dst: int, off: int, src: int) -> None:
        """lock *(u64 *)(dst + off) += src"""
        self._add(_Slot(_MEM["lock add"], dst, src, off, int(U.BPF_ADD)))

    def neg(self, dst: int) -> None:
        self._add(_Slot(_MEM["neg"], dst))

    def ldx(self, size: int, dst: int, src: int, off: int) -> None:
        self._add(_Slot(_MEM[f"ldx{SUFFIX[size]}"], dst, src, off))

    def stx(self, size: int, dst: int, off: int, src: int) -> None:
        self._add(_Slot(_MEM[f"stx{SUFFIX[size]}"], dst, src, off))

    def st(self, size: int, dst: int, off: int, imm: int) -> None:
        self._add(_Slot(_MEM[f"st{SUFFIX[size]}"], dst, 0, off, _s32(imm)))

    def jmp(self, op: str, dst: int, target: Label, src: int | None = None, imm: int = 0,
            is64: bool = True) -> None:
        if src is None and not fits_imm(imm):
            raise ValueError(f"immediate {imm} does not fit 32 bits")
        spec = _JMP[(op, src is not None, is64)]
        self._add(_Slot(spec, dst, src or 0, 0, 0 if src is not None else _s32(imm),
                        target=target))

    def ja(self, target: Label) -> None:
        self._add(_Slot(_MEM["ja"], target=target))

    def call(self, helper: U.FuncId | int) -> None:
        self._add(_Slot(_MEM["call"], imm=int(helper)))

    def exit(self) -> None:
        self._add(_Slot(_MEM["exit"]))

    # -- sign and zero extension ---------------------------------------------------------

    def extend(self, reg: int, size: int, signed: bool) -> None:
        """Make the low ``size`` bytes of ``reg`` a 64-bit value."""
        if size >= 8:
            return
        if signed:
            self.alu("lsh", reg, imm=64 - 8 * size)
            self.alu("arsh", reg, imm=64 - 8 * size)
        elif size == 4:
            self.alu("mov", reg, reg, is64=False)
        else:
            self.alu("and", reg, imm=(1 << (8 * size)) - 1)

    # -- linking -------------------------------------------------------------------------

    def position(self, label: Label) -> int:
        """The slot a placed label stands at (after the code before it)."""
        pc = 0
        for c in self.code:
            if c is label:
                return pc
            if isinstance(c, _Slot):
                pc += c.spec.slots
        raise ValueError(f"label {label} was never placed")

    def __len__(self) -> int:
        return sum(1 for c in self.code if isinstance(c, _Slot))

    def link(self, resolve: Callable[[str], tuple[int, int]]) -> tuple[list[Instruction],
                                                                      dict[int, Loc]]:
        """Instructions with jumps resolved and relocations applied: ``resolve(name)``
        gives ``(src_reg, imm64)`` for a ``lddw`` relocation.  Also returns pc -> Loc."""
        pcs: dict[int, int] = {}
        pos: dict[Label, int] = {}
        pc = 0
        for k, c in enumerate(self.code):
            if isinstance(c, Label):
                pos[c] = pc
            else:
                pcs[k] = pc
                pc += c.spec.slots
        out: list[Instruction] = []
        lines: dict[int, Loc] = {}
        for k, c in enumerate(self.code):
            if isinstance(c, Label):
                continue
            pc = pcs[k]
            off, imm, imm_hi, src = c.off, c.imm, c.imm_hi, c.src
            if c.target is not None:
                if c.target not in pos:
                    raise ValueError(f"label {c.target} was never placed")
                rel = pos[c.target] - (pc + 1)
                if c.spec.kind is Kind.LD_IMM64:
                    imm = rel              # BPF_PSEUDO_FUNC: the callee, relative
                else:
                    off = rel
                    if not -(1 << 15) <= off < (1 << 15):
                        raise ValueError("jump out of range: the probe is too large")
            if c.reloc is not None:
                src, value = resolve(c.reloc)
                imm, imm_hi = _s32(value), _s32(value >> 32)
            out.append(Instruction(c.spec, c.dst, src, off, imm, imm_hi, pc))
            if c.loc is not None:
                lines[pc] = c.loc
        return out, lines
