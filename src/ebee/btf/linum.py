"""Source lines and function prototypes interleaved with disassembly.

``bpftool prog dump xlated`` prints, before the instruction where a function
starts, its prototype (``int f(struct xdp_md * ctx):``) and, before each
instruction that has a line_info record, the source line (``; x = 1;``), or
with ``linum`` the line plus ``[file:F line_num:N line_col:C]``.  This module
produces exactly that from ``ebee.btf.ext`` records, for the loader's
programs and for programs read back from the kernel alike.

Records are taken with ``.insn`` (the instruction index): the loader's
records carry byte offsets like ``.BTF.ext``; kernel-reported ones can be
built with ``insn_off = index * 8``.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from ..uapi import BtfVarLinkage
from .types import Kind
from ..asm.disasm import format_xlated
from ..isa import Instruction, format_kernel
from .btf import BTF
from .ext import FuncInfo, LineInfo


_SIG_MAX = 1024      # bpftool's func_sig buffer: longer signatures are dropped


class _TooLong(Exception):
    pass


def _type_only(btf: "BTF", tid: int, out: list[str], depth: int = 0) -> None:
    """bpftool's ``__btf_dumper_type_only``: a type spelled for a prototype."""
    if depth > 64:
        raise _TooLong
    if tid == 0:
        out.append("void ")
        return
    t = btf[tid]
    k = t.kind
    if k in (Kind.INT, Kind.TYPEDEF, Kind.FLOAT):
        out.append(f"{t.name} ")
    elif k is Kind.STRUCT:
        out.append(f"struct {t.name} ")
    elif k is Kind.UNION:
        out.append(f"union {t.name} ")
    elif k in (Kind.ENUM, Kind.ENUM64):
        out.append(f"enum {t.name} ")
    elif k is Kind.ARRAY:
        _type_only(btf, t.type_id, out, depth + 1)
        out.append(f"[{t.nelems}]")
    elif k is Kind.PTR:
        _type_only(btf, t.type_id, out, depth + 1)
        out.append("* ")
    elif k is Kind.FWD:
        out.append(f"{'union' if t.is_union else 'struct'} {t.name} ")
    elif k in (Kind.VOLATILE, Kind.CONST, Kind.RESTRICT):
        out.append(f"{k.name.lower()} ")
        _type_only(btf, t.type_id, out, depth + 1)
    elif k is Kind.FUNC_PROTO:
        _func(btf, t, None, out, depth + 1)
    elif k is Kind.FUNC:
        _func(btf, btf[t.type_id], t, out, depth + 1)
    elif k is Kind.VAR:
        if t.linkage == BtfVarLinkage.STATIC:
            out.append("static ")
        _type_only(btf, t.type_id, out, depth + 1)
        out.append(f" {t.name}")
    elif k is Kind.DATASEC:
        out.append(f'section ("{t.name}") ')
    else:
        raise _TooLong      # void / type tags / decl tags: bpftool prints nothing


def _func(btf: "BTF", proto, func, out: list[str], depth: int) -> None:
    _type_only(btf, proto.return_type_id, out, depth)
    out.append(f"{func.name}(" if func is not None else "(")
    for i, prm in enumerate(proto.params):
        if i:
            out.append(", ")
        if prm.type_id:
            _type_only(btf, prm.type_id, out, depth)
            if prm.name:
                out.append(prm.name)
            elif out and out[-1].endswith(" "):
                out[-1] = out[-1][:-1]      # no name: drop the separating space
        else:
            out.append("...")
    out.append(")")


def func_signature(btf: "BTF", type_id: int) -> str:
    """``int f(struct xdp_md * ctx)`` for a FUNC, as bpftool prints it ("" if it cannot)."""
    out: list[str] = []
    try:
        _type_only(btf, type_id, out)
    except (_TooLong, KeyError):
        return ""
    s = "".join(out)
    return s if len(s) < _SIG_MAX else ""


def line_text(li: "LineInfo", *, linum: bool = False, prefix: str = "; ") -> str:
    """``; src`` or, with ``linum``, ``; src [file:F line_num:N line_col:C]``."""
    src = li.line_text.lstrip(" \t\n\r\f\v")
    if linum:
        return f"{prefix}{src} [file:{li.file_name} line_num:{li.line} line_col:{li.col}]"
    return f"{prefix}{src}"


def line_json(li: "LineInfo", *, linum: bool = False) -> dict:
    """The ``src``/``file``/``line_num``/``line_col`` members of ``bpftool -j``."""
    d: dict = {"src": li.line_text.lstrip(" \t\n\r\f\v")}
    if linum:
        d["file"] = li.file_name
        if li.line:
            d["line_num"] = li.line
        if li.col:
            d["line_col"] = li.col
    return d


class _Lines:
    """libbpf's ``bpf_prog_linfo__lfind`` walk: the last record at or before an
    instruction, shown only if it is exactly at it."""

    def __init__(self, line_info: Sequence["LineInfo"]):
        self.recs = list(line_info)
        self.nr_skip = 0

    def find(self, insn: int) -> "LineInfo | None":
        recs, skip = self.recs, self.nr_skip
        if skip >= len(recs) or insn < recs[skip].insn:
            return None
        j = skip
        while j < len(recs) and recs[j].insn <= insn:
            j += 1
        r = recs[j - 1]
        if r.insn != insn:
            return None
        self.nr_skip += 1
        return r


def annotate(insns: Sequence["Instruction"], btf: "BTF | None",
             func_info: Iterable["FuncInfo"] = (), line_info: Iterable["LineInfo"] = (), *,
             linum: bool = False, opcodes: bool = False, imm=None, call=None) -> list[str]:
    """Lines of ``bpftool prog dump xlated [linum] [opcodes]`` for a program.

    ``insns`` are numbered by ``pc`` (slots); ``imm``/``call`` are the
    resolvers ``ebee.asm.disasm.format_xlated`` takes for map and call names.
    """
    funcs = list(func_info) if btf is not None else []
    lines = _Lines(line_info) if btf is not None else None
    fi = 0
    out: list[str] = []
    for i in insns:
        if fi < len(funcs) and funcs[fi].insn == i.pc:
            sig = func_signature(btf, funcs[fi].type_id)
            if sig:
                out.append(f"{sig}:")
            fi += 1
        if lines is not None:
            li = lines.find(i.pc)
            if li is not None:
                out.append(line_text(li, linum=linum))
        out.extend(format_xlated([i], opcodes=opcodes, imm=imm, call=call))
    return out


def annotate_json(insns: Sequence["Instruction"], btf: "BTF | None",
                  func_info: Iterable["FuncInfo"] = (), line_info: Iterable["LineInfo"] = (), *,
                  linum: bool = False, imm=None, call=None) -> list[dict]:
    """``bpftool -j prog dump xlated [linum]``: one object per instruction."""
    funcs = list(func_info) if btf is not None else []
    lines = _Lines(line_info) if btf is not None else None
    fi = 0
    out: list[dict] = []
    for i in insns:
        d: dict = {}
        if fi < len(funcs) and funcs[fi].insn == i.pc:
            sig = func_signature(btf, funcs[fi].type_id)
            if sig:
                d["proto"] = sig
            fi += 1
        if lines is not None:
            li = lines.find(i.pc)
            if li is not None:
                d.update(line_json(li, linum=linum))
        d["disasm"] = f"({i.opcode:02x}) {format_kernel(i, imm=imm, call=call)}"
        out.append(d)
    return out
