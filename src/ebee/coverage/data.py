"""Coverage data: counters read back per source line, branch, function and instruction.

A line's count is the number of times control entered it, as gcov counts: each image
pc belongs to a line (the last line_info record at or before it,
:class:`ebee.debug.SourceMap`), and every edge into an instruction of the line from an
instruction of another line -- or into a function's first instruction -- is one entry.
Edge counts follow from the counters alone: a jump's edge ran ``taken`` (conditional)
or ``hits`` (``goto``) times, and whatever else reached an instruction fell through
from the one before it.  A branch is a conditional
jump: ``(line, block, 0)`` counts the runs where it jumped, ``(line, block, 1)`` where
it fell through; ``block`` is the jump's pc as loaded.  Images of the same source
add up.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..debug.source import SourceMap
from ..engines.probes import COVERAGE, Counters
from ..isa import Kind, format_kernel

FORMAT = 1


@dataclass
class FileData:
    lines: dict[int, int] = field(default_factory=dict)
    #: (line, block, branch) -> count; None: the jump itself never ran
    branches: dict[tuple[int, int, int], int | None] = field(default_factory=dict)
    functions: dict[str, list[int]] = field(default_factory=dict)     # name -> [line, count]
    text: dict[int, str] = field(default_factory=dict)               # line -> BTF line_text

    def add(self, other: "FileData") -> None:
        for ln, n in other.lines.items():
            self.lines[ln] = self.lines.get(ln, 0) + n
        for k, n in other.branches.items():
            cur = self.branches.get(k)
            self.branches[k] = n if cur is None else cur + (n or 0)
        for name, (ln, n) in other.functions.items():
            cur = self.functions.setdefault(name, [ln, 0])
            cur[1] += n
        for ln, t in other.text.items():
            self.text.setdefault(ln, t)


@dataclass
class ProgramData:
    """One image's instructions: ``[pc, text, hits, taken or None, file, line]``."""
    name: str
    insns: list[list[Any]]

    def add(self, other: "ProgramData") -> None:
        for mine, theirs in zip(self.insns, other.insns):
            mine[2] += theirs[2]
            if mine[3] is not None:
                mine[3] += theirs[3] or 0


@dataclass
class CoverageData:
    files: dict[str, FileData] = field(default_factory=dict)
    programs: dict[str, ProgramData] = field(default_factory=dict)   # "name@digest12"

    def add(self, other: "CoverageData") -> None:
        for path, fd in other.files.items():
            self.files.setdefault(path, FileData()).add(fd)
        for key, pd in other.programs.items():
            mine = self.programs.get(key)
            if mine is None:
                self.programs[key] = ProgramData(pd.name, [list(r) for r in pd.insns])
            else:
                mine.add(pd)

    # -- JSON (the per-process data files merged by the pytest controller) --------------

    def to_json(self) -> dict:
        return {"format": FORMAT,
                "files": {p: {"lines": {str(k): v for k, v in fd.lines.items()},
                              "branches": [[*k, v] for k, v in fd.branches.items()],
                              "functions": fd.functions,
                              "text": {str(k): v for k, v in fd.text.items()}}
                          for p, fd in self.files.items()},
                "programs": {k: {"name": pd.name, "insns": pd.insns}
                             for k, pd in self.programs.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "CoverageData":
        if d.get("format") != FORMAT:
            raise ValueError(f"coverage data format {d.get('format')!r}, expected {FORMAT}")
        out = cls()
        for p, f in d["files"].items():
            out.files[p] = FileData({int(k): v for k, v in f["lines"].items()},
                                    {(a, b, c): v for a, b, c, v in f["branches"]},
                                    {k: list(v) for k, v in f["functions"].items()},
                                    {int(k): v for k, v in f["text"].items()})
        for k, pd in d["programs"].items():
            out.programs[k] = ProgramData(pd["name"], [list(r) for r in pd["insns"]])
        return out

    def save(self, path: str | os.PathLike) -> None:
        tmp = Path(f"{path}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_json()))
        os.replace(tmp, path)


def enable() -> None:
    """Count from now on (images compiled before stay uncounted)."""
    COVERAGE.enable()


def load(path: str | os.PathLike) -> CoverageData:
    return CoverageData.from_json(json.loads(Path(path).read_text()))


def merge_files(paths: Iterable[str | os.PathLike], into: CoverageData | None = None) -> CoverageData:
    out = into if into is not None else CoverageData()
    for p in paths:
        out.add(load(p))
    return out


def image_data(c: Counters, owner: Any) -> CoverageData:
    """The coverage of one image run as ``owner``'s (its source lines)."""
    out = CoverageData()
    src = SourceMap(owner, c.insns)
    rows = []
    per_file: dict[str, FileData] = {}
    for (file, line), n in line_entries(c, src).items():
        per_file.setdefault(file, FileData()).lines[line] = n
    for i in c.insns:
        hits = int(c.hits[i.pc])
        taken = int(c.taken[i.pc]) if i.kind is Kind.JCC else None
        sl = src.line(i.pc)
        rows.append([i.pc, format_kernel(i), hits, taken, sl.file if sl else "",
                     sl.line if sl else 0])
        if sl is None:
            continue
        fd = per_file.setdefault(sl.file, FileData())
        fd.text.setdefault(sl.line, sl.text)
        if taken is not None:
            block = src.orig_pc.get(i.pc, i.pc)
            fd.branches[(sl.line, block, 0)] = taken if hits else None
            fd.branches[(sl.line, block, 1)] = hits - taken if hits else None
    for s in src.stmt.values():        # lines whose records govern no instruction still count
        per_file.setdefault(s.file, FileData()).lines.setdefault(s.line, 0)
        per_file[s.file].text.setdefault(s.line, s.text)
    for name, pc in src.functions.items():
        sl = src.line(pc)
        if sl is not None:
            per_file[sl.file].functions[name] = [sl.line, int(c.hits[pc])]
    out.files = per_file
    name = getattr(owner, "name", "") or "program"
    out.programs[f"{name}@{c.digest[:12]}"] = ProgramData(name, rows)
    return out


def line_entries(c: Counters, src: SourceMap) -> dict[tuple[str, int], int]:
    """(file, line) -> times control entered the line (see the module's docstring)."""
    def key(pc: int):
        sl = src.line(pc)
        return (sl.file, sl.line) if sl is not None else None

    jumps_in: dict[int, list[tuple[int, int]]] = {}      # target -> [(from pc, count)]
    for i in c.insns:
        t = i.jump_target() if i.kind in (Kind.JCC, Kind.JA) else None
        if t is not None:
            n = c.taken[i.pc] if i.kind is Kind.JCC else c.hits[i.pc]
            jumps_in.setdefault(t, []).append((i.pc, int(n)))
    entries = set(src.functions.values()) | {0}
    out: dict[tuple[str, int], int] = {}
    prev = None
    for i in c.insns:
        k = key(i.pc)
        if k is not None:
            jumped = jumps_in.get(i.pc, ())
            n = sum(cnt for j, cnt in jumped if key(j) != k)
            fell = int(c.hits[i.pc]) - sum(cnt for _, cnt in jumped)
            if i.pc in entries or prev is None or key(prev.pc) != k:
                n += fell
            out[k] = out.get(k, 0) + n
        prev = i
    return out


def collect() -> CoverageData:
    """Everything counted in this process so far (images run by no program -- raw
    instructions -- are left out: they have no source)."""
    out = CoverageData()
    for c in COVERAGE.images():
        if c.owners:
            out.add(image_data(c, c.owners[0]))
    return out
