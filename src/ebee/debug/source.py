"""Where each instruction of a running image comes from: its C line and function.

A program runs as its *image* (context accesses rewritten, ``Program.executable``); BTF
line_info and the verifier's facts name the instructions as loaded.  :class:`SourceMap`
joins the two through the rewrite's pc map (``Program.xlated``): every image pc gets
the line record that governs it (the last record at or before it, as in a line table),
the original pc when it has one, and its function.
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from typing import Any, Sequence

from ..isa import Instruction


@dataclass(frozen=True)
class SourceLine:
    """One line_info record: ``file`` as the compiler recorded it."""
    file: str
    line: int
    col: int
    text: str

    @property
    def where(self) -> str:
        return f"{os.path.basename(self.file)}:{self.line}"


class SourceMap:
    """The source lines, original pcs and functions of one program's running image."""

    def __init__(self, prog: Any, insns: Sequence[Instruction]):
        self.program = prog
        self.name: str = getattr(prog, "name", "") or "program"
        self.insns = list(insns)
        self.by_pc = {i.pc: i for i in self.insns}
        last = self.insns[-1]
        self.nslots = last.pc + last.slots
        moved = self._moved(prog, self.insns)
        # original pc -> image pc, and back for the image pcs that start an original insn
        self.image_pc: dict[int, int] = moved
        self.orig_pc: dict[int, int] = {new: old for old, new in moved.items()}
        starts: dict[int, SourceLine] = {}
        for li in getattr(prog, "line_info", None) or ():
            pc = moved.get(li.insn_off // 8)
            if pc is not None:
                starts[pc] = SourceLine(li.file_name, li.line, li.col, li.line_text)
        #: image pcs where a line record begins (a statement boundary), and its line
        self.stmt: dict[int, SourceLine] = dict(sorted(starts.items()))
        self._stmt_pcs = list(self.stmt)
        funcs = []
        for fname, slot in getattr(prog, "functions", None) or [(self.name, 0)]:
            pc = moved.get(slot)
            if pc is not None:
                funcs.append((pc, fname))
        funcs.sort()
        self._func_pcs = [pc for pc, _ in funcs]
        self._func_names = [n for _, n in funcs]
        self.functions: dict[str, int] = {n: pc for pc, n in funcs}

    @staticmethod
    def _moved(prog: Any, insns: list[Instruction]) -> dict[int, int]:
        xlated = getattr(prog, "xlated", None)
        if xlated is not None:
            try:
                x, moved = xlated()
            except Exception:   # a program the rewrite refuses runs as loaded, if at all
                x, moved = None, None
            if x is not None and list(x) == insns:
                return dict(moved)
        return {i.pc: i.pc for i in insns}

    @property
    def has_lines(self) -> bool:
        return bool(self.stmt)

    def line(self, pc: int) -> SourceLine | None:
        """The line record governing image pc ``pc`` (None before the first)."""
        k = bisect.bisect_right(self._stmt_pcs, pc) - 1
        return self.stmt[self._stmt_pcs[k]] if k >= 0 else None

    def function(self, pc: int) -> str:
        k = bisect.bisect_right(self._func_pcs, pc) - 1
        return self._func_names[k] if k >= 0 else self.name

    def function_entry(self, pc: int) -> int:
        k = bisect.bisect_right(self._func_pcs, pc) - 1
        return self._func_pcs[k] if k >= 0 else 0

    def function_index(self, pc: int) -> int:
        return max(bisect.bisect_right(self._func_pcs, pc) - 1, 0)

    def line_pcs(self, line: int, file: str | None = None) -> list[int]:
        """Image pcs where a record of ``line`` (of ``file``, by path or base name) begins."""
        out = []
        for pc, s in self.stmt.items():
            if s.line == line and (file is None or file in (s.file, os.path.basename(s.file))):
                out.append(pc)
        return out
