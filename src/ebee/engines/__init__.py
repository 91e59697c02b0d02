"""Engines: the interpreter and the JIT behind one interface (see :mod:`.base`).

``select_engine(name, evidence).compile(insns, evidence).bind(cpu, runtime).run(...)``
is the whole path from instructions to a result; :class:`Machine` wraps it for the
common case of one CPU with the runtime's own services.
"""
from .base import Bound, Engine, Evidence, Execution, Image, Services, is_verified
from .interp import INTERP
from .jit import JIT, JitError
from .machine import Machine, run
from .select import ENGINES, engine_name, select_engine

__all__ = ["Bound", "ENGINES", "Engine", "Evidence", "Execution", "INTERP", "Image", "JIT",
           "JitError", "Machine", "Services", "engine_name", "is_verified", "run",
           "select_engine"]
