"""Disassembly in the three textual forms users meet.

* :func:`format_kernel` -- one instruction as Linux's ``print_bpf_insn`` prints
  it (the verifier log and ``bpftool prog dump xlated``): ``r2 = *(u32 *)(r1 +4)``.
* :func:`format_xlated` -- whole programs like ``bpftool prog dump xlated``:
  ``   0: (b7) r0 = 0`` with ld_imm64 taking two slots.
* :func:`format_llvm` -- one instruction as ``llvm-objdump -d --mcpu=v4`` prints
  it: ``w1 = *(u32 *)(r10 - 0x4)``.  Where LLVM's text loses information (local
  calls, kfunc calls, pseudo ld_imm64, LD_IND with an immediate) the bpftool
  spelling is used instead so that every encoding reassembles to itself.
"""
from __future__ import annotations

from typing import Iterable

from .. import uapi as U
from ..isa import (ALU_SYM as _ALU_SYM, JMP_SYM as _JMP_SYM, SSZ as _SSZ, SZ as _SZ, CallResolver,
                   ImmResolver, Instruction, Kind, format_kernel, pseudo_imm)


def _u32(v: int) -> int:
    return v & 0xFFFFFFFF


def format_xlated(insns: Iterable[Instruction], *, opcodes: bool = False,
                  imm: ImmResolver | None = None, call: CallResolver | None = None,
                  pad: bool = True) -> list[str]:
    """Lines like ``bpftool prog dump xlated``; ``opcodes`` adds the raw bytes."""
    out = []
    for i in insns:
        pc = f"{i.pc:4d}" if pad else str(i.pc)
        out.append(f"{pc}: ({i.opcode:02x}) {format_kernel(i, imm=imm, call=call)}")
        if opcodes:
            raw = i.encode()
            out.append("       " + " ".join(f"{b:02x}" for b in raw[:8]) +
                       ("  " + " ".join(f"{b:02x}" for b in raw[8:]) if len(raw) > 8 else ""))
    return out


def _hx(v: int) -> str:
    return f"-{-v:#x}" if v < 0 else f"{v:#x}"


def _memref(reg: int, off: int) -> str:
    return f"(r{reg} {'-' if off < 0 else '+'} {abs(off):#x})"


def format_llvm(i: Instruction) -> str:
    """The instruction as ``llvm-objdump -d --mcpu=v4`` prints it."""
    k = i.kind
    sp = i.spec
    r = "r" if sp.is64 else "w"
    if k is Kind.ALU:
        src = f"{r}{i.src}" if sp.use_reg else _hx(i.imm)
        return f"{r}{i.dst} {_ALU_SYM[sp.op]} {src}"
    if k is Kind.NEG:
        return f"{r}{i.dst} = -{r}{i.dst}"
    if k is Kind.MOVSX:
        return f"{r}{i.dst} = (s{sp.size * 8}){r}{i.src}"
    if k is Kind.END:
        return f"r{i.dst} = {sp.op}{sp.size * 8} r{i.dst}"
    if k is Kind.ADDR_SPACE_CAST:
        return f"r{i.dst} = addr_space_cast(r{i.src}, {_u32(i.imm) >> 16:#x}, {i.imm & 0xFFFF:#x})"
    if k is Kind.JA:
        return f"goto {'+' if i.off >= 0 else ''}{_hx(i.off)}" if sp.is64 else \
            f"gotol {'+' if i.imm >= 0 else ''}{_hx(i.imm)}"
    if k is Kind.JCOND:
        return f"may_goto {'+' if i.off >= 0 else ''}{_hx(i.off)}"
    if k is Kind.JCC:
        src = f"{r}{i.src}" if sp.use_reg else _hx(i.imm)
        return f"if {r}{i.dst} {_JMP_SYM[sp.op]} {src} goto {'+' if i.off >= 0 else ''}{_hx(i.off)}"
    if k is Kind.CALL:
        return f"call {_hx(i.imm)}"
    if k in (Kind.CALL_LOCAL, Kind.CALL_KFUNC):
        return "call " + format_kernel(i).split(" ", 1)[1]
    if k is Kind.CALLX:
        return f"callx r{i.dst}"
    if k is Kind.EXIT:
        return "exit"
    if k is Kind.LDX:
        if sp.signed:
            return f"r{i.dst} = *({_SSZ[sp.size]} *){_memref(i.src, i.off)}"
        d = "r" if sp.size == 8 else "w"
        return f"{d}{i.dst} = *({_SZ[sp.size]} *){_memref(i.src, i.off)}"
    if k is Kind.ST:
        return f"*({_SZ[sp.size]} *){_memref(i.dst, i.off)} = {_hx(i.imm)}"
    if k is Kind.STX:
        s = "r" if sp.size == 8 else "w"
        return f"*({_SZ[sp.size]} *){_memref(i.dst, i.off)} = {s}{i.src}"
    if k is Kind.ATOMIC:
        s = "r" if sp.size == 8 else "w"
        mem = _memref(i.dst, i.off)
        bits = "64" if sp.size == 8 else "32_32"
        if sp.op == "cmpxchg":
            return f"{s}0 = cmpxchg{'' if sp.size == 8 else '32'}_{bits[-2:]}({mem[1:-1]}, {s}0, {s}{i.src})"
        if sp.op == "xchg":
            return f"{s}{i.src} = xchg{'' if sp.size == 8 else '32'}_{bits[-2:]}({mem[1:-1]}, {s}{i.src})"
        if sp.fetch:
            return f"{s}{i.src} = atomic_fetch_{sp.op}(({_SZ[sp.size]} *){mem}, {s}{i.src})"
        return f"lock *({_SZ[sp.size]} *){mem} {_ALU_SYM[sp.op]} {s}{i.src}"
    if k is Kind.LOAD_ACQ:
        d = "r" if sp.size == 8 else "w"
        return f"{d}{i.dst} = load_acquire(({_SZ[sp.size]} *){_memref(i.src, i.off)})"
    if k is Kind.STORE_REL:
        s = "r" if sp.size == 8 else "w"
        return f"store_release(({_SZ[sp.size]} *){_memref(i.dst, i.off)}, {s}{i.src})"
    if k is Kind.LD_IMM64:
        if i.src:
            return f"r{i.dst} = {pseudo_imm(i)}"
        v = i.imm64
        return f"r{i.dst} = {_hx(v - (1 << 64) if v >> 63 else v)} ll"
    if k is Kind.LD_ABS:
        return f"r0 = *({_SZ[sp.size]} *)skb[{_hx(i.imm)}]"
    if k is Kind.LD_IND:
        extra = f" {'-' if i.imm < 0 else '+'} {abs(i.imm):#x}" if i.imm else ""
        return f"r0 = *({_SZ[sp.size]} *)skb[r{i.src}{extra}]"
    raise AssertionError(k)  # pragma: no cover


