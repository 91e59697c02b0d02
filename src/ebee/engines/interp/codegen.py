"""Translate an instruction list into Python source, once per program.

The interpreter does not decode at run time: each (sub)program becomes one
Python function whose eBPF registers are Python locals and whose basic blocks
are reached through a binary decision tree on ``pc``.  Straight-line code in
a block is plain Python arithmetic, so the per-instruction cost is one or two
bytecode-level operations rather than a decode-and-dispatch.

The generated module defines ``factory(E)``; calling it with a runtime
environment binds the helpers, memory lookups and the stack and returns
``{entry_pc: function}``.  Every function has the signature
``f(r1, r2, r3, r4, r5, depth, n) -> (r0, n)`` where ``n`` counts executed
instructions (the budget) across the whole run.

Instrumented translations (:mod:`..probes`) add, before every instruction,
``CV[pc] += 1`` (coverage: ``CT[pc] += 1`` too where a conditional jump jumps) or
``TR(pc, depth, regs)`` (the debugger's stepping hook); the names are globals of the
generated module, so the plain translation is byte-for-byte what it was.

Memory accesses based on r10 with a constant offset are checked at
translation time against the 512-byte frame and go straight to the stack
buffer.  All other accesses go through a one-entry region cache per
direction (read / write); a miss calls ``E.rfind`` / ``E.wfind`` which
either returns a live region or raises a MemoryFault naming the pc.  Caches
are dropped after every call, the only place a region can die.
"""
from __future__ import annotations

from dataclasses import dataclass

from ... import uapi as U
from ...isa import Instruction, Kind
from ..blocks import Cfg, Function

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
S64 = 1 << 63
S32 = 1 << 31
STACK = U.MAX_BPF_STACK
TAIL_CALL_HELPER = U.FuncId.tail_call

_STRUCT = {  # (size, signed) -> (unpack name, pack name)
    (1, False): ("U8", "P8"), (2, False): ("U16", "P16"),
    (4, False): ("U32", "P32"), (8, False): ("U64", "P64"),
    (1, True): ("S8", None), (2, True): ("S16", None), (4, True): ("S32", None),
}
_MASK = {1: 0xFF, 2: 0xFFFF, 4: M32, 8: M64}

_CMP = {"jeq": "==", "jne": "!=", "jgt": ">", "jge": ">=", "jlt": "<", "jle": "<=",
        "jsgt": ">", "jsge": ">=", "jslt": "<", "jsle": "<="}


@dataclass
class Translation:
    source: str
    entries: list[int]            # pcs of every function, entry 0 first
    ld_imm64_pcs: list[int]       # lddw instructions the runtime must resolve


