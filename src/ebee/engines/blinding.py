"""Constant blinding: the kernel's defence against JIT spraying (``net.core.bpf_jit_harden``).

A program's immediates end up verbatim in the JIT's machine code, so an attacker
who may load programs can plant chosen byte sequences in executable memory.  The
kernel's ``bpf_jit_blind_constants()`` (kernel/bpf/core.c) rewrites, just before
the JIT, every instruction with a user-chosen immediate into a sequence that
builds the value in the auxiliary register BPF_REG_AX from two random halves::

    r0 += 7              ->   w11 = rnd ^ 7 ; w11 ^= rnd ; w0 += w11   (ALU32 form)
    if r1 > 9 goto L     ->   r11 = rnd ^ 9 ; r11 ^= rnd ; if r1 > r11 goto L'
    *(u32 *)(r10 -8) = 1 ->   r11 = rnd ^ 1 ; r11 ^= rnd ; *(u32 *)(r10 -8) = r11
    r1 = C ll            ->   r11 = rnd ^ hi ; r11 ^= rnd ; r11 <<= 32 ; r1 = r11 ;
                              w11 = rnd' ^ lo ; w11 ^= rnd' ; r1 |= r11

with a fresh random constant per instruction; ``r = 0`` becomes ``r ^= r``.
Which opcodes are blinded, the order of the emitted instructions and the jump
adjustments are the kernel's (``bpf_jit_blind_insn`` and ``bpf_adj_branches``).

A JIT that folds constants would undo this (``a ^ b`` is a constant expression):
ebee's keeps the first half of each pair opaque to LLVM (:func:`blinded_moves`).

Levels, as the sysctl: 0 off, 1 programs of unprivileged loaders only, 2 all.
ebee's level is :func:`jit_harden` / :func:`set_jit_harden` (initially
``EBEE_JIT_HARDEN``, default 0).

``lddw`` of a map or map value is blinded too, as the kernel does: its
``convert_pseudo_ld_imm64()`` (kernel/bpf/verifier.c) makes it a plain constant after
verification, and ``bpf_jit_blind_constants()`` (kernel/bpf/core.c) skips only
``bpf_pseudo_func()``.  :func:`blind` takes the address from ``resolve`` (the
runtime's ``ld_imm64``), so the blinded image holds the address in two random halves.
"""
from __future__ import annotations

import os
import random
import threading
import warnings
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Callable, Sequence

from .. import uapi as U
from ..isa import Instruction, Kind, lookup
from ..progtypes.emit import AX, alu32_imm, alu64_imm, alu64_reg, mov32_imm, mov64_imm

ENV_VAR = "EBEE_JIT_HARDEN"
_S16 = (-(1 << 15), (1 << 15) - 1)
_S32 = (-(1 << 31), (1 << 31) - 1)


class JitHarden(IntEnum):
    """The values of ``net.core.bpf_jit_harden``."""
    OFF = 0
    UNPRIVILEGED = 1
    ALL = 2


@dataclass
class _Setting:
    level: JitHarden
    lock: threading.Lock


def _initial() -> JitHarden:
    raw = os.environ.get(ENV_VAR, "0").strip() or "0"
    try:
        return JitHarden(int(raw))
    except ValueError:
        # a hardening switch that cannot be read fails safe: everything blinded
        warnings.warn(f"{ENV_VAR}={raw!r} is not 0, 1 or 2: blinding every program (2)",
                      RuntimeWarning, stacklevel=2)
        return JitHarden.ALL


_SETTING = _Setting(_initial(), threading.Lock())


def jit_harden() -> JitHarden:
    """ebee's current blinding level."""
    return _SETTING.level


def set_jit_harden(level: int) -> JitHarden:
    """Set ebee's blinding level (0, 1 or 2); returns the previous one.  Images already
    compiled keep the form they were compiled with, as in the kernel."""
    new = JitHarden(int(level))
    with _SETTING.lock:
        old, _SETTING.level = _SETTING.level, new
    return old


def blinding_enabled(level: int, *, privileged: bool) -> bool:
    """``bpf_jit_blinding_enabled()``: whether a program is blinded at ``level``;
    ``privileged`` is whether its loader had CAP_BPF."""
    level = JitHarden(int(level))
    if level is JitHarden.OFF:
        return False
    return not (level is JitHarden.UNPRIVILEGED and privileged)


