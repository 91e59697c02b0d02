"""Reading a BPF_MAP_TYPE_RINGBUF map from user space, as libbpf's ring_buffer does.

The map is mmap'ed: one read-write page holding the consumer position, then
(read-only) the producer position page and the data area, which the kernel
maps twice in a row so a record that wraps around the end reads as one piece.
Each record has an 8-byte header: a u32 length whose top bits say "still
being written" (BUSY) or "discarded" (DISCARD), and a u32 page offset.
Readiness is signalled through epoll on the map's fd.

Memory ordering: the kernel publishes positions with release stores; this
reader relies on the architecture keeping loads ordered (x86 does).
"""
from __future__ import annotations

import mmap
import select
import struct

from ..events import EventReader, Record
from ..uapi import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ
from .info import map_info

PAGE = mmap.PAGESIZE
_U64 = struct.Struct("=Q")
_U32 = struct.Struct("=I")


class RingBufReader(EventReader[Record]):
    """Records from a kernel ring buffer map (``map`` is a handle with ``fd``, or an fd)."""

    def __init__(self, map, callback=None, *, max_entries: int | None = None, decode=None):
        super().__init__(callback, decode=decode)
        self.map = map                      # keeps the map alive
        fd = map if isinstance(map, int) else map.fd
        if max_entries is None:
            max_entries = map_info(fd).max_entries
        self.size = max_entries
        self.mask = max_entries - 1
        self._cons = mmap.mmap(fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                               offset=0)
        try:
            self._prod = mmap.mmap(fd, PAGE + 2 * max_entries, mmap.MAP_SHARED, mmap.PROT_READ,
                                   offset=PAGE)
        except BaseException:
            self._cons.close()
            raise
        self._data = memoryview(self._prod)[PAGE:]
        self._epoll = select.epoll()
        self._epoll.register(fd, select.EPOLLIN)

    def fileno(self) -> int:
        """An epoll fd that becomes readable when records arrive."""
        return self._epoll.fileno()

    def _fetch(self) -> list[Record]:
        if self.closed:
            return []
        out = []
        cons = _U64.unpack_from(self._cons, 0)[0]
        while True:
            prod = _U64.unpack_from(self._prod, 0)[0]
            progressed = False
            while cons < prod:
                off = cons & self.mask
                ln = _U32.unpack_from(self._data, off)[0]
                if ln & BPF_RINGBUF_BUSY_BIT:
                    break               # the producer has not committed it yet
                size = ln & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
                if not ln & BPF_RINGBUF_DISCARD_BIT:
                    start = off + BPF_RINGBUF_HDR_SZ
                    out.append(Record(bytes(self._data[start:start + size])))
                cons += (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
                _U64.pack_into(self._cons, 0, cons)
                progressed = True
            if not progressed:
                return out

    def _wait(self, timeout: float | None) -> bool:
        if self.closed:
            return False
        return bool(self._epoll.poll(-1 if timeout is None else timeout))

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        self._data.release()
        self._prod.close()
        self._cons.close()
        self._epoll.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
