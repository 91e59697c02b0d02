"""Offload in software: verified programs compiled ahead of time to C and native code.

``ebee aot`` (:mod:`ebee.cli.aot_cmds`) is the front; this package holds the
offload rules (:mod:`.offload`), the C translator (:mod:`.cgen`), the C runtime
(``runtime/ebee_rt.[ch]``, written out by :mod:`.runtime_src`) and the builds
(:mod:`.build`).
"""
from __future__ import annotations

from .build import (CompileError, build_c, build_shared, compiler, object_units, raw_unit,
                    write_c)
from .cgen import MapDef, Unit, translate
from .offload import OffloadError

__all__ = ["CompileError", "MapDef", "OffloadError", "Unit", "build_c", "build_shared", "compiler",
           "object_units", "raw_unit", "translate", "write_c"]
