"""What engines need to run a program found at run time (a tail-call target).

A PROG_ARRAY slot holds a :class:`Runnable`: a loaded program (the session layer's
``Program``) or raw instructions (:class:`RawProgram`).  When a tail call lands on
it, the engine asks it for an :class:`Executable` -- the instructions as they run
(context accesses rewritten) and the evidence that they were verified -- and
compiles that with its own engine, so a tail call never leaves the engine it
started in and never runs the program unrewritten.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

from ..isa import Instruction


@dataclass(frozen=True)
class Executable:
    insns: tuple[Instruction, ...]
    # an accepted verifier result for exactly these instructions, or None: only with it
    # may an engine drop its memory checks
    evidence: Any = None
    name: str = ""


class Runnable(ABC):
    """Something a tail call can land on."""

    @abstractmethod
    def executable(self) -> Executable:
        """The instructions to run and their verification evidence."""


class RawProgram(Runnable):
    """Instructions with no program type: they run checked, as unverified code does."""

    def __init__(self, insns: Sequence[Instruction], name: str = ""):
        self._exe = Executable(tuple(insns), None, name)

    def executable(self) -> Executable:
        return self._exe

    def __repr__(self) -> str:
        return f"<RawProgram {self._exe.name or '?'} insns={len(self._exe.insns)}>"
