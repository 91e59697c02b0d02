"""The JIT: verified programs compiled to native code through LLVM (llvmlite).

Layers, as in numba/llvmlite: :mod:`.irgen` builds LLVM IR in pure Python,
:mod:`.codegen` binds it to the host (target machine, O2 pipeline, MCJIT,
object cache), :mod:`.runtime` binds compiled programs to machines and runs
them with the interpreter's interface (``bind(machine, insns).run(r1..r5)
-> Execution``) over the same memory.

llvmlite is optional: :func:`available` says whether the JIT can be used and,
if not, why; ``engine="auto"`` then falls back to the interpreter.
"""
from __future__ import annotations

from typing import Any

from ..errors import EbeeError

ENGINES = ("interp", "jit", "auto")


class JitError(EbeeError, RuntimeError):
    """The JIT cannot compile or run a program (LLVM failed, or llvmlite is missing)."""


try:
    import llvmlite  # noqa: F401
    _WHY_NOT: str | None = None
except ImportError as e:  # pragma: no cover - exercised where llvmlite is absent
    _WHY_NOT = f"llvmlite is not installed ({e})"


def is_verified(evidence: Any) -> bool:
    """Whether ``evidence`` says the program passed a verifier.

    Evidence is a verifier result (``ebee.verifier.VerifierResult``) or
    anything else with ``accepted`` set -- e.g. the outcome of loading the
    same instructions into Linux.  Passing it is a promise that these exact
    instructions were verified: only then does the JIT drop its checks.
    """
    return evidence is not None and getattr(evidence, "accepted", False) is True


def available() -> bool:
    """Whether native compilation can be used in this process."""
    return _WHY_NOT is None


def unavailable_reason() -> str | None:
    return _WHY_NOT


def select_engine(engine: str | None, *, verified: Any = None) -> str:
    """Resolve ``engine`` ("interp", "jit", "auto" or None) to "interp" or "jit".

    "auto" (the default) is the JIT when llvmlite is available and the program
    is verified, else the interpreter.  Asking for "jit" where llvmlite is
    missing is an error, not a silent fallback.
    """
    engine = engine or "auto"
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} (expected one of {', '.join(ENGINES)})")
    if engine == "auto":
        return "jit" if available() and is_verified(verified) else "interp"
    if engine == "jit" and not available():
        raise JitError(f"the JIT is unavailable: {_WHY_NOT}")
    return engine


def evidence_for(prog: Any) -> Any:
    """Verification evidence for a loaded program (``ebee.Program``): its verdict
    (``ebee.verifier.verdict``, computed once per program), evidence only if
    accepted.  Raw instruction lists have none: they run checked (or interpreted).
    """
    if not (hasattr(prog, "insns") and hasattr(prog, "type")):
        return None
    from ..verifier import verdict
    try:
        res = verdict(prog)
    except Exception:            # the verifier could not judge it: no evidence
        return None
    return res if getattr(res, "accepted", False) is True else None


def bind(machine, insns, *, verified: Any = None):
    """Compile ``insns`` (cached) and bind them to ``machine``; see :func:`runtime.bind`."""
    if not available():
        raise JitError(f"the JIT is unavailable: {_WHY_NOT}")
    from .runtime import bind as _bind
    return _bind(machine, insns, verified=verified)


__all__ = ["ENGINES", "JitError", "available", "bind", "evidence_for", "select_engine", "unavailable_reason"]
