"""Assembler for the conformance suite's dialect (``mov %r0, 1``, ``ldxb %r0, [%r1+2]``).

Mnemonics are the ``name`` column of the instruction table, so every row of
:data:`ebee.isa.TABLE` has a spelling here.  Besides the suite's own forms it
accepts the pseudo ld_imm64 spellings of the disassembler (``lddw %r1,
map[fd:3]``) so that anything ebee prints reassembles.
"""
from __future__ import annotations

import re

from .. import uapi as U
from ..isa import TABLE, Kind, OpSpec
from .common import LABEL_RE, NUM_RE, UNUM_RE, Pending, Program, check_range, is_hex, parse_int

_BY_NAME: dict[str, list[OpSpec]] = {}
for _s in TABLE:
    _BY_NAME.setdefault(_s.name, []).append(_s)
# spellings the suite uses for the same instructions
_ALIASES = {f"bswap{b}": f"swap{b}" for b in (16, 32, 64)}

_REG = re.compile(r"^%r(\d+)$")
_MEM = re.compile(r"^\[%r(\d+)\s*(?:([-+])\s*(" + UNUM_RE + r"))?\]$")
_PSEUDO = re.compile(r"^map\[(fd|id|idx):(\d+)\](?:\[0\])?(?:\+(\d+))?$|^btf_id\[(\d+)\](?:\+(\d+))?$")


def _split(line: str) -> tuple[str, list[str]]:
    # "lock fetch add32 [%r10-8], %r1" -> mnemonic "lock fetch add32", operands
    words = line.split(None, 1)
    mnem = words[0]
    rest = words[1] if len(words) > 1 else ""
    if mnem == "lock":
        parts = rest.split(None, 2) if rest else []
        if parts and parts[0] == "fetch":
            mnem = " ".join(["lock"] + parts[:2])
            rest = parts[2] if len(parts) > 2 else ""
        elif parts:
            mnem = f"lock {parts[0]}"
            rest = " ".join(parts[1:])
    elif mnem == "call" and rest.startswith(("local ", "helper ", "runtime ")):
        mode, rest = rest.split(None, 1)
        mnem = {"local": "call local", "helper": "call", "runtime": "call kfunc"}[mode]
    ops = [o.strip() for o in rest.split(",")] if rest.strip() else []
    return mnem, ops


