"""Choosing an engine: the one place where "interp", "jit" and "auto" are resolved."""
from __future__ import annotations

from typing import Any

from .base import Engine, is_verified
from .interp import INTERP
from .jit import JIT, JitError, available, unavailable_reason

ENGINES = ("interp", "jit", "auto")


def engine_name(engine: str | None, evidence: Any = None) -> str:
    """Resolve ``engine`` ("interp", "jit", "auto" or None) to "interp" or "jit".

    "auto" (the default) is the JIT when llvmlite is available and the program
    is verified, else the interpreter.  Asking for "jit" where llvmlite is
    missing is an error, not a silent fallback.
    """
    engine = engine or "auto"
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} (expected one of {', '.join(ENGINES)})")
    if engine == "auto":
        return "jit" if available() and is_verified(evidence) else "interp"
    if engine == "jit" and not available():
        raise JitError(f"the JIT is unavailable: {unavailable_reason()}")
    return engine


def select_engine(engine: str | None, evidence: Any = None) -> Engine:
    """The engine to run a program with (see :func:`engine_name`)."""
    return JIT if engine_name(engine, evidence) == "jit" else INTERP
