"""How many virtual CPUs the runtime has, and which one user space runs on.

Linux sizes per-CPU maps by the number of *possible* CPUs, fixed at boot.
ebee makes it a runtime setting (default ``os.cpu_count()``): a per-CPU map
takes the value in force when it is created and keeps it for its lifetime,
as a kernel map keeps its per-CPU areas.  Programs run as ``Machine.cpu``;
map operations from user space run as :func:`user_cpu` (default 0), the CPU
whose LRU lists and per-CPU slots a syscall-side operation would touch.
"""
from __future__ import annotations

import os

_num_cpus = max(1, os.cpu_count() or 1)
_user_cpu = 0


def num_cpus() -> int:
    """The number of virtual CPUs new per-CPU maps are created with."""
    return _num_cpus


def set_num_cpus(n: int) -> None:
    """Set the number of virtual CPUs (affects maps created afterwards)."""
    global _num_cpus, _user_cpu
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"number of CPUs must be a positive integer, not {n!r}")
    _num_cpus = n
    if _user_cpu >= n:
        _user_cpu = 0


def user_cpu() -> int:
    """The CPU that map operations from Python run as."""
    return _user_cpu


def set_user_cpu(cpu: int) -> None:
    global _user_cpu
    if not 0 <= cpu < _num_cpus:
        raise ValueError(f"CPU {cpu} out of range: there are {_num_cpus} CPUs")
    _user_cpu = cpu
