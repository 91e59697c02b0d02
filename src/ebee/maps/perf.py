"""PERF_EVENT_ARRAY: per-CPU perf rings that ``bpf_perf_event_output`` writes samples to.

Linux stores a perf event fd per slot, usually one BPF_OUTPUT event per CPU at
index = CPU.  ebee has no perf events; :meth:`PerfEventArray.open` puts an
ebee perf ring (``page_cnt`` pages of data, like a perf mmap) in the slots of
the CPUs asked for, which is what BCC's ``open_perf_buffer`` and libbpf's
``perf_buffer__new`` do.  A full ring drops the sample, counts it, and
reports the loss to the reader as PERF_RECORD_LOST would.
"""
from __future__ import annotations

import errno as E
import mmap
import threading
from typing import Callable, Iterable

from .. import uapi as U
from ..btf.pyvalues import BTFValue
from ..events import EventReader, Record
from ..uapi import MapType
from .array import FdArray
from .errors import map_error
from .ringbuf import record_decoder
from .cpus import num_cpus

PERF_HEADER = 8       # struct perf_event_header
PAGE_SIZE = mmap.PAGESIZE


class PerfRing:
    """One CPU's ring: samples (raw data) and a lost-sample count."""

    def __init__(self, cpu: int, page_cnt: int, cond: threading.Condition):
        self.cpu = cpu
        self.capacity = page_cnt * PAGE_SIZE
        self.used = 0
        self.samples: list[bytes] = []
        self.lost = 0
        self.cond = cond
        self.wakeup_events = 1

    def write(self, data: bytes) -> int:
        size = PERF_HEADER + ((4 + len(data) + 7) & ~7)   # header, u32 size, data, padding
        with self.cond:
            if self.used + size > self.capacity:
                self.lost += 1
                return -E.ENOSPC
            self.samples.append(bytes(data))
            self.used += size
            self.cond.notify_all()
        return 0

    def drain(self) -> list[Record]:
        with self.cond:
            out = []
            if self.lost:
                out.append(Record(b"", self.cpu, lost=self.lost))
                self.lost = 0
            out.extend(Record(s, self.cpu) for s in self.samples)
            self.samples = []
            self.used = 0
        return out


class PerfEventArray(FdArray):
    map_type = MapType.PERF_EVENT_ARRAY

    def alloc(self) -> None:
        super().alloc()
        self.cond = threading.Condition()

    def check_value(self, value):
        if isinstance(value, PerfRing):
            return value
        raise map_error(E.EBADF, "perf event array slots hold perf rings: use open()")

    def _sys_lookup(self, key, flags):
        raise map_error(U.ENOTSUPP)

    def open(self, cpus: Iterable[int] | None = None, page_cnt: int = 8) -> list[PerfRing]:
        """Attach a ring to slot ``cpu`` for each CPU (default: every CPU that has a slot)."""
        if page_cnt <= 0 or page_cnt & (page_cnt - 1):
            raise ValueError("page_cnt must be a power of two")
        cpus = list(range(min(num_cpus(), self.max_entries))) if cpus is None else list(cpus)
        rings = []
        for c in cpus:
            if c >= self.max_entries:
                raise map_error(E.E2BIG, f"CPU {c} has no slot (max_entries {self.max_entries})")
            r = PerfRing(c, page_cnt, self.cond)
            self.slots[c] = r
            rings.append(r)
        return rings

    def output(self, flags: int, data: bytes, cpu: int) -> int:
        """bpf_perf_event_output() for the program running as ``cpu``."""
        if flags & ~U.BPF_F_INDEX_MASK:
            return -E.EINVAL
        index = flags & U.BPF_F_INDEX_MASK
        if index == U.BPF_F_CURRENT_CPU:
            index = cpu
        if index >= self.max_entries:
            return -E.E2BIG
        ring = self.slots[index]
        if ring is None:
            return -E.ENOENT
        if ring.cpu != cpu:
            return -E.EOPNOTSUPP
        return ring.write(data)

    def reader(self, callback: Callable | None = None, *, lost_callback=None,
               page_cnt: int = 8, type: "str | BTFValue | None" = None) -> "PerfReader":
        """An :class:`ebee.events.EventReader` over every CPU's ring (opening them if
        needed); ``type`` decodes each sample into ``rec.value`` (as for ring buffers)."""
        if not any(isinstance(s, PerfRing) for s in self.slots.filled()):
            self.open(page_cnt=page_cnt)
        return PerfReader(self, callback, lost_callback=lost_callback,
                          decode=record_decoder(self, type))


class PerfReader(EventReader):
    def __init__(self, m: PerfEventArray, callback=None, *, lost_callback=None, decode=None):
        super().__init__(callback, lost_callback=lost_callback, decode=decode)
        self.map = m

    def _fetch(self) -> list[Record]:
        out: list[Record] = []
        for s in self.map.slots.filled():
            if isinstance(s, PerfRing):
                out.extend(s.drain())
        return out

    def _wait(self, timeout: float | None) -> bool:
        m = self.map
        with m.cond:
            return bool(m.cond.wait_for(
                lambda: self.closed or any(isinstance(s, PerfRing) and (s.samples or s.lost)
                                           for s in m.slots.filled()), timeout))
