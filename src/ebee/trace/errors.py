"""Diagnostics shaped like bpftrace's: ``FILE:LINE:COL-COL: ERROR: msg``, the source line,
and a row of ``~`` under the range (bpftrace's ``Log`` output)."""
from __future__ import annotations

from .ast import Loc


class TraceError(Exception):
    """A script the compiler refuses (bpftrace exits 1)."""

    exit_code = 1

    def __init__(self, message: str, loc: Loc | None = None, *, source: str = "",
                 filename: str = "stdin"):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.source = source
        self.filename = filename

    def with_source(self, source: str, filename: str) -> "TraceError":
        if not self.source:
            self.source, self.filename = source, filename
        return self

    def render(self) -> str:
        return render(self.message, self.loc, self.source, self.filename, "ERROR")

    def __str__(self) -> str:
        return self.render()


class AttachError(TraceError):
    """A probe that cannot be attached (bpftrace exits 255)."""

    exit_code = 255

    def render(self) -> str:
        return f"ERROR: {self.message}"


def render(message: str, loc: Loc | None, source: str, filename: str, level: str) -> str:
    if loc is None or not source:
        return f"{level}: {message}"
    lines = source.split("\n")
    text = lines[loc.line - 1] if 0 < loc.line <= len(lines) else ""
    end = loc.end_col if loc.end_line == loc.line else len(text) + 1
    end = max(end, loc.col + 1)
    head = f"{filename}:{loc.line}:{loc.col}-{end}: {level}: {message}"
    return f"{head}\n{text}\n{' ' * (loc.col - 1)}{'~' * (end - loc.col)}"


def warning(message: str, loc: Loc | None, source: str, filename: str) -> str:
    return render(message, loc, source, filename, "WARNING")
