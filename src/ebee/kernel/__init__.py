"""The kernel backend: the same programs, loaded into Linux through bpf(2)."""
from .prog import KernelLoadError, KernelProgram, TestRun, bpf_available
from .syscall import bpf

__all__ = ["KernelLoadError", "KernelProgram", "TestRun", "bpf", "bpf_available"]
