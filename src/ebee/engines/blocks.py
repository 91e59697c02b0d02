"""The control-flow structure both engines compile: functions and basic blocks.

Sharing one analysis is what makes the engines count instructions identically:
a block adds its length to the budget counter on entry, and targets of backward
jumps check the budget, in the interpreter's Python and the JIT's IR alike.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import uapi as U
from ..isa import Instruction, Kind


@dataclass(frozen=True)
class Function:
    entry: int                # pc of its first instruction
    end: int                  # exclusive slot index


class Cfg:
    """Functions (entry 0 first, then every bpf-to-bpf call and function-pointer target)
    and the basic blocks of each."""

    def __init__(self, insns: list[Instruction]):
        self.insns = insns
        self.by_pc = {i.pc: i for i in insns}
        last = insns[-1]
        self.nslots = last.pc + last.slots
        self.entry_set: set[int] = set()

    def valid_target(self, t: int | None) -> bool:
        return t is not None and t in self.by_pc

    def functions(self) -> list[Function]:
        entries = {0}
        for i in self.insns:
            if i.kind is Kind.CALL_LOCAL or (i.kind is Kind.LD_IMM64 and i.src == U.BPF_PSEUDO_FUNC):
                t = i.jump_target()
                if self.valid_target(t):
                    entries.add(t)
        es = sorted(entries)
        self.entry_set = set(es)
        return [Function(e, es[k + 1] if k + 1 < len(es) else self.nslots) for k, e in enumerate(es)]

    def blocks(self, fn: Function) -> tuple[list[list[Instruction]], set[int]]:
        """The function's basic blocks in pc order, and the pcs that backward jumps target
        (where the budget is checked; the entry is always one)."""
        body = [i for i in self.insns if fn.entry <= i.pc < fn.end]
        leaders = {fn.entry}
        back_targets = {fn.entry}
        for i in body:
            k = i.kind
            if k in (Kind.JA, Kind.JCC, Kind.JCOND):
                t = i.jump_target()
                if self.valid_target(t) and fn.entry <= t < fn.end:
                    leaders.add(t)
                    if t <= i.pc:
                        back_targets.add(t)
                leaders.add(i.pc + 1)
            elif k is Kind.EXIT:
                leaders.add(i.pc + 1)
        blocks: list[list[Instruction]] = []
        for i in body:
            if i.pc in leaders or not blocks:
                blocks.append([])
            blocks[-1].append(i)
        return blocks, back_targets
