"""Script text -> programs: parse, type, lay out maps and events, generate code.

``compile_script`` is the whole compiler; it makes no system calls, so it runs
anywhere (the kernel runtime and the user-space runtime both start from its
:class:`Script`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

from ..btf import BTF
from ..btf.builder import BTFBuilder
from ..btf.ext import FuncInfo
from ..isa import Instruction
from ..uapi import MapType
from .ast import Loc, Program
from .codegen import CompiledProbe, generate
from .layout import EVENTS_MAP, LOST_MAP, RINGBUF_SIZE, MapSpec, Resources, map_spec
from .parser import parse
from .semantic import Analyzer
from .structs import Structs


@dataclass
class Script:
    """A compiled script: its programs (before relocation), maps and event records."""
    program: Program
    analyzer: Analyzer
    resources: Resources
    probes: list[CompiledProbe]
    params: list[str]
    compile_seconds: float = 0.0
    warnings: list[tuple[str, Loc]] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.program.source

    @property
    def filename(self) -> str:
        return self.program.filename

    @property
    def begin(self) -> list[CompiledProbe]:
        return [p for p in self.probes if p.targets[0].provider == "BEGIN"]

    @property
    def end(self) -> list[CompiledProbe]:
        return [p for p in self.probes if p.targets[0].provider == "END"]

    @property
    def attached(self) -> list[CompiledProbe]:
        return [p for p in self.probes if not p.targets[0].is_special]

    @property
    def attach_count(self) -> int:
        """What bpftrace's ``Attaching N probes...`` counts: attach points after wildcard
        expansion, BEGIN and END included."""
        return sum(len(p.targets) for p in self.probes)

    @property
    def user_maps(self) -> list[MapSpec]:
        return [m for n, m in sorted(self.resources.maps.items()) if n.startswith("@")]

    def link(self, probe: CompiledProbe, resolve) -> tuple[list[Instruction], dict[int, Loc]]:
        return probe.emitter.link(resolve)


@dataclass(frozen=True)
class ProgramBTF:
    """The BTF a program with callbacks must carry (the verifier wants func_info for every
    subprogram): ``int probe(void *ctx)`` and ``int callback(void *, void *, void *,
    void *)``."""
    data: bytes
    btf: BTF
    main_id: int
    callback_id: int

    def func_info(self, probe: CompiledProbe) -> list[FuncInfo]:
        """func_info records (byte offsets, as ebee's Program keeps them)."""
        return [FuncInfo(0, self.main_id)] + [FuncInfo(8 * pc, self.callback_id)
                                              for pc in probe.func_starts()]


@lru_cache(maxsize=1)
def program_btf() -> ProgramBTF:
    b = BTFBuilder()
    int_id = b.add_int("int", 4, signed=True)
    ptr = b.add_ptr(0)
    main = b.add_func("probe", b.add_func_proto(int_id, [("ctx", ptr)]))
    cb = b.add_func("callback", b.add_func_proto(int_id, [("map", ptr), ("key", ptr),
                                                          ("value", ptr), ("ctx", ptr)]))
    return ProgramBTF(b.to_bytes(), b.build(), main, cb)


def compile_script(source: str, filename: str = "stdin", params: list[str] | None = None, *,
                   unsafe: bool = False, has_child: bool = False,
                   missing_probes_ok: bool = False, structs: Structs | None = None) -> Script:
    """Compile bpftrace source; raises :class:`~ebee.trace.errors.TraceError`."""
    t0 = time.perf_counter()
    prog = parse(source, filename)
    an = Analyzer(prog, params, structs=structs, unsafe=unsafe, has_child=has_child,
                  missing_probes_ok=missing_probes_ok)
    instances = an.run()
    res = Resources()
    for name in sorted(an.maps):
        res.maps[name] = map_spec(an.maps[name])
    probes = generate(an, instances, res)
    if res.needs_events:
        res.maps[EVENTS_MAP] = MapSpec(EVENTS_MAP, MapType.RINGBUF, 0, 0, RINGBUF_SIZE)
    if res.needs_lost:
        res.maps[LOST_MAP] = MapSpec(LOST_MAP, MapType.ARRAY, 4, 8, 1)
    return Script(prog, an, res, probes, list(params or []), time.perf_counter() - t0,
                  list(an.warnings))