class _Parser:
    def __init__(self, prog: Program):
        self.prog = prog

    def err(self, line: int, msg: str):
        return self.prog.error(line, msg)

    def reg(self, text: str, line: int) -> int:
        m = _REG.match(text)
        if not m or int(m.group(1)) > 10:
            raise self.err(line, f"invalid register '{text}' (expected %r0..%r10)")
        return int(m.group(1))

    def num(self, text: str, line: int, bits: int, what: str = "immediate") -> int:
        try:
            v = parse_int(text)
        except ValueError:
            raise self.err(line, f"invalid {what} '{text}'") from None
        return check_range(self.prog, line, v, bits, what, hex_spelling=is_hex(text))

    def mem(self, text: str, line: int) -> tuple[int, int]:
        m = _MEM.match(text.replace(" ", ""))
        if not m:
            raise self.err(line, f"invalid memory operand '{text}' (expected [%rN+OFF])")
        r = int(m.group(1))
        if r > 10:
            raise self.err(line, f"invalid register '%r{r}' (expected %r0..%r10)")
        off = 0
        if m.group(3):
            off = self.num(m.group(2) + m.group(3), line, 16, "offset")
            if off > 0x7FFF:
                off -= 0x10000
        return r, off

    def target(self, p: Pending, text: str, line: int, field: str) -> None:
        p.target_field = field
        if re.fullmatch(r"[-+]\s*" + UNUM_RE, text):
            setattr(p, field, self.num(text, line, 16 if field == "off" else 32, "jump offset"))
        elif re.fullmatch(LABEL_RE, text):
            p.label = text
        else:
            raise self.err(line, f"invalid jump target '{text}'")

    def line(self, text: str, n: int) -> None:
        prog = self.prog
        if text.endswith(":") and re.fullmatch(LABEL_RE + ":", text):
            prog.add_label(text[:-1], n)
            return
        mnem, ops = _split(text)
        mnem = _ALIASES.get(mnem, mnem)
        if mnem == "lock" or (mnem.startswith("lock ") and mnem not in _BY_NAME):
            raise self.err(n, "Invalid number of operands for lock" if len(ops) < 2 or mnem == "lock"
                           else f"invalid atomic operation '{mnem}'")
        if mnem == "call" and len(ops) == 1 and ops[0].startswith("%"):
            mnem = "callx"
        specs = _BY_NAME.get(mnem)
        if not specs:
            raise self.err(n, f"invalid mnemonic '{mnem}'")
        spec = specs[0]
        k = spec.kind
        p = Pending(spec, n)

        def want(count: int):
            if len(ops) != count:
                raise self.err(n, f"invalid number of operands for {mnem}: expected {count}, got {len(ops)}")

        if k is Kind.ALU:
            want(2)
            p.dst = self.reg(ops[0], n)
            if ops[1].startswith("%"):
                p.spec = next(s for s in specs if s.use_reg)
                p.src = self.reg(ops[1], n)
            else:
                p.spec = next(s for s in specs if not s.use_reg)
                p.imm = self.num(ops[1], n, 32)
        elif k in (Kind.NEG, Kind.END):
            want(1)
            p.dst = self.reg(ops[0], n)
        elif k is Kind.MOVSX:
            want(2)
            p.dst, p.src = self.reg(ops[0], n), self.reg(ops[1], n)
        elif k is Kind.ADDR_SPACE_CAST:
            want(3)
            p.dst, p.src = self.reg(ops[0], n), self.reg(ops[1], n)
            p.imm = self.num(ops[2], n, 32)
        elif k is Kind.JA:
            want(1)
            self.target(p, ops[0], n, "off" if spec.is64 else "imm")
        elif k is Kind.JCOND:
            want(1)
            self.target(p, ops[0], n, "off")
        elif k is Kind.JCC:
            want(3)
            p.dst = self.reg(ops[0], n)
            if ops[1].startswith("%"):
                p.spec = next(s for s in specs if s.use_reg)
                p.src = self.reg(ops[1], n)
            else:
                p.spec = next(s for s in specs if not s.use_reg)
                p.imm = self.num(ops[1], n, 32)
            self.target(p, ops[2], n, "off")
        elif k is Kind.CALL:
            want(1)
            p.imm = self.num(ops[0], n, 32, "helper id")
        elif k is Kind.CALL_LOCAL:
            want(1)
            self.target(p, ops[0], n, "imm")
        elif k is Kind.CALL_KFUNC:
            if len(ops) not in (1, 2):
                want(1)
            p.imm = self.num(ops[0], n, 32, "BTF id")
            if len(ops) == 2:
                p.off = self.num(ops[1], n, 16, "BTF fd index")
        elif k is Kind.CALLX:
            want(1)
            p.dst = self.reg(ops[0], n)
        elif k is Kind.EXIT:
            want(0)
        elif k in (Kind.LDX, Kind.LOAD_ACQ):
            want(2)
            p.dst = self.reg(ops[0], n)
            p.src, p.off = self.mem(ops[1], n)
        elif k is Kind.ST:
            want(2)
            p.dst, p.off = self.mem(ops[0], n)
            p.imm = self.num(ops[1], n, 32)
        elif k in (Kind.STX, Kind.STORE_REL, Kind.ATOMIC):
            want(2)
            p.dst, p.off = self.mem(ops[0], n)
            p.src = self.reg(ops[1], n)
        elif k is Kind.LD_IMM64:
            want(2)
            p.dst = self.reg(ops[0], n)
            self.lddw(p, specs, ops[1], n)
        elif k is Kind.LD_ABS:
            want(1)
            p.imm = self.num(ops[0], n, 32)
        elif k is Kind.LD_IND:
            want(2)
            p.src = self.reg(ops[0], n)
            p.imm = self.num(ops[1], n, 32)
        else:  # pragma: no cover
            raise AssertionError(k)
        prog.add(p)

    def lddw(self, p: Pending, specs: list[OpSpec], text: str, n: int) -> None:
        by_src = {dict(s.fixed)["src"]: s for s in specs}
        if text.startswith("func "):
            p.spec = by_src[U.BPF_PSEUDO_FUNC]
            self.target(p, text[5:].strip(), n, "imm")
            return
        m = _PSEUDO.match(text.replace(" ", ""))
        if m:
            if m.group(4) is not None:
                p.spec = by_src[U.BPF_PSEUDO_BTF_ID]
                p.imm, p.imm_hi = int(m.group(4)), int(m.group(5) or 0)
            else:
                value = "[0]" in text or m.group(3) is not None
                kind = "idx" if m.group(1) == "idx" else "fd"
                src = {("fd", False): U.BPF_PSEUDO_MAP_FD, ("fd", True): U.BPF_PSEUDO_MAP_VALUE,
                       ("idx", False): U.BPF_PSEUDO_MAP_IDX,
                       ("idx", True): U.BPF_PSEUDO_MAP_IDX_VALUE}[(kind, value)]
                p.spec = by_src[src]
                p.imm, p.imm_hi = int(m.group(2)), int(m.group(3) or 0)
            for v in (p.imm, p.imm_hi):
                if v > 0xFFFFFFFF:
                    raise self.err(n, f"value {v} does not fit in 32 bits")
            p.imm -= (p.imm >> 31) << 32
            p.imm_hi -= (p.imm_hi >> 31) << 32
            return
        p.spec = by_src[0]
        try:
            v = parse_int(text)
        except ValueError:
            raise self.err(n, f"invalid 64-bit immediate '{text}'") from None
        if not -(1 << 63) <= v < (1 << 64):
            raise self.err(n, f"immediate {text} out of range for 64 bits")
        v &= (1 << 64) - 1
        lo, hi = v & 0xFFFFFFFF, v >> 32
        p.imm = lo - (1 << 32) if lo >> 31 else lo
        p.imm_hi = hi - (1 << 32) if hi >> 31 else hi


def assemble_conformance(text: str, file: str | None = None, first_line: int = 1):
    prog = Program(file)
    parser = _Parser(prog)
    first_exit = None
    for n, raw in enumerate(text.splitlines(), first_line):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("--"):
            raise prog.error(n, f"unknown directive '{line}'")
        if first_exit is None and line == "exit":
            first_exit = len(prog.items)
        parser.line(line, n)
    # The suite's assembler lets jumps name "exit": the first exit instruction.
    defaults = {"exit": first_exit} if first_exit is not None else None
    return prog.link(defaults)
