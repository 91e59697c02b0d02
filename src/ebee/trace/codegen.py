"""Typed bpftrace probes -> eBPF instructions, with ebee's own emitter.

Why an emitter of our own rather than LLVM (llvmlite's ``bpfel`` target, as
bpftrace does): the code a probe needs is a few patterns -- build a key on the
stack, look up, update, write an event record -- that are easy to emit in the
shape both verifiers accept by construction (constant stack offsets, a null
check after every lookup, context loads straight from ``r6``); the compiler
stays pure Python with nothing to build, compiles in milliseconds, and every
instruction carries the script location it came from, so a verifier rejection
names the line.  The cost is LLVM's optimisations (the benchmark reports the
instruction counts next to bpftrace's).

The generator is :class:`Gen` and its parts: statements and loops here, maps in
:mod:`.gen_maps`, events in :mod:`.gen_events`, integer expressions in
:mod:`.gen_exprs`, values in memory in :mod:`.gen_values`.

Conventions: ``r6`` holds the context for the whole program; expression values
live in ``r7``-``r9`` (callee-saved: they survive helper calls); ``r0``-``r5``
are scratch between calls.  Values that are not integers (strings, tuples,
``usym``, ``inet`` ...) are built in stack buffers at constant offsets from
``r10``.  Variables have a fixed stack slot for the probe, zeroed on entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..uapi import FuncId as F, ProgType
from . import ast as A
from . import types as T
from .emit import R0, R1, R2, R3, R4, R6, R9, R10, Emitter, Label, fits_imm
from .errors import TraceError
from .gen_common import EXPR_REGS, CMP_OPS, MAX_STACK, NEGATE, is_reg, slot_type
from .gen_events import EventCode
from .gen_exprs import ExprCode
from .gen_maps import MapCode
from .gen_values import ValueCode
from .layout import MapSpec, Resources, round8, slot_size
from .probes import Target
from .semantic import Analyzer, Instance
from .types import Type


@dataclass
class CompiledProbe:
    """One program of the script: instructions before map relocation, and the labels
    where its callbacks (subprograms for bpf_for_each_map_elem) start."""
    instance: Instance
    emitter: Emitter
    prog_type: ProgType
    stack: int
    callbacks: list[Label] = field(default_factory=list)

    def func_starts(self) -> list[int]:
        """Slot indexes of the subprograms after the main one (for BTF func_info)."""
        return [self.emitter.position(lb) for lb in self.callbacks]

    @property
    def targets(self) -> list[Target]:
        return self.instance.targets

    @property
    def name(self) -> str:
        return self.instance.name

    @property
    def kernel_name(self) -> str:
        t = self.targets[0]
        base = {"BEGIN": "BEGIN", "END": "END"}.get(t.provider) or (t.func or t.target or
                                                                   t.provider)
        return "".join(c if c.isalnum() or c == "_" else "_" for c in base)[:15]


class Frame:
    """Stack slots below r10, allocated and released in stack order."""

    def __init__(self) -> None:
        self.top = 0
        self.max = 0

    def alloc(self, size: int, loc: A.Loc | None = None) -> int:
        self.top += round8(max(size, 1))
        if self.top > MAX_STACK:
            raise TraceError(f"the probe needs more than {MAX_STACK} bytes of BPF stack "
                             f"(strings, tuples and map keys are built there)", loc)
        self.max = max(self.max, self.top)
        return -self.top


class Gen(MapCode, EventCode, ExprCode, ValueCode):

    def __init__(self, inst: Instance, an: Analyzer, res: Resources):
        self.inst = inst
        self.an = an
        self.res = res
        self.structs = an.structs
        self.em = Emitter()
        self.frame = Frame()
        self.free: list[int] = list(reversed(EXPR_REGS))
        self.vars: dict[str, tuple[int, Type]] = {}
        self.exit_label = Label("exit")
        self.loops: list[tuple[Label, Label]] = []
        self.targets = inst.targets
        self.provider = inst.targets[0].provider
        self.prog_type = inst.targets[0].prog_type
        self.callbacks: list[tuple[Label, Emitter]] = []
        self.var_slots: list[tuple[int, int]] = []      # (offset, size) of each variable
        self.var_area = 0
        self.callback_stack = 0

    # -- registers -----------------------------------------------------------------------

    def reg(self, loc: A.Loc | None = None) -> int:
        if not self.free:
            raise TraceError("expression too complex for ebee's code generator (more than "
                             "three values live at once); split it with a variable", loc)
        return self.free.pop()

    def release(self, r: int) -> None:
        if r in EXPR_REGS and r not in self.free:
            self.free.append(r)

    # -- driver --------------------------------------------------------------------------

    def compile(self) -> CompiledProbe:
        em = self.em
        probe = self.inst.probe
        em.loc = probe.loc
        em.mov(R6, R1)
        for name, t in self.inst.variables.items():
            size = slot_size(t) if not is_reg(t) else 8
            off = self.frame.alloc(size)
            self.vars[name] = (off, t)
            self.var_slots.append((off, size))
            self.zero(off, size)
        self.var_area = self.frame.top
        if probe.pred is not None:
            em.loc = probe.pred.loc
            self.branch_false(probe.pred, self.exit_label)
        self.block(probe.body)
        em.loc = probe.loc
        em.place(self.exit_label)
        em.movi(R0, 0)
        em.exit()
        for _, cb in self.callbacks:
            em.code += cb.code
        if self.frame.max + self.callback_stack > MAX_STACK:
            raise TraceError(f"the probe and its for loop need more than {MAX_STACK} bytes of "
                             f"BPF stack together", probe.loc)
        return CompiledProbe(self.inst, em, self.prog_type, self.frame.max,
                             [lb for lb, _ in self.callbacks])

    def block(self, stmts: list[A.Stmt]) -> None:
        for s in stmts:
            mark = self.frame.top
            self.em.loc = s.loc
            self.stmt(s)
            self.frame.top = mark

    def stmt(self, s: A.Stmt) -> None:
        em = self.em
        if isinstance(s, A.ExprStmt):
            e = s.expr
            if isinstance(e, A.Call):
                self.call_stmt(e)
            elif isinstance(e, A.Unop) and e.op in ("++", "--"):
                self.release(self.incdec(e))
            else:
                t = e.type
                if is_reg(t):
                    self.release(self.int_expr(e))
                else:
                    off = self.frame.alloc(slot_size(t))
                    self.mem_into(e, off, slot_size(t))
        elif isinstance(s, A.AssignVar):
            self.assign_var(s)
        elif isinstance(s, A.AssignMap):
            self.assign_map(s)
        elif isinstance(s, A.If):
            else_l, end_l = Label("else"), Label("endif")
            self.branch_false(s.cond, else_l if s.orelse else end_l)
            self.block(s.then)
            if s.orelse:
                em.ja(end_l)
                em.place(else_l)
                self.block(s.orelse)
            em.place(end_l)
        elif isinstance(s, A.While):
            top, end = Label("while"), Label("endwhile")
            em.place(top)
            self.branch_false(s.cond, end)
            self.loops.append((top, end))
            self.block(s.body)
            self.loops.pop()
            em.ja(top)
            em.place(end)
        elif isinstance(s, A.For):
            self.for_loop(s)
        elif isinstance(s, A.Unroll):
            n = self.an.const_int(s.count)
            for _ in range(n):
                self.block(s.body)
        elif isinstance(s, A.Jump):
            if s.kind == "return":
                em.ja(self.exit_label)
            elif s.kind == "break":
                em.ja(self.loops[-1][1])
            else:
                em.ja(self.loops[-1][0])
        else:
            raise TraceError(f"ebee trace cannot compile {type(s).__name__} yet", s.loc)

    # -- for loops over maps (bpf_for_each_map_elem callbacks) ---------------------------

    def for_each(self, spec: MapSpec, cb: Label, ctx_is_fp: bool) -> None:
        em = self.em
        em.ld_map(R1, spec.name)
        em.ld_func(R2, cb)
        if ctx_is_fp:
            em.mov(R3, R10)
        else:
            em.movi(R3, 0)
        em.movi(R4, 0)
        em.call(F.for_each_map_elem)

    def for_loop(self, s: A.For) -> None:
        """The body runs in a callback with its own frame.  The probe's variables are
        copied into that frame at the same offsets on entry and back on exit, so the body
        is generated exactly as the probe's own code is; the context pointer travels in
        a stack slot of the probe's frame."""
        spec = self.spec(s.map.name)
        ctxslot = self.frame.alloc(8, s.loc)
        self.em.stx(8, R10, ctxslot, R6)
        cb = Label("for_body")
        self.for_each(spec, cb, True)
        saved = (self.em, self.frame, self.free, self.loops, self.exit_label)
        em = self.em = Emitter()
        em.loc = s.loc
        self.frame = Frame()
        self.frame.top = self.frame.max = self.var_area
        self.free = list(reversed(EXPR_REGS))
        brk, cont, out = Label("for_break"), Label("for_continue"), Label("for_out")
        self.loops = [(cont, brk)]
        self.exit_label = brk
        try:
            em.place(cb)
            fpslot = self.frame.alloc(8, s.loc)
            retslot = self.frame.alloc(8, s.loc)
            em.stx(8, R10, fpslot, R4)
            kv_off, kv_t = self.vars[s.var.name]
            self.zero(kv_off, slot_size(kv_t))
            # $kv from the key (r2) and value (r3) pointers, before anything clobbers them
            kt, vt = kv_t.elems
            offs, _ = T.tuple_layout([slot_type(kt), slot_type(vt)])
            if spec.key_parts:
                if len(spec.key_parts) == 1:
                    self.copy(kv_off + offs[0], R2, 0, slot_size(kt) if not is_reg(kt) else 8)
                else:
                    part_offs, _ = T.tuple_layout([slot_type(p) for _, p in spec.key_parts])
                    for (moff, pt), toff in zip(spec.key_parts, part_offs):
                        self.copy(kv_off + offs[0] + toff, R2, moff,
                                  slot_size(pt) if not is_reg(pt) else 8)
            self.copy(kv_off + offs[1], R3, 0, min(spec.value_size,
                                                    slot_size(vt) if not is_reg(vt) else 8))
            em.ldx(8, R9, R10, fpslot)
            for off, size in self.var_slots:
                if off != kv_off:
                    self.copy(off, R9, off, size)
            em.ldx(8, R6, R9, ctxslot)
            self.block(s.body)
            em.place(cont)
            em.st(8, R10, retslot, 0)
            if any(getattr(c, "target", None) is brk for c in em.code):
                em.ja(out)                  # (code nothing jumps to is rejected: only if used)
                em.place(brk)
                em.st(8, R10, retslot, 1)
            em.place(out)
            em.ldx(8, R9, R10, fpslot)
            for off, size in self.var_slots:
                pos = 0
                while pos < size:
                    em.ldx(8, R1, R10, off + pos)
                    em.stx(8, R9, off + pos, R1)
                    pos += 8
            em.ldx(8, R0, R10, retslot)
            em.exit()
            self.callback_stack = max(self.callback_stack, self.frame.max)
            self.callbacks.append((cb, em))
        finally:
            self.em, self.frame, self.free, self.loops, self.exit_label = saved

    def len_callback(self) -> Label:
        """A callback that only continues: bpf_for_each_map_elem then counts elements."""
        cb = Label("len_cb")
        em = Emitter()
        em.loc = self.em.loc
        em.place(cb)
        em.movi(R0, 0)
        em.exit()
        self.callbacks.append((cb, em))
        return cb

    # -- variables -----------------------------------------------------------------------

    def assign_var(self, s: A.AssignVar) -> None:
        off, t = self.vars[s.var.name]
        if s.op:
            r = self.int_expr(s.expr)
            cur = self.reg(s.loc)
            self.em.ldx(8, cur, R10, off)
            self.arith(s.op, cur, r, t.signed and s.expr.type.signed)
            self.em.stx(8, R10, off, cur)
            self.release(cur)
            self.release(r)
            return
        if is_reg(t):
            r = self.int_expr(s.expr)
            self.em.stx(8, R10, off, r)
            self.release(r)
        else:
            self.mem_into(s.expr, off, slot_size(t), clean=True)

    def branch_false(self, e: A.Expr, target: Label) -> None:
        """Jump to ``target`` when ``e`` is false (comparisons and ``&&`` branch directly
        instead of making a 0/1 value first)."""
        em = self.em
        if isinstance(e, A.Binop) and e.op == "&&":
            self.branch_false(e.left, target)
            self.branch_false(e.right, target)
            return
        if isinstance(e, A.Binop) and e.op in CMP_OPS and not (
                e.left.type.kind == "str" or e.right.type.kind == "str"):
            signed = e.left.type.signed and e.right.type.signed
            inverse = NEGATE[CMP_OPS[e.op][1 if signed else 0]]
            r = self.int_expr(e.left)
            if isinstance(e.right, A.Int) and fits_imm(e.right.value):
                em.jmp(inverse, r, target, imm=e.right.value)
            else:
                other = self.int_expr(e.right) if self.free else None
                if other is None:
                    spill = self.frame.alloc(8, e.loc)
                    em.stx(8, R10, spill, r)
                    self.int_into(e.right, r)
                    em.mov(R1, r)
                    em.ldx(8, r, R10, spill)
                    em.jmp(inverse, r, target, src=R1)
                else:
                    em.jmp(inverse, r, target, src=other)
                    self.release(other)
            self.release(r)
            return
        r = self.int_expr(e)
        em.jmp("jeq", r, target, imm=0)
        self.release(r)









def generate(an: Analyzer, instances: list[Instance], res: Resources) -> list[CompiledProbe]:
    """Code for every instance (maps in ``res`` must already be laid out)."""
    out = []
    for inst in instances:
        an.analyze_instance(inst)          # node types for this instance's attach points
        try:
            out.append(Gen(inst, an, res).compile())
        except TraceError as e:
            raise e.with_source(an.program.source, an.program.filename) from None
    return out
