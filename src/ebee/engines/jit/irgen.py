"""Translate an eBPF program into an LLVM IR module (pure Python, llvmlite.ir).

This layer knows nothing about target machines or execution engines: it
turns an instruction list into an ``ir.Module`` plus a :class:`Layout` that
tells the runtime how to fill the program table.  Binding and native code
generation live in :mod:`ebee.jit.codegen`.

The translation mirrors the interpreter (``vm/codegen.py``) block for block
-- it reuses the interpreter's function and basic-block analysis, so the
instruction counts both engines report are identical -- but every eBPF
register is an ``alloca`` that LLVM's SROA/mem2reg turns into SSA values,
and memory accesses are native loads and stores of real addresses.

Two modes:

* **checked** (any program): every access that is not a constant offset
  from r10 is checked against the machine's live regions through a
  one-entry cache per direction, backed by a native binary search over a
  region table the runtime keeps current; the instruction budget is
  enforced at the targets of backward jumps.  This is what makes running an
  unverified program natively safe.
* **unchecked** (verified programs only): loads and stores are plain, as in
  Linux's JIT.  Division by zero, shift masking and the other RFC 9669
  definitions are still honoured -- they are semantics, not checks.

With ``count`` (coverage, :mod:`ebee.engines.probes`) every instruction adds one to
its word of a hits array and every conditional jump that jumps to its word of a
taken array, as the interpreter's counted translation does.  The arrays' addresses
are program-table slots (``cov_hits``, ``cov_taken``) filled at bind time, so the
code (and its disk-cached object) holds no address; without ``count`` nothing of
this is emitted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from llvmlite import ir

from ... import uapi as U
from ...isa import Instruction, Kind
from ..blinding import blinded_moves
from ..blocks import Cfg
from . import abi

i1 = ir.IntType(1)
i8 = ir.IntType(8)
i16 = ir.IntType(16)
i32 = ir.IntType(32)
i64 = ir.IntType(64)
PTR = ir.PointerType()
RET = ir.LiteralStructType([i64, i64])
FNTY = ir.FunctionType(RET, [PTR, PTR, i64, i64, i64, i64, i64, i64, i64])
CBTY = ir.FunctionType(i64, [i64] * 7)
FINDTY = ir.FunctionType(RET, [PTR, i64, i64, i64])

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
STACK = U.MAX_BPF_STACK
TAIL_CALL = int(U.FuncId.tail_call)
INT = {1: i8, 2: i16, 4: i32, 8: i64}
_ICMP = {"jeq": "==", "jne": "!=", "jgt": ">", "jge": ">=", "jlt": "<", "jle": "<=",
         "jsgt": ">", "jsge": ">=", "jslt": "<", "jsle": "<="}


def c64(v: int) -> ir.Constant:
    return ir.Constant(i64, v & M64)


@dataclass
class Layout:
    """What the runtime must put in the program table, and the static fault texts."""
    slots: list[tuple[str, int]] = field(default_factory=list)   # PT[1:]: (kind, key)
    messages: list[str] = field(default_factory=list)
    entries: list[int] = field(default_factory=list)
    natives: set[int] = field(default_factory=set)   # helper ids implemented in IR

    def slot(self, kind: str, key: int = 0) -> int:
        k = (kind, key)
        if k not in self.slots:
            self.slots.append(k)
        return self.slots.index(k) + 1 + abi.PT_CODE_ADDR

    def message(self, text: str) -> int:
        if text not in self.messages:
            self.messages.append(text)
        return self.messages.index(text)

    @property
    def size(self) -> int:
        return len(self.slots) + 1


# Native implementations of helpers, registered by ebee.jit.natives:
# emitter(gen, insn) -> i64 r0, emitted inline at the call site.
NATIVE_HELPERS: dict[int, Callable[["ModuleGen", Instruction], ir.Value]] = {}


def native_helper(fid: int):
    def deco(fn):
        NATIVE_HELPERS[int(fid)] = fn
        return fn
    return deco


class ModuleGen:
    """Builds the module for one program; one instance per translation."""

    def __init__(self, insns: list[Instruction], *, checked: bool, name: str = "ebee",
                 debug: bool = False, natives: bool = True, count: bool = False):
        if not insns:
            raise ValueError("empty program")
        self.insns = insns
        self.checked = checked
        self.debug = debug
        self.use_natives = natives
        self.count = count
        self.t = Cfg(insns)                 # the CFG both engines compile (engines.blocks)
        self.opaque_pcs = blinded_moves(insns)
        self.module = ir.Module(name=name)
        self.layout = Layout()
        self.ts_off = {f[0]: abi.offset(f[0]) for f in abi.ThreadState._fields_}
        self._find: ir.Function | None = None
        self._intrinsics: dict[str, ir.Function] = {}

    # -- module ------------------------------------------------------------------

    def build(self) -> tuple[ir.Module, Layout]:
        funcs = self.t.functions()
        self.layout.entries = [f.entry for f in funcs]
        self.funcs: dict[int, ir.Function] = {}
        for f in funcs:
            name = abi.MAIN_SYMBOL if f.entry == 0 else f"ebee_f{f.entry}"
            fn = ir.Function(self.module, FNTY, name)
            if f.entry != 0:
                fn.linkage = "internal"
            self.funcs[f.entry] = fn
        if self.debug:
            self._debug_setup()
        for f in funcs:
            self.function(f)
        self._entry_points()
        for fn in self.module.functions:
            if fn.blocks:       # native code never unwinds: no unwind tables
                fn.attributes.add("nounwind")
        return self.module, self.layout

    def _entry_points(self) -> None:
        main = self.funcs[0]
        # ebee_callfn(ts, pt, entry_pc, r1..r5, fp) -> r0: any function of the program,
        # for helpers that call back into it (bpf_loop, for_each_map_elem, timers)
        cf = ir.Function(self.module, ir.FunctionType(i64, [PTR, PTR, i64] + [i64] * 5 + [i64]),
                         abi.CALLFN_SYMBOL)
        entry = cf.append_basic_block("entry")
        none = cf.append_basic_block("none")
        b = ir.IRBuilder(entry)
        sw = b.switch(cf.args[2], none)
        for pc, fn in self.funcs.items():
            case = cf.append_basic_block(f"f{pc}")
            sw.add_case(c64(pc), case)
            b.position_at_end(case)
            res = b.call(fn, [cf.args[0], cf.args[1], *cf.args[3:8], cf.args[8], c64(0)])
            b.ret(b.extract_value(res, 0))
        b.position_at_end(none)
        b.ret(c64(0))
        # ebee_run(ts, pt, r1..r5) -> r0 ; ts->n = instructions
        run = ir.Function(self.module, ir.FunctionType(i64, [PTR, PTR] + [i64] * 5), abi.RUN_SYMBOL)
        b = ir.IRBuilder(run.append_basic_block("entry"))
        ts, pt = run.args[0], run.args[1]
        fp = b.add(self.ts_load(b, "stack_lo"), c64(STACK))
        res = b.call(main, [ts, pt, *run.args[2:7], fp, c64(0)])
        self.ts_store(b, "n", b.extract_value(res, 1))
        b.ret(b.extract_value(res, 0))
        # ebee_batch(ts, pt, r1..r5, repeat) -> r0 of the last run
        bt = ir.Function(self.module, ir.FunctionType(i64, [PTR, PTR] + [i64] * 6), abi.BATCH_SYMBOL)
        entry = bt.append_basic_block("entry")
        loop = bt.append_basic_block("loop")
        done = bt.append_basic_block("done")
        b = ir.IRBuilder(entry)
        ts, pt = bt.args[0], bt.args[1]
        fp = b.add(self.ts_load(b, "stack_lo"), c64(STACK))
        b.branch(loop)
        b.position_at_end(loop)
        k = b.phi(i64)
        k.add_incoming(c64(0), entry)
        self.ts_store(b, "tail_calls", c64(0))
        res = b.call(main, [ts, pt, *bt.args[2:7], fp, c64(0)])
        k1 = b.add(k, c64(1))
        k.add_incoming(k1, loop)
        st = self.ts_load(b, "status")
        more = b.and_(b.icmp_unsigned("==", st, c64(0)), b.icmp_unsigned("<", k1, bt.args[7]))
        b.cbranch(more, loop, done)
        b.position_at_end(done)
        self.ts_store(b, "n", b.extract_value(res, 1))
        b.ret(b.extract_value(res, 0))

    # -- thread state access -----------------------------------------------------

    def ts_ptr(self, b: ir.IRBuilder, name: str, ts=None) -> ir.Value:
        ts = self.ts if ts is None else ts
        return b.gep(ts, [c64(self.ts_off[name])], source_etype=i8)

    def ts_load(self, b: ir.IRBuilder, name: str, ts=None) -> ir.Value:
        if ts is None:
            ts = b.function.args[0]
        return b.load(self.ts_ptr(b, name, ts), typ=i64)

    def ts_store(self, b: ir.IRBuilder, name: str, v, ts=None) -> None:
        if ts is None:
            ts = b.function.args[0]
        b.store(v, self.ts_ptr(b, name, ts))

    def pt_load(self, b: ir.IRBuilder, slot: int) -> ir.Value:
        pt = b.function.args[1]
        return b.load(b.gep(pt, [c64(slot * 8)], source_etype=i8), typ=i64)

    def intrinsic(self, name: str, ty: ir.FunctionType) -> ir.Function:
        fn = self._intrinsics.get(name)
        if fn is None:
            fn = self._intrinsics[name] = ir.Function(self.module, ty, name)
        return fn

    # -- one eBPF function -----------------------------------------------------------

    def function(self, f) -> None:
        fn = self.funcs[f.entry]
        self.fn = fn
        self.ts = fn.args[0]
        blocks, back = self.t.blocks(f)
        self.fend = f.end
        self.fentry = f.entry
        entry = fn.append_basic_block("entry")
        b = self.b = ir.IRBuilder(entry)
        # r11 is the kernel's auxiliary register (BPF_REG_AX): program types' context
        # rewrites use it as scratch, so rewritten programs reference it
        self.regs = [b.alloca(i64, name=f"r{k}") for k in range(12)]
        self.n = b.alloca(i64, name="n")
        self.mg = b.alloca(i64, name="mg")
        if self.checked:
            self.cache = {w: (b.alloca(i64, name=f"{w}lo"), b.alloca(i64, name=f"{w}sz")) for w in "rw"}
        for k in (0, 6, 7, 8, 9, 11):
            b.store(c64(0), self.regs[k])
        for k in range(1, 6):
            b.store(fn.args[1 + k], self.regs[k])
        b.store(fn.args[7], self.regs[10])
        b.store(fn.args[8], self.n)
        b.store(c64(U.BPF_MAX_LOOPS), self.mg)
        self.reset_caches()
        self.bb = {blk[0].pc: fn.append_basic_block(f"pc{blk[0].pc}") for blk in blocks}
        self.bail_bb = fn.append_basic_block("bail")
        b.branch(self.bb[f.entry])
        for blk in blocks:
            self.block(blk, back)
        b.position_at_end(self.bail_bb)
        self.ret(c64(0))
        for bb in fn.blocks:      # code after a static fault is unreachable
            if not bb.is_terminated:
                b.position_at_end(bb)
                b.unreachable()

    def entry_alloca(self, ty, name: str = "") -> ir.Value:
        """Stack space in the function's entry block (so LLVM can promote or reuse it)."""
        b = ir.IRBuilder(self.fn.entry_basic_block)
        b.position_at_start(self.fn.entry_basic_block)
        return b.alloca(ty, name=name)

    def ret(self, r0) -> None:
        b = self.b
        v = b.insert_value(ir.Constant(RET, ir.Undefined), r0, 0)
        v = b.insert_value(v, b.load(self.n), 1)
        b.ret(v)

    def block(self, blk: list[Instruction], back: set[int]) -> None:
        b = self.b
        start = blk[0].pc
        b.position_at_end(self.bb[start])
        self.loc(start)
        n = b.add(b.load(self.n), c64(len(blk)))
        b.store(n, self.n)
        if self.checked and start in back:
            over = b.icmp_unsigned(">", n, self.ts_load(b, "limit"))
            with b.if_then(over, likely=False):
                self.set_fault(abi.Status.BUDGET, start, arg=n)
                b.branch(self.bail_bb)
        for i in blk:
            self.loc(i.pc)
            if self.count:
                self.bump("cov_hits", i.pc)
            getattr(self, "k_" + i.kind.name.lower())(i)
        last = blk[-1]
        if b.block.is_terminated:
            return
        if last.kind in (Kind.EXIT, Kind.JA):
            b.unreachable()
            return
        nxt = last.pc + last.slots
        if nxt >= self.fend:
            where = "the end of the program" if nxt >= self.t.nslots else f"into the function at pc {nxt}"
            self.static_fault(last.pc, f"fell off {where}")
        else:
            b.branch(self.bb[nxt])

    def bump(self, array: str, pc: int) -> None:
        """Coverage: add one to word ``pc`` of the counter array in slot ``array``
        (atomically: CPUs running on other threads share the counters)."""
        b = self.b
        base = b.inttoptr(self.pt_load(b, self.layout.slot(array)), PTR)
        b.atomic_rmw("add", b.gep(base, [c64(pc * 8)], source_etype=i8), c64(1), "monotonic")

    # -- faults -------------------------------------------------------------------

    def set_fault(self, status: abi.Status, pc: int, *, arg=None, addr=None, size=0, write=0) -> None:
        b = self.b
        self.ts_store(b, "status", c64(status))
        self.ts_store(b, "fault_pc", c64(pc))
        self.ts_store(b, "fault_pt", b.ptrtoint(self.fn.args[1], i64))
        if arg is not None:
            self.ts_store(b, "fault_arg", arg if isinstance(arg, ir.Value) else c64(arg))
        if addr is not None:
            self.ts_store(b, "fault_addr", addr)
            self.ts_store(b, "fault_size", c64(size))
            self.ts_store(b, "fault_write", c64(write))

    def static_fault(self, pc: int, reason: str) -> None:
        """A fault the translation already knows will happen if this point is reached."""
        self.set_fault(abi.Status.STATIC, pc, arg=self.layout.message(reason))
        self.b.branch(self.bail_bb)
        # whatever the interpreter would emit after its fault() is unreachable
        self.b.position_at_end(self.fn.append_basic_block("dead"))

    def check_status(self) -> None:
        b = self.b
        bad = b.icmp_unsigned("!=", self.ts_load(b, "status"), c64(0))
        ok = self.fn.append_basic_block("ok")
        b.cbranch(bad, self.bail_bb, ok)
        b.position_at_end(ok)

    # -- registers ----------------------------------------------------------------

    def get(self, r: int) -> ir.Value:
        return self.b.load(self.regs[r], typ=i64)

    def set(self, r: int, v: ir.Value) -> None:
        self.b.store(v, self.regs[r])

    def lo32(self, v: ir.Value) -> ir.Value:
        return self.b.trunc(v, i32)

    def zx(self, v: ir.Value) -> ir.Value:
        return self.b.zext(v, i64) if v.type != i64 else v

    def sx(self, v: ir.Value) -> ir.Value:
        return self.b.sext(v, i64) if v.type != i64 else v

    # -- ALU -----------------------------------------------------------------------

    def k_alu(self, i: Instruction) -> None:
        b = self.b
        op = i.spec.op
        wide = i.spec.is64
        if i.dst == 10:
            self.static_fault(i.pc, "frame pointer r10 is read-only")
            return
        ty = i64 if wide else i32
        bits = 64 if wide else 32
        const = None
        if i.spec.use_reg:
            x = self.get(i.src)
            if not wide:
                x = self.lo32(x)
        else:
            const = (i.imm & M64) if wide else (i.imm & M32)
            x = ir.Constant(ty, const)
            if i.pc in self.opaque_pcs:
                # half of a blinded constant: hidden from LLVM's folding, so the machine code
                # holds the two random halves, never their xor (see engines.blinding)
                x = b.asm(ir.FunctionType(ty, [ty]), "", "=r,0", [x], side_effect=False)
        if op == "mov":
            self.set(i.dst, self.zx(x))
            return
        d = self.get(i.dst)
        if not wide:
            d = self.lo32(d)
        zero = ir.Constant(ty, 0)
        one = ir.Constant(ty, 1)
        if op in ("add", "sub", "mul", "or", "and", "xor"):
            r = getattr(b, {"and": "and_", "or": "or_"}.get(op, op))(d, x)
        elif op in ("lsh", "rsh", "arsh"):
            sh = ir.Constant(ty, const & (bits - 1)) if const is not None else \
                b.and_(x, ir.Constant(ty, bits - 1))
            r = {"lsh": b.shl, "rsh": b.lshr, "arsh": b.ashr}[op](d, sh)
        elif op in ("div", "mod"):
            if const is not None:
                if const == 0:
                    r = zero if op == "div" else d
                else:
                    r = (b.udiv if op == "div" else b.urem)(d, x)
            else:
                isz = b.icmp_unsigned("==", x, zero)
                safe = b.select(isz, one, x)
                q = (b.udiv if op == "div" else b.urem)(d, safe)
                r = b.select(isz, zero if op == "div" else d, q)
        elif op in ("sdiv", "smod"):
            minus1 = ir.Constant(ty, -1 & ((1 << bits) - 1))
            if const is not None:
                if const == 0:
                    r = zero if op == "sdiv" else d
                elif const == (1 << bits) - 1:        # -1: no overflow trap, INT_MIN wraps
                    r = b.neg(d) if op == "sdiv" else zero
                else:
                    r = (b.sdiv if op == "sdiv" else b.srem)(d, x)
            else:
                isz = b.icmp_unsigned("==", x, zero)
                ism1 = b.icmp_unsigned("==", x, minus1)
                safe = b.select(b.or_(isz, ism1), one, x)
                q = (b.sdiv if op == "sdiv" else b.srem)(d, safe)
                if op == "sdiv":
                    r = b.select(isz, zero, b.select(ism1, b.neg(d), q))
                else:
                    r = b.select(isz, d, b.select(ism1, zero, q))
        else:  # pragma: no cover - table and translator disagree
            raise AssertionError(op)
        self.set(i.dst, self.zx(r))

    def k_neg(self, i: Instruction) -> None:
        d = self.get(i.dst)
        if i.spec.is64:
            self.set(i.dst, self.b.neg(d))
        else:
            self.set(i.dst, self.zx(self.b.neg(self.lo32(d))))

    def k_movsx(self, i: Instruction) -> None:
        b = self.b
        v = b.sext(b.trunc(self.get(i.src), INT[i.spec.size]), i64 if i.spec.is64 else i32)
        self.set(i.dst, self.zx(v))

    def k_addr_space_cast(self, i: Instruction) -> None:
        self.static_fault(i.pc, "addr_space_cast needs an arena map, which ebee does not model")

    def k_end(self, i: Instruction) -> None:
        b = self.b
        size = i.spec.size
        if i.spec.op == "le":      # host and eBPF are little-endian: truncation only
            if size < 8:
                self.set(i.dst, self.zx(b.trunc(self.get(i.dst), INT[size])))
            return
        ty = INT[size]
        v = b.trunc(self.get(i.dst), ty) if size < 8 else self.get(i.dst)
        bswap = self.intrinsic(f"llvm.bswap.i{size * 8}", ir.FunctionType(ty, [ty]))
        self.set(i.dst, self.zx(b.call(bswap, [v])))

    # -- jumps ----------------------------------------------------------------------

    def target_block(self, i: Instruction) -> ir.Block | None:
        t = i.jump_target()
        if t is None or t not in self.t.by_pc:
            return None
        # jumping into another function's body is as invalid as jumping out of range
        if not (self.fentry <= t < self.fend):
            return None
        return self.bb.get(t)

    def goto(self, i: Instruction) -> None:
        tgt = self.target_block(i)
        if tgt is None:
            self.static_fault(i.pc, f"jump to invalid target {i.jump_target()}")
        else:
            self.b.branch(tgt)

    def k_ja(self, i: Instruction) -> None:
        self.goto(i)

    def k_jcond(self, i: Instruction) -> None:
        b = self.b
        mg = b.load(self.mg)
        taken = self.fn.append_basic_block("may_goto")
        cont = self.fn.append_basic_block("cont")
        b.cbranch(b.icmp_unsigned("==", mg, c64(0)), taken, cont)
        b.position_at_end(taken)
        self.goto(i)
        if not b.block.is_terminated:
            b.unreachable()
        b.position_at_end(cont)
        b.store(b.sub(mg, c64(1)), self.mg)

    def k_jcc(self, i: Instruction) -> None:
        b = self.b
        op = i.spec.op
        wide = i.spec.is64
        d = self.get(i.dst)
        if i.spec.use_reg:
            x = self.get(i.src)
        else:
            x = c64(i.imm & (M64 if wide else M32))
        if not wide:
            d, x = self.lo32(d), self.lo32(x)
        if op == "jset":
            cond = b.icmp_unsigned("!=", b.and_(d, x), ir.Constant(d.type, 0))
        elif op.startswith("js"):
            cond = b.icmp_signed(_ICMP[op], d, x)
        else:
            cond = b.icmp_unsigned(_ICMP[op], d, x)
        tgt = self.target_block(i)
        cont = self.fn.append_basic_block("cont")
        if tgt is None:
            bad = self.fn.append_basic_block("badjump")
            b.cbranch(cond, bad, cont)
            b.position_at_end(bad)
            self.static_fault(i.pc, f"jump to invalid target {i.jump_target()}")
            b.unreachable()
        elif self.count:
            taken = self.fn.append_basic_block("taken")
            b.cbranch(cond, taken, cont)
            b.position_at_end(taken)
            self.bump("cov_taken", i.pc)
            b.branch(tgt)
        else:
            b.cbranch(cond, tgt, cont)
        b.position_at_end(cont)

    # -- calls -----------------------------------------------------------------------

    def reset_caches(self) -> None:
        if self.checked:
            for lo, sz in self.cache.values():
                self.b.store(c64(0), lo)
                self.b.store(c64(0), sz)

    def callback(self, slot: int, pc: int, x, args) -> ir.Value:
        """Call PT[slot] (a Python callback or native function) and bail if it failed.

        Helpers get the caller's frame pointer in ``x``: a helper that calls back
        into the program (bpf_loop, timers) runs the callback one frame below it.
        """
        b = self.b
        if x is None:
            x = self.get(10)
        fptr = b.inttoptr(self.pt_load(b, slot), CBTY.as_pointer())
        self.ts_store(b, "callbacks", b.add(self.ts_load(b, "callbacks"), c64(1)))
        r = b.call(fptr, [c64(pc), x, *args])
        self.check_status()
        return r

    def args15(self) -> list[ir.Value]:
        return [self.get(k) for k in range(1, 6)]

    def k_call(self, i: Instruction) -> None:
        b = self.b
        fid = i.imm & M32
        if i.imm == TAIL_CALL:
            self.tail_call(i)
        elif self.use_natives and fid in NATIVE_HELPERS:
            self.layout.natives.add(fid)
            self.set(0, NATIVE_HELPERS[fid](self, i))
        else:
            self.set(0, self.callback(self.layout.slot("helper", fid), i.pc, None, self.args15()))
        self.reset_caches()

    def tail_call(self, i: Instruction) -> None:
        # Linux rewrites this call into BPF_TAIL_CALL: on success the target
        # replaces this frame (same r10); on failure execution falls through
        # and r0 is left as it was.
        b = self.b
        count = self.ts_load(b, "tail_calls")
        cont = self.fn.append_basic_block("tc_miss")
        look = self.fn.append_basic_block("tc_lookup")
        b.cbranch(b.icmp_unsigned(">=", count, c64(U.MAX_TAIL_CALL_CNT)), cont, look)
        b.position_at_end(look)
        r1, r2, r3 = self.get(1), self.get(2), self.get(3)
        self.callback(self.layout.slot("tail_call"), i.pc, c64(0), [r1, r2, r3, c64(0), c64(0)])
        target = self.ts_load(b, "tc_fn")
        hit = self.fn.append_basic_block("tc_hit")
        b.cbranch(b.icmp_unsigned("==", target, c64(0)), cont, hit)
        b.position_at_end(hit)
        self.ts_store(b, "tail_calls", b.add(count, c64(1)))
        tpt = b.inttoptr(self.ts_load(b, "tc_pt"), PTR)
        fptr = b.inttoptr(target, FNTY.as_pointer())
        res = b.call(fptr, [self.ts, tpt, r1, c64(0), c64(0), c64(0), c64(0), self.get(10),
                            b.load(self.n)], tail=True)
        b.ret(res)
        b.position_at_end(cont)

    def local_call(self, pc: int, fn: ir.Function) -> None:
        b = self.b
        fp = self.get(10)
        deep = b.icmp_unsigned(">=", fp, self.ts_load(b, "stack_hi"))
        with b.if_then(deep, likely=False):
            self.set_fault(abi.Status.DEPTH, pc)
            b.branch(self.bail_bb)
        res = b.call(fn, [self.ts, self.fn.args[1], *self.args15(), b.add(fp, c64(STACK)),
                          b.load(self.n)])
        b.store(b.extract_value(res, 1), self.n)
        self.check_status()
        self.set(0, b.extract_value(res, 0))
        self.reset_caches()

    def k_call_local(self, i: Instruction) -> None:
        t = i.jump_target()
        if t not in self.funcs:
            self.static_fault(i.pc, f"call to invalid target {t}")
            return
        self.local_call(i.pc, self.funcs[t])

    def k_call_kfunc(self, i: Instruction) -> None:
        self.set(0, self.callback(self.layout.slot("kfunc"), i.pc, None, self.args15()))
        self.reset_caches()

    def k_callx(self, i: Instruction) -> None:
        b = self.b
        target = self.get(i.dst)
        rel = b.sub(target, self.pt_load(b, abi.PT_CODE_ADDR))
        done = self.fn.append_basic_block("callx_done")
        other = self.fn.append_basic_block("callx_helper")
        sw = b.switch(rel, other)
        for entry, fn in self.funcs.items():
            case = self.fn.append_basic_block(f"callx_{entry}")
            sw.add_case(c64(entry * 8), case)
            b.position_at_end(case)
            self.local_call(i.pc, fn)
            b.branch(done)
        b.position_at_end(other)
        self.set(0, self.callback(self.layout.slot("callx"), i.pc, target, self.args15()))
        self.reset_caches()
        b.branch(done)
        b.position_at_end(done)

    def k_exit(self, i: Instruction) -> None:
        self.ret(self.get(0))

    # -- memory -------------------------------------------------------------------------

    def find_fn(self) -> ir.Function:
        """``{lo, size} ebee_find(ts, addr, size, write)``: the live region holding an access.

        Binary search of the region table (sorted by start) for the last
        region starting at or below ``addr``, as ``Memory.find`` does;
        ``size`` 0 in the result means no (writable) region holds it.
        """
        if self._find is not None:
            return self._find
        fn = self._find = ir.Function(self.module, FINDTY, "ebee_find")
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        fn.attributes.add("cold")
        ts, a, size, write = fn.args
        entry, loop, body, found, chk, hit, miss = (fn.append_basic_block(n) for n in
                                                    ("entry", "loop", "body", "found", "chk", "hit", "miss"))
        b = ir.IRBuilder(entry)
        tab = b.inttoptr(self.ts_load(b, "regions", ts), PTR)
        cnt = self.ts_load(b, "nregions", ts)
        b.branch(loop)
        b.position_at_end(loop)
        lo = b.phi(i64)
        hi = b.phi(i64)
        lo.add_incoming(c64(0), entry)
        hi.add_incoming(cnt, entry)
        b.cbranch(b.icmp_unsigned("<", lo, hi), body, found)
        b.position_at_end(body)
        mid = b.lshr(b.add(lo, hi), c64(1))
        ent = b.gep(tab, [b.mul(mid, c64(24))], source_etype=i8)
        start = b.load(ent, typ=i64)
        le = b.icmp_unsigned("<=", start, a)
        lo.add_incoming(b.select(le, b.add(mid, c64(1)), lo), body)
        hi.add_incoming(b.select(le, hi, mid), body)
        b.branch(loop)
        b.position_at_end(found)
        b.cbranch(b.icmp_unsigned("==", lo, c64(0)), miss, chk)
        b.position_at_end(chk)
        ent = b.gep(tab, [b.mul(b.sub(lo, c64(1)), c64(24))], source_etype=i8)
        start = b.load(ent, typ=i64)
        end = b.load(b.gep(ent, [c64(8)], source_etype=i8), typ=i64)
        wr = b.load(b.gep(ent, [c64(16)], source_etype=i8), typ=i64)
        length = b.sub(end, start)
        off = b.sub(a, start)
        inside = b.and_(b.icmp_unsigned("<=", off, length),
                        b.icmp_unsigned("<=", size, b.sub(length, off)))
        allowed = b.or_(b.icmp_unsigned("==", write, c64(0)), b.icmp_unsigned("!=", wr, c64(0)))
        b.cbranch(b.and_(inside, allowed), hit, miss)
        b.position_at_end(hit)
        v = b.insert_value(ir.Constant(RET, ir.Undefined), start, 0)
        b.ret(b.insert_value(v, length, 1))
        b.position_at_end(miss)
        b.ret(ir.Constant(RET, [c64(0), c64(0)]))
        return fn

    def address(self, i: Instruction, base: int, size: int, write: bool) -> ir.Value | None:
        """The native pointer an access goes to, checked as the mode requires; None after a fault."""
        b = self.b
        if base == 10:
            # checked when translated, like the interpreter: r10 is read-only,
            # so a constant offset decides everything
            if -STACK <= i.off and i.off + size <= 0:
                return b.inttoptr(b.add(self.get(10), c64(i.off)), PTR)
            what = "write" if write else "read"
            self.static_fault(i.pc, f"invalid stack {what} of {size} bytes at r10{i.off:+d} "
                                    f"(the frame is {STACK} bytes below r10)")
            return None
        a = b.add(self.get(base), c64(i.off)) if i.off else self.get(base)
        if self.checked:
            lo_p, sz_p = self.cache["w" if write else "r"]
            lo, sz = b.load(lo_p), b.load(sz_p)
            off = b.sub(a, lo)
            hit = b.and_(b.icmp_unsigned("<", off, sz), b.icmp_unsigned("<=", c64(size), b.sub(sz, off)))
            with b.if_then(b.not_(hit), likely=False):
                res = b.call(self.find_fn(), [self.ts, a, c64(size), c64(int(write))])
                nlo, nsz = b.extract_value(res, 0), b.extract_value(res, 1)
                # the live stack ends at this function's r10: frames above it belong to
                # functions that returned (the interpreter's find does the same)
                live = b.sub(self.get(10), nlo)
                on_stack = b.icmp_unsigned("==", nlo, self.ts_load(b, "stack_lo"))
                nsz = b.select(b.and_(on_stack, b.icmp_unsigned("<", live, nsz)), live, nsz)
                noff = b.sub(a, nlo)
                fits = b.and_(b.icmp_unsigned("<", noff, nsz),
                              b.icmp_unsigned("<=", c64(size), b.sub(nsz, noff)))
                with b.if_then(b.or_(b.icmp_unsigned("==", nsz, c64(0)), b.not_(fits)),
                               likely=False):
                    self.set_fault(abi.Status.MEM, i.pc, addr=a, size=size, write=int(write))
                    b.branch(self.bail_bb)
                b.store(nlo, lo_p)
                b.store(nsz, sz_p)
        return b.inttoptr(a, PTR)

    def k_ldx(self, i: Instruction) -> None:
        size = i.spec.size
        p = self.address(i, i.src, size, False)
        if p is None:
            return
        v = self.b.load(p, typ=INT[size], align=1)
        if i.dst == 10:
            self.static_fault(i.pc, "frame pointer r10 is read-only")
            return
        self.set(i.dst, self.sx(v) if i.spec.signed else self.zx(v))

    def k_load_acq(self, i: Instruction) -> None:
        size = i.spec.size
        p = self.address(i, i.src, size, False)
        if p is None:
            return
        v = self.ordered(p, size, lambda ptr: self.b.load_atomic(ptr, "acquire", size, typ=INT[size]),
                         lambda ptr: self.b.load(ptr, typ=INT[size], align=1))
        if i.dst == 10:
            self.static_fault(i.pc, "frame pointer r10 is read-only")
            return
        self.set(i.dst, self.zx(v))

    def k_st(self, i: Instruction) -> None:
        size = i.spec.size
        p = self.address(i, i.dst, size, True)
        if p is not None:
            self.b.store(ir.Constant(INT[size], i.imm & ((1 << (8 * size)) - 1)), p, align=1)

    def k_stx(self, i: Instruction) -> None:
        size = i.spec.size
        p = self.address(i, i.dst, size, True)
        if p is not None:
            v = self.get(i.src)
            self.b.store(self.b.trunc(v, INT[size]) if size < 8 else v, p, align=1)

    def k_store_rel(self, i: Instruction) -> None:
        size = i.spec.size
        p = self.address(i, i.dst, size, True)
        if p is None:
            return
        v = self.get(i.src)
        v = self.b.trunc(v, INT[size]) if size < 8 else v
        def atomic(ptr):
            # llvmlite checks the pointee type here, so give it a typed pointer
            typed = self.b.inttoptr(self.b.ptrtoint(ptr, i64), INT[size].as_pointer())
            self.b.store_atomic(v, typed, "release", size)

        def plain(ptr):
            self.b.store(v, ptr, align=1)
        self.ordered(p, size, atomic, plain)

    def ordered(self, p, size: int, atomic, plain):
        """Emit an atomic access; checked code also survives a misaligned address.

        Linux rejects misaligned atomics; the interpreter (which has no
        verifier in front of it) performs them as plain accesses, so checked
        code does the same instead of leaving it to the host.  ``atomic`` and
        ``plain`` emit the access and return the loaded value (or None).
        """
        b = self.b
        if not self.checked or size == 1:
            return atomic(p)
        aligned = b.icmp_unsigned("==", b.and_(b.ptrtoint(p, i64), c64(size - 1)), c64(0))
        with b.if_else(aligned, likely=True) as (then, other):
            with then:
                va = atomic(p)
                a_bb = b.block
            with other:
                vp = plain(p)
                p_bb = b.block
        if va is None:
            return None
        phi = b.phi(va.type)
        phi.add_incoming(va, a_bb)
        phi.add_incoming(vp, p_bb)
        return phi

    def k_atomic(self, i: Instruction) -> None:
        b = self.b
        size = i.spec.size
        p = self.address(i, i.dst, size, True)
        if p is None:
            return
        ty = INT[size]
        op = i.spec.op
        src = self.get(i.src)
        s = b.trunc(src, ty) if size < 8 else src
        if op == "cmpxchg":
            r0 = self.get(0)
            expect = b.trunc(r0, ty) if size < 8 else r0

            def atomic(ptr):
                return b.extract_value(b.cmpxchg(ptr, expect, s, "seq_cst", "seq_cst"), 0)

            def plain(ptr):
                old = b.load(ptr, typ=ty, align=1)
                b.store(b.select(b.icmp_unsigned("==", old, expect), s, old), ptr, align=1)
                return old
            self.set(0, self.zx(self.ordered(p, size, atomic, plain)))
            return
        rmw = {"add": "add", "or": "or", "and": "and", "xor": "xor", "xchg": "xchg"}[op]

        def atomic(ptr):
            return b.atomic_rmw(rmw, ptr, s, "seq_cst")

        def plain(ptr):
            old = b.load(ptr, typ=ty, align=1)
            new = s if op == "xchg" else getattr(b, {"and": "and_", "or": "or_"}.get(op, op))(old, s)
            b.store(new, ptr, align=1)
            return old
        old = self.ordered(p, size, atomic, plain)
        if i.spec.fetch:
            self.set(i.src, self.zx(old))

    def k_ld_imm64(self, i: Instruction) -> None:
        b = self.b
        if i.src == 0:
            self.set(i.dst, c64(i.imm64))
        elif i.src == U.BPF_PSEUDO_FUNC:
            t = i.jump_target()
            if t in self.funcs:
                self.set(i.dst, b.add(self.pt_load(b, abi.PT_CODE_ADDR), c64(t * 8)))
            else:
                self.static_fault(i.pc, f"function pointer to invalid target {t}")
        else:
            self.set(i.dst, self.pt_load(b, self.layout.slot("const", i.pc)))

    def k_ld_abs(self, i: Instruction) -> None:
        self.set(0, self.callback(self.layout.slot("ld_abs"), i.pc, self.get(6),
                                  [c64(0), c64(0), c64(0), c64(0), c64(0)]))
        self.reset_caches()

    def k_ld_ind(self, i: Instruction) -> None:
        self.set(0, self.callback(self.layout.slot("ld_abs"), i.pc, self.get(6),
                                  [self.get(i.src), c64(0), c64(0), c64(0), c64(0)]))
        self.reset_caches()

    # -- debug info (for ``prog dump jited``) ----------------------------------------------

    def _debug_setup(self) -> None:
        m = self.module
        for flag, value in (("Dwarf Version", 4), ("Debug Info Version", 3)):
            m.add_named_metadata("llvm.module.flags",
                                 [ir.Constant(i32, 2), ir.MetaDataString(m, flag), ir.Constant(i32, value)])
        self.di_file = m.add_debug_info("DIFile", {"filename": "program.bpf", "directory": "."})
        self.di_cu = m.add_debug_info("DICompileUnit", {
            "language": ir.DIToken("DW_LANG_C99"), "file": self.di_file, "producer": "ebee",
            "runtimeVersion": 0, "isOptimized": True, "emissionKind": ir.DIToken("LineTablesOnly"),
        }, is_distinct=True)
        m.add_named_metadata("llvm.dbg.cu", self.di_cu)
        self.di_type = m.add_debug_info("DISubroutineType", {"types": m.add_metadata([])})
        self.di_sp = {}
        for entry, fn in self.funcs.items():
            sp = m.add_debug_info("DISubprogram", {
                "name": fn.name, "file": self.di_file, "line": entry + 1, "type": self.di_type,
                "isLocal": entry != 0, "isDefinition": True, "unit": self.di_cu,
                "spFlags": ir.DIToken("DISPFlagDefinition | DISPFlagOptimized"),
            }, is_distinct=True)
            fn.set_metadata("dbg", sp)
            self.di_sp[entry] = sp

    def loc(self, pc: int) -> None:
        """Attribute what follows to eBPF instruction ``pc`` (line pc + 1)."""
        if self.debug:
            self.b.debug_metadata = self.module.add_debug_info(
                "DILocation", {"line": pc + 1, "column": 0, "scope": self.di_sp[self.fentry]})


def generate(insns: list[Instruction], *, checked: bool, name: str = "ebee", debug: bool = False,
             natives: bool = True, count: bool = False) -> tuple[ir.Module, Layout]:
    """The IR module and program-table layout of ``insns`` (``count``: with coverage
    counters)."""
    return ModuleGen(insns, checked=checked, name=name, debug=debug, natives=natives,
                     count=count).build()
