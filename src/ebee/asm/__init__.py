"""Assemblers (kernel/LLVM and conformance dialects) and disassemblers."""
from __future__ import annotations

import enum
import re

from ..isa import Instruction, format_kernel
from .conformance import assemble_conformance
from .disasm import format_conformance, format_llvm, format_objdump, format_xlated
from .kernel import assemble_kernel


class Dialect(str, enum.Enum):
    KERNEL = "kernel"
    CONFORMANCE = "conformance"


_CONF_LINE = re.compile(r"^\s*(?:[a-z][a-z0-9]*)(?:\s+[^=]*)?$")


def detect_dialect(text: str) -> Dialect:
    """Conformance syntax names registers %rN and never assigns with '='."""
    if "%r" in text:
        return Dialect.CONFORMANCE
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line or line.endswith(":") or line == "exit":
            continue
        if "=" in line or line.startswith(("goto", "gotol", "call", "callx", "lock", "may_goto",
                                            "if ", "*", "store_release")):
            return Dialect.KERNEL
        if _CONF_LINE.match(line):
            return Dialect.CONFORMANCE
    return Dialect.KERNEL


def assemble(text: str, dialect: Dialect | str | None = None, *, file: str | None = None,
             first_line: int = 1) -> list[Instruction]:
    """Assemble source text; raises AsmError (a ValueError) naming file and line."""
    d = Dialect(dialect) if dialect else detect_dialect(text)
    if d is Dialect.CONFORMANCE:
        return assemble_conformance(text, file, first_line)
    return assemble_kernel(text, file, first_line)


def disassemble(insns: list[Instruction], fmt: str = "xlated") -> str:
    """Text of a whole program: ``xlated`` (bpftool), ``llvm`` (llvm-objdump) or ``conformance``."""
    if fmt == "xlated":
        return "\n".join(format_xlated(insns)) + "\n"
    if fmt == "llvm":
        return "\n".join(format_objdump(insns)) + "\n"
    if fmt == "conformance":
        end = insns[-1].pc + insns[-1].slots if insns else 0
        starts = {i.pc for i in insns} | {end}
        # label real targets; out-of-range ones stay relative so they reassemble as they were
        labels = {t: f"L{t}" for i in insns if (t := i.jump_target()) in starts}
        lines = []
        for i in insns:
            if i.pc in labels:
                lines.append(f"{labels[i.pc]}:")
            lines.append(format_conformance(i, labels))
        if end in labels:
            lines.append(f"{labels[end]}:")
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown disassembly format {fmt!r} (xlated, llvm, conformance)")


__all__ = ["Dialect", "assemble", "detect_dialect", "disassemble", "format_conformance",
           "format_kernel", "format_llvm", "format_objdump", "format_xlated"]
