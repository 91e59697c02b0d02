"""Maps: keys built on the stack, lookups with their null check, updates, and the
aggregations (in-place per-CPU updates, log2 and linear buckets).

A mixin of :class:`ebee.trace.codegen.Gen`: it works on the generator's emitter, stack
frame and registers (``self.em``, ``self.frame``, ``self.reg()``).
"""
from __future__ import annotations

from ..uapi import FuncId as F
from . import ast as A
from . import types as T
from .emit import R0, R1, R2, R3, R4, R10, Label
from .gen_common import is_reg
from .layout import MapSpec, slot_size


class MapCode:
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
