"""Assembler for the kernel/LLVM syntax (``r0 = 1``, ``if r1 s> 0x5 goto +2``).

One grammar covers what clang's assembler, ``llvm-objdump``, ``bpftool prog
dump xlated`` and the verifier log print, so their output can be pasted back
in: a leading ``N:`` and ``(xx)`` opcode (xlated/verifier log) or ``N:`` and
raw bytes (objdump) are skipped, as are ``; ...`` annotations and ``<sym>``
jump-target decorations.  The opcode column, when present, settles the one
ambiguity of the syntax: ``(18) r1 = 0x5`` is an ld_imm64, ``r1 = 5`` a mov.
"""
from __future__ import annotations

import re

from .. import uapi as U
from ..errors import EbeeError
from ..uapi import helper_id
from ..isa import TABLE, Kind, OpSpec
from .common import LABEL_RE, NUM_RE, UNUM_RE, Pending, Program, check_range, is_hex, parse_int

# table lookups --------------------------------------------------------------


def _find(kind: Kind, **attrs) -> OpSpec:
    for s in TABLE:
        if s.kind is kind and all(getattr(s, k) == v for k, v in attrs.items()):
            return s
    raise KeyError((kind, attrs))


def _find_fixed(kind: Kind, fld: str, value: int, **attrs) -> OpSpec:
    for s in TABLE:
        if s.kind is kind and dict(s.fixed).get(fld) == value and \
                all(getattr(s, k) == v for k, v in attrs.items()):
            return s
    raise KeyError((kind, fld, value))


_ALU_BY_SYM = {"+=": "add", "-=": "sub", "*=": "mul", "/=": "div", "|=": "or", "&=": "and",
               "<<=": "lsh", ">>=": "rsh", "%=": "mod", "^=": "xor", "s>>=": "arsh",
               "s/=": "sdiv", "s%=": "smod"}
_JMP_BY_SYM = {"==": "jeq", ">": "jgt", ">=": "jge", "&": "jset", "!=": "jne", "s>": "jsgt",
               "s>=": "jsge", "<": "jlt", "<=": "jle", "s<": "jslt", "s<=": "jsle"}
_ATOMIC_BY_SYM = {"+=": "add", "|=": "or", "&=": "and", "^=": "xor"}
_SIZES = {"u8": (1, False), "u16": (2, False), "u32": (4, False), "u64": (8, False),
          "s8": (1, True), "s16": (2, True), "s32": (4, True)}

# grammar ----------------------------------------------------------------------

R = r"([rw])(\d+)"
N = NUM_RE
SZ = r"(u8|u16|u32|u64|s8|s16|s32)"
MEM = r"\(\s*r(\d+)\s*(?:([-+])\s*(" + UNUM_RE + r"))?\s*\)"
TGT = r"(pc\s*[-+]\s*" + UNUM_RE + r"|[-+]\s*" + UNUM_RE + r"|" + LABEL_RE + r")"

