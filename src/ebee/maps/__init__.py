"""Maps: every map type Linux has that user space can model, with Linux's semantics.

``Map(map_type, key_size, value_size, max_entries, flags, ...)`` creates a map
as ``bpf(BPF_MAP_CREATE)`` would and returns the subclass for its type.  See
docs/maps.md for the user guide and docs/maps-layout.md for the memory
layouts native code relies on.
"""
from __future__ import annotations

from . import (array, bloom, hashtab, lpm, perf, queue, redirect, ringbuf, sockmap,  # noqa: F401
               stacktrace, storage, struct_ops)
from .array import ArrayMap, ArrayOfMaps, CgroupArrayMap, PercpuArrayMap, ProgArrayMap
from .base import Batch, Map, MappedValues, by_addr, by_id, live_maps
from .bloom import BloomFilter
from .cpus import num_cpus, set_num_cpus, set_user_cpu, user_cpu
from .errors import MapError, MapKeyError
from .hashtab import HashMap, HashOfMaps, LruHashMap, LruPercpuHashMap, PercpuHashMap
from .lpm import LpmTrie
from .perf import PerfEventArray, PerfRing
from .queue import QueueMap, StackMap
from .redirect import CpuMap, DevMap, DevMapHash, XskMap
from .ringbuf import RingBuf, UserRingBuf, UserSample
from .sockmap import ReuseportArray, SockHash, SockMap
from .stacktrace import StackTraceMap
from .struct_ops import StructOpsMap
from .storage import (CgroupStorage, CgrpStorage, InodeStorage, PercpuCgroupStorage, SkStorage,
                      TaskStorage)

#: map types ebee implements (derived from the registry, not a second table)
SUPPORTED = frozenset(Map._types)

__all__ = ["ArrayMap", "ArrayOfMaps", "Batch", "BloomFilter", "CgroupArrayMap", "CgroupStorage",
           "CgrpStorage", "PercpuCgroupStorage", "ReuseportArray", "SockHash", "SockMap",
           "StructOpsMap", "UserRingBuf", "UserSample",
           "CpuMap", "DevMap", "DevMapHash", "HashMap", "HashOfMaps", "InodeStorage", "LpmTrie",
           "LruHashMap", "LruPercpuHashMap", "Map", "MapError", "MapKeyError", "MappedValues",
           "PercpuArrayMap", "PercpuHashMap", "PerfEventArray", "PerfRing", "ProgArrayMap",
           "QueueMap", "RingBuf", "SUPPORTED", "SkStorage", "StackMap", "StackTraceMap",
           "TaskStorage", "XskMap", "by_addr", "by_id", "live_maps", "num_cpus", "set_num_cpus",
           "set_user_cpu", "user_cpu"]
