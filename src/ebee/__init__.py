"""ebee: eBPF, written in Python."""
from __future__ import annotations

from . import uapi
from .asm import assemble, disassemble
from .engines import Execution, Machine, run
from .errors import AsmError, BudgetExceeded, DecodeError, EbeeError, LoadError, MemoryFault, VMError
from .fs import pin, unpin
from .isa import Instruction, decode, encode
from .maps import Map, MapError, MapKeyError
from .program import Program
from .session import Object, OpenObject, get_pinned, load, open_file as open_object

__version__ = "0.1.0"

__all__ = ["AsmError", "BudgetExceeded", "DecodeError", "EbeeError", "Execution", "Instruction",
           "LoadError", "Machine", "Map", "MapError", "MapKeyError", "MemoryFault", "Object",
           "OpenObject",
           "Program", "VMError", "__version__", "assemble", "decode", "disassemble", "encode",
           "get_pinned", "load", "open_object", "pin", "run", "uapi", "unpin"]
