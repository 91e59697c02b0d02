"""The engine interface: every way of executing a program has the same three steps.

``Engine.compile(insns, evidence) -> Image``: translate once (cached by the engine).
``Image.bind(cpu, runtime) -> Bound``: attach the image to one virtual CPU and to
the runtime services (helpers, maps, kfuncs, tail-call targets) passed in.
``Bound.run(r1..r5) -> Execution``: run it, as often as wanted.

``evidence`` is the promise that exactly these instructions were verified (an
accepted ``VerifierResult``, or Linux's acceptance of the same program): only
with it may an engine drop its memory checks.  Engines never call the verifier.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Sequence

from ..isa import Instruction
from ..runtime.cpu import Cpu, Function


@dataclass(frozen=True)
class Execution:
    """The outcome of one run."""
    retval: int           # r0 as a u64
    insns: int            # instructions executed, across calls and tail calls


class Evidence(Protocol):
    accepted: bool


def is_verified(evidence: Any) -> bool:
    """Whether ``evidence`` says the program passed a verifier."""
    return evidence is not None and not isinstance(evidence, bool) and evidence.accepted is True


class Services(Protocol):
    """What an engine asks of the runtime while a program runs (``ebee.helpers.Runtime``)."""

    def helper(self, fid: int) -> Any: ...
    def missing_helper(self, fid: int, image: bytes, pc: int) -> str: ...
    def kfunc(self, btf_id: int, btf_off: int) -> Any: ...
    def ld_imm64(self, insn: Instruction) -> int: ...
    def tail_call_target(self, map_ptr: int, index: int, pc: int) -> Any: ...
    def ld_abs(self, cpu: Cpu, ctx: int, offset: int, size: int, pc: int) -> int | None: ...


class Image(ABC):
    """A program translated by one engine, ready to bind to CPUs."""

    insns: list[Instruction]
    checked: bool             # every memory access is checked (no verification evidence)

    @abstractmethod
    def bind(self, cpu: Cpu, runtime: Services) -> "Bound":
        """The image bound to ``cpu`` (cached per CPU), its helpers from ``runtime``."""


class Bound(ABC):
    """An image bound to one CPU."""

    image: Image
    cpu: Cpu
    #: the entry point in the interpreter's calling convention, for tail calls
    entry: Function

    @abstractmethod
    def run(self, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0, r5: int = 0) -> Execution:
        ...

    def run_batch(self, repeat: int, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0,
                  r5: int = 0) -> tuple[Execution, int]:
        """``repeat`` runs; (the last result, total thread CPU ns).  Engines with a native
        loop override this to make no Python call per run."""
        if repeat < 1:
            raise ValueError("repeat must be at least 1")
        t0 = time.thread_time_ns()
        out = None
        for _ in range(repeat):
            out = self.run(r1, r2, r3, r4, r5)
        return out, time.thread_time_ns() - t0

    def native_frames(self, xdp: Any) -> Any:
        """A driver that runs XDP frames with no Python per packet (the JIT's), or None."""
        return None

    @property
    def native_unavailable(self) -> str | None:
        """Why :meth:`native_frames` gives None (None: it does not)."""
        return "the program runs in the interpreter"


class Engine(ABC):
    name: ClassVar[str]

    @abstractmethod
    def compile(self, insns: Sequence[Instruction], evidence: Any = None) -> Image:
        """Translate ``insns`` (cached); checked code unless ``evidence`` is verified."""

    def unavailable(self) -> str | None:
        """Why this engine cannot be used in this process (None: it can)."""
        return None
