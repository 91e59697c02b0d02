"""The interpreter: real memory with checked access and programs translated once."""
from .machine import DEFAULT_BUDGET, CompiledProgram, Execution, Interpreter, Machine, run
from .memory import SHARED, Memory, Region

__all__ = ["DEFAULT_BUDGET", "CompiledProgram", "Execution", "Interpreter", "Machine", "Memory",
           "Region", "SHARED", "run"]
