"""Integer (and pointer) expressions, evaluated into a register: builtins, arithmetic
and comparisons, context and BTF field reads, casts, calls that give integers.

A mixin of :class:`ebee.trace.codegen.Gen`: it works on the generator's emitter, stack
frame and registers (``self.em``, ``self.frame``, ``self.reg()``).
"""
from __future__ import annotations

from ..uapi import BPF_F_USER_STACK, FuncId as F
from . import ast as A
from . import types as T
from .emit import R0, R1, R2, R3, R6, R10, Label, fits_imm
from .errors import TraceError
from .gen_common import ARG_REGS, ARITH_OPS, CMP_OPS, PT_REGS, pointee_scale, slot_type
from .layout import slot_size
from .structs import FieldInfo
from .types import Type


class ExprCode:
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
            offs, _ = T.tuple_layout([slot_type(x) for x in tt.elems])
            em.ldx(8, r, R10, off + offs[e.index])
        elif isinstance(e, A.Cast):
            self.int_into(e.expr, r)
            if t.kind == "int" and t.size < 8:
                em.extend(r, t.size, t.signed)
        elif isinstance(e, A.Call):
            self.call_int(e, r)
        else:
            raise TraceError(f"cannot compile {type(e).__name__} as an integer", e.loc)

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
                not (lt.kind == "ptr" and op in ("+", "-") and pointee_scale(lt) > 1):
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
            if op in ("+", "-") and lt.kind == "ptr" and rt.is_int and pointee_scale(lt) > 1:
                em.alu("mul", other, imm=pointee_scale(lt))
            elif op == "+" and rt.kind == "ptr" and lt.is_int and pointee_scale(rt) > 1:
                em.alu("mul", r, imm=pointee_scale(rt))
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
