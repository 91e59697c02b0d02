"""Asynchronous actions: ``printf``, ``print``, ``exit``, ``clear``, ``time``, ``join`` ...
written as ring-buffer records (a u64 id per call site, then the arguments).

A mixin of :class:`ebee.trace.codegen.Gen`: it works on the generator's emitter, stack
frame and registers (``self.em``, ``self.frame``, ``self.reg()``).
"""
from __future__ import annotations

from ..uapi import FuncId as F
from . import ast as A
from .emit import R0, R1, R2, R3, R4, R10, Label
from .gen_common import is_reg
from .layout import EVENTS_MAP, JOIN_ARGNUM, JOIN_ARGSIZE, LOST_MAP, Event, args_layout, slot_size
from .functions import signal_number


class EventCode:
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
