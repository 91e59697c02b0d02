"""What the verifier reads from its callers: a program and the maps it references.

The verifier is given data, not objects it may call back into.  A program is
anything with the attributes of :class:`VerifiableProgram` (``ebee.Program`` is
one), or bare instructions; a map is anything with the attributes of
:class:`MapDescription` -- the fields of Linux's ``struct bpf_map`` the verifier
consults (ebee's maps and the kernel backend's maps both are).
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

from ..btf.ext import FuncInfo, LineInfo as BtfLineInfo
from ..isa import Instruction
from ..uapi import AttachType, MapType, ProgType


class VerifiableProgram(Protocol):
    insns: Sequence[Instruction]
    type: ProgType
    expected_attach_type: AttachType | None
    attach_target: str | None
    license: str
    btf: Any
    func_info: Sequence[FuncInfo]
    line_info: Sequence[BtfLineInfo]

    @property
    def sleepable(self) -> bool: ...


class MapDescription(Protocol):
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str
    frozen: bool
    record: dict[str, int]              # special field kind -> offset (btf_record)
    graph_roots: dict                   # bpf_list_head/bpf_rb_root offset -> GraphRoot
    spin_lock_off: int                  # -1: none
    inner_map: "MapDescription | None"  # a map-in-map's template
    addr: int | None                    # what a map pointer holds (printed in the log)

    def lookup(self, key: Any) -> Any: ...