_RULES: list[tuple[str, re.Pattern]] = [(name, re.compile("^" + rx + "$")) for name, rx in [
    ("exit", r"exit"),
    ("callx", r"callx\s+r(\d+)"),
    ("call", r"call\s+(.+)"),
    ("ja", r"(goto|gotol|may_goto)\s+" + TGT),
    ("jcc", r"if\s+" + R + r"\s*(==|!=|s>=|s<=|s>|s<|>=|<=|>|<|&)\s*(?:" + R + "|(" + N + r"))\s+goto\s+" + TGT),
    ("lock", r"lock\s+\*\(\s*" + SZ + r"\s*\*\s*\)\s*" + MEM + r"\s*(\+=|\|=|&=|\^=)\s*" + R),
    ("fetch", R + r"\s*=\s*atomic(?:64)?_fetch_(add|and|or|xor)\(\s*\(\s*" + SZ + r"\s*\*\s*\)\s*" + MEM
     + r"\s*,\s*" + R + r"\s*\)"),
    ("axchg", R + r"\s*=\s*atomic(?:64)?_xchg\(\s*\(\s*" + SZ + r"\s*\*\s*\)\s*" + MEM + r"\s*,\s*" + R + r"\s*\)"),
    ("acmpxchg", R + r"\s*=\s*atomic(?:64)?_cmpxchg\(\s*\(\s*" + SZ + r"\s*\*\s*\)\s*" + MEM
     + r"\s*,\s*" + R + r"\s*,\s*" + R + r"\s*\)"),
    ("lxchg", R + r"\s*=\s*xchg(32)?_(32|64)\(\s*r(\d+)\s*(?:([-+])\s*(" + UNUM_RE + r"))?\s*,\s*" + R + r"\s*\)"),
    ("lcmpxchg", R + r"\s*=\s*cmpxchg(32)?_(32|64)\(\s*r(\d+)\s*(?:([-+])\s*(" + UNUM_RE + r"))?\s*,\s*"
     + R + r"\s*,\s*" + R + r"\s*\)"),
    ("ldacq", R + r"\s*=\s*load_acquire\(\s*\(\s*" + SZ + r"\s*\*\s*\)\s*" + MEM + r"\s*\)"),
    ("strel", r"store_release\(\s*\(\s*" + SZ + r"\s*\*\s*\)\s*" + MEM + r"\s*,\s*" + R + r"\s*\)"),
    ("store", r"\*\(\s*" + SZ + r"\s*\*\s*\)\s*" + MEM + r"\s*=\s*(?:" + R + "|(" + N + r"))"),
    ("load", R + r"\s*=\s*\*\(\s*" + SZ + r"\s*\*\s*\)\s*" + MEM),
    ("ldabs", r"r0\s*=\s*\*\(\s*" + SZ + r"\s*\*\s*\)\s*skb\[\s*(?:r(\d+)\s*(?:([-+])\s*(" + N
     + r"))?|(" + N + r"))\s*\]"),
    ("movsx", R + r"\s*=\s*\(\s*(s8|s16|s32)\s*\)\s*" + R),
    ("end", R + r"\s*=\s*(be|le|bswap)(16|32|64)\s+" + R),
    ("neg", R + r"\s*=\s*-\s*" + R),
    ("asc", R + r"\s*=\s*addr_space_cast\(\s*r(\d+)\s*,\s*(" + N + r")\s*,\s*(" + N + r")\s*\)"),
    ("pseudo", R + r"\s*=\s*(map\[(?:fd|id|idx):\d+\](?:\[0\])?(?:\s*\+\s*\d+)?|subprog\[\s*(?:[-+]?\d+|"
     + LABEL_RE + r")\s*\]|btf_id\[\d+\](?:\s*\+\s*\d+)?)(?:\s+ll)?"),
    ("imm64", R + r"\s*=\s*(" + N + r")\s+ll"),
    ("mov", R + r"\s*=\s*(?:" + R + "|(" + N + r"))"),
    ("alu", R + r"\s*(\+=|-=|\*=|/=|\|=|&=|<<=|>>=|%=|\^=|s>>=|s/=|s%=)\s*(?:" + R + "|(" + N + r"))"),
]]

_PREFIX_PC = re.compile(r"^\s*\d+\s*:\s*")
_PREFIX_OPCODE = re.compile(r"^\(([0-9a-fA-F]{2})\)\s*")
_PREFIX_BYTES = re.compile(r"^((?:[0-9a-f]{2} ){7}[0-9a-f]{2}(?: (?:[0-9a-f]{2} ){7}[0-9a-f]{2})?)\s+")
_DECOR = re.compile(r"\s*<[^<>]*>\s*$")


