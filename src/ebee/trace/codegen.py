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

Conventions: ``r6`` holds the context for the whole program; expression values
live in ``r7``-``r9`` (callee-saved: they survive helper calls); ``r0``-``r5``
are scratch between calls.  Values that are not integers (strings, tuples,
``usym``, ``inet`` ...) are built in stack buffers at constant offsets from
``r10``.  Variables have a fixed stack slot for the probe, zeroed on entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..uapi import BPF_F_USER_STACK, FuncId as F, ProgType
from . import ast as A
from . import types as T
from .emit import R0, R1, R2, R3, R4, R6, R7, R8, R9, R10, Emitter, Label, fits_imm
from .errors import TraceError
from .layout import (EVENTS_MAP, LOST_MAP, JOIN_ARGNUM, JOIN_ARGSIZE, Event, MapSpec, Resources,
                     args_layout, round8, slot_size)
from .probes import Target
from .semantic import Analyzer, Instance, signal_number
from .structs import FieldInfo
from .types import Type

MAX_STACK = 512
EXPR_REGS = (R7, R8, R9)
# struct pt_regs on x86_64: byte offsets of the registers probes read
PT_REGS = {"di": 112, "si": 104, "dx": 96, "cx": 88, "r8": 72, "r9": 64, "ax": 80, "ip": 128,
           "sp": 152, "bp": 32, "bx": 40, "r10": 56, "r11": 48, "r12": 24, "r13": 16,
           "r14": 8, "r15": 0, "orig_ax": 120, "cs": 136, "flags": 144, "ss": 160}
ARG_REGS = ("di", "si", "dx", "cx", "r8", "r9")
REG_KINDS = ("int", "ptr", "ksym", "kstack", "probe", "timestamp", "username", "none")
CMP_OPS = {"==": ("jeq", "jeq"), "!=": ("jne", "jne"), "<": ("jlt", "jslt"),
           ">": ("jgt", "jsgt"), "<=": ("jle", "jsle"), ">=": ("jge", "jsge")}
ARITH_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "%": "mod", "&": "and", "|": "or",
             "^": "xor", "<<": "lsh", ">>": "rsh"}
NEGATE = {"jeq": "jne", "jne": "jeq", "jlt": "jge", "jge": "jlt", "jgt": "jle", "jle": "jgt",
          "jslt": "jsge", "jsge": "jslt", "jsgt": "jsle", "jsle": "jsgt"}


def is_reg(t: Type) -> bool:
    return t.kind in REG_KINDS


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


