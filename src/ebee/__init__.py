"""ebee: eBPF, written in Python."""
from __future__ import annotations

from . import uapi
from .asm import assemble, disassemble
from .errors import AsmError, BudgetExceeded, DecodeError, EbeeError, LoadError, MemoryFault, VMError
from .isa import Instruction, decode, encode
from .vm import Execution, Machine, run
from .maps import Map, MapError, MapKeyError

__version__ = "0.1.0"

__all__ = ["AsmError", "BudgetExceeded", "DecodeError", "EbeeError", "Execution", "Instruction",
           "Machine", "MemoryFault", "VMError", "assemble", "decode", "disassemble", "encode", "run",
           "uapi", "__version__"]
__all__ += ["Map", "MapError", "MapKeyError"]
__all__ += ["LoadError", "Object", "Program", "get_pinned", "load", "open_object", "pin", "unpin"]

# The loader pulls in pyelftools and BTF: imported on first use.
_LAZY = {"load": ("object", "load"), "open_object": ("object", "open_file"), "Object": ("object", "Object"),
         "Program": ("object", "Program"), "pin": ("fs", "pin"),
         "get_pinned": ("fs", "get_pinned"), "unpin": ("fs", "unpin")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{mod}", __name__), attr)
    raise AttributeError(f"module 'ebee' has no attribute {name!r}")
