"""What Linux does to the code its verifier never reached, before it rewrites context
accesses: a ``CAP_BPF`` loader's program loses it (``opt_hard_wire_dead_code_branches``,
``opt_remove_dead_code``, ``opt_remove_nops``); an unprivileged one keeps its length with
every unreached slot turned into ``goto -1`` (``sanitize_dead_code``), so that a
speculative path into it goes nowhere.

The passes work on an image that has already been rewritten (``Program.xlated``) and the
map from original pcs to it: an original instruction owns the rewritten ones from its
pc up to the next original's, and the kernel's verdict is about originals.  The result is
the same program the kernel would have built, since the kernel runs these passes first and
a removed or trapped instruction is never rewritten.  Engines keep running the unpruned
image: the code they skip is code no path reaches.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from ..isa import Instruction, Kind, lookup
from .rewrite import relink

_JA = lookup(0x05)
_MAY_GOTO = lookup(0xE5)


@dataclass
class Pruned:
    """The image after the passes: ``moved`` maps each original pc to its pc now (an
    instruction that is gone maps to the next one that stays, or to the end);
    ``removed`` holds the original pcs that left no instruction behind."""
    insns: list[Instruction]
    moved: dict[int, int]
    removed: frozenset[int] = field(default_factory=frozenset)


def _is_nop(i: Instruction) -> tuple[bool, bool]:
    """(``goto +0`` as the kernel spells it, ``may_goto +0``): all other fields zero."""
    plain = not (i.dst or i.src or i.off or i.imm)
    return (plain and i.spec is _JA, plain and i.spec is _MAY_GOTO)


def _owners(insns: list[Instruction], moved: dict[int, int]
            ) -> tuple[list[int], list[int | None]]:
    """The original pcs in order (with the end as the last), and for each rewritten
    instruction the original that owns it (None before the first: a prologue)."""
    if not moved:
        end = insns[-1].pc + insns[-1].slots if insns else 0
        moved = {i.pc: i.pc for i in insns} | {end: end}
    origs = sorted(moved)
    owner: list[int | None] = []
    k = 0
    for i in insns:
        while k < len(origs) and moved[origs[k]] <= i.pc:
            k += 1
        owner.append(origs[k - 1] if k else None)
    return origs, owner


def _compose(moved: dict[int, int], again: dict[int, int]) -> dict[int, int]:
    return {pc: again.get(p, p) for pc, p in moved.items()}


def prune_dead_code(insns: list[Instruction], moved: dict[int, int],
                    dead: Collection[int], *, privileged: bool) -> Pruned:
    """Apply the kernel's post-verification passes for ``dead`` (original slots no path
    reached) to ``insns`` (original pc -> pc there in ``moved``; empty = unchanged)."""
    dead = frozenset(dead)
    origs, owner = _owners(insns, moved)
    if not moved:
        moved = {p: p for p in origs}
    if not privileged:
        return _sanitize(insns, moved, owner, dead)
    insns = list(insns)
    drop = [o is not None and o in dead for o in owner]
    by_pc = {i.pc: k for k, i in enumerate(insns)}
    orig_at = {moved[p]: p for p in origs}
    nxt = dict(zip(origs, origs[1:]))
    # opt_hard_wire_dead_code_branches: a conditional jump one of whose ways was never
    # taken becomes `goto` the other way (a blinded jump's AX set-up goes with it)
    for p in origs[:-1]:
        if p in dead:
            continue
        last = by_pc.get(moved[nxt[p]], len(insns)) - 1
        j = insns[last] if last >= 0 else None
        if j is None or j.kind not in (Kind.JCC, Kind.JCOND) or owner[last] != p:
            continue
        target = orig_at.get(j.jump_target())
        if nxt[p] in dead:
            off = j.off
        elif target is not None and target in dead:
            off = 0
        else:
            continue
        insns[last] = Instruction(_JA, off=off, pc=j.pc)
        for k in range(by_pc[moved[p]], last):
            drop[k] = True
    # opt_remove_dead_code
    out, again = relink(insns, [[] if d else [i] for i, d in zip(insns, drop)])
    moved = _compose(moved, again)
    # opt_remove_nops: one forward scan; after a may_goto +0 it looks back one, since
    # `may_goto +1; may_goto +0` leaves a may_goto +0 behind
    k = 0
    while k < len(out):
        ja0, may0 = _is_nop(out[k])
        if not (ja0 or may0):
            k += 1
            continue
        out, again = relink(out, [[] if n == k else [i] for n, i in enumerate(out)])
        moved = _compose(moved, again)
        k -= 1 if may0 and k > 0 else 0
    removed = frozenset(p for p, q in zip(origs, origs[1:]) if moved[p] == moved[q])
    return Pruned(out, moved, removed)


def _sanitize(insns: list[Instruction], moved: dict[int, int], owner: list[int | None],
              dead: frozenset[int]) -> Pruned:
    """sanitize_dead_code: each unreached original slot becomes one ``goto -1`` (so an
    unreached rewritten load is one trap, an unreached lddw two)."""
    pieces: list[list[Instruction]] = []
    first: set[int] = set()
    for i, o in zip(insns, owner):
        if o is None or o not in dead:
            pieces.append([i])
        elif o in first:
            pieces.append([])
        else:
            first.add(o)
            slots = _slots(moved, o)
            pieces.append([Instruction(_JA, off=-1, pc=i.pc) for _ in range(slots)])
    out, again = relink(insns, pieces)
    return Pruned(out, _compose(moved, again))


def _slots(moved: dict[int, int], o: int) -> int:
    """How many slots original ``o`` had: the distance to the next original pc."""
    later = [p for p in moved if p > o]
    return (min(later) - o) if later else 1


def adjust_line_info(entries: list, pruned: Pruned, end: int) -> list[tuple[int, object]]:
    """Line info as ``bpf_adj_linfo_after_remove`` leaves it: each record at its original
    pc's new place; of the records of removed instructions, the last before a staying
    instruction that has none of its own moves onto it, the others go (``entries``:
    objects with ``.insn``, sorted; ``end``: the original program's length in slots)."""
    own: dict[int, list] = {}
    inherited: dict[int, object] = {}
    for li in entries:
        at = pruned.moved.get(li.insn, li.insn)
        if li.insn in pruned.removed:
            inherited[at] = li
        else:
            own.setdefault(at, []).append(li)
    length = pruned.moved.get(end, end)
    out = [(at, li) for at, lis in own.items() for li in lis]
    out += [(at, li) for at, li in inherited.items() if at not in own and at < length]
    return sorted(out, key=lambda x: (x[0], x[1].insn))


def adjust_func_info(entries: list, pruned: Pruned, end: int) -> list[tuple[int, object]]:
    """Func info after ``adjust_subprog_starts_after_remove``: a function whose code is
    all gone loses its record; the others start at their first staying instruction."""
    starts = sorted(fi.insn for fi in entries)
    bounds = dict(zip(starts, starts[1:] + [end]))
    mv = pruned.moved
    return [(mv.get(fi.insn, fi.insn), fi) for fi in entries
            if mv.get(fi.insn, fi.insn) != mv.get(bounds[fi.insn], bounds[fi.insn])]


__all__ = ["Pruned", "adjust_func_info", "adjust_line_info", "prune_dead_code"]
