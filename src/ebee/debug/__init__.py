"""A step debugger for eBPF programs on the interpreter (``ebee debug``).

``Session(prog, data)`` runs one test run of ``prog`` instruction by instruction;
:mod:`.console` is its gdb-like prompt.  :mod:`.source` maps a running image's
instructions to their C lines (shared with ``ebee.coverage``).
"""
from .console import Console, interact
from .session import Breakpoint, DebugError, Frame, ProgramView, Session, Stop, format_fact
from .source import SourceLine, SourceMap

__all__ = ["Breakpoint", "Console", "DebugError", "Frame", "ProgramView", "Session",
           "SourceLine", "SourceMap", "Stop", "format_fact", "interact"]
