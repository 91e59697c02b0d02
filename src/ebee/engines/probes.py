"""Instrumented translations: what the debugger and coverage compile in, and only then.

Normal images carry no probe at all.  Two kinds of instrumented image exist:

* **coverage** (process-wide, :data:`COVERAGE`): while it is enabled, both engines
  compile every image with one counter per instruction (incremented before it runs)
  and one per conditional jump (incremented when the jump is taken).  The counters of
  one image live in a :class:`Counters` (native memory, so the JIT's code increments
  the very words the interpreter does); images of the same instructions share them.
* **stepping** (per thread, :func:`stepping`): inside ``with stepping(hook):`` the
  interpreter compiles images that call ``hook(bound, pc, depth, regs)`` before every
  instruction -- the debugger runs a program on a thread of its own under it and
  blocks in the hook to stop.

The owner of an image (the program it was made from, for its source lines) is noted
by whoever makes the executable (:meth:`Coverage.note`); the engines never need it.
"""
from __future__ import annotations

import ctypes
import hashlib
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from ..isa import Instruction, Kind, encode

#: ``hook(bound, pc, depth, regs)``: ``regs`` is (r0, ..., r10) before instruction ``pc``
StepHook = Callable[[Any, int, int, tuple], None]


class Counters:
    """Execution counts of one image: ``hits[pc]`` times instruction ``pc`` started,
    ``taken[pc]`` times the conditional jump at ``pc`` jumped."""

    def __init__(self, insns: Sequence[Instruction], digest: str):
        self.insns = list(insns)
        self.digest = digest
        last = self.insns[-1]
        n = last.pc + last.slots
        self.hits = (ctypes.c_uint64 * n)()
        self.taken = (ctypes.c_uint64 * n)()
        self.owners: list[Any] = []

    @property
    def hits_addr(self) -> int:
        return ctypes.addressof(self.hits)

    @property
    def taken_addr(self) -> int:
        return ctypes.addressof(self.taken)

    def branches(self) -> Iterator[tuple[int, int, int]]:
        """(pc, taken, not taken) of every conditional jump."""
        for i in self.insns:
            if i.kind is Kind.JCC:
                h, t = self.hits[i.pc], self.taken[i.pc]
                yield i.pc, t, h - t

    def reset(self) -> None:
        ctypes.memset(self.hits, 0, ctypes.sizeof(self.hits))
        ctypes.memset(self.taken, 0, ctypes.sizeof(self.taken))


def image_digest(insns: Sequence[Instruction]) -> str:
    return hashlib.sha256(encode(list(insns))).hexdigest()


class Coverage:
    """The process's coverage switch and every instrumented image's counters."""

    def __init__(self) -> None:
        self._on = False
        self._lock = threading.Lock()
        self._counters: dict[str, Counters] = {}

    @property
    def active(self) -> bool:
        return self._on

    def enable(self) -> None:
        """Instrument every image compiled from now on (images compiled before stay bare)."""
        self._on = True

    def disable(self) -> None:
        self._on = False

    def counters(self, insns: Sequence[Instruction]) -> Counters:
        """The counters of the image of ``insns`` (made on first use)."""
        d = image_digest(insns)
        with self._lock:
            c = self._counters.get(d)
            if c is None:
                c = self._counters[d] = Counters(insns, d)
            return c

    def note(self, insns: Sequence[Instruction], owner: Any) -> None:
        """Record that ``owner`` (a program) runs as the image of ``insns``."""
        if not self._on:
            return
        c = self.counters(insns)
        with self._lock:
            if not any(o is owner for o in c.owners):
                c.owners.append(owner)

    def images(self) -> list[Counters]:
        with self._lock:
            return list(self._counters.values())

    def clear(self) -> None:
        with self._lock:
            self._counters.clear()


COVERAGE = Coverage()

_STEP = threading.local()


def step_hook() -> StepHook | None:
    """The hook of the running thread's :func:`stepping` block, or None."""
    return getattr(_STEP, "hook", None)


@contextmanager
def stepping(hook: StepHook) -> Iterator[None]:
    """Interpreter images compiled on this thread inside the block call ``hook`` before
    every instruction (tail-call targets compiled while it runs too)."""
    prev = step_hook()
    _STEP.hook = hook
    try:
        yield
    finally:
        _STEP.hook = prev
