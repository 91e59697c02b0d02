"""``ebee.Machine``: a virtual CPU that can also run programs itself.

The runtime's :class:`~ebee.runtime.Cpu` knows nothing of execution; a
:class:`Machine` adds the two conveniences the top-level API promises --
``machine.bind(insns, engine=...)`` and ``machine.run(insns, r1, ...)`` -- with
the runtime's own helpers, maps and kfuncs (``ebee.helpers.RUNTIME``) unless
other services are passed in.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..helpers import RUNTIME
from ..isa import Instruction
from ..memory import Region
from ..runtime.cpu import DEFAULT_BUDGET, Cpu
from .base import Bound, Execution, Services
from .select import select_engine


class Machine(Cpu):
    """One virtual CPU and the memory its programs may touch."""

    def __init__(self, *args, runtime: Services = RUNTIME, **kw):
        super().__init__(*args, **kw)
        self.runtime = runtime

    def bind(self, insns: Sequence[Instruction], *, engine: str | None = "interp",
             verified: Any = None) -> Bound:
        """Compile ``insns`` with ``engine`` ("interp", "jit" or "auto") and bind them to
        this CPU; ``verified`` (an accepted verifier result for these instructions) lets
        the JIT drop its per-access checks."""
        return select_engine(engine, verified).compile(insns, verified).bind(self, self.runtime)

    def run(self, insns: Sequence[Instruction], r1: int = 0, r2: int = 0, r3: int = 0,
            r4: int = 0, r5: int = 0, *, engine: str | None = "interp") -> Execution:
        return self.bind(insns, engine=engine).run(r1, r2, r3, r4, r5)


def run(insns: list[Instruction], mem: bytes | None = None, *, budget: int = DEFAULT_BUDGET,
        machine: Machine | None = None, engine: str = "interp") -> Execution:
    """Run raw instructions the way the conformance suite does: r1 = mem, r2 = len(mem)."""
    own = machine is None
    m = machine or Machine(budget=budget)
    region = None
    if mem is not None:
        region = m.memory.add(Region(mem, "mem"))
    try:
        r1 = region.start if region is not None and region.size else 0
        return m.run(insns, r1, len(mem) if mem is not None else 0, engine=engine)
    finally:
        if region is not None:
            m.memory.remove(region)
        if own:
            m.close()