def _sx(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


class Translator(Cfg):
    def __init__(self, insns: list[Instruction], *, count: bool = False, step: bool = False):
        super().__init__(insns)
        self.lines: list[str] = []
        self.count = count
        self.step = step

    # -- emission ------------------------------------------------------------

    def emit(self, ind: int, text: str) -> None:
        self.lines.append("    " * ind + text)

    def translate(self) -> Translation:
        funcs = self.functions()
        ld_pcs = [i.pc for i in self.insns if i.kind is Kind.LD_IMM64
                  and i.src not in (0, U.BPF_PSEUDO_FUNC)]
        e = self.emit
        e(0, "def factory(E):")
        for name in ("U8", "U16", "U32", "U64", "S8", "S16", "S32", "P8", "P16", "P32", "P64"):
            e(1, f"{name} = E.{name}")
        e(1, "rfind = E.rfind; wfind = E.wfind; fault = E.fault; budget = E.budget_exceeded")
        e(1, "helper = E.helper; kfunc = E.kfunc; callx_helper = E.callx_helper")
        e(1, "tail_call = E.tail_call; ld_abs = E.ld_abs; too_deep = E.too_deep")
        e(1, "sdiv64 = E.sdiv64; smod64 = E.smod64; sdiv32 = E.sdiv32; smod32 = E.smod32")
        e(1, "STK = E.stack; STK_ADDR = E.stack_addr; CODE = E.code_addr; LIMIT = E.limit")
        e(1, "NOBUF = b''; MAX_DEPTH = E.max_depth")
        for pc in ld_pcs:
            e(1, f"L{pc} = E.ld_imm64({pc})")
        helpers = sorted({i.imm for i in self.insns if i.kind is Kind.CALL and i.imm != TAIL_CALL_HELPER})
        for h in helpers:
            e(1, f"H{h & M32} = helper({h})")
        for fn in funcs:
            self.function(fn)
        table = ", ".join(f"{f.entry}: f{f.entry}" for f in funcs)
        e(1, f"FUNCS = {{{table}}}")
        e(1, "FADDR = {CODE + pc * 8: f for pc, f in FUNCS.items()}")
        e(1, "return FUNCS, FADDR")
        return Translation("\n".join(self.lines) + "\n", [f.entry for f in funcs], ld_pcs)

    def function(self, fn: Function) -> None:
        e = self.emit
        blocks, back = self.blocks(fn)
        e(1, f"def f{fn.entry}(r1, r2, r3, r4, r5, depth, n):")
        e(2, "r0 = r6 = r7 = r8 = r9 = 0")
        e(2, f"F = (depth + 1) * {STACK}")
        e(2, "r10 = STK_ADDR + F")
        e(2, "c_buf = w_buf = NOBUF; c_lo = w_lo = c_sz = w_sz = 0")
        e(2, f"mg = {U.BPF_MAX_LOOPS}")
        e(2, f"pc = {fn.entry}")
        e(2, "while True:")
        self.dispatch(blocks, back, 3, fn)

    def dispatch(self, blocks, back, ind, fn) -> None:
        if len(blocks) == 1:
            self.block(blocks[0], back, ind, fn)
            return
        mid = len(blocks) // 2
        self.emit(ind, f"if pc < {blocks[mid][0].pc}:")
        self.dispatch(blocks[:mid], back, ind + 1, fn)
        self.emit(ind, "else:")
        self.dispatch(blocks[mid:], back, ind + 1, fn)

    def block(self, blk: list[Instruction], back: set[int], ind: int, fn: Function) -> None:
        e = self.emit
        start = blk[0].pc
        e(ind, f"# block {start}")
        e(ind, f"n += {len(blk)}")
        if start in back:
            e(ind, f"if n > LIMIT: budget({start}, n)")
        for i in blk:
            if self.count:
                e(ind, f"CV[{i.pc}] += 1")
            if self.step:
                e(ind, f"TR({i.pc}, depth, (r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10))")
            getattr(self, "k_" + i.kind.name.lower())(i, ind)
        last = blk[-1]
        if last.kind not in (Kind.EXIT, Kind.JA):
            nxt = last.pc + last.slots
            if nxt >= fn.end:
                where = "the end of the program" if nxt >= self.nslots else f"into the function at pc {nxt}"
                e(ind, f"fault({last.pc}, 'fell off {where}')")
            else:
                e(ind, f"pc = {nxt}")
                e(ind, "continue")

    # -- helpers for operands ------------------------------------------------

    def goto(self, i: Instruction, ind: int) -> None:
        t = i.jump_target()
        fn_ok = self.valid_target(t)
        if fn_ok:
            # jumping into another function's body is as invalid as jumping out of range
            owner = max(e for e in self.entry_set if e <= i.pc)
            later = [e for e in self.entry_set if e > owner]
            end = min(later) if later else self.nslots
            fn_ok = owner <= t < end
        if fn_ok:
            self.emit(ind, f"pc = {t}")
            self.emit(ind, "continue")
        else:
            self.emit(ind, f"fault({i.pc}, 'jump to invalid target {t}')")

    # -- ALU -------------------------------------------------------------------

    def k_alu(self, i: Instruction, ind: int) -> None:
        d = f"r{i.dst}"
        op = i.spec.op
        wide = i.spec.is64
        if i.spec.use_reg:
            x = f"r{i.src}"
            x32 = f"({x} & {M32})"
            const = None
        else:
            const = (i.imm & M64) if wide else (i.imm & M32)
            x = x32 = str(const)
        if i.dst == 10:
            self.emit(ind, f"fault({i.pc}, 'frame pointer r10 is read-only')")
            return
        M = str(M64 if wide else M32)
        bits = 64 if wide else 32
        if op == "mov":
            s = x if wide or const is not None else x32
        elif op in ("add", "sub", "mul"):
            s = f"({d} {'+-*'[('add', 'sub', 'mul').index(op)]} {x}) & {M}"
        elif op in ("or", "and", "xor"):
            sym = {"or": "|", "and": "&", "xor": "^"}[op]
            s = f"{d} {sym} {x}" if wide else f"({d} {sym} {x}) & {M}"
        elif op == "lsh":
            sh = str((const or 0) & (bits - 1)) if const is not None else f"({x} & {bits - 1})"
            s = f"({d} << {sh}) & {M}"
        elif op == "rsh":
            sh = str(const & (bits - 1)) if const is not None else f"({x} & {bits - 1})"
            s = f"{d} >> {sh}" if wide else f"({d} & {M32}) >> {sh}"
        elif op == "arsh":
            sh = str(const & (bits - 1)) if const is not None else f"({x} & {bits - 1})"
            sign = S64 if wide else S32
            t = d if wide else f"({d} & {M32})"
            s = f"(({t} - (({t} & {sign}) << 1)) >> {sh}) & {M}"
        elif op == "div":
            if const is not None:
                s = "0" if const == 0 else (f"{d} // {const}" if wide else f"({d} & {M32}) // {const}")
            elif wide:
                s = f"{d} // {x} if {x} else 0"
            else:
                s = f"({d} & {M32}) // {x32} if {x32} else 0"
        elif op == "mod":
            if const is not None:
                s = (d if wide else f"{d} & {M32}") if const == 0 else \
                    (f"{d} % {const}" if wide else f"({d} & {M32}) % {const}")
            elif wide:
                s = f"{d} % {x} if {x} else {d}"
            else:
                s = f"({d} & {M32}) % {x32} if {x32} else {d} & {M32}"
        elif op in ("sdiv", "smod"):
            fn = f"{op}{bits}"
            s = f"{fn}({d}, {x})"
        else:  # pragma: no cover - table and translator disagree
            raise AssertionError(op)
        self.emit(ind, f"{d} = {s}")

    def k_neg(self, i: Instruction, ind: int) -> None:
        d = f"r{i.dst}"
        self.emit(ind, f"{d} = -{d} & {M64 if i.spec.is64 else M32}")

    def k_movsx(self, i: Instruction, ind: int) -> None:
        m = _MASK[i.spec.size]
        sign = 1 << (i.spec.size * 8 - 1)
        out = M64 if i.spec.is64 else M32
        self.emit(ind, f"r{i.dst} = ((r{i.src} & {m:#x}) ^ {sign:#x}) - {sign:#x} & {out:#x}")

    def k_addr_space_cast(self, i: Instruction, ind: int) -> None:
        self.emit(ind, f"fault({i.pc}, 'addr_space_cast needs an arena map, which ebee does not model')")

    def k_end(self, i: Instruction, ind: int) -> None:
        d = f"r{i.dst}"
        size = i.spec.size
        if i.spec.op == "le":   # host and eBPF are little-endian: truncation only
            self.emit(ind, f"{d} = {d} & {_MASK[size]:#x}" if size < 8 else "pass")
        elif size == 2:
            self.emit(ind, f"{d} = (({d} & 0xff) << 8) | (({d} >> 8) & 0xff)")
        else:
            self.emit(ind, f"{d} = int.from_bytes(({d} & {_MASK[size]:#x}).to_bytes({size}, 'little'), 'big')")

    # -- jumps ---------------------------------------------------------------

    def k_ja(self, i: Instruction, ind: int) -> None:
        self.goto(i, ind)

    def k_jcond(self, i: Instruction, ind: int) -> None:
        self.emit(ind, "if mg == 0:")
        self.goto(i, ind + 1)
        self.emit(ind, "mg -= 1")

    def k_jcc(self, i: Instruction, ind: int) -> None:
        op = i.spec.op
        wide = i.spec.is64
        d = f"r{i.dst}" if wide else f"(r{i.dst} & {M32})"
        if i.spec.use_reg:
            x = f"r{i.src}" if wide else f"(r{i.src} & {M32})"
            xc = None
        else:
            xc = (i.imm & M64) if wide else (i.imm & M32)
            x = str(xc)
        sign = S64 if wide else S32
        if op == "jset":
            cond = f"{d} & {x}"
        elif op.startswith("js"):
            xs = str(xc ^ sign) if xc is not None else f"({x} ^ {sign})"
            cond = f"({d} ^ {sign}) {_CMP[op]} {xs}"
        else:
            cond = f"{d} {_CMP[op]} {x}"
        self.emit(ind, f"if {cond}:")
        if self.count:
            self.emit(ind + 1, f"CT[{i.pc}] += 1")
        self.goto(i, ind + 1)

    # -- calls ---------------------------------------------------------------

    _RESET = "c_sz = w_sz = 0"

    def k_call(self, i: Instruction, ind: int) -> None:
        e = self.emit
        if i.imm == TAIL_CALL_HELPER:
            # Linux rewrites this call into BPF_TAIL_CALL: on success the target
            # replaces this frame; on failure execution falls through and r0 is
            # left as it was.
            e(ind, f"t = tail_call(r1, r2, r3, {i.pc})")
            e(ind, "if t is not None:")
            e(ind + 1, "return t(r1, 0, 0, 0, 0, depth, n)")
        else:
            e(ind, f"r0 = H{i.imm & M32}(r1, r2, r3, r4, r5, {i.pc}, depth)")
        e(ind, self._RESET)

    def k_call_local(self, i: Instruction, ind: int) -> None:
        t = i.jump_target()
        e = self.emit
        if t not in self.entry_set:
            e(ind, f"fault({i.pc}, 'call to invalid target {t}')")
            return
        e(ind, f"if depth >= MAX_DEPTH: too_deep({i.pc})")
        e(ind, f"r0, n = f{t}(r1, r2, r3, r4, r5, depth + 1, n)")
        e(ind, self._RESET)

    def k_call_kfunc(self, i: Instruction, ind: int) -> None:
        self.emit(ind, f"r0 = kfunc({i.imm}, {i.off}, r1, r2, r3, r4, r5, {i.pc}, depth)")
        self.emit(ind, self._RESET)

    def k_callx(self, i: Instruction, ind: int) -> None:
        e = self.emit
        e(ind, f"t = FADDR.get(r{i.dst})")
        e(ind, "if t is None:")
        e(ind + 1, f"r0 = callx_helper(r{i.dst}, r1, r2, r3, r4, r5, {i.pc}, depth)")
        e(ind, "else:")
        e(ind + 1, f"if depth >= MAX_DEPTH: too_deep({i.pc})")
        e(ind + 1, "r0, n = t(r1, r2, r3, r4, r5, depth + 1, n)")
        e(ind, self._RESET)

    def k_exit(self, i: Instruction, ind: int) -> None:
        self.emit(ind, "return r0, n")

    # -- memory --------------------------------------------------------------

    def _frame_off(self, i: Instruction, base: int, size: int) -> str | None:
        """Static stack access through r10: index into STK, or None to go generic."""
        if base != 10:
            return None
        if -STACK <= i.off and i.off + size <= 0:
            return f"F - {-i.off}"
        return "BAD"

    def _bad_stack(self, i: Instruction, ind: int, size: int, write: bool) -> None:
        what = "write" if write else "read"
        self.emit(ind, f"fault({i.pc}, 'invalid stack {what} of {size} bytes at r10{i.off:+d} "
                       f"(the frame is {STACK} bytes below r10)')")

    def _addr(self, i: Instruction, base: int, size: int, write: bool, ind: int) -> tuple[str, str]:
        """Emit the cache check; return (buffer expr, offset expr)."""
        e = self.emit
        pre = "w" if write else "c"
        e(ind, f"a = r{base} + {i.off}" if i.off else f"a = r{base}")
        e(ind, f"o = a - {pre}_lo")
        e(ind, f"if o < 0 or o + {size} > {pre}_sz:")
        e(ind + 1, f"{pre}_buf, {pre}_lo, {pre}_sz = {'wfind' if write else 'rfind'}(a, {size}, {i.pc}, r10)")
        e(ind + 1, f"o = a - {pre}_lo")
        return f"{pre}_buf", "o"

    def _mem(self, i: Instruction, base: int, size: int, write: bool, ind: int) -> tuple[str, str] | None:
        f = self._frame_off(i, base, size)
        if f == "BAD":
            self._bad_stack(i, ind, size, write)
            return None
        if f is not None:
            return "STK", f
        return self._addr(i, base, size, write, ind)

    def k_ldx(self, i: Instruction, ind: int) -> None:
        size = i.spec.size
        loc = self._mem(i, i.src, size, False, ind)
        if loc is None:
            return
        buf, off = loc
        unpack = _STRUCT[(size, i.spec.signed)][0]
        val = f"{unpack}({buf}, {off})[0]"
        if i.spec.signed:
            val += f" & {M64}"
        if i.dst == 10:
            self.emit(ind, f"fault({i.pc}, 'frame pointer r10 is read-only')")
            return
        self.emit(ind, f"r{i.dst} = {val}")

    k_load_acquire = k_load_acq = k_ldx

    def k_st(self, i: Instruction, ind: int) -> None:
        size = i.spec.size
        loc = self._mem(i, i.dst, size, True, ind)
        if loc is None:
            return
        buf, off = loc
        self.emit(ind, f"{_STRUCT[(size, False)][1]}({buf}, {off}, {i.imm & _MASK[size]})")

    def k_stx(self, i: Instruction, ind: int) -> None:
        size = i.spec.size
        loc = self._mem(i, i.dst, size, True, ind)
        if loc is None:
            return
        buf, off = loc
        val = f"r{i.src}" if size == 8 else f"r{i.src} & {_MASK[size]:#x}"
        self.emit(ind, f"{_STRUCT[(size, False)][1]}({buf}, {off}, {val})")

    k_store_release = k_store_rel = k_stx

    def k_atomic(self, i: Instruction, ind: int) -> None:
        size = i.spec.size
        loc = self._mem(i, i.dst, size, True, ind)
        if loc is None:
            return
        buf, off = loc
        e = self.emit
        up, pk = _STRUCT[(size, False)]
        m = _MASK[size]
        s = f"r{i.src}"
        op = i.spec.op
        if buf != "STK" and size in (4, 8):
            # mmap'd memory may be shared with a JIT or another process: the host's
            # atomic instruction, not a read and a write
            e(ind, f"if ATOMICS is not None and type({buf}) is MMAP and not a & {size - 1}:")
            if op == "cmpxchg":
                e(ind + 1, f"r0 = ATOMICS['cmpxchg', {size}](a, r0 & {m:#x}, {s} & {m:#x})")
            elif i.spec.fetch:
                e(ind + 1, f"{s} = ATOMICS[{op!r}, {size}](a, {s} & {m:#x})")
            else:
                e(ind + 1, f"ATOMICS[{op!r}, {size}](a, {s} & {m:#x})")
            e(ind, "else:")
            ind += 1
        e(ind, f"old = {up}({buf}, {off})[0]")
        if op == "cmpxchg":
            e(ind, f"if old == r0 & {m:#x}: {pk}({buf}, {off}, {s} & {m:#x})")
            e(ind, "r0 = old")
            return
        if op == "xchg":
            new = f"{s} & {m:#x}"
        else:
            sym = {"add": "+", "or": "|", "and": "&", "xor": "^"}[op]
            new = f"(old {sym} {s}) & {m:#x}"
        e(ind, f"{pk}({buf}, {off}, {new})")
        if i.spec.fetch:
            e(ind, f"{s} = old")

    def k_ld_imm64(self, i: Instruction, ind: int) -> None:
        d = f"r{i.dst}"
        if i.src == 0:
            self.emit(ind, f"{d} = {i.imm64:#x}")
        elif i.src == U.BPF_PSEUDO_FUNC:
            t = i.jump_target()
            if t in self.entry_set:
                self.emit(ind, f"{d} = CODE + {t * 8}")
            else:
                self.emit(ind, f"fault({i.pc}, 'function pointer to invalid target {t}')")
        else:
            self.emit(ind, f"{d} = L{i.pc}")

    def k_ld_abs(self, i: Instruction, ind: int) -> None:
        self.emit(ind, f"r0 = ld_abs(r6, {i.imm}, {i.spec.size}, {i.pc}, n)")
        self.emit(ind, self._RESET)

    def k_ld_ind(self, i: Instruction, ind: int) -> None:
        self.emit(ind, f"r0 = ld_abs(r6, r{i.src} + {i.imm}, {i.spec.size}, {i.pc}, n)")
        self.emit(ind, self._RESET)


def translate(insns: list[Instruction], *, count: bool = False,
              step: bool = False) -> Translation:
    """``count``: with coverage counters; ``step``: with the stepping hook."""
    if not insns:
        raise ValueError("empty program")
    return Translator(insns, count=count, step=step).translate()