class Gen:
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
            offs, _ = T.tuple_layout([_slot_t(kt), _slot_t(vt)])
            if spec.key_parts:
                if len(spec.key_parts) == 1:
                    self.copy(kv_off + offs[0], R2, 0, slot_size(kt) if not is_reg(kt) else 8)
                else:
                    part_offs, _ = T.tuple_layout([_slot_t(p) for _, p in spec.key_parts])
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

    # -- maps ----------------------------------------------------------------------------

    def spec(self, name: str) -> MapSpec:
        return self.res.maps[name]

    def build_key(self, m: A.Map, spec: MapSpec, extra: int = 0) -> int:
        """The key of ``m`` on the stack (``extra`` bytes after it, for a hist bucket)."""
        off = self.frame.alloc(spec.key_size, m.loc)
        keys = m.keys or []
        if not keys:
            self.zero(off, spec.key_size)
            return off
        user = spec.key_size - extra
        covered = 0
        for (koff, kt), e in zip(spec.key_parts, keys):
            covered += slot_size(kt)
            if is_reg(kt):
                r = self.int_expr(e)
                self.em.stx(8, R10, off + koff, r)
                self.release(r)
            else:
                self.mem_into(e, off + koff, slot_size(kt), clean=True)
        if covered < user:
            self.zero(off + covered, user - covered)
        return off

    def lookup(self, spec: MapSpec, key_off: int) -> None:
        """r0 = bpf_map_lookup_elem(map, fp + key_off)."""
        em = self.em
        em.ld_map(R1, spec.name)
        em.mov(R2, R10)
        em.alu("add", R2, imm=key_off)
        em.call(F.map_lookup_elem)

    def update(self, spec: MapSpec, key_off: int, val_off: int, flags: int = 0) -> None:
        em = self.em
        em.ld_map(R1, spec.name)
        em.mov(R2, R10)
        em.alu("add", R2, imm=key_off)
        em.mov(R3, R10)
        em.alu("add", R3, imm=val_off)
        em.movi(R4, flags)
        em.call(F.map_update_elem)

    def assign_map(self, s: A.AssignMap) -> None:
        m = s.map
        spec = self.spec(m.name)
        value = spec.value
        e = s.expr
        em = self.em
        if s.op:
            r = self.int_expr(e)
            key = self.build_key(m, spec)
            cur = self.map_int_read(spec, key, m.loc)
            self.arith(s.op, cur, r, value.signed and e.type.signed)
            val = self.frame.alloc(8)
            em.stx(8, R10, val, cur)
            self.update(spec, key, val)
            self.release(cur)
            self.release(r)
            return
        if isinstance(e, A.Call) and e.name in T.AGGREGATES:
            self.aggregate(m, spec, e)
            return
        key = self.build_key(m, spec)
        val = self.frame.alloc(spec.value_size, s.loc)
        if is_reg(value):
            r = self.int_expr(e)
            em.stx(8, R10, val, r)
            self.release(r)
        else:
            self.mem_into(e, val, spec.value_size, clean=True)
        self.update(spec, key, val)

    def map_int_read(self, spec: MapSpec, key_off: int, loc: A.Loc, r: int | None = None) -> int:
        """A register (``r`` if given) holding the map's integer value for the key (0 if
        absent)."""
        em = self.em
        self.lookup(spec, key_off)
        if r is None:
            r = self.reg(loc)
        done = Label("lookup_done")
        em.movi(r, 0)
        em.jmp("jeq", R0, done, imm=0)
        v = spec.value
        if v is not None and v.kind == "avg":
            em.ldx(8, R1, R0, 8)
            em.jmp("jeq", R1, done, imm=0)
            em.ldx(8, r, R0, 0)
            em.alu("div", r, R1)
        else:
            em.ldx(8, r, R0, 0)
        em.place(done)
        return r

    def aggregate(self, m: A.Map, spec: MapSpec, c: A.Call) -> None:
        em = self.em
        kind = c.name
        arg = None
        if c.args:
            arg = self.int_expr(c.args[0])
        key = self.build_key(m, spec, 8 if spec.bucketed else 0)
        if spec.bucketed:
            b = R1
            if kind == "hist":
                self.log2_bucket(arg, b)
            else:
                lo, hi, step = c.type.params
                self.linear_bucket(arg, b, lo, hi, step)
            em.stx(8, R10, key + spec.key_size - 8, b)
        self.lookup(spec, key)
        new, done = Label("agg_new"), Label("agg_done")
        em.jmp("jeq", R0, new, imm=0)
        # the element exists: update this CPU's copy in place
        if kind in ("count", "hist", "lhist"):
            em.ldx(8, R1, R0, 0)
            em.alu("add", R1, imm=1)
            em.stx(8, R0, 0, R1)
        elif kind == "sum":
            em.ldx(8, R1, R0, 0)
            em.alu("add", R1, arg)
            em.stx(8, R0, 0, R1)
        elif kind in ("avg", "stats"):
            em.ldx(8, R1, R0, 0)
            em.alu("add", R1, arg)
            em.stx(8, R0, 0, R1)
            em.ldx(8, R1, R0, 8)
            em.alu("add", R1, imm=1)
            em.stx(8, R0, 8, R1)
        elif kind in ("min", "max"):
            keep = Label("minmax_keep")
            set_ = Label("minmax_set")
            em.ldx(8, R1, R0, 8)
            em.jmp("jeq", R1, set_, imm=0)
            em.ldx(8, R1, R0, 0)
            signed = spec.value.signed
            op = ("jsle" if signed else "jle") if kind == "min" else ("jsge" if signed else "jge")
            em.jmp(op, R1, keep, src=arg)
            em.place(set_)
            em.stx(8, R0, 0, arg)
            em.st(8, R0, 8, 1)
            em.place(keep)
        em.ja(done)
        em.place(new)
        val = self.frame.alloc(spec.value_size)
        if kind == "max" and spec.value.signed:
            # bpftrace 0.17 compares a new element's value with 0 before inserting it: a
            # max() that only ever sees negative values stays empty (reproduced for parity)
            em.jmp("jslt", arg, done, imm=0)
        if kind in ("count", "hist", "lhist"):
            em.st(8, R10, val, 1)
        elif kind == "sum":
            em.stx(8, R10, val, arg)
        else:
            em.stx(8, R10, val, arg)
            em.st(8, R10, val + 8, 1)
        self.update(spec, key, val)
        em.place(done)
        if arg is not None:
            self.release(arg)

    def log2_bucket(self, src: int, out: int) -> None:
        """out = bpftrace's log2 bucket of src: 0 negative, 1 zero, 2 + floor(log2(n))."""
        em = self.em
        done = Label("log2_done")
        em.movi(out, 0)
        em.jmp("jslt", src, done, imm=0)
        em.movi(out, 1)
        em.jmp("jeq", src, done, imm=0)
        em.mov(R2, src)
        em.movi(out, 2)
        for shift in (32, 16, 8, 4, 2, 1):
            skip = Label("log2_skip")
            em.mov(R3, R2)
            em.alu("rsh", R3, imm=shift)
            em.jmp("jeq", R3, skip, imm=0)
            em.mov(R2, R3)
            em.alu("add", out, imm=shift)
            em.place(skip)
        em.place(done)

    def linear_bucket(self, src: int, out: int, lo: int, hi: int, step: int) -> None:
        """out = 0 below ``lo``, the last bucket at or above ``hi``, else 1 + (v-lo)/step."""
        em = self.em
        done = Label("lhist_done")
        nbuckets = (hi - lo) // step
        em.movi(out, 0)
        em.jmp("jslt", src, done, imm=lo)
        em.movi(out, nbuckets + 1)
        em.jmp("jsge", src, done, imm=hi)
        em.mov(out, src)
        em.alu("sub", out, imm=lo)
        em.alu("div", out, imm=step)
        em.alu("add", out, imm=1)
        em.place(done)

    # -- statements that are calls -------------------------------------------------------

    def call_stmt(self, c: A.Call) -> None:
        name = c.name
        if name in ("printf", "system", "cat"):
            self.printf(c)
        elif name == "print":
            self.print_(c)
        elif name in ("clear", "zero"):
            self.emit_event(Event(name, map=c.args[0].name), [])
        elif name == "exit":
            self.emit_event(Event("exit"), [])
            self.em.ja(self.exit_label)
        elif name == "time":
            fmt = c.args[0].value if c.args else "%H:%M:%S\n"
            self.emit_event(Event("time", fmt=fmt), [])
        elif name == "delete":
            m = c.args[0]
            spec = self.spec(m.name)
            key = self.build_key(m, spec)
            em = self.em
            em.ld_map(R1, spec.name)
            em.mov(R2, R10)
            em.alu("add", R2, imm=key)
            em.call(F.map_delete_elem)
        elif name == "join":
            self.join(c)
        elif name == "signal":
            a = c.args[0]
            if isinstance(a, A.Str):
                self.em.movi(R1, signal_number(a.value))
            else:
                r = self.int_expr(a)
                self.em.mov(R1, r)
                self.release(r)
            self.em.call(F.send_signal)
        else:
            t = c.type
            if is_reg(t):
                self.release(self.int_expr(c))
            else:
                off = self.frame.alloc(slot_size(t))
                self.mem_into(c, off, slot_size(t))

    def emit_event(self, ev: Event, args: list[A.Expr]) -> None:
        """Build the event record on the stack and write it to the ring buffer."""
        layout, size = args_layout([a.type for a in args])
        ev.args, ev.size = layout, size
        eid = self.res.event(ev)
        em = self.em
        buf = self.frame.alloc(size)
        em.st(8, R10, buf, eid)
        pos = 8
        for (off, t), a in zip(layout, args):
            if off > pos:
                self.zero(buf + pos, off - pos)
            if is_reg(t):
                r = self.int_expr(a)
                em.stx(8, R10, buf + off, r)
                self.release(r)
            else:
                self.mem_into(a, buf + off, slot_size(t))
            pos = off + slot_size(t)
        if size > pos:
            self.zero(buf + pos, size - pos)
        self.output(buf, size)

    def output(self, buf: int, size: int) -> None:
        em = self.em
        em.ld_map(R1, EVENTS_MAP)
        em.mov(R2, R10)
        em.alu("add", R2, imm=buf)
        em.movi(R3, size)
        em.movi(R4, 0)
        em.call(F.ringbuf_output)
        self.count_lost()

    def count_lost(self) -> None:
        """A record the ring buffer had no room for adds one to the lost-events counter."""
        em = self.em
        ok = Label("output_ok")
        em.jmp("jeq", R0, ok, imm=0)
        self.res.needs_lost = True
        em.ld_map_value(R1, LOST_MAP)
        em.movi(R2, 1)
        em.atomic_add(R1, 0, R2)
        em.place(ok)

    def printf(self, c: A.Call) -> None:
        self.emit_event(Event(c.name, fmt=c.args[0].value), c.args[1:])

    def print_(self, c: A.Call) -> None:
        a = c.args[0]
        if isinstance(a, A.Map):
            top = self.an.const_int(c.args[1]) if len(c.args) > 1 else 0
            div = self.an.const_int(c.args[2]) if len(c.args) > 2 else 0
            self.emit_event(Event("print_map", map=a.name, top=top, div=div), [])
            return
        self.emit_event(Event("print_value"), [a])

    def join(self, c: A.Call) -> None:
        """join(argv): every string of a NULL-terminated pointer array, in one record
        reserved in the ring buffer (16 x 1024 bytes would not fit the stack)."""
        em = self.em
        delim = c.args[1].value if len(c.args) > 1 else " "
        size = 8 + JOIN_ARGNUM * JOIN_ARGSIZE
        eid = self.res.event(Event("join", fmt=delim, size=size))
        user = c.args[0].type.user or any(t.user for t in self.targets)
        r = self.int_expr(c.args[0])
        em.ld_map(R1, EVENTS_MAP)
        em.movi(R2, size)
        em.movi(R3, 0)
        em.call(F.ringbuf_reserve)
        done, out, got = Label("join_done"), Label("join_out"), Label("join_reserved")
        em.jmp("jne", R0, got, imm=0)
        em.movi(R0, 1)
        self.count_lost()
        em.ja(out)
        em.place(got)
        rec = self.reg(c.loc)
        em.mov(rec, R0)
        em.movi(R1, eid)
        em.stx(8, rec, 0, R1)
        slot = self.frame.alloc(8)
        read = F.probe_read_user if user else F.probe_read_kernel
        read_str = F.probe_read_user_str if user else F.probe_read_kernel_str
        for i in range(JOIN_ARGNUM):
            em.st(1, rec, 8 + i * JOIN_ARGSIZE, 0)
            em.mov(R1, R10)
            em.alu("add", R1, imm=slot)
            em.movi(R2, 8)
            em.mov(R3, r)
            em.alu("add", R3, imm=8 * i)
            em.call(read)
            em.ldx(8, R3, R10, slot)
            em.jmp("jeq", R3, done, imm=0)
            em.mov(R1, rec)
            em.alu("add", R1, imm=8 + i * JOIN_ARGSIZE)
            em.movi(R2, JOIN_ARGSIZE)
            em.call(read_str)
        em.place(done)
        em.mov(R1, rec)
        em.movi(R2, 0)
        em.call(F.ringbuf_submit)
        em.place(out)
        self.release(rec)
        self.release(r)

    # -- integer expressions -------------------------------------------------------------

    def int_expr(self, e: A.Expr) -> int:
        r = self.reg(e.loc)
        self.int_into(e, r)
        return r

    def int_into(self, e: A.Expr, r: int) -> None:
        em = self.em
        t = e.type
        if isinstance(e, A.Int):
            em.movi(r, e.value)
        elif isinstance(e, A.Param):
            v = self.an.const_int(e)
            em.movi(r, v or 0)
        elif isinstance(e, A.Builtin):
            self.builtin(e, r)
        elif isinstance(e, A.Var):
            off, vt = self.vars[e.name]
            em.ldx(8, r, R10, off)
        elif isinstance(e, A.Map):
            spec = self.spec(e.name)
            key = self.build_key(e, spec)
            self.map_int_read(spec, key, e.loc, r)
        elif isinstance(e, A.Binop):
            self.binop(e, r)
        elif isinstance(e, A.Unop):
            self.unop(e, r)
        elif isinstance(e, A.Ternary):
            other, end = Label("ternary_else"), Label("ternary_end")
            c = self.int_expr(e.cond)
            em.jmp("jeq", c, other, imm=0)
            self.release(c)
            self.int_into(e.left, r)
            em.ja(end)
            em.place(other)
            self.int_into(e.right, r)
            em.place(end)
        elif isinstance(e, A.Field):
            self.field_int(e, r)
        elif isinstance(e, A.Index):
            self.index_int(e, r)
        elif isinstance(e, A.TupleIndex):
            tt = e.expr.type
            off = self.frame.alloc(slot_size(tt))
            self.mem_into(e.expr, off, slot_size(tt))
            offs, _ = T.tuple_layout([_slot_t(x) for x in tt.elems])
            em.ldx(8, r, R10, off + offs[e.index])
        elif isinstance(e, A.Cast):
            self.int_into(e.expr, r)
            if t.kind == "int" and t.size < 8:
                em.extend(r, t.size, t.signed)
        elif isinstance(e, A.Call):
            self.call_int(e, r)
        else:
            raise TraceError(f"cannot compile {type(e).__name__} as an integer", e.loc)

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

    def helper(self, fid: F, r: int) -> None:
        self.em.call(fid)
        self.em.mov(r, R0)

    def builtin(self, b: A.Builtin, r: int) -> None:
        em = self.em
        n = b.name
        if n in ("pid", "tid", "uid", "gid", "username"):
            em.call(F.get_current_pid_tgid if n in ("pid", "tid") else F.get_current_uid_gid)
            if n in ("pid", "gid"):
                em.mov(r, R0)
                em.alu("rsh", r, imm=32)
            else:
                em.alu("mov", r, R0, is64=False)        # the low 32 bits, zero-extended
        elif n == "nsecs":
            self.helper(F.ktime_get_ns, r)
        elif n == "elapsed":
            em.call(F.ktime_get_ns)
            em.mov(r, R0)
            em.lddw(R1, 0, reloc="const:start_ns")
            em.alu("sub", r, R1)
        elif n == "cpu":
            self.helper(F.get_smp_processor_id, r)
        elif n == "numaid":
            self.helper(F.get_numa_node_id, r)
        elif n == "cgroup":
            self.helper(F.get_current_cgroup_id, r)
        elif n == "rand":
            self.helper(F.get_prandom_u32, r)
        elif n == "jiffies":
            self.helper(F.jiffies64, r)
        elif n == "curtask":
            self.helper(F.get_current_task, r)
        elif n == "cpid":
            em.lddw(r, 0, reloc="const:cpid")
        elif n == "probe":
            em.movi(r, self.res.probe_id(self.targets[0].name))
        elif n == "retval":
            em.ldx(8, r, R6, PT_REGS["ax"])
        elif n == "func":
            em.ldx(8, r, R6, PT_REGS["ip"])
        elif n.startswith("arg") and self.provider == "rawtracepoint":
            em.ldx(8, r, R6, 8 * int(n[3:]))
        elif n.startswith("arg"):
            em.ldx(8, r, R6, PT_REGS[ARG_REGS[int(n[3:])]])
        elif n == "kstack":
            self.stackid(b.type, r, user=False)
        elif n == "ctx":
            em.mov(r, R6)
        else:
            raise TraceError(f"the {n} builtin cannot be used as an integer", b.loc)

    def stackid(self, t: Type, r: int, *, user: bool) -> None:
        mode, limit = t.params
        name = self.res.stack_map(t.kind, mode, limit)
        em = self.em
        em.mov(R1, R6)
        em.ld_map(R2, name)
        em.movi(R3, BPF_F_USER_STACK if user else 0)
        em.call(F.get_stackid)
        em.mov(r, R0)

    def arith(self, op: str, dst: int, src: int, signed: bool) -> None:
        self.em.alu(ARITH_OPS[op], dst, src)

    def binop(self, e: A.Binop, r: int) -> None:
        em = self.em
        op = e.op
        lt, rt = e.left.type, e.right.type
        if op in ("&&", "||"):
            short, end = Label("logic_short"), Label("logic_end")
            self.int_into(e.left, r)
            em.jmp("jeq" if op == "&&" else "jne", r, short, imm=0)
            self.int_into(e.right, r)
            em.jmp("jeq" if op == "&&" else "jne", r, short, imm=0)
            em.movi(r, 1 if op == "&&" else 0)
            em.ja(end)
            em.place(short)
            em.movi(r, 0 if op == "&&" else 1)
            em.place(end)
            return
        if op in ("==", "!=") and lt.kind == "str" and rt.kind == "str":
            self.str_compare(e, r)
            return
        self.int_into(e.left, r)
        if isinstance(e.right, A.Int) and fits_imm(e.right.value) and \
                not (lt.kind == "ptr" and op in ("+", "-") and _scale(lt) > 1):
            imm = e.right.value
            if op in CMP_OPS:
                jop = CMP_OPS[op][1 if lt.signed and rt.signed else 0]
                true = Label("cmp_true")
                end = Label("cmp_end")
                em.jmp(jop, r, true, imm=imm)
                em.movi(r, 0)
                em.ja(end)
                em.place(true)
                em.movi(r, 1)
                em.place(end)
            else:
                em.alu(ARITH_OPS[op], r, imm=imm)
            return
        if len(self.free) == 0:
            spill = self.frame.alloc(8, e.loc)
            em.stx(8, R10, spill, r)
            self.int_into(e.right, r)
            em.mov(R1, r)
            em.ldx(8, r, R10, spill)
            other = R1
            own = False
        else:
            other = self.int_expr(e.right)
            own = True
        if op in CMP_OPS:
            jop = CMP_OPS[op][1 if lt.signed and rt.signed else 0]
            true, end = Label("cmp_true"), Label("cmp_end")
            em.jmp(jop, r, true, src=other)
            em.movi(r, 0)
            em.ja(end)
            em.place(true)
            em.movi(r, 1)
            em.place(end)
        else:
            if op in ("+", "-") and lt.kind == "ptr" and rt.is_int and _scale(lt) > 1:
                em.alu("mul", other, imm=_scale(lt))
            elif op == "+" and rt.kind == "ptr" and lt.is_int and _scale(rt) > 1:
                em.alu("mul", r, imm=_scale(rt))
            em.alu(ARITH_OPS[op], r, other)
        if own:
            self.release(other)

    def str_compare(self, e: A.Binop, r: int) -> None:
        """``a == b`` on strings: byte by byte up to the first NUL (bpftrace's strcmp)."""
        em = self.em
        lt, rt = e.left.type, e.right.type
        a, b = e.left, e.right
        if isinstance(a, A.Str) and not isinstance(b, A.Str):
            a, b = b, a
        differ, same, end = Label("str_ne"), Label("str_eq"), Label("str_end")
        aoff = self.frame.alloc(slot_size(a.type))
        self.mem_into(a, aoff, slot_size(a.type))
        if isinstance(b, A.Str):
            data = b.value.encode() + b"\0"
            n = min(len(data), a.type.size)
            for i in range(n):
                em.ldx(1, R1, R10, aoff + i)
                em.jmp("jne", R1, differ, imm=data[i])
            if n < len(data) and n == a.type.size:
                pass            # the buffer ended before the literal: equal so far
        else:
            boff = self.frame.alloc(slot_size(b.type))
            self.mem_into(b, boff, slot_size(b.type))
            for i in range(min(lt.size, rt.size)):
                em.ldx(1, R1, R10, aoff + i)
                em.ldx(1, R2, R10, boff + i)
                em.jmp("jne", R1, differ, src=R2)
                em.jmp("jeq", R1, same, imm=0)
        em.place(same)
        em.movi(r, 1 if e.op == "==" else 0)
        em.ja(end)
        em.place(differ)
        em.movi(r, 0 if e.op == "==" else 1)
        em.place(end)

    def unop(self, e: A.Unop, r: int) -> None:
        em = self.em
        if e.op in ("++", "--"):
            got = self.incdec(e)
            em.mov(r, got)
            self.release(got)
            return
        if e.op == "*":
            inner = e.expr.type
            self.int_into(e.expr, r)
            t = e.type
            size = t.size if t.kind == "int" else 8
            self.read_scalar(r, r, 0, size, t.signed if t.kind == "int" else False,
                             inner.user, e.loc)
            return
        self.int_into(e.expr, r)
        if e.op == "-":
            em.neg(r)
        elif e.op == "~":
            em.alu("xor", r, imm=-1)
        elif e.op == "!":
            true, end = Label("not_true"), Label("not_end")
            em.jmp("jeq", r, true, imm=0)
            em.movi(r, 0)
            em.ja(end)
            em.place(true)
            em.movi(r, 1)
            em.place(end)

    def incdec(self, e: A.Unop) -> int:
        """``x++``/``++x`` on a variable or map; returns a register with the result."""
        em = self.em
        delta = 1 if e.op == "++" else -1
        target = e.expr
        r = self.reg(e.loc)
        if isinstance(target, A.Var):
            off, _ = self.vars[target.name]
            em.ldx(8, r, R10, off)
            em.alu("add", r, imm=delta)
            em.stx(8, R10, off, r)
        else:
            spec = self.spec(target.name)
            key = self.build_key(target, spec)
            cur = self.map_int_read(spec, key, e.loc)
            em.alu("add", cur, imm=delta)
            val = self.frame.alloc(8)
            em.stx(8, R10, val, cur)
            self.update(spec, key, val)
            em.mov(r, cur)
            self.release(cur)
        if e.postfix:
            em.alu("sub", r, imm=delta)
        return r

    def read_scalar(self, dst: int, base: int, off: int, size: int, signed: bool, user: bool,
                    loc: A.Loc | None) -> None:
        """dst = *(base + off) from kernel or user memory, through a stack slot."""
        em = self.em
        slot = self.frame.alloc(8, loc)
        em.st(8, R10, slot, 0)
        em.mov(R3, base)
        if off:
            em.alu("add", R3, imm=off)
        em.mov(R1, R10)
        em.alu("add", R1, imm=slot)
        em.movi(R2, size)
        em.call(F.probe_read_user if user else F.probe_read_kernel)
        em.ldx(size if size in (1, 2, 4, 8) else 8, dst, R10, slot)
        if size < 8:
            em.extend(dst, size, signed)

    def field_int(self, e: A.Field, r: int) -> None:
        em = self.em
        fi: FieldInfo = e.info            # type: ignore[attr-defined]
        base_t = e.expr.type
        t = e.type
        if self.is_ctx(e.expr):
            if fi.data_loc:
                em.ldx(4, r, R6, fi.offset)
                em.alu("and", r, imm=0xFFFF)
                em.alu("add", r, R6)
                return
            size = t.size if t.kind == "int" else 8
            em.ldx(size, r, R6, fi.offset)
            if t.kind == "int":
                em.extend(r, size, t.signed)
            return
        # through a pointer to a BTF record
        self.int_into(e.expr, r)
        size = t.size if t.kind == "int" else 8
        self.read_scalar(r, r, fi.offset, size, t.kind == "int" and t.signed, base_t.user,
                         e.loc)
        if fi.bitfield is not None:
            bit, nbits = fi.bitfield
            if bit:
                em.alu("rsh", r, imm=bit)
            em.alu("and", r, imm=(1 << nbits) - 1)

    def is_ctx(self, e: A.Expr) -> bool:
        t = e.type
        return t is not None and t.kind == "record" and t.ctx

    def index_int(self, e: A.Index, r: int) -> None:
        em = self.em
        base = e.expr.type
        t = e.type
        size = t.size if t.kind == "int" else 8
        signed = t.kind == "int" and t.signed
        if base.kind == "array" and isinstance(e.expr, A.Field) and self.is_ctx(e.expr.expr) \
                and isinstance(e.index, A.Int):
            fi = e.expr.info            # type: ignore[attr-defined]
            if not 0 <= e.index.value < base.count:
                raise TraceError(f"the index {e.index.value} is out of bounds for array of "
                                 f"size {base.count}", e.loc)
            em.ldx(size, r, R6, fi.offset + e.index.value * base.elem.size)
            em.extend(r, size, signed)
            return
        if base.kind in ("array", "str"):
            off = self.frame.alloc(slot_size(base))
            self.mem_into(e.expr, off, slot_size(base))
            if not isinstance(e.index, A.Int):
                raise TraceError("arrays held on the stack can only be indexed by a constant",
                                 e.loc)
            esize = base.elem.size if base.kind == "array" else 1
            em.ldx(size, r, R10, off + e.index.value * esize)
            em.extend(r, size, signed)
            return
        # pointer indexing: *(p + i * size)
        self.int_into(e.expr, r)
        if isinstance(e.index, A.Int):
            self.read_scalar(r, r, e.index.value * t.size, size, signed, base.user, e.loc)
            return
        i = self.int_expr(e.index)
        em.alu("mul", i, imm=t.size)
        em.alu("add", r, i)
        self.release(i)
        self.read_scalar(r, r, 0, size, signed, base.user, e.loc)

    def call_int(self, c: A.Call, r: int) -> None:
        em = self.em
        n = c.name
        if n in ("ksym", "strftime"):
            self.int_into(c.args[-1], r)
        elif n == "kaddr":
            em.lddw(r, 0, reloc=f"ksym:{c.args[0].value}")
        elif n == "uaddr":
            em.lddw(r, 0, reloc=f"usym:{self.targets[0].target}:{c.args[0].value}")
        elif n == "sizeof":
            a = c.args[0]
            em.movi(r, a.type.size)
        elif n == "cgroupid":
            em.lddw(r, 0, reloc=f"cgroupid:{c.args[0].value}")
        elif n == "len":
            spec = self.spec(c.args[0].name)
            self.for_each(spec, self.len_callback(), False)
            em.mov(r, R0)
        elif n == "has_key":
            m = c.args[0]
            key_expr = c.args[1]
            keys = key_expr.elems if isinstance(key_expr, A.Tuple) else [key_expr]
            spec = self.spec(m.name)
            key = self.build_key(A.Map(m.name, keys, loc=m.loc), spec)
            self.lookup(spec, key)
            em.movi(r, 1)
            done = Label("has_key_done")
            em.jmp("jne", R0, done, imm=0)
            em.movi(r, 0)
            em.place(done)
        elif n == "strncmp":
            a, b, ln = c.args
            limit = self.an.const_int(ln)
            aoff = self.frame.alloc(slot_size(a.type))
            self.mem_into(a, aoff, slot_size(a.type))
            boff = self.frame.alloc(slot_size(b.type))
            self.mem_into(b, boff, slot_size(b.type))
            differ, same, end = Label("strncmp_ne"), Label("strncmp_eq"), Label("strncmp_end")
            for i in range(min(limit, a.type.size, b.type.size)):
                em.ldx(1, R1, R10, aoff + i)
                em.ldx(1, R2, R10, boff + i)
                em.jmp("jne", R1, differ, src=R2)
                em.jmp("jeq", R1, same, imm=0)
            em.place(same)
            em.movi(r, 0)
            em.ja(end)
            em.place(differ)
            em.movi(r, 1)
            em.place(end)
        else:
            raise TraceError(f"{n}() cannot be used as an integer", c.loc)

    # -- values in memory ----------------------------------------------------------------

    def zero(self, off: int, size: int) -> None:
        em = self.em
        pos = 0
        while pos < size:
            step = _step(size - pos, off + pos)
            em.st(step, R10, off + pos, 0)
            pos += step

    def copy(self, dst_off: int, src_reg: int, src_off: int, size: int) -> None:
        """Copy ``size`` bytes from (src_reg + src_off) to the stack at dst_off."""
        em = self.em
        pos = 0
        while pos < size:
            step = _step(size - pos, src_off + pos, dst_off + pos)
            em.ldx(step, R1, src_reg, src_off + pos)
            em.stx(step, R10, dst_off + pos, R1)
            pos += step

    def mem_into(self, e: A.Expr, off: int, size: int, *, clean: bool = False) -> None:
        """Write the value of a non-integer expression to the stack at [r10+off, +size).

        ``clean`` zero-fills what the value does not cover (map keys and values must
        compare bytewise)."""
        em = self.em
        t = e.type
        if is_reg(t):
            r = self.int_expr(e)
            em.stx(8, R10, off, r)
            self.release(r)
            if size > 8:
                self.zero(off + 8, size - 8)
            return
        if isinstance(e, A.Str) or (isinstance(e, A.Param) and t.kind == "str"):
            text = e.value if isinstance(e, A.Str) else self.an.param_value(e.n)
            data = text.encode()[:size - 1] + b"\0"
            data += bytes(size - len(data))
            pos = 0
            while pos < size:
                step = min(_step(size - pos, off + pos), 4)
                em.st(step, R10, off + pos, int.from_bytes(data[pos:pos + step], "little"))
                pos += step
            return
        if isinstance(e, A.Builtin):
            if e.name == "comm":
                if size > T.COMM_LEN:
                    self.zero(off + T.COMM_LEN, size - T.COMM_LEN)
                em.mov(R1, R10)
                em.alu("add", R1, imm=off)
                em.movi(R2, min(T.COMM_LEN, size))
                em.call(F.get_current_comm)
                return
            if e.name == "ustack":
                r = self.reg(e.loc)
                self.stackid(t, r, user=True)
                em.stx(8, R10, off, r)
                self.release(r)
                self.pid_into(off + 8)
                if size > 16:
                    self.zero(off + 16, size - 16)
                return
            if e.name == "func":
                r = self.reg(e.loc)
                em.ldx(8, r, R6, PT_REGS["ip"])
                em.stx(8, R10, off, r)
                self.release(r)
                self.pid_into(off + 8)
                return
        if isinstance(e, A.Var):
            voff, vt = self.vars[e.name]
            n = min(size, slot_size(vt))
            self.copy(off, R10, voff, n)
            if size > n:
                self.zero(off + n, size - n)
            return
        if isinstance(e, A.Map):
            spec = self.spec(e.name)
            key = self.build_key(e, spec)
            self.lookup(spec, key)
            miss, end = Label("mem_miss"), Label("mem_end")
            em.jmp("jeq", R0, miss, imm=0)
            n = min(size, spec.value_size)
            self.copy(off, R0, 0, n)
            if size > n:
                self.zero(off + n, size - n)
            em.ja(end)
            em.place(miss)
            self.zero(off, size)
            em.place(end)
            return
        if isinstance(e, A.Ternary):
            other, end = Label("tern_else"), Label("tern_end")
            c = self.int_expr(e.cond)
            em.jmp("jeq", c, other, imm=0)
            self.release(c)
            self.mem_into(e.left, off, size, clean=True)
            em.ja(end)
            em.place(other)
            self.mem_into(e.right, off, size, clean=True)
            em.place(end)
            return
        if isinstance(e, A.Tuple):
            types = [_slot_t(x.type) for x in e.elems]
            offs, tsize = T.tuple_layout(types)
            pos = 0
            for o, x, xt in zip(offs, e.elems, types):
                if o > pos:
                    self.zero(off + pos, o - pos)
                self.mem_into(x, off + o, xt.size if not is_reg(x.type) else 8, clean=clean)
                pos = o + (xt.size if not is_reg(x.type) else 8)
            if size > pos:
                self.zero(off + pos, size - pos)
            return
        if isinstance(e, A.TupleIndex):
            tt = e.expr.type
            toff = self.frame.alloc(slot_size(tt))
            self.mem_into(e.expr, toff, slot_size(tt))
            offs, _ = T.tuple_layout([_slot_t(x) for x in tt.elems])
            n = min(size, slot_size(t))
            self.copy(off, R10, toff + offs[e.index], n)
            if size > n:
                self.zero(off + n, size - n)
            return
        if isinstance(e, A.Field) and self.is_ctx(e.expr):
            fi: FieldInfo = e.info          # type: ignore[attr-defined]
            n = min(size, t.size)
            self.copy(off, R6, fi.offset, n)
            if size > n:
                self.zero(off + n, size - n)
            return
        if isinstance(e, A.Field):
            # a string or array member behind a pointer: probe_read it
            fi = e.info                     # type: ignore[attr-defined]
            r = self.int_expr(e.expr)
            em.mov(R3, r)
            self.release(r)
            em.alu("add", R3, imm=fi.offset)
            n = min(size, t.size)
            if size > n:
                self.zero(off + n, size - n)
            em.mov(R1, R10)
            em.alu("add", R1, imm=off)
            em.movi(R2, n)
            em.call(F.probe_read_user if e.expr.type.user else F.probe_read_kernel)
            return
        if isinstance(e, A.Call):
            self.call_mem(e, off, size, clean)
            return
        raise TraceError(f"ebee trace cannot build a {t} value from {type(e).__name__}", e.loc)

    def pid_into(self, off: int) -> None:
        em = self.em
        em.call(F.get_current_pid_tgid)
        em.alu("rsh", R0, imm=32)
        em.stx(8, R10, off, R0)

    def call_mem(self, c: A.Call, off: int, size: int, clean: bool) -> None:
        em = self.em
        n = c.name
        t = c.type
        if n == "str":
            a = c.args[0]
            if a.type.kind == "str":
                self.mem_into(a, off, size, clean=clean)
                return
            n_read = min(t.size, size)
            if clean or size > n_read:
                self.zero(off, size)
            r = self.int_expr(a)
            em.mov(R3, r)
            self.release(r)
            em.mov(R1, R10)
            em.alu("add", R1, imm=off)
            em.movi(R2, n_read)
            user = a.type.user or (a.type.kind != "ptr" and any(x.user for x in self.targets))
            em.call(F.probe_read_user_str if user else F.probe_read_kernel_str)
            return
        if n == "buf":
            a = c.args[0]
            count = t.count
            self.zero(off, size)
            em.st(8, R10, off, count)
            if a.type.kind in ("array", "str") and not (isinstance(a, A.Call)):
                tmp = self.frame.alloc(slot_size(a.type))
                self.mem_into(a, tmp, slot_size(a.type))
                self.copy(off + 8, R10, tmp, count)
                return
            r = self.int_expr(a)
            em.mov(R3, r)
            self.release(r)
            em.mov(R1, R10)
            em.alu("add", R1, imm=off + 8)
            em.movi(R2, count)
            em.call(F.probe_read_user if a.type.user else F.probe_read_kernel)
            return
        if n == "usym":
            r = self.int_expr(c.args[0])
            em.stx(8, R10, off, r)
            self.release(r)
            self.pid_into(off + 8)
            return
        if n == "ntop":
            a = c.args[-1]
            at = a.type
            self.zero(off, size)
            if at.is_int or at.kind == "ptr":
                af = 2
                if len(c.args) == 2:
                    af = self.an.const_int(c.args[0]) or 2
                em.st(8, R10, off, af)
                r = self.int_expr(a)
                em.stx(4, R10, off + 8, r)
                self.release(r)
                return
            em.st(8, R10, off, 2 if at.size == 4 else 10)
            tmp = self.frame.alloc(slot_size(at))
            self.mem_into(a, tmp, slot_size(at))
            self.copy(off + 8, R10, tmp, at.size)
            return
        if n in ("kstack", "ustack"):
            r = self.reg(c.loc)
            self.stackid(t, r, user=n == "ustack")
            em.stx(8, R10, off, r)
            self.release(r)
            if n == "ustack":
                self.pid_into(off + 8)
            return
        raise TraceError(f"{n}() cannot be used as a value here", c.loc)


def _step(left: int, *offsets: int) -> int:
    """The widest access (8, 4, 2, 1) that fits ``left`` bytes and is aligned at every
    offset (the verifier holds stack accesses to their alignment)."""
    for step in (8, 4, 2):
        if left >= step and all(o % step == 0 for o in offsets):
            return step
    return 1


def _slot_t(t: Type) -> Type:
    """A tuple element as stored: integers (and other register values) as 8 bytes."""
    if is_reg(t):
        return T.int_t(8, t.signed)
    return t


def _scale(t: Type) -> int:
    if t.kind == "ptr" and t.elem is not None and t.elem.size:
        return t.elem.size if t.elem.kind != "record" else t.elem.size
    return 1


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
