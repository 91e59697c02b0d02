"""Classic BPF: parse ``tcpdump -dd``/``-ddd`` output or raw ``struct sock_filter`` arrays,
check them as ``bpf_check_classic`` does, and convert them to eBPF as
``bpf_convert_filter`` does (net/core/filter.c), to run as socket filters.

Register mapping is Linux's: A is r0, X is r7, the context is kept in r6, the
16 scratch words M[] live at the top of the stack.  Packet loads become
LD_ABS/LD_IND (the form bpf_convert_filter emitted before it learnt to inline
them; same semantics, including "out of bounds returns 0"), and ancillary
loads (SKF_AD_*) become ``__sk_buff`` field loads, so that the program is
then rewritten like any socket filter.
"""
from __future__ import annotations

import errno
import re
import struct
from dataclasses import dataclass

from .. import uapi as U
from ..isa import Instruction
from . import emit as E
from ..uapi import FuncId
from .emit import _mk, _spec

A, X, CTX, TMP = 0, 7, 6, 9

_CLASS = {0x00: "ld", 0x01: "ldx", 0x02: "st", 0x03: "stx", 0x04: "alu", 0x05: "jmp",
          0x06: "ret", 0x07: "misc"}
_ALU = {0x00: "add", 0x10: "sub", 0x20: "mul", 0x30: "div", 0x40: "or", 0x50: "and",
        0x60: "lsh", 0x70: "rsh", 0x80: "neg", 0x90: "mod", 0xA0: "xor"}
_JMP = {0x00: "ja", 0x10: "jeq", 0x20: "jgt", 0x30: "jge", 0x40: "jset"}
_SIZE = {0x00: 4, 0x08: 2, 0x10: 1}


class CbpfError(OSError):
    """A classic program Linux rejects (EINVAL), with the instruction at fault."""

    def __init__(self, message: str, index: int | None = None):
        self.index = index
        super().__init__(errno.EINVAL, f"insn {index}: {message}" if index is not None else message)


@dataclass(frozen=True)
class SockFilter:
    """One ``struct sock_filter``: code, jt, jf, k."""
    code: int
    jt: int
    jf: int
    k: int

    def pack(self) -> bytes:
        return struct.pack("<HBBI", self.code, self.jt, self.jf, self.k & 0xFFFFFFFF)


def parse(data: bytes | str, *, source: str = "<cbpf>") -> list[SockFilter]:
    """A classic program from ``tcpdump -dd`` (C array) or ``-ddd`` (decimal) text, or
    from binary ``struct sock_filter`` records."""
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("ascii")
        except UnicodeDecodeError:
            text = None
        if text is None or not text.strip() or not re.search(r"\d", text):
            raw = bytes(data)
            if not raw or len(raw) % 8:
                raise ValueError(f"{source}: error: binary sock_filter arrays are 8 bytes per "
                                 f"instruction; got {len(raw)} bytes")
            return [SockFilter(*struct.unpack_from("<HBBI", raw, o)) for o in range(0, len(raw), 8)]
    else:
        text = data
    out: list[SockFilter] = []
    lines = [ln.strip() for ln in text.splitlines()]
    dd = [ln for ln in lines if ln.startswith("{")]
    if dd:
        for n, ln in enumerate(lines, 1):
            if not ln or not ln.startswith("{"):
                continue
            m = re.fullmatch(r"\{\s*(\w+)\s*,\s*(\w+)\s*,\s*(\w+)\s*,\s*(\w+)\s*\}\s*,?", ln)
            if not m:
                raise ValueError(f"{source}:{n}: error: expected '{{ code, jt, jf, k }},' "
                                 f"(tcpdump -dd), got {ln!r}")
            try:
                out.append(SockFilter(*(int(g, 0) for g in m.groups())))
            except ValueError:
                raise ValueError(f"{source}:{n}: error: bad number in {ln!r}") from None
        return out
    body = [(n, ln) for n, ln in enumerate(lines, 1) if ln]
    if not body:
        raise ValueError(f"{source}: error: empty classic BPF program")
    n0, first = body[0]
    parts = first.replace(",", " ").split()
    start = 0
    if len(parts) == 1:            # tcpdump -ddd starts with the instruction count
        start = 1
    for n, ln in body[start:]:
        parts = ln.replace(",", " ").split()
        if len(parts) != 4:
            raise ValueError(f"{source}:{n}: error: expected 'code jt jf k' (tcpdump -ddd), "
                             f"got {ln!r}")
        try:
            out.append(SockFilter(*(int(p, 0) for p in parts)))
        except ValueError:
            raise ValueError(f"{source}:{n}: error: bad number in {ln!r}") from None
    if start and int(parts and first.split()[0], 0) != len(out):
        raise ValueError(f"{source}:{n0}: error: count {first} does not match the "
                         f"{len(out)} instructions that follow")
    return out


