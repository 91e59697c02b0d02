"""The BPF conformance suite's test format and runner.

A ``.data`` file has sections introduced by ``-- NAME`` lines: ``asm`` (the
program in the suite's dialect), ``raw`` (the program as 64-bit words or
bytes), ``mem`` (hex bytes passed to the program: r1 = address, r2 = length),
``result`` (expected r0), ``error`` (an expected failure), and the ignored
``c`` and ``no register offset``.  A test passes when the program assembles or
decodes, runs, and returns the expected r0 -- or fails at run time when an
error is expected.  A program the assembler or decoder rejects never passes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .asm import Dialect, assemble
from .errors import AsmError, DecodeError, SourceError, VMError
from .isa import Instruction, decode
from .engines import Machine, run

KNOWN_SECTIONS = ("asm", "raw", "mem", "result", "error", "c", "no register offset")


@dataclass
class TestCase:
    path: str
    asm: str | None = None
    asm_line: int = 1
    raw: list[tuple[int, str]] = field(default_factory=list)   # (line, text)
    mem: bytes = b""
    has_mem: bool = False
    result: int | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def program(self) -> list[Instruction]:
        """The test's instructions (raw takes precedence, as in the suite)."""
        if self.raw:
            return decode_raw(self.raw, self.path)
        if self.asm is None or not self.asm.strip():
            raise SourceError("no program (neither '-- asm' nor '-- raw')", file=self.path)
        return assemble(self.asm, Dialect.CONFORMANCE, file=self.path, first_line=self.asm_line)


def decode_raw(words: list[tuple[int, str]], path: str) -> list[Instruction]:
    """``-- raw`` holds 64-bit words (0x...) or groups of hex bytes."""
    data = bytearray()
    starts: list[tuple[int, int]] = []        # (byte offset, line)
    for line, w in words:
        starts.append((len(data), line))
        toks = w.split()
        try:
            if len(toks) == 1 and toks[0].lower().startswith("0x"):
                data += int(toks[0], 16).to_bytes(8, "little")
            else:
                data += bytes(int(t, 16) for t in toks)
        except (ValueError, OverflowError):
            raise SourceError(f"invalid raw instruction '{w}'", file=path, line=line) from None
    try:
        return decode(bytes(data))
    except DecodeError as e:
        at = (e.pc or 0) * 8
        line = max((ln for off, ln in starts if off <= at), default=starts[0][1] if starts else None)
        raise SourceError(f"invalid instruction: {e.reason}", file=path, line=line) from None


def parse(path: str | os.PathLike, text: str | None = None) -> TestCase:
    path = str(path)
    if text is None:
        try:
            text = Path(path).read_text()
        except UnicodeDecodeError:
            raise SourceError("not a text file", file=path) from None
    tc = TestCase(path)
    section = None
    asm_lines: list[str] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        if line.startswith("--"):
            name = line[2:].strip()
            if name not in KNOWN_SECTIONS:
                raise SourceError(f"unknown section '{line.strip()}' (expected one of "
                                  f"{', '.join('-- ' + s for s in KNOWN_SECTIONS)})", file=path, line=n)
            section = name
            if name == "asm":
                tc.asm_line = n + 1
                asm_lines = []
            elif name == "mem":
                tc.has_mem = True
            elif name == "error":
                tc.error = ""
            continue
        if section == "asm":
            asm_lines.append(line)
            tc.asm = "\n".join(asm_lines)
        elif section == "raw":
            body = line.split("#", 1)[0].strip()
            if body:
                tc.raw.append((n, body))
        elif section == "mem":
            body = line.split("#", 1)[0].strip()
            if body:
                try:
                    tc.mem += bytes(int(t, 16) for t in body.split())
                except ValueError:
                    raise SourceError(f"invalid memory byte in '{body}'", file=path, line=n) from None
        elif section == "result":
            body = line.split("#", 1)[0].strip()
            if body:
                try:
                    tc.result = int(body, 16) if body.lower().startswith("0x") else int(body)
                except ValueError:
                    raise SourceError(f"invalid result '{body}'", file=path, line=n) from None
        elif section == "error":
            if line.strip():
                tc.error = line.strip()
    if tc.result is None and tc.error is None:
        raise SourceError("no '-- result' or '-- error' section", file=path)
    return tc


@dataclass
class Outcome:
    name: str
    passed: bool
    detail: str
    retval: int | None = None


def run_case(tc: TestCase, *, budget: int = 1_000_000, machine: Machine | None = None,
             engine: str = "interp") -> Outcome:
    try:
        prog = tc.program()
    except (SourceError, AsmError) as e:
        return Outcome(tc.name, False, f"rejected: {e}")
    try:
        res = run(prog, tc.mem if tc.has_mem else None, budget=budget, machine=machine,
                  engine=engine)
    except VMError as e:
        if tc.error is not None:
            return Outcome(tc.name, True, f"failed as expected: {e}")
        return Outcome(tc.name, False, f"runtime error: {e}")
    if tc.error is not None:
        return Outcome(tc.name, False, f"expected error '{tc.error}', but returned {res.retval:#x}",
                       res.retval)
    expected = tc.result & ((1 << 64) - 1)
    if res.retval != expected:
        return Outcome(tc.name, False, f"returned {res.retval:#x}, expected {expected:#x}", res.retval)
    return Outcome(tc.name, True, f"returned {res.retval:#x}", res.retval)


def collect(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    for p in paths:
        p = Path(p)
        if p.is_dir():
            yield from sorted(str(f) for f in p.glob("*.data"))
        else:
            yield str(p)


def run_paths(paths: Iterable[str | os.PathLike], *, engine: str = "interp") -> Iterator[Outcome]:
    for path in collect(paths):
        try:
            tc = parse(path)
        except SourceError as e:
            yield Outcome(os.path.basename(path), False, f"rejected: {e}")
            continue
        except OSError as e:
            yield Outcome(os.path.basename(path), False, f"cannot read: {e.strerror}")
            continue
        yield run_case(tc, engine=engine)
