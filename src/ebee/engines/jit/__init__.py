"""The JIT engine: programs compiled to native code through LLVM (llvmlite).

Layers, as in numba/llvmlite: :mod:`.irgen` builds LLVM IR in pure Python,
:mod:`.codegen` binds it to the host (target machine, O2 pipeline, MCJIT,
object cache), :mod:`.runtime` is the engine (``JIT.compile(insns, evidence)
-> JitImage``, ``image.bind(cpu, runtime) -> JitBinding``) over the same
memory as the interpreter.

llvmlite is optional: :func:`available` says whether the JIT can be used and,
if not, why; ``engine="auto"`` then falls back to the interpreter.
"""
from __future__ import annotations

from ...errors import EbeeError


class JitError(EbeeError, RuntimeError):
    """The JIT cannot compile or run a program (LLVM failed, or llvmlite is missing)."""


try:
    import llvmlite  # noqa: F401
    WHY_NOT: str | None = None
except ImportError as e:  # pragma: no cover - exercised where llvmlite is absent
    WHY_NOT = f"llvmlite is not installed ({e})"

if WHY_NOT is None:
    from .runtime import JIT, CpuState, JitBinding, JitEngine, JitImage, cpu_state
    from .capture import BatchWriter, MappedCapture, open_capture
else:  # pragma: no cover
    JIT = None
    BatchWriter = MappedCapture = open_capture = None   # captures are read by ebee.packet.pcap


def available() -> bool:
    """Whether native compilation can be used in this process."""
    return WHY_NOT is None


def unavailable_reason() -> str | None:
    return WHY_NOT


__all__ = ["JIT", "CpuState", "JitBinding", "JitEngine", "JitError", "JitImage", "available",
           "cpu_state", "unavailable_reason"]