def check(prog: list[SockFilter]) -> None:
    """bpf_check_classic(): the checks Linux makes before accepting a classic filter."""
    n = len(prog)
    if n == 0 or n > U.BPF_MAXINSNS_CLASSIC:
        raise CbpfError(f"a classic program has 1..{U.BPF_MAXINSNS_CLASSIC} instructions, not {n}")
    for i, f in enumerate(prog):
        cls = _CLASS.get(f.code & 0x07)
        code = f.code
        if not _valid_code(code):
            raise CbpfError(f"unknown opcode {code:#06x}", i)
        if cls == "alu" and (code & 0xF0) in (0x30, 0x90) and not code & 0x08 and f.k == 0:
            raise CbpfError("division by constant zero", i)
        if cls in ("st", "stx") or (cls in ("ld", "ldx") and (code & 0xE0) == 0x60):
            if f.k >= U.BPF_MEMWORDS:
                raise CbpfError(f"scratch memory index {f.k} >= {U.BPF_MEMWORDS}", i)
        if cls == "jmp":
            if (code & 0xF0) == 0x00:
                if f.k >= n - i - 1:
                    raise CbpfError("jump out of range", i)
            elif i + f.jt + 1 >= n or i + f.jf + 1 >= n:
                raise CbpfError("jump out of range", i)
    if _CLASS.get(prog[-1].code & 0x07) not in ("ret", "jmp"):
        raise CbpfError("the last instruction must be a return", n - 1)
    _check_mem(prog)


def _valid_code(code: int) -> bool:
    cls = code & 0x07
    if cls == 0x00:      # ld
        mode = code & 0xE0
        return (mode in (0x20, 0x40) and (code & 0x18) in _SIZE) or \
            (code in (0x00, 0x60, 0x80))      # ld imm, ld mem, ld len (all W)
    if cls == 0x01:
        return code in (0x01, 0x61, 0x81, 0xB1)   # ldx imm/mem/len, ldx msh b
    if cls in (0x02, 0x03):
        return code in (0x02, 0x03)
    if cls == 0x04:
        return (code & 0xF0) in _ALU and not (code & 0xF0 == 0x80 and code & 0x08)
    if cls == 0x05:
        return (code & 0xF0) in _JMP and not (code & 0xF0 == 0x00 and code & 0x08)
    if cls == 0x06:
        return code in (0x06, 0x0E, 0x16)          # ret k, ret x, ret a
    if cls == 0x07:
        return code in (0x07, 0x87)                # tax, txa
    return False


def _check_mem(prog: list[SockFilter]) -> None:
    """check_load_and_stores(): M[k] must be written on every path before it is read."""
    n = len(prog)
    valid = [None] * n
    valid[0] = 0
    for i, f in enumerate(prog):
        mem = valid[i]
        if mem is None:
            mem = 0xFFFF          # unreachable: don't complain
        cls = f.code & 0x07
        if cls in (0x02, 0x03):
            mem |= 1 << f.k
        elif cls in (0x00, 0x01) and (f.code & 0xE0) == 0x60:
            if not mem & (1 << f.k):
                raise CbpfError(f"M[{f.k}] is read before it is written", i)
        if cls == 0x06:
            continue
        if cls == 0x05:
            targets = [i + 1 + f.k] if (f.code & 0xF0) == 0 else [i + 1 + f.jt, i + 1 + f.jf]
        else:
            targets = [i + 1]
        for t in targets:
            if t < n:
                valid[t] = mem if valid[t] is None else valid[t] & mem


