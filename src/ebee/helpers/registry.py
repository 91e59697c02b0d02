"""The implementation registry: the Python function the engines run for each helper id.

Prototypes (what the verifier checks) are ``ebee.protos.helpers.HELPERS``; an
implementation binds to its helper by id with :func:`implements`, and only a
helper with a prototype may have one.  The engines call
``impl(machine, r1, r2, r3, r4, r5) -> int``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..protos.helper_types import HelperProto
from ..protos.helpers import HELPERS
from ..uapi import helper_name
from ..uapi import FuncId

Impl = Callable[..., int]


@dataclass(frozen=True, slots=True)
class Helper:
    """A helper's implementation, bound to its id."""
    id: FuncId
    impl: Impl

    @property
    def name(self) -> str:
        return helper_name(self.id)

    @property
    def proto(self) -> HelperProto:
        return HELPERS[self.id]


REGISTRY: dict[int, Helper] = {}


def implements(fid: FuncId):
    """Register the decorated function as the implementation of helper ``fid``."""
    if fid not in HELPERS:
        raise RuntimeError(f"helper {fid.name} has no prototype in ebee.protos.helpers")

    def deco(fn: Impl) -> Impl:
        if fid in REGISTRY:
            raise RuntimeError(f"helper {fid.name} implemented twice")
        REGISTRY[fid] = Helper(fid, fn)
        return fn
    return deco


def get(fid: int) -> Helper | None:
    return REGISTRY.get(fid)
