"""Load-time rewriting of context accesses, as the kernel's convert_ctx_accesses() does.

Two steps.  First find the loads and stores whose base register holds the
context pointer: the verifier knows this for every instruction; until a
verified program supplies it (``ctx_insns``), a small forward dataflow
analysis tracks the ctx pointer through register moves, stack spills and
bpf-to-bpf calls.  Then replace each such access with its conversion and fix
every jump, call and function-pointer offset around the inserted code (the
kernel's bpf_patch_insn_data/adjust_jmp_off).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from ..isa import Instruction, Kind
from ..uapi import BPF_PSEUDO_FUNC
from ..progtypes.ctx import CtxAccessError, CtxRules, convert_access


_MEM = (Kind.LDX, Kind.STX, Kind.ST, Kind.ATOMIC, Kind.LOAD_ACQ, Kind.STORE_REL)


def _jt(i: Instruction) -> int | None:
    t = i.jump_target
    return t() if callable(t) else t


def _base(i: Instruction) -> int:
    return i.src if i.kind in (Kind.LDX, Kind.LOAD_ACQ) else i.dst


def _targets(insns: list[Instruction], by_pc: dict[int, int]) -> dict[int, list[int]]:
    """Successor indexes of every instruction (within its function)."""
    succ: dict[int, list[int]] = {}
    for k, i in enumerate(insns):
        nxt = by_pc.get(i.pc + i.slots)
        out = []
        if i.kind is Kind.EXIT:
            pass
        elif i.kind is Kind.JA:
            t = _jt(i)
            if t in by_pc:
                out.append(by_pc[t])
        elif i.kind in (Kind.JCC, Kind.JCOND):
            if nxt is not None:
                out.append(nxt)
            t = _jt(i)
            if t in by_pc:
                out.append(by_pc[t])
        elif nxt is not None:
            out.append(nxt)
        succ[k] = out
    return succ


class _State:
    """ctx-ness of registers and 8-byte stack slots: must (all paths) and may (some path)."""
    __slots__ = ("must", "may", "smust", "smay")

    def __init__(self, must=frozenset(), may=frozenset(), smust=frozenset(), smay=frozenset()):
        self.must, self.may, self.smust, self.smay = must, may, smust, smay

    def join(self, o: "_State") -> "_State":
        return _State(self.must & o.must, self.may | o.may, self.smust & o.smust, self.smay | o.smay)

    def __eq__(self, o) -> bool:
        return (self.must, self.may, self.smust, self.smay) == (o.must, o.may, o.smust, o.smay)

    def set(self, r: int, ctx: bool, maybe: bool | None = None) -> "_State":
        maybe = ctx if maybe is None else maybe
        must = self.must | {r} if ctx else self.must - {r}
        may = self.may | {r} if maybe else self.may - {r}
        return _State(must, may, self.smust, self.smay)


def find_ctx_accesses(insns: list[Instruction]) -> dict[int, bool]:
    """Index -> True for memory instructions whose base is the ctx pointer on every path.

    Raises CtxAccessError where the base is ctx on some paths only (Linux:
    "same insn cannot be used with different pointers").
    """
    by_pc = {i.pc: k for k, i in enumerate(insns)}
    succ = _targets(insns, by_pc)
    states: dict[int, _State] = {0: _State(frozenset({1}), frozenset({1}))}
    work = [0]
    while work:
        k = work.pop()
        i = insns[k]
        out = _transfer(i, states[k])
        nexts = list(succ[k])
        if i.kind is Kind.CALL_LOCAL and _jt(i) in by_pc:
            # the callee starts with the caller's ctx-ness of r1-r5
            args = _State(frozenset(r for r in states[k].must if 1 <= r <= 5),
                          frozenset(r for r in states[k].may if 1 <= r <= 5))
            t = by_pc[_jt(i)]
            prev = states.get(t)
            new = args if prev is None else prev.join(args)
            if prev is None or new != prev:
                states[t] = new
                work.append(t)
        for s in nexts:
            prev = states.get(s)
            new = out if prev is None else prev.join(out)
            if prev is None or new != prev:
                states[s] = new
                work.append(s)
    result: dict[int, bool] = {}
    for k, st in states.items():
        i = insns[k]
        if i.kind not in _MEM:
            continue
        base = _base(i)
        if base in st.may:
            if base not in st.must:
                raise CtxAccessError("same insn cannot be used with different pointers", pc=i.pc)
            if i.kind in (Kind.ATOMIC, Kind.LOAD_ACQ, Kind.STORE_REL):
                raise CtxAccessError(f"BPF_ATOMIC stores into R{base} ctx is not allowed",
                                     pc=i.pc)
            result[k] = True
    return result


def _transfer(i: Instruction, st: _State) -> _State:
    kind = i.kind
    if kind in _MEM:
        base = _base(i)
        if base == 10 and kind in (Kind.STX, Kind.ST):
            slot = i.off
            if kind is Kind.STX and i.spec.size == 8 and i.src in st.may and slot % 8 == 0:
                smust = st.smust | {slot} if i.src in st.must else st.smust - {slot}
                return _State(st.must, st.may, smust, st.smay | {slot})
            lo, hi = i.off, i.off + i.spec.size
            dead = {s for s in st.smay if s < hi and lo < s + 8}
            if dead:
                return _State(st.must, st.may, st.smust - dead, st.smay - dead)
            return st
        if kind is Kind.LDX:
            if base == 10 and i.spec.size == 8 and i.off in st.smay:
                return st.set(i.dst, i.off in st.smust, True)
            return st.set(i.dst, False)
        if kind is Kind.ATOMIC and i.spec.fetch:
            r = 0 if i.spec.op == "cmpxchg" else i.src
            return st.set(r, False)
        if kind is Kind.LOAD_ACQ:
            return st.set(i.dst, False)
        return st
    if kind is Kind.ALU and i.spec.op == "mov" and i.spec.use_reg and i.spec.is64 and i.off == 0:
        return st.set(i.dst, i.src in st.must, i.src in st.may)
    if kind in (Kind.ALU, Kind.NEG, Kind.MOVSX, Kind.END, Kind.ADDR_SPACE_CAST, Kind.LD_IMM64):
        return st.set(i.dst, False)
    if kind in (Kind.CALL, Kind.CALL_LOCAL, Kind.CALL_KFUNC, Kind.CALLX, Kind.LD_ABS, Kind.LD_IND):
        gone = {0, 1, 2, 3, 4, 5}
        return _State(st.must - gone, st.may - gone, st.smust, st.smay)
    return st


def rewrite(insns: list[Instruction], rules: CtxRules,
            ctx_insns: Iterable[int] | None = None) -> list[Instruction]:
    """See :func:`rewrite_map`; the rewritten program only."""
    return rewrite_map(insns, rules, ctx_insns)[0]


def rewrite_map(insns: list[Instruction], rules: CtxRules,
                ctx_insns: Iterable[int] | None = None
                ) -> tuple[list[Instruction], dict[int, int]]:
    """The program with every context access converted for the runtime's layouts.

    ``ctx_insns``: indexes of the ctx accesses, if the caller (the verifier)
    knows them; otherwise they are found by :func:`find_ctx_accesses`.
    Raises CtxAccessError for an access Linux rejects
    ("invalid bpf_context access off=%d size=%d").
    """
    which = set(ctx_insns) if ctx_insns is not None else set(find_ctx_accesses(insns))
    if not which:
        return list(insns), {i.pc: i.pc for i in insns}
    pieces: list[list[Instruction]] = []
    for k, i in enumerate(insns):
        if k not in which:
            pieces.append([i])
            continue
        write = i.kind in (Kind.STX, Kind.ST)
        acc = rules.access(i.off, i.spec.size, write)
        if acc is None:
            raise CtxAccessError(f"invalid bpf_context access off={i.off} size={i.spec.size}",
                                 pc=i.pc)
        pieces.append(convert_access(i, acc, i.pc))
    return _relink(insns, pieces)


def relink(insns: list[Instruction], pieces: list[list[Instruction]]
           ) -> tuple[list[Instruction], dict[int, int]]:
    """Replace each instruction by its piece (``[i]`` keeps it), fixing the pc-relative
    offsets that cross them; returns the program and old pc -> new pc."""
    return _relink(insns, pieces)


def _relink(insns: list[Instruction], pieces: list[list[Instruction]]
            ) -> tuple[list[Instruction], dict[int, int]]:
    """Lay out the pieces and fix pc-relative offsets that cross them."""
    new_pc: dict[int, int] = {}
    pc = 0
    for i, piece in zip(insns, pieces):
        new_pc[i.pc] = pc
        pc += sum(x.slots for x in piece)
    end = pc
    old_end = insns[-1].pc + insns[-1].slots if insns else 0
    new_pc[old_end] = end
    out: list[Instruction] = []
    for i, piece in zip(insns, pieces):
        if len(piece) == 1 and piece[0] is i:
            here = new_pc[i.pc]
            out.append(_retarget(i, here, new_pc))
        else:
            here = new_pc[i.pc]
            for x in piece:
                out.append(replace(x, pc=here))
                here += x.slots
    return out, new_pc


def _retarget(i: Instruction, here: int, new_pc: dict[int, int]) -> Instruction:
    k = i.kind
    if k in (Kind.JA, Kind.JCC, Kind.JCOND):
        t = _jt(i)
        if t in new_pc:
            delta = new_pc[t] - (here + 1)
            if k is Kind.JA and i.spec.is64 is False:     # gotol: offset in imm
                return replace(i, imm=delta, pc=here)
            return replace(i, off=delta, pc=here)
    elif k is Kind.CALL_LOCAL:
        t = i.pc + 1 + i.imm
        if t in new_pc:
            return replace(i, imm=new_pc[t] - (here + 1), pc=here)
    elif k is Kind.LD_IMM64 and i.src == BPF_PSEUDO_FUNC:
        t = i.pc + 1 + i.imm
        if t in new_pc:
            return replace(i, imm=new_pc[t] - (here + 1), pc=here)
    return replace(i, pc=here)