_SKB = {"len": 0, "pkt_type": 4, "mark": 8, "queue_mapping": 12, "protocol": 16,
        "vlan_present": 20, "vlan_tci": 24, "vlan_proto": 28, "ifindex": 40, "hash": 68}


def _ancillary(off: int, i: int) -> list[Instruction]:
    k = off - U.SKF_AD_OFF
    ld = lambda f: E.ldx(4, A, CTX, _SKB[f])  # noqa: E731  (a __sk_buff field, rewritten later)
    if k == U.SKF_AD_PROTOCOL:
        return [ld("protocol"), _be(16)]
    if k == U.SKF_AD_PKTTYPE:
        return [ld("pkt_type")]
    if k == U.SKF_AD_IFINDEX:
        return [ld("ifindex")]
    if k == U.SKF_AD_MARK:
        return [ld("mark")]
    if k == U.SKF_AD_QUEUE:
        return [ld("queue_mapping")]
    if k == U.SKF_AD_RXHASH:
        return [ld("hash")]
    if k == U.SKF_AD_VLAN_TAG:
        return [ld("vlan_tci")]
    if k == U.SKF_AD_VLAN_TAG_PRESENT:
        return [ld("vlan_present")]
    if k == U.SKF_AD_VLAN_TPID:
        return [ld("vlan_proto"), _be(16)]
    if k == U.SKF_AD_CPU:
        return [_call(FuncId.get_smp_processor_id)]
    if k == U.SKF_AD_RANDOM:
        return [_call(FuncId.get_prandom_u32)]
    if k == U.SKF_AD_ALU_XOR_X:
        return [E.alu32_reg("xor", A, X)]
    names = {U.SKF_AD_HATYPE: "SKF_AD_HATYPE", U.SKF_AD_NLATTR: "SKF_AD_NLATTR",
             U.SKF_AD_NLATTR_NEST: "SKF_AD_NLATTR_NEST", U.SKF_AD_PAY_OFFSET: "SKF_AD_PAY_OFFSET"}
    if k in names:
        raise CbpfError(f"ancillary load {names[k]} is not supported by ebee", i)
    raise CbpfError(f"unknown ancillary load offset {off}", i)


def _be(bits: int) -> Instruction:
    return _mk(_spec(f"be{bits}"), A, 0, 0, bits)


def _call(fid: int) -> Instruction:
    return _mk(_spec("call"), 0, 0, 0, int(fid))


def _ld_abs(size: int, k: int, indirect: bool) -> Instruction:
    name = ("ldind" if indirect else "ldabs") + {1: "b", 2: "h", 4: "w"}[size]
    return _mk(_spec(name), 0, X if indirect else 0, 0, k)


