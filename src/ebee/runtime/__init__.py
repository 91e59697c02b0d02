"""The run-time state every engine and helper shares: the virtual CPU, the run's
context and redirect record, clocks, the trace pipe, tail-call targets and the
load-time rewrite of context accesses onto the runtime's kernel-shaped structures."""
from .clock import Clock
from .context import Redirect, RunContext
from .cpu import DEFAULT_BUDGET, Cpu
from .program import Executable, RawProgram, Runnable

__all__ = ["Clock", "Cpu", "DEFAULT_BUDGET", "Executable", "RawProgram", "Redirect",
           "RunContext", "Runnable"]
