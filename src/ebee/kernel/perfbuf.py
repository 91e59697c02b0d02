"""Reading a BPF_MAP_TYPE_PERF_EVENT_ARRAY map: one perf ring per CPU, as libbpf's perf_buffer.

For each CPU a PERF_COUNT_SW_BPF_OUTPUT event is opened, its ring mmap'ed
(one metadata page + a power-of-two number of data pages) and its fd stored
in the map at that CPU's index, which is where ``bpf_perf_event_output(ctx,
&map, BPF_F_CURRENT_CPU, ...)`` writes.  Records are PERF_RECORD_SAMPLE (a
u32 size and the raw bytes, padded by the kernel to keep 8-byte alignment)
or PERF_RECORD_LOST (how many samples a full ring dropped).
"""
from __future__ import annotations

import mmap
import os
import select
import struct

from ..events import EventReader, Record
from ..uapi import PERF_EVENT_IOC_ENABLE, PerfRecord, PerfSample, PerfSwId, PerfType
from .attrs import PerfEventMmapPage
from .attach.perf_event import online_cpus, open_event
from .syscall import ioctl
from .info import map_info
from ..uapi import Cmd
from .attrs import MapElemAttr
from .syscall import addr, bpf

PAGE = mmap.PAGESIZE
_HDR = struct.Struct("=IHH")            # perf_event_header: type, misc, size
_HEAD = PerfEventMmapPage.data_head.offset
_TAIL = PerfEventMmapPage.data_tail.offset
_DOFF = PerfEventMmapPage.data_offset.offset
_DSIZE = PerfEventMmapPage.data_size.offset


class _CpuRing:
    def __init__(self, cpu: int, pages: int):
        self.cpu = cpu
        self.fd = open_event(PerfType.SOFTWARE, PerfSwId.BPF_OUTPUT, pid=-1, cpu=cpu,
                             sample_period=1, wakeup_events=1,
                             sample_type=PerfSample.RAW)
        try:
            self.mm = mmap.mmap(self.fd, PAGE * (pages + 1), mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self.fd)
            raise
        off, size = struct.unpack_from("=QQ", self.mm, _DOFF)
        self.data_off = off or PAGE           # pre-4.1 kernels leave these zero
        self.data_size = size or PAGE * pages
        ioctl(self.fd, PERF_EVENT_IOC_ENABLE, 0)

    def read(self) -> list[Record]:
        mm = self.mm
        head = struct.unpack_from("=Q", mm, _HEAD)[0]
        tail = struct.unpack_from("=Q", mm, _TAIL)[0]
        out = []
        size = self.data_size
        while tail < head:
            hdr = self._bytes(tail, _HDR.size)
            typ, _, ln = _HDR.unpack(hdr)
            rec = self._bytes(tail, ln)
            if typ == PerfRecord.SAMPLE:
                n = struct.unpack_from("=I", rec, _HDR.size)[0]
                out.append(Record(rec[_HDR.size + 4:_HDR.size + 4 + n], self.cpu))
            elif typ == PerfRecord.LOST:
                lost = struct.unpack_from("=Q", rec, _HDR.size + 8)[0]
                out.append(Record(b"", self.cpu, lost))
            tail += ln
            if ln == 0 or ln > size:    # corrupt ring: resynchronise
                tail = head
        struct.pack_into("=Q", mm, _TAIL, tail)
        return out

    def _bytes(self, pos: int, n: int) -> bytes:
        """n bytes at ring position pos, joining the two pieces of a wrapped record."""
        size = self.data_size
        start = pos % size
        base = self.data_off
        if start + n <= size:
            return self.mm[base + start:base + start + n]
        first = size - start
        return self.mm[base + start:base + size] + self.mm[base:base + n - first]

    def close(self) -> None:
        self.mm.close()
        os.close(self.fd)


class PerfBufReader(EventReader[Record]):
    """Records from a kernel perf event array (``map``: a handle with ``fd``, or an fd).

    ``pages`` is the per-CPU ring size in pages (a power of two, 8 by default,
    like bpftool); ``lost_callback(cpu, count)`` hears about dropped samples.
    """

    def __init__(self, map, callback=None, *, lost_callback=None, pages: int = 8,
                 cpus: list[int] | None = None, decode=None):
        super().__init__(callback, lost_callback=lost_callback, decode=decode)
        if pages <= 0 or pages & (pages - 1):
            raise ValueError(f"pages must be a power of two, not {pages}")
        self.map = map
        self._map_fd = map if isinstance(map, int) else map.fd
        self.rings: list[_CpuRing] = []
        self._epoll = select.epoll()
        try:
            max_entries = map_info(self._map_fd).max_entries
            for cpu in cpus if cpus is not None else online_cpus():
                if cpu >= max_entries:
                    continue        # libbpf: the map has no slot for this CPU
                ring = _CpuRing(cpu, pages)
                self.rings.append(ring)
                self._set_slot(cpu, ring.fd)
                self._epoll.register(ring.fd, select.EPOLLIN)
        except BaseException:
            self.close()
            raise

    def _set_slot(self, cpu: int, fd: int | None) -> None:
        import ctypes

        key = ctypes.c_uint32(cpu)
        if fd is None:
            try:
                bpf(Cmd.MAP_DELETE_ELEM, MapElemAttr(map_fd=self._map_fd, key=addr(key)))
            except OSError:
                pass
            return
        val = ctypes.c_uint32(fd)
        bpf(Cmd.MAP_UPDATE_ELEM, MapElemAttr(map_fd=self._map_fd, key=addr(key),
                                             value=addr(val)))

    def fileno(self) -> int:
        return self._epoll.fileno()

    def _fetch(self) -> list[Record]:
        out: list[Record] = []
        for ring in self.rings:
            out.extend(ring.read())
        return out

    def _wait(self, timeout: float | None) -> bool:
        if self.closed:
            return False
        return bool(self._epoll.poll(-1 if timeout is None else timeout))

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        for ring in self.rings:
            self._set_slot(ring.cpu, None)
            ring.close()
        self.rings = []
        self._epoll.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