class _Parser:
    def __init__(self, prog: Program):
        self.prog = prog

    def err(self, n: int, msg: str):
        return self.prog.error(n, msg)

    def reg(self, kind: str, num: str, n: int) -> int:
        r = int(num)
        if r > 10:
            raise self.err(n, f"invalid register {kind}{r} (expected r0..r10)")
        return r

    def imm(self, text: str, n: int, bits: int = 32, what: str = "immediate") -> int:
        v = parse_int(text)
        return check_range(self.prog, n, v, bits, what, hex_spelling=v >= 0)

    def off(self, sign: str | None, text: str | None, n: int) -> int:
        if text is None:
            return 0
        v = parse_int((sign or "+") + text)
        v = check_range(self.prog, n, v, 16, "offset", hex_spelling=is_hex(text))
        return v - 0x10000 if v > 0x7FFF else v

    def target(self, p: Pending, text: str, n: int, field: str) -> None:
        t = text.replace(" ", "")
        p.target_field = field
        if t.startswith("pc"):
            t = t[2:]
        if t[0] in "+-":
            v = parse_int(t)
            setattr(p, field, check_range(self.prog, n, v, 16 if field == "off" else 32, "jump offset"))
        else:
            p.label = t

    # -------------------------------------------------------------------------

    def line(self, text: str, n: int) -> None:
        hint = None
        t = _PREFIX_PC.sub("", text, count=1) if re.match(r"^\s*\d+\s*:", text) else text
        m = _PREFIX_OPCODE.match(t)
        if m:
            hint = int(m.group(1), 16)
            t = t[m.end():]
        else:
            m = _PREFIX_BYTES.match(t)
            if m:
                hint = int(m.group(1)[:2], 16)
                t = t[m.end():]
        t = _DECOR.sub("", t).strip()
        if not t:
            return
        if re.fullmatch(LABEL_RE + ":", t):
            self.prog.add_label(t[:-1], n)
            return
        for name, rx in _RULES:
            m = rx.match(t)
            if m:
                if name == "mov" and hint == U.BPF_LD | U.BPF_IMM | U.BPF_DW:
                    name, m = "imm64", re.match("^" + R + r"\s*=\s*(" + N + ")$", t)
                try:
                    getattr(self, "r_" + name)(m, n)
                except EbeeError:
                    raise
                except ValueError as e:     # a field the rule matched but cannot read
                    raise self.err(n, f"{e} in '{t}'") from None
                return
        raise self.err(n, f"cannot parse instruction '{t}'")

    def add(self, spec: OpSpec, n: int, **vals) -> Pending:
        p = Pending(spec, n)
        for k, v in vals.items():
            setattr(p, k, v)
        self.prog.add(p)
        return p

    def r_exit(self, m, n):
        self.add(_find(Kind.EXIT), n)

    def r_callx(self, m, n):
        self.add(_find(Kind.CALLX), n, dst=self.reg("r", m.group(1), n))

    def r_call(self, m, n):
        t = m.group(1).strip()
        km = re.fullmatch(r"(" + LABEL_RE + r"|kernel-function)#(-?\d+)(?:@(-?\d+))?", t)
        if km:   # xlated: "bpf_map_lookup_elem#1", "kernel-function#123", "bpf_obj_new_impl#123"
            name, ident = km.group(1), int(km.group(2))
            if helper_id(name) is not None or name == "unknown":
                self.add(_find(Kind.CALL), n, imm=self.imm(str(ident), n))
            else:
                off = int(km.group(3)) if km.group(3) else 0
                self.add(_find(Kind.CALL_KFUNC), n, imm=self.imm(str(ident), n), off=off)
            return
        if re.fullmatch(r"pc\s*[-+]\s*" + UNUM_RE, t):
            p = self.add(_find(Kind.CALL_LOCAL), n)
            self.target(p, t, n, "imm")
            return
        if re.fullmatch(NUM_RE, t):
            self.add(_find(Kind.CALL), n, imm=self.imm(t, n, what="helper id"))
            return
        if re.fullmatch(LABEL_RE, t):
            hid = helper_id(t)
            if hid is not None and t not in self.prog.labels:
                self.add(_find(Kind.CALL), n, imm=hid)
            else:
                p = self.add(_find(Kind.CALL_LOCAL), n)
                p.label, p.target_field = t, "imm"
            return
        raise self.err(n, f"invalid call target '{t}'")

    def r_ja(self, m, n):
        word = m.group(1)
        if word == "goto":
            p = self.add(_find(Kind.JA, is64=True), n)
            self.target(p, m.group(2), n, "off")
        elif word == "gotol":
            p = self.add(_find(Kind.JA, is64=False), n)
            self.target(p, m.group(2), n, "imm")
        else:
            p = self.add(_find(Kind.JCOND), n)
            self.target(p, m.group(2), n, "off")

    def r_jcc(self, m, n):
        w, d, sym, sw, s, imm, tgt = m.groups()
        is64 = w == "r"
        if sw is not None and sw != w:
            raise self.err(n, f"mixed register widths {w}{d} and {sw}{s}")
        op = _JMP_BY_SYM[sym]
        if s is not None:
            p = self.add(_find(Kind.JCC, op=op, is64=is64, use_reg=True), n,
                         dst=self.reg(w, d, n), src=self.reg(sw, s, n))
        else:
            p = self.add(_find(Kind.JCC, op=op, is64=is64, use_reg=False), n,
                         dst=self.reg(w, d, n), imm=self.imm(imm, n))
        self.target(p, tgt, n, "off")

    def _size(self, sz: str, n: int, *, signed_ok: bool = False) -> tuple[int, bool]:
        size, signed = _SIZES[sz]
        if signed and not signed_ok:
            raise self.err(n, f"'{sz}' is only valid for loads")
        return size, signed

    def r_lock(self, m, n):
        sz, base, sign, off, sym, w, s = m.groups()
        size, _ = self._size(sz, n)
        if size not in (4, 8):
            raise self.err(n, "atomic operations are 32 or 64 bits wide")
        spec = _find(Kind.ATOMIC, op=_ATOMIC_BY_SYM[sym], size=size, fetch=False)
        self.add(spec, n, dst=self.reg("r", base, n), off=self.off(sign, off, n), src=self.reg(w, s, n))

    def _atomic(self, op: str, fetch: bool, sz: str, base, sign, off, src, n, out=None):
        size, _ = self._size(sz, n)
        if size not in (4, 8):
            raise self.err(n, "atomic operations are 32 or 64 bits wide")
        if out is not None and out != src:
            raise self.err(n, f"atomic result register r{out} must be the source register r{src}")
        self.add(_find(Kind.ATOMIC, op=op, size=size, fetch=fetch), n, dst=self.reg("r", base, n),
                 off=self.off(sign, off, n), src=self.reg("r", src, n))

    def r_fetch(self, m, n):
        _, out, op, sz, base, sign, off, _, s = m.groups()
        self._atomic(op, True, sz, base, sign, off, s, n, out)

    def r_axchg(self, m, n):
        _, out, sz, base, sign, off, _, s = m.groups()
        self._atomic("xchg", True, sz, base, sign, off, s, n, out)

    def r_acmpxchg(self, m, n):
        _, out, sz, base, sign, off, _, cmp, _, s = m.groups()
        if out != "0" or cmp != "0":
            raise self.err(n, "cmpxchg compares with and returns into r0")
        self._atomic("cmpxchg", True, sz, base, sign, off, s, n)

    def r_lxchg(self, m, n):
        _, out, is32, bits, base, sign, off, _, s = m.groups()
        self._atomic("xchg", True, "u32" if is32 or bits == "32" else "u64", base, sign, off, s, n, out)

    def r_lcmpxchg(self, m, n):
        _, out, is32, bits, base, sign, off, _, cmp, _, s = m.groups()
        if out != "0" or cmp != "0":
            raise self.err(n, "cmpxchg compares with and returns into r0")
        self._atomic("cmpxchg", True, "u32" if is32 or bits == "32" else "u64", base, sign, off, s, n)

    def r_ldacq(self, m, n):
        w, d, sz, base, sign, off = m.groups()
        size, _ = self._size(sz, n)
        self.add(_find(Kind.LOAD_ACQ, size=size), n, dst=self.reg(w, d, n),
                 src=self.reg("r", base, n), off=self.off(sign, off, n))

    def r_strel(self, m, n):
        sz, base, sign, off, w, s = m.groups()
        size, _ = self._size(sz, n)
        self.add(_find(Kind.STORE_REL, size=size), n, dst=self.reg("r", base, n),
                 off=self.off(sign, off, n), src=self.reg(w, s, n))

    def r_store(self, m, n):
        sz, base, sign, off, w, s, imm = m.groups()
        size, _ = self._size(sz, n)
        if s is not None:
            self.add(_find(Kind.STX, size=size), n, dst=self.reg("r", base, n),
                     off=self.off(sign, off, n), src=self.reg(w, s, n))
        else:
            self.add(_find(Kind.ST, size=size), n, dst=self.reg("r", base, n),
                     off=self.off(sign, off, n), imm=self.imm(imm, n))

    def r_load(self, m, n):
        w, d, sz, base, sign, off = m.groups()
        size, signed = self._size(sz, n, signed_ok=True)
        self.add(_find(Kind.LDX, size=size, signed=signed), n, dst=self.reg(w, d, n),
                 src=self.reg("r", base, n), off=self.off(sign, off, n))

    def r_ldabs(self, m, n):
        sz, s, sign, ioff, imm = m.groups()
        size, signed = self._size(sz, n)
        if size == 8:
            raise self.err(n, "legacy packet loads are 1, 2 or 4 bytes wide")
        if s is not None:
            v = parse_int(ioff) * (-1 if sign == "-" else 1) if ioff else 0   # kernel prints "+ -1"
            self.add(_find(Kind.LD_IND, size=size), n, src=self.reg("r", s, n), imm=self.imm(str(v), n))
        else:
            self.add(_find(Kind.LD_ABS, size=size), n, imm=self.imm(imm, n))

    def r_movsx(self, m, n):
        w, d, sx, sw, s = m.groups()
        if sw != w:
            raise self.err(n, "movsx source and destination must be the same width")
        bits = int(sx[1:])
        if w == "w" and bits == 32:
            raise self.err(n, "32-bit movsx takes s8 or s16")
        self.add(_find_fixed(Kind.MOVSX, "off", bits, is64=w == "r"), n,
                 dst=self.reg(w, d, n), src=self.reg(sw, s, n))

    def r_end(self, m, n):
        w, d, op, bits, w2, d2 = m.groups()
        if d != d2:
            raise self.err(n, "byte swaps operate in place: the source must be the destination")
        self.add(_find_fixed(Kind.END, "imm", int(bits), op=op), n, dst=self.reg(w, d, n))

    def r_neg(self, m, n):
        w, d, w2, d2 = m.groups()
        if (w, d) != (w2, d2):
            raise self.err(n, "negation operates in place: use rN = -rN")
        self.add(_find(Kind.NEG, is64=w == "r"), n, dst=self.reg(w, d, n))

    def r_asc(self, m, n):
        w, d, s, a, b = m.groups()
        self.add(_find(Kind.ADDR_SPACE_CAST), n, dst=self.reg(w, d, n), src=self.reg("r", s, n),
                 imm=(parse_int(a) << 16) | (parse_int(b) & 0xFFFF))

    def r_pseudo(self, m, n):
        w, d, text = m.groups()
        text = text.replace(" ", "")
        dst = self.reg(w, d, n)

        def spec(src: int) -> OpSpec:
            return _find_fixed(Kind.LD_IMM64, "src", src)

        def s32(v: int) -> int:
            if v > 0xFFFFFFFF:
                raise self.err(n, f"value {v} does not fit in 32 bits")
            return v - (1 << 32) if v >> 31 else v

        if text.startswith("subprog["):
            inner = text[8:-1]
            p = self.add(spec(U.BPF_PSEUDO_FUNC), n, dst=dst)
            if re.fullmatch(r"[-+]?\d+", inner):
                p.imm = self.imm(inner, n)
            else:
                p.label, p.target_field = inner, "imm"
            return
        if text.startswith("btf_id["):
            mm = re.fullmatch(r"btf_id\[(\d+)\](?:\+(\d+))?", text)
            self.add(spec(U.BPF_PSEUDO_BTF_ID), n, dst=dst, imm=s32(int(mm.group(1))),
                     imm_hi=s32(int(mm.group(2) or 0)))
            return
        mm = re.fullmatch(r"map\[(fd|id|idx):(\d+)\](\[0\])?(?:\+(\d+))?", text)
        kind = "idx" if mm.group(1) == "idx" else "fd"
        value = mm.group(3) is not None or mm.group(4) is not None
        src = {("fd", False): U.BPF_PSEUDO_MAP_FD, ("fd", True): U.BPF_PSEUDO_MAP_VALUE,
               ("idx", False): U.BPF_PSEUDO_MAP_IDX, ("idx", True): U.BPF_PSEUDO_MAP_IDX_VALUE}[(kind, value)]
        self.add(spec(src), n, dst=dst, imm=s32(int(mm.group(2))), imm_hi=s32(int(mm.group(4) or 0)))

    def r_imm64(self, m, n):
        w, d, text = m.groups()
        v = parse_int(text)
        if not -(1 << 63) <= v < (1 << 64):
            raise self.err(n, f"immediate {text} out of range for 64 bits")
        v &= (1 << 64) - 1
        lo, hi = v & 0xFFFFFFFF, v >> 32
        self.add(_find_fixed(Kind.LD_IMM64, "src", 0), n, dst=self.reg(w, d, n),
                 imm=lo - (1 << 32) if lo >> 31 else lo, imm_hi=hi - (1 << 32) if hi >> 31 else hi)

    def r_mov(self, m, n):
        w, d, sw, s, imm = m.groups()
        self._alu(w, d, "mov", sw, s, imm, n)

    def r_alu(self, m, n):
        w, d, sym, sw, s, imm = m.groups()
        self._alu(w, d, _ALU_BY_SYM[sym], sw, s, imm, n)

    def _alu(self, w, d, op, sw, s, imm, n):
        is64 = w == "r"
        if s is not None:
            if sw != w:
                raise self.err(n, f"mixed register widths {w}{d} and {sw}{s}")
            self.add(_find(Kind.ALU, op=op, is64=is64, use_reg=True), n,
                     dst=self.reg(w, d, n), src=self.reg(sw, s, n))
            return
        v = parse_int(imm)
        if op == "mov" and is64 and not -(1 << 31) <= v <= 0xFFFFFFFF:
            # too wide for a mov: the only encoding is an ld_imm64
            self.r_imm64(re.match("^" + R + r"\s*=\s*(" + N + ")$", f"{w}{d} = {imm}"), n)
            return
        self.add(_find(Kind.ALU, op=op, is64=is64, use_reg=False), n,
                 dst=self.reg(w, d, n), imm=self.imm(imm, n))


def _strip_comment(line: str) -> str:
    line = re.sub(r"/\*.*?\*/", "", line)
    for marker in ("//", ";"):
        i = line.find(marker)
        if i >= 0:
            line = line[:i]
    # '#' starts a comment unless it joins a call target to its id (bpf_x#1)
    return re.sub(r"(^|\s)#.*$", "", line).strip()


def assemble_kernel(text: str, file: str | None = None, first_line: int = 1):
    prog = Program(file)
    parser = _Parser(prog)
    for n, raw in enumerate(text.splitlines(), first_line):
        line = _strip_comment(raw)
        if line:
            parser.line(line, n)
    return prog.link()