def format_objdump(insns: Iterable[Instruction]) -> list[str]:
    """Lines like ``llvm-objdump -d``: slot, raw bytes, instruction."""
    out = []
    for i in insns:
        raw = " ".join(f"{b:02x}" for b in i.encode())
        out.append(f"{i.pc:8d}:\t{raw}\t{format_llvm(i)}")
    return out


def format_conformance(i: Instruction, labels: dict[int, str] | None = None) -> str:
    """The instruction in the conformance suite's dialect (``mov %r0, 1``)."""
    k = i.kind
    sp = i.spec

    def target(t: int | None, rel: int) -> str:
        if labels and t in labels:
            return labels[t]
        return f"{rel:+d}"

    if k in (Kind.ALU,):
        src = f"%r{i.src}" if sp.use_reg else f"{i.imm:#x}" if i.imm >= 0 else f"-{-i.imm:#x}"
        return f"{sp.name} %r{i.dst}, {src}"
    if k in (Kind.NEG, Kind.END):
        return f"{sp.name} %r{i.dst}"
    if k is Kind.MOVSX:
        return f"{sp.name} %r{i.dst}, %r{i.src}"
    if k is Kind.ADDR_SPACE_CAST:
        return f"addr_space_cast %r{i.dst}, %r{i.src}, {_u32(i.imm):#x}"
    if k is Kind.JA:
        rel = i.off if sp.is64 else i.imm
        return f"{sp.name} {target(i.jump_target(), rel)}"
    if k is Kind.JCOND:
        return f"may_goto {target(i.jump_target(), i.off)}"
    if k is Kind.JCC:
        src = f"%r{i.src}" if sp.use_reg else (f"{_u32(i.imm):#x}")
        return f"{sp.name} %r{i.dst}, {src}, {target(i.jump_target(), i.off)}"
    if k is Kind.CALL:
        return f"call {i.imm}"
    if k is Kind.CALL_LOCAL:
        return f"call local {target(i.jump_target(), i.imm)}"
    if k is Kind.CALL_KFUNC:
        return f"call runtime {i.imm}" + (f", {i.off}" if i.off else "")
    if k is Kind.CALLX:
        return f"call %r{i.dst}"
    if k is Kind.EXIT:
        return "exit"
    mem = lambda reg, off: f"[%r{reg}{off:+d}]"  # noqa: E731
    if k in (Kind.LDX, Kind.LOAD_ACQ):
        return f"{sp.name} %r{i.dst}, {mem(i.src, i.off)}"
    if k is Kind.ST:
        return f"{sp.name} {mem(i.dst, i.off)}, {i.imm:#x}" if i.imm >= 0 else \
            f"{sp.name} {mem(i.dst, i.off)}, -{-i.imm:#x}"
    if k in (Kind.STX, Kind.STORE_REL, Kind.ATOMIC):
        return f"{sp.name} {mem(i.dst, i.off)}, %r{i.src}"
    if k is Kind.LD_IMM64:
        if i.src == 0:
            return f"lddw %r{i.dst}, {i.imm64:#x}"
        if i.src == U.BPF_PSEUDO_FUNC:
            return f"lddw %r{i.dst}, func {target(i.jump_target(), i.imm)}"
        return f"lddw %r{i.dst}, {pseudo_imm(i)}"
    if k is Kind.LD_ABS:
        return f"{sp.name} {i.imm:#x}" if i.imm >= 0 else f"{sp.name} -{-i.imm:#x}"
    if k is Kind.LD_IND:
        return f"{sp.name} %r{i.src}, {i.imm:#x}" if i.imm >= 0 else f"{sp.name} %r{i.src}, -{-i.imm:#x}"
    raise AssertionError(k)  # pragma: no cover