def is_multi_function(insns: Sequence[Instruction]) -> bool:
    """Whether the kernel JITs the program function by function (jit_subprogs): its
    ``xlated`` image is then kept unblinded, only the functions' JIT copies are blinded."""
    return any(i.kind is Kind.CALL_LOCAL or (i.kind is Kind.LD_IMM64 and i.src == U.BPF_PSEUDO_FUNC)
               for i in insns)


# ------------------------------------------------------------------------------ rewriting

# the BPF_OP values bpf_jit_blind_insn() rewrites, by class (BPF_K source only)
_ALU_OPS = frozenset((U.BPF_ADD, U.BPF_SUB, U.BPF_AND, U.BPF_OR, U.BPF_XOR, U.BPF_MUL, U.BPF_MOV,
                      U.BPF_DIV, U.BPF_MOD))
_JMP_OPS = frozenset((U.BPF_JEQ, U.BPF_JNE, U.BPF_JGT, U.BPF_JLT, U.BPF_JGE, U.BPF_JLE,
                      U.BPF_JSGT, U.BPF_JSLT, U.BPF_JSGE, U.BPF_JSLE, U.BPF_JSET))
_LD_IMM_DW = U.BPF_LD | U.BPF_IMM | U.BPF_DW


def _reg_form(i: Instruction, src: int, off: int) -> Instruction:
    """The BPF_X twin of a BPF_K instruction (same class, operation and off)."""
    opcode = i.spec.opcode | U.BPF_X
    return Instruction(lookup(opcode, i.dst, src, off, 0), i.dst, src, off, 0)


def _stx_form(i: Instruction) -> Instruction:
    """BPF_STX_MEM of the same size and offset, storing AX."""
    opcode = (i.spec.opcode & ~0x07) | U.BPF_STX
    return Instruction(lookup(opcode, i.dst, AX, i.off, 0), i.dst, AX, i.off, 0)


def _u32(v: int) -> int:
    return v & 0xFFFFFFFF


def blind_insn(i: Instruction, rnd: Callable[[], int]) -> list[Instruction] | None:
    """The blinded replacement of one instruction (the last one of a jump's sequence is
    the jump), or None if it stays as it is.  ``rnd()`` draws one random u32."""
    if i.dst == AX or i.src == AX:
        return None
    code = i.spec.opcode
    cls, op, k_src = code & 0x07, code & 0xF0, not code & U.BPF_X
    if cls in (U.BPF_ALU, U.BPF_ALU64) and op == U.BPF_MOV and k_src and i.imm == 0:
        return [alu64_reg("xor", i.dst, i.dst)]
    if cls in (U.BPF_ALU, U.BPF_ALU64) and k_src and op in _ALU_OPS:
        r = rnd()
        if cls == U.BPF_ALU64:
            return [mov64_imm(AX, r ^ _u32(i.imm)), alu64_imm("xor", AX, r), _reg_form(i, AX, i.off)]
        return [mov32_imm(AX, r ^ _u32(i.imm)), alu32_imm("xor", AX, r), _reg_form(i, AX, i.off)]
    if cls in (U.BPF_JMP, U.BPF_JMP32) and k_src and op in _JMP_OPS:
        r = rnd()
        # the jump moves two slots down; its offset is fixed when the program is relinked
        if cls == U.BPF_JMP:
            return [mov64_imm(AX, r ^ _u32(i.imm)), alu64_imm("xor", AX, r), _reg_form(i, AX, i.off)]
        return [mov32_imm(AX, r ^ _u32(i.imm)), alu32_imm("xor", AX, r), _reg_form(i, AX, i.off)]
    if code == _LD_IMM_DW and i.src == 0:
        r1, r2 = rnd(), rnd()
        return [mov64_imm(AX, r1 ^ _u32(i.imm_hi)), alu64_imm("xor", AX, r1),
                alu64_imm("lsh", AX, 32), alu64_reg("mov", i.dst, AX),
                mov32_imm(AX, r2 ^ _u32(i.imm)), alu32_imm("xor", AX, r2),
                alu64_reg("or", i.dst, AX)]
    if cls == U.BPF_ST and code & 0xE0 == U.BPF_MEM:
        r = rnd()
        return [mov64_imm(AX, r ^ _u32(i.imm)), alu64_imm("xor", AX, r), _stx_form(i)]
    return None


