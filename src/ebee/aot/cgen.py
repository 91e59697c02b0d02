"""eBPF -> portable C: one C function per eBPF function, against ebee_rt.h.

Every eBPF register is a ``uint64_t`` local, every jump a ``goto``, every
bpf-to-bpf call a C call (its frame a local array, so the C compiler keeps stack
slots in registers where it can), a tail call a call through the PROG_ARRAY
returned as the caller's result.  The semantics are RFC 9669's, as the JIT
implements them (division by zero, shift masking, sign extension), written so
that no C undefined behaviour is left: unsigned arithmetic, memcpy accesses.

Verified programs are translated as Linux's JIT translates them: the verifier
proved every memory access in bounds, so none is checked.  Unverified programs
(raw instructions, the conformance suite) get the checks the JIT's checked mode
makes: every access not at a constant offset from r10 is looked up among the
run's live regions, and loops count against a budget.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from .. import uapi as U
from ..engines.blocks import Cfg
from ..isa import Instruction, Kind
from . import offload

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
STACK = U.MAX_BPF_STACK
T = {1: "uint8_t", 2: "uint16_t", 4: "uint32_t", 8: "uint64_t"}
S = {1: "int8_t", 2: "int16_t", 4: "int32_t", 8: "int64_t"}
_CMP = {"jeq": "==", "jne": "!=", "jgt": ">", "jge": ">=", "jlt": "<", "jle": "<=",
        "jsgt": ">", "jsge": ">=", "jslt": "<", "jsle": "<="}
_BIN = {"add": "+", "sub": "-", "mul": "*", "or": "|", "and": "&", "xor": "^"}


def ident(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return s if s and not s[0].isdigit() else "_" + s


@dataclass
class MapDef:
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    init: bytes | None = None


@dataclass
class Unit:
    """One program to translate."""
    name: str
    insns: list[Instruction]
    checked: bool
    prog_type: int = 0
    # lddw with a map source -> index into the object's map table
    map_index: Callable[[Instruction], int] = field(default=lambda i: 0)


def c64(v: int) -> str:
    return f"0x{v & M64:x}ULL"


def c32(v: int) -> str:
    return f"0x{v & M32:x}U"


class FuncGen:
    def __init__(self, unit: Unit, pfx: str, cfg: Cfg, fn, names: dict[int, str]):
        self.u = unit
        self.pfx = pfx
        self.cfg = cfg
        self.fn = fn
        self.names = names
        self.out: list[str] = []
        self.checked = unit.checked

    def emit(self, s: str) -> None:
        self.out.append("    " + s)

    def fault(self, status: str, pc: int, msg: str, addr: str = "0") -> str:
        return f"return ebee_rt_fault(cx, {status}, {pc}, {addr}, \"{msg}\");"

    def in_fn(self, t: int | None) -> bool:
        return t is not None and self.cfg.valid_target(t) and self.fn.entry <= t < self.fn.end

    def gen(self) -> list[str]:
        u, fn = self.u, self.fn
        body = [i for i in u.insns if fn.entry <= i.pc < fn.end]
        targets: set[int] = set()
        back: set[int] = set()
        for i in body:
            if i.kind in (Kind.JA, Kind.JCC, Kind.JCOND):
                t = i.jump_target()
                if self.in_fn(t):
                    targets.add(t)
                    if t <= i.pc:
                        back.add(t)
        name = self.names[fn.entry]
        o = [f"static uint64_t {name}(ebee_cx *cx, uint64_t r1, uint64_t r2, uint64_t r3, "
             f"uint64_t r4, uint64_t r5)", "{"]
        self.out = o
        self.emit(f"uint64_t stk[{STACK // 8}];")
        self.emit(f"uint64_t r0 = 0, r6 = 0, r7 = 0, r8 = 0, r9 = 0, r11 = 0, "
                  f"r10 = (uint64_t)(uintptr_t)stk + {STACK};")
        self.emit(f"uint64_t mg = {U.BPF_MAX_LOOPS}ULL;")
        self.emit("(void)r0; (void)r6; (void)r7; (void)r8; (void)r9; (void)r10; (void)r11; (void)mg; "
                  "(void)r1; (void)r2; (void)r3; (void)r4; (void)r5;")
        if self.checked:
            self.emit("if (cx->depth >= EBEE_MAX_FRAMES) " +
                      self.fault("EBEE_FAULT_DEPTH", fn.entry, "too many nested calls"))
            self.emit("cx->frame_lo[cx->depth] = (uint64_t)(uintptr_t)stk; "
                      "cx->frame_hi[cx->depth] = r10;")
        for i in body:
            if i.pc in targets:
                o.append(f"L{i.pc}:")
            if self.checked and i.pc in back:
                self.emit("if (++cx->steps > cx->budget) " +
                          self.fault("EBEE_FAULT_BUDGET", i.pc, "instruction budget exceeded"))
            getattr(self, "k_" + i.kind.name.lower())(i)
        last = body[-1] if body else None
        if last is None or last.kind not in (Kind.EXIT, Kind.JA):
            if self.checked:
                self.emit(self.fault("EBEE_FAULT_STATIC", last.pc if last else fn.entry,
                                     "fell off the end of the function"))
            else:
                self.emit("return r0;")
        o.append("}")
        return o

    # -- operands -------------------------------------------------------------------------

    def src(self, i: Instruction, wide: bool) -> str:
        if i.spec.use_reg:
            return f"r{i.src}" if wide else f"(uint32_t)r{i.src}"
        return c64(i.imm) if wide else c32(i.imm)

    def ro(self, i: Instruction) -> bool:
        if i.dst == 10:
            if self.checked:
                self.emit(self.fault("EBEE_FAULT_STATIC", i.pc, "frame pointer r10 is read-only"))
            return True
        return False

    # -- ALU ------------------------------------------------------------------------------

    def k_alu(self, i: Instruction) -> None:
        if self.ro(i):
            return
        op, wide = i.spec.op, i.spec.is64
        x = self.src(i, wide)
        d = f"r{i.dst}" if wide else f"(uint32_t)r{i.dst}"
        ut, st, bits = ("uint64_t", "int64_t", 64) if wide else ("uint32_t", "int32_t", 32)
        const = None if i.spec.use_reg else (i.imm & (M64 if wide else M32))
        if op == "mov":
            e = x
        elif op in _BIN:
            e = f"{d} {_BIN[op]} {x}"
        elif op in ("lsh", "rsh"):
            sh = str(const & (bits - 1)) if const is not None else f"({x} & {bits - 1})"
            e = f"{d} {'<<' if op == 'lsh' else '>>'} {sh}"
        elif op == "arsh":
            sh = str(const & (bits - 1)) if const is not None else f"({x} & {bits - 1})"
            e = f"({ut})(({st}){d} >> {sh})"
        elif op in ("div", "mod"):
            if const == 0:
                e = "0" if op == "div" else d
            elif const is not None:
                e = f"{d} {'/' if op == 'div' else '%'} {x}"
            else:
                e = f"({x} ? {d} / {x} : 0)" if op == "div" else f"({x} ? {d} % {x} : {d})"
        elif op in ("sdiv", "smod"):
            m1 = c64(-1) if wide else c32(-1)
            if const == 0:
                e = "0" if op == "sdiv" else d
            elif const is not None and const == (M64 if wide else M32):
                e = f"({ut})-{d}" if op == "sdiv" else "0"
            elif const is not None:
                e = f"({ut})(({st}){d} {'/' if op == 'sdiv' else '%'} ({st}){x})"
            elif op == "sdiv":
                e = (f"({x} == 0 ? 0 : {x} == {m1} ? ({ut})-{d} : "
                     f"({ut})(({st}){d} / ({st}){x}))")
            else:
                e = f"({x} == 0 ? {d} : {x} == {m1} ? 0 : ({ut})(({st}){d} % ({st}){x}))"
        else:  # pragma: no cover - table and translator disagree
            raise AssertionError(op)
        self.emit(f"r{i.dst} = ({ut})({e});")

    def k_neg(self, i: Instruction) -> None:
        if self.ro(i):
            return
        if i.spec.is64:
            self.emit(f"r{i.dst} = -r{i.dst};")
        else:
            self.emit(f"r{i.dst} = (uint32_t)-(uint32_t)r{i.dst};")

    def k_movsx(self, i: Instruction) -> None:
        if self.ro(i):
            return
        ut = "uint64_t" if i.spec.is64 else "uint32_t"
        st = "int64_t" if i.spec.is64 else "int32_t"
        self.emit(f"r{i.dst} = ({ut})({st})({S[i.spec.size]})r{i.src};")

    def k_end(self, i: Instruction) -> None:
        if self.ro(i):
            return
        size = i.spec.size
        if i.spec.op == "le":
            if size < 8:
                self.emit(f"r{i.dst} = ({T[size]})r{i.dst};")
            return
        if size == 1:
            self.emit(f"r{i.dst} = (uint8_t)r{i.dst};")
            return
        self.emit(f"r{i.dst} = __builtin_bswap{size * 8}(({T[size]})r{i.dst});")

    def k_addr_space_cast(self, i: Instruction) -> None:
        self.emit(self.fault("EBEE_FAULT_STATIC", i.pc, "addr_space_cast needs an arena map"))

    # -- jumps ------------------------------------------------------------------------------

    def jump(self, i: Instruction) -> str:
        t = i.jump_target()
        if self.in_fn(t):
            return f"goto L{t};"
        return self.fault("EBEE_FAULT_STATIC", i.pc, f"jump to invalid target {t}")

    def k_ja(self, i: Instruction) -> None:
        self.emit(self.jump(i))

    def k_jcond(self, i: Instruction) -> None:
        self.emit(f"if (mg == 0) {self.jump(i)}")
        self.emit("mg--;")

    def k_jcc(self, i: Instruction) -> None:
        op, wide = i.spec.op, i.spec.is64
        x = self.src(i, wide)
        d = f"r{i.dst}" if wide else f"(uint32_t)r{i.dst}"
        if op == "jset":
            cond = f"({d} & {x}) != 0"
        elif op.startswith("js"):
            st = "int64_t" if wide else "int32_t"
            cond = f"({st}){d} {_CMP[op]} ({st}){x}"
        else:
            cond = f"{d} {_CMP[op]} {x}"
        self.emit(f"if ({cond}) {self.jump(i)}")

    # -- calls --------------------------------------------------------------------------------

    def around(self, call: str) -> None:
        """A call that may run translated code (a subprogram, bpf_loop's callback): checked
        code gives it the next frame and returns at once if it faulted."""
        if self.checked:
            self.emit(f"cx->depth++; r0 = {call}; cx->depth--;")
            self.emit("if (cx->status) return 0;")
        else:
            self.emit(f"r0 = {call};")

    def k_call(self, i: Instruction) -> None:
        fid = i.imm & M32
        if fid == offload.TAIL_CALL:
            self.emit("{ ebee_fn t = ebee_rt_tail_target(cx, r2, r3); "
                      "if (t) return t(cx, r1, 0, 0, 0, 0); }")
            return
        name = offload.HELPERS.get(fid)
        if name is None:
            raise offload.OffloadError(f"{self.u.name}: pc {i.pc}: {offload.helper_name(fid)} is "
                                       f"not supported by the AOT runtime")
        self.around(f"ebee_h_{name}(cx, r1, r2, r3, r4, r5)")

    def k_call_local(self, i: Instruction) -> None:
        t = i.jump_target()
        if t not in self.names:
            self.emit(self.fault("EBEE_FAULT_STATIC", i.pc, f"call to invalid target {t}"))
            return
        self.around(f"{self.names[t]}(cx, r1, r2, r3, r4, r5)")

    def k_callx(self, i: Instruction) -> None:
        r = f"r{i.dst}"
        chain = " : ".join(f"{r} == (uint64_t)(uintptr_t){n} ? {n}(cx, r1, r2, r3, r4, r5)"
                           for n in self.names.values())
        self.around(f"({chain} : ebee_rt_helper(cx, {r}, r1, r2, r3, r4, r5))")
        if not self.checked:
            return

    def k_call_kfunc(self, i: Instruction) -> None:
        raise offload.OffloadError(f"{self.u.name}: pc {i.pc}: kfunc calls cannot be offloaded")

    def k_exit(self, i: Instruction) -> None:
        self.emit("return r0;")

    # -- memory ----------------------------------------------------------------------------------

    def addr(self, i: Instruction, base: int, size: int, write: bool) -> str | None:
        a = f"r{base} + {c64(i.off)}" if i.off else f"r{base}"
        if base == 10:
            if -STACK <= i.off and i.off + size <= 0:
                return a
            if self.checked:
                what = "write" if write else "read"
                self.emit(self.fault("EBEE_FAULT_STATIC", i.pc, f"invalid stack {what} of {size} "
                                     f"bytes at r10{i.off:+d}"))
                return None
            return a
        if self.checked:
            self.emit(f"if (!ebee_rt_check(cx, {a}, {size}, {int(write)}, {i.pc})) return 0;")
        return a

    def k_ldx(self, i: Instruction) -> None:
        size = i.spec.size
        a = self.addr(i, i.src, size, False)
        if a is None or self.ro(i):
            return
        v = f"ebee_ld{size * 8}({a})"
        if i.spec.signed:
            v = f"(uint64_t)(int64_t)({S[size]}){v}"
        self.emit(f"r{i.dst} = {v};")

    def k_st(self, i: Instruction) -> None:
        size = i.spec.size
        a = self.addr(i, i.dst, size, True)
        if a is not None:
            self.emit(f"ebee_st{size * 8}({a}, {c64(i.imm)});")

    def k_stx(self, i: Instruction) -> None:
        size = i.spec.size
        a = self.addr(i, i.dst, size, True)
        if a is not None:
            self.emit(f"ebee_st{size * 8}({a}, r{i.src});")

    def k_load_acq(self, i: Instruction) -> None:
        size = i.spec.size
        a = self.addr(i, i.src, size, False)
        if a is None or self.ro(i):
            return
        self.emit(f"r{i.dst} = __atomic_load_n(({T[size]} *)(uintptr_t)({a}), __ATOMIC_ACQUIRE);")

    def k_store_rel(self, i: Instruction) -> None:
        size = i.spec.size
        a = self.addr(i, i.dst, size, True)
        if a is not None:
            self.emit(f"__atomic_store_n(({T[size]} *)(uintptr_t)({a}), ({T[size]})r{i.src}, "
                      f"__ATOMIC_RELEASE);")

    def k_atomic(self, i: Instruction) -> None:
        size = i.spec.size
        a = self.addr(i, i.dst, size, True)
        if a is None:
            return
        t = T[size]
        p = f"({t} *)(uintptr_t)({a})"
        op = i.spec.op
        if op == "cmpxchg":
            self.emit(f"{{ {t} e = ({t})r0; __atomic_compare_exchange_n({p}, &e, ({t})r{i.src}, 0, "
                      f"__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); r0 = e; }}")
            return
        if op == "xchg":
            self.emit(f"r{i.src} = __atomic_exchange_n({p}, ({t})r{i.src}, __ATOMIC_SEQ_CST);")
            return
        call = f"__atomic_fetch_{op}({p}, ({t})r{i.src}, __ATOMIC_SEQ_CST)"
        self.emit(f"r{i.src} = {call};" if i.spec.fetch else f"(void){call};")

    def k_ld_imm64(self, i: Instruction) -> None:
        if self.ro(i):
            return
        if i.src == 0:
            self.emit(f"r{i.dst} = {c64(i.imm64)};")
        elif i.src == U.BPF_PSEUDO_FUNC:
            t = i.jump_target()
            if t in self.names:
                self.emit(f"r{i.dst} = (uint64_t)(uintptr_t){self.names[t]};")
            else:
                self.emit(self.fault("EBEE_FAULT_STATIC", i.pc, f"function pointer to invalid "
                                     f"target {t}"))
        elif i.src == U.BPF_PSEUDO_MAP_FD:
            self.emit(f"r{i.dst} = (uint64_t)(uintptr_t)cx->maps[{self.u.map_index(i)}];")
        elif i.src == U.BPF_PSEUDO_MAP_VALUE:
            self.emit(f"r{i.dst} = (uint64_t)(uintptr_t)cx->vals[{self.u.map_index(i)}] + "
                      f"{i.imm_hi & M32}u;")
        else:
            raise offload.OffloadError(f"{self.u.name}: pc {i.pc}: lddw with src_reg {i.src} "
                                       f"cannot be offloaded")

    def k_ld_abs(self, i: Instruction) -> None:
        raise offload.OffloadError(f"{self.u.name}: pc {i.pc}: legacy packet access (LD_ABS/LD_IND) "
                                   f"needs a socket buffer")

    k_ld_ind = k_ld_abs


def translate(units: list[Unit], maps: list[MapDef], *, object_name: str,
              header: str = "ebee_rt.h") -> str:
    """C source of ``units`` as one object, ``const struct ebee_object_def <object_name>``."""
    obj = ident(object_name)
    out = [f"/* generated by ebee aot: {len(units)} program(s), {len(maps)} map(s) */",
           f"#include \"{header}\"", ""]
    protos: list[str] = []
    bodies: list[str] = []
    entries: list[str] = []
    for k, u in enumerate(units):
        pfx = f"{obj}_p{k}_{ident(u.name)}"
        cfg = Cfg(list(u.insns))
        funcs = cfg.functions()
        names = {f.entry: (pfx if f.entry == 0 else f"{pfx}_f{f.entry}") for f in funcs}
        for f in funcs:
            protos.append(f"static uint64_t {names[f.entry]}(ebee_cx *cx, uint64_t r1, uint64_t r2, "
                          f"uint64_t r3, uint64_t r4, uint64_t r5);")
            bodies += FuncGen(u, pfx, cfg, f, names).gen()
            bodies.append("")
        entries.append(f"    {{\"{u.name}\", {u.prog_type}, {names[0]}}},")
    out += protos + [""] + bodies
    for k, m in enumerate(maps):
        if m.init:
            data = ", ".join(f"0x{b:02x}" for b in m.init)
            out.append(f"static const uint8_t {obj}_init{k}[{len(m.init)}] = {{{data}}};")
    out.append(f"static const struct ebee_map_def {obj}_maps[{max(len(maps), 1)}] = {{")
    for k, m in enumerate(maps):
        init = f"{obj}_init{k}, {len(m.init)}" if m.init else "NULL, 0"
        out.append(f"    {{\"{m.name}\", {m.type}, {m.key_size}, {m.value_size}, {m.max_entries}, "
                   f"{m.flags}, {init}}},")
    if not maps:
        out.append("    {\"\", 0, 0, 0, 0, 0, NULL, 0},")
    out.append("};")
    out.append(f"static const struct ebee_prog_def {obj}_progs[{len(units)}] = {{")
    out += entries
    out.append("};")
    out.append(f"const struct ebee_object_def {obj} = {{\"{object_name}\", {len(maps)}, {obj}_maps, "
               f"{len(units)}, {obj}_progs}};")
    return "\n".join(out) + "\n"
