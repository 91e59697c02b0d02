"""Helpers every program type may call: time, randomness, CPU identity."""
from __future__ import annotations

from ..uapi import FuncId
from .registry import implements

_HZ = 250          # CONFIG_HZ of common distribution kernels
_INITIAL_JIFFIES = (-300 * _HZ) & 0xFFFFFFFF   # Linux starts jiffies 5 minutes before wrap


@implements(FuncId.ktime_get_ns)
def ktime_get_ns(m, *_):
    return m.clock.monotonic_ns()


@implements(FuncId.ktime_get_boot_ns)
def ktime_get_boot_ns(m, *_):
    return m.clock.boottime_ns()


@implements(FuncId.ktime_get_coarse_ns)
def ktime_get_coarse_ns(m, *_):
    return m.clock.coarse_ns()


@implements(FuncId.ktime_get_tai_ns)
def ktime_get_tai_ns(m, *_):
    return m.clock.tai_ns()


@implements(FuncId.jiffies64)
def jiffies64(m, *_):
    return (_INITIAL_JIFFIES + m.clock.boottime_ns() * _HZ // 1_000_000_000) & ((1 << 64) - 1)


@implements(FuncId.get_prandom_u32)
def get_prandom_u32(m, *_):
    return m.random.getrandbits(32)


@implements(FuncId.get_smp_processor_id)
def get_smp_processor_id(m, *_):
    return m.cpu


@implements(FuncId.get_numa_node_id)
def get_numa_node_id(m, *_):
    return m.numa_node