def blinded_moves(insns: Sequence[Instruction]) -> frozenset[int]:
    """The pcs of the ``AX = a`` halves of blinded pairs (``AX = a ; AX ^= b``).  A JIT
    that folds constants must keep these opaque, or it puts ``a ^ b`` -- the constant
    blinding hid -- back into the machine code."""
    out = set()
    for i, n in zip(insns, insns[1:]):
        if (i.dst == AX and n.dst == AX and i.kind is Kind.ALU and n.kind is Kind.ALU
                and i.spec.op == "mov" and n.spec.op == "xor"
                and not i.spec.use_reg and not n.spec.use_reg and i.spec.is64 == n.spec.is64):
            out.add(i.pc)
    return frozenset(out)


def _target(i: Instruction) -> int | None:
    k = i.kind
    if k in (Kind.JA, Kind.JCC, Kind.JCOND, Kind.CALL_LOCAL):
        return i.jump_target()
    if k is Kind.LD_IMM64 and i.src == U.BPF_PSEUDO_FUNC:
        return i.jump_target()
    return None


def _retarget(i: Instruction, here: int, to: int) -> Instruction | None:
    """``i`` placed at ``here`` and pointing at ``to``; None if the offset overflows."""
    delta = to - (here + 1)
    if i.kind is Kind.JA and not i.spec.is64 or i.kind in (Kind.CALL_LOCAL, Kind.LD_IMM64):
        return replace(i, imm=delta, pc=here) if _S32[0] <= delta <= _S32[1] else None
    return replace(i, off=delta, pc=here) if _S16[0] <= delta <= _S16[1] else None


#: the ``lddw`` sources the kernel turns into plain constants before blinding them
#: (``convert_pseudo_ld_imm64()``: every one but BPF_PSEUDO_FUNC)
_RESOLVED_SOURCES = frozenset((U.BPF_PSEUDO_MAP_FD, U.BPF_PSEUDO_MAP_VALUE))


def blind(insns: Sequence[Instruction], *, rng: random.Random | None = None,
          resolve: Callable[[Instruction], int] | None = None
          ) -> tuple[list[Instruction], dict[int, int]] | None:
    """``bpf_jit_blind_constants()``: the program with its constants blinded and the map
    from old pcs to new ones; None if a jump no longer reaches (the kernel then runs the
    program unblinded in its interpreter, and so does ebee: the caller keeps ``insns``).

    ``resolve`` gives the address a map or map-value ``lddw`` stands for (what the
    runtime would load); with it those are blinded as the kernel blinds them, after
    ``convert_pseudo_ld_imm64()`` made them plain constants.  An ``lddw`` it cannot
    resolve (raises) stays as it is, for the runtime to report when the image binds."""
    draw = (rng or random.SystemRandom()).getrandbits
    pieces: list[list[Instruction]] = []
    for i in insns:
        if i.kind is Kind.LD_IMM64 and i.src == U.BPF_PSEUDO_FUNC:
            pieces.append([i])      # a subprogram's address, not a user constant
            continue
        if i.kind is Kind.LD_IMM64 and i.src in _RESOLVED_SOURCES and resolve is not None:
            try:
                v = resolve(i) & ((1 << 64) - 1)
            except Exception:       # the runtime's error, at bind time
                pieces.append([i])
                continue
            i = replace(i, src=0, imm=v & 0xFFFFFFFF, imm_hi=v >> 32)
        pieces.append(blind_insn(i, lambda: draw(32)) or [i])
    new_pc: dict[int, int] = {}
    pc = 0
    for i, piece in zip(insns, pieces):
        new_pc[i.pc] = pc
        pc += sum(x.slots for x in piece)
    if insns:
        new_pc[insns[-1].pc + insns[-1].slots] = pc
    out: list[Instruction] = []
    for i, piece in zip(insns, pieces):
        here = new_pc[i.pc]
        t = _target(i)
        if t is not None and t not in new_pc:
            return None         # a jump out of the program: not one the verifier passed
        for n, x in enumerate(piece):
            last = n == len(piece) - 1
            if last and t is not None:
                x = _retarget(x, here, new_pc[t])
                if x is None:
                    return None
            else:
                x = replace(x, pc=here)
            out.append(x)
            here += x.slots
    return out, new_pc


__all__ = ["AX", "ENV_VAR", "JitHarden", "blind", "blind_insn", "blinded_moves", "blinding_enabled",
           "is_multi_function", "jit_harden", "set_jit_harden"]
