"""A loaded program's JITed image: its (sub)program functions, disassembled.

x86-64 code is disassembled with capstone, in AT&T syntax as bpftool prints
it, when capstone is installed; without it, and on other machines, the image
is shown as rows of raw bytes.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import NamedTuple

from .info import JitedImage
from .kallsyms import bpf_symbols

_ROW = 16           # bytes per row when there is no disassembler


@dataclass(frozen=True, slots=True)
class JitedFunction:
    """One (sub)program's native code and the kernel symbol it runs as."""
    name: str
    addr: int
    code: bytes


class NativeInsn(NamedTuple):
    off: int        # from the start of the function
    size: int
    text: str       # AT&T "mnemonic\toperands", or the bytes in hex


def jited_functions(img: JitedImage, tag: str, prog_name: str) -> list[JitedFunction]:
    """The image split per (sub)program, each named by its ``[bpf]`` kernel symbol
    (``bpf_prog_<tag>_<func>``), or as bpftool names them when that is unknown."""
    names = bpf_symbols() if len(img.ksyms) > 1 else {}
    return [JitedFunction(names.get(addr) or
                          (f"bpf_prog_{tag}_{prog_name}" if n == 0 else f"bpf_prog_{n}"),
                          addr, code)
            for n, (addr, code) in enumerate(img.functions())]


def disassemble(code: bytes) -> list[NativeInsn]:
    """Every instruction of ``code``; what capstone cannot decode at the end is one
    ``(bad)`` instruction."""
    try:
        # optional, and only a jited dump needs it: imported on first use
        import capstone
    except ImportError:
        capstone = None
    if capstone is None or platform.machine() not in ("x86_64", "AMD64"):
        return [NativeInsn(o, min(_ROW, len(code) - o),
                           " ".join(f"{b:02x}" for b in code[o:o + _ROW]))
                for o in range(0, len(code), _ROW)]
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.syntax = capstone.CS_OPT_SYNTAX_ATT
    out, end = [], 0
    for ins in md.disasm(code, 0):
        out.append(NativeInsn(ins.address, ins.size, f"{ins.mnemonic}\t{ins.op_str}".rstrip()))
        end = ins.address + ins.size
    if end < len(code):
        out.append(NativeInsn(end, len(code) - end, "(bad)"))
    return out
