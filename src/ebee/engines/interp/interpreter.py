"""The interpreter engine: programs translated to Python once, run over checked memory.

:class:`InterpImage` is a program translated by :mod:`.codegen` (cached by digest);
binding it to a CPU instantiates the generated closures over that CPU's stack,
memory and the runtime's helpers.  Every access is checked, verified or not.

Instrumented images (:mod:`..probes`: coverage counters, the debugger's stepping hook)
are separate translations, chosen at compile time; the plain image has no probe.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Any, Sequence

from ...isa import Instruction, encode
from ...maps.shared import ATOMICS, MMAP
from ...memory import Region
from ...runtime.cpu import Cpu
from ..base import Bound, Engine, Execution, Image, Services
from ..env import CallEnv, LdAbsAbort, ProgramText
from ..probes import COVERAGE, Counters, StepHook, step_hook
from .codegen import M64, translate


class InterpImage(Image):
    """A program translated to Python code once; bound to CPUs on demand."""

    def __init__(self, insns: list[Instruction], *, counters: Counters | None = None,
                 hook: StepHook | None = None):
        self.insns = insns
        self.checked = True
        self.counters = counters
        self.hook = hook
        self.translation = translate(insns, count=counters is not None, step=hook is not None)
        self.code = compile(self.translation.source, "<ebee-program>", "exec")
        self.image = encode(insns)
        self.text_of = ProgramText(insns, self.image)
        self.by_pc = self.text_of.by_pc

    def text(self, pc: int) -> str | None:
        return self.text_of.text(pc)

    def bind(self, cpu: Cpu, runtime: Services) -> "Interpreter":
        bound: dict = cpu.engine_state.setdefault(INTERP.name, {})
        it = bound.get(id(self))
        if it is None or it.image is not self or it.runtime is not runtime:
            it = bound[id(self)] = Interpreter(self, cpu, runtime)
        return it


class Interpreter(Bound):
    """A program bound to a CPU, ready to run."""

    def __init__(self, image: InterpImage, cpu: Cpu, runtime: Services):
        self.image = image
        self.cpu = cpu
        self.runtime = runtime
        # the code image gives function pointers (lddw src=4) real addresses
        self._code = Region(image.image, "code", writable=False)
        env = CallEnv(cpu, runtime, image.text_of, self._code, cpu.budget, self._tail_entry)
        ns: dict = {"ATOMICS": ATOMICS, "MMAP": MMAP}
        # the program this runs, when it is a tail-call target (the debugger names it)
        self.source: Any = None
        if image.counters is not None:
            ns["CV"], ns["CT"] = image.counters.hits, image.counters.taken
        hook = image.hook
        if hook is not None:
            ns["TR"] = lambda pc, depth, regs: hook(self, pc, depth, regs)
        exec(image.code, ns)
        self.functions, faddr = ns["factory"](env)
        cpu.functions.update(faddr)
        self.entry = self.functions[0]

    def _tail_entry(self, target) -> Any:
        exe = target.executable()
        bound = INTERP.compile(exe.insns, exe.evidence).bind(self.cpu, self.runtime)
        bound.source = target
        return bound.entry

    def run(self, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0, r5: int = 0) -> Execution:
        cpu = self.cpu
        cpu.tail_call_count = 0
        try:
            r0, n = self.entry(r1 & M64, r2 & M64, r3 & M64, r4 & M64, r5 & M64, 0, 0)
        except LdAbsAbort as abort:
            return Execution(0, abort.n)
        finally:
            cpu.frame_depth = -1
        return Execution(r0, n)


class InterpEngine(Engine):
    name = "interp"

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, bool], InterpImage] = {}
        self._lock = threading.Lock()

    def compile(self, insns: Sequence[Instruction], evidence: Any = None) -> InterpImage:
        insns = list(insns)
        counters = COVERAGE.counters(insns) if COVERAGE.active else None
        hook = step_hook()
        if hook is not None:        # one debugging session's: never shared
            return InterpImage(insns, counters=counters, hook=hook)
        key = (hashlib.sha256(encode(insns)).digest(), counters is not None)
        with self._lock:
            img = self._cache.get(key)
        if img is None or img.insns != insns or img.counters is not counters:
            img = InterpImage(insns, counters=counters)
            with self._lock:
                if len(self._cache) > 512:
                    self._cache.clear()
                self._cache[key] = img
        return img


INTERP = InterpEngine()