def convert(prog: list[SockFilter]) -> list[Instruction]:
    """bpf_convert_filter(): the eBPF program a classic filter becomes."""
    check(prog)
    pieces: list[list[Instruction]] = []
    jumps: list[list[tuple[int, int]]] = []        # per piece: (index in piece, cBPF target)
    for i, f in enumerate(prog):
        code, k = f.code, f.k & 0xFFFFFFFF
        ks = k - (1 << 32) if k & 0x80000000 else k
        cls = code & 0x07
        out: list[Instruction] = []
        js: list[tuple[int, int]] = []
        if cls == 0x00:           # ld
            mode = code & 0xE0
            if mode == 0x20 and U.SKF_AD_OFF <= ks < 0:
                out += _ancillary(ks, i)
            elif mode in (0x20, 0x40):
                out.append(_ld_abs(_SIZE[code & 0x18], ks, mode == 0x40))
            elif mode == 0x00:
                out.append(E.mov32_imm(A, k))
            elif mode == 0x60:
                out.append(E.ldx(4, A, 10, -(U.BPF_MEMWORDS - k) * 4))
            elif mode == 0x80:
                out.append(E.ldx(4, A, CTX, _SKB["len"]))
        elif cls == 0x01:         # ldx
            if code == 0x01:
                out.append(E.mov32_imm(X, k))
            elif code == 0x61:
                out.append(E.ldx(4, X, 10, -(U.BPF_MEMWORDS - k) * 4))
            elif code == 0x81:
                out.append(E.ldx(4, X, CTX, _SKB["len"]))
            else:                 # msh: X = 4 * (P[k] & 0xf)
                out += [E.mov64_reg(TMP, A), _ld_abs(1, ks, False), E.alu32_imm("and", A, 0xF),
                        E.alu32_imm("lsh", A, 2), E.mov64_reg(X, A), E.mov64_reg(A, TMP)]
        elif cls in (0x02, 0x03):
            out.append(E.stx(4, 10, A if cls == 0x02 else X, -(U.BPF_MEMWORDS - k) * 4))
        elif cls == 0x04:         # alu
            op = _ALU[code & 0xF0]
            if op == "neg":
                out.append(_mk(_spec("neg32"), A))
            elif code & 0x08:
                if op in ("div", "mod"):
                    out += [E.alu32_reg("mov", X, X), E.jmp_imm("jne", X, 0, 2),
                            E.alu32_reg("xor", A, A), _exit()]
                out.append(E.alu32_reg(op, A, X))
            else:
                out.append(E.alu32_imm(op, A, k))
        elif cls == 0x05:         # jmp
            op = _JMP[code & 0xF0]
            if op == "ja":
                out.append(E.ja(0))
                js.append((0, i + 1 + k))
            else:
                use_x = bool(code & 0x08)
                if not use_x and ks < 0:
                    out.append(E.mov32_imm(2, k))
                    reg = 2
                    use_x = True
                else:
                    reg = X
                if f.jf == 0:
                    out.append(_cond(op, use_x, reg, k))
                    js.append((len(out) - 1, i + 1 + f.jt))
                elif f.jt == 0 and op in ("jeq", "jgt", "jge"):
                    inv = {"jeq": "jne", "jgt": "jle", "jge": "jlt"}[op]
                    out.append(_cond(inv, use_x, reg, k))
                    js.append((len(out) - 1, i + 1 + f.jf))
                else:
                    out.append(_cond(op, use_x, reg, k))
                    js.append((len(out) - 1, i + 1 + f.jt))
                    out.append(E.ja(0))
                    js.append((len(out) - 1, i + 1 + f.jf))
        elif cls == 0x06:         # ret
            if code == 0x06:
                out.append(E.mov32_imm(A, k))
            elif code == 0x0E:
                out.append(E.alu32_reg("mov", A, X))
            out.append(_exit())
        elif cls == 0x07:
            out.append(E.alu32_reg("mov", X, A) if code == 0x07 else E.alu32_reg("mov", A, X))
        pieces.append(out)
        jumps.append(js)
    prologue = [E.alu32_reg("xor", A, A), E.alu32_reg("xor", X, X), E.mov64_reg(CTX, 1)]
    starts = []
    pc = len(prologue)
    for p in pieces:
        starts.append(pc)
        pc += len(p)
    starts.append(pc)
    from dataclasses import replace
    result = list(prologue)
    for idx, (p, js) in enumerate(zip(pieces, jumps)):
        fixed = list(p)
        for at, target in js:
            here = starts[idx] + at
            fixed[at] = replace(fixed[at], off=starts[target] - here - 1)
        result += fixed
    return [replace(x, pc=n) for n, x in enumerate(result)]


def _cond(op: str, use_x: bool, reg: int, k: int) -> Instruction:
    if use_x:
        return _mk(_spec(op, True), A, reg, 0, 0)
    return _mk(_spec(op, False), A, 0, 0, k)


def _exit() -> Instruction:
    return _mk(_spec("exit"))
