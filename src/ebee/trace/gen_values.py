"""Values that live in memory -- strings, tuples, ``usym``, ``inet``, buffers, stacks --
built in stack buffers at constant offsets from r10.

A mixin of :class:`ebee.trace.codegen.Gen`: it works on the generator's emitter, stack
frame and registers (``self.em``, ``self.frame``, ``self.reg()``).
"""
from __future__ import annotations

from ..uapi import FuncId as F
from . import ast as A
from . import types as T
from .emit import R0, R1, R2, R3, R6, R10, Label
from .errors import TraceError
from .gen_common import PT_REGS, access_step, is_reg, slot_type
from .layout import slot_size
from .structs import FieldInfo


class ValueCode:
    def zero(self, off: int, size: int) -> None:
        em = self.em
        pos = 0
        while pos < size:
            step = access_step(size - pos, off + pos)
            em.st(step, R10, off + pos, 0)
            pos += step

    def copy(self, dst_off: int, src_reg: int, src_off: int, size: int) -> None:
        """Copy ``size`` bytes from (src_reg + src_off) to the stack at dst_off."""
        em = self.em
        pos = 0
        while pos < size:
            step = access_step(size - pos, src_off + pos, dst_off + pos)
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
                step = min(access_step(size - pos, off + pos), 4)
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
            types = [slot_type(x.type) for x in e.elems]
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
            offs, _ = T.tuple_layout([slot_type(x) for x in tt.elems])
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
