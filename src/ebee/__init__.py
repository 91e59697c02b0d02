"""ebee: eBPF, written in Python."""
from __future__ import annotations

from . import uapi
from .asm import assemble, disassemble
from .errors import AsmError, BudgetExceeded, DecodeError, EbeeError, MemoryFault, VMError
from .isa import Instruction, decode, encode
from .vm import Execution, Machine, run

__version__ = "0.1.0"

__all__ = ["AsmError", "BudgetExceeded", "DecodeError", "EbeeError", "Execution", "Instruction",
           "Machine", "MemoryFault", "VMError", "assemble", "decode", "disassemble", "encode", "run",
           "uapi", "__version__"]
