"""Real memory with checked access.

Every byte a program can touch lives in a :class:`Region`: a ``bytearray``
(or an ``mmap``, for memory other processes may share) pinned by a ctypes view, so its address is a real, stable host address.
Pointers in registers are those addresses; the interpreter, helpers and a
native JIT all see the same bytes.  :class:`Memory` is the set of live
regions; the interpreter asks it which region (if any) contains an access.
"""
from __future__ import annotations

import bisect
import ctypes
import mmap
import threading
from typing import Iterator


LAZY_ZERO = 1 << 20     # bytes from which a new region's zeroes are the kernel's, lazily


def zeroed_pages(size: int) -> mmap.mmap:
    """Private anonymous pages of at least one byte, zero until written."""
    return mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


class Region:
    """A span of real memory a program may access."""

    __slots__ = ("name", "buf", "start", "size", "end", "writable", "_pin", "__weakref__")

    def __init__(self, size_or_data: int | bytes | bytearray | mmap.mmap, name: str = "", *,
                 writable: bool = True):
        if isinstance(size_or_data, int):
            # a large region is anonymous mmap pages: zero-filled by the kernel on first
            # touch, so a big preallocated map costs nothing until it is used (bytearray
            # would write every byte up front)
            buf = (bytearray(size_or_data) if size_or_data < LAZY_ZERO
                   else zeroed_pages(size_or_data))
        elif isinstance(size_or_data, (bytearray, mmap.mmap)):
            # an mmap: memory that may become shared with other processes (ebee.maps.shared)
            buf = size_or_data
        else:
            buf = bytearray(size_or_data)
        self.name = name
        self.buf = buf
        self.size = len(buf)
        # The ctypes view exports the buffer, which forbids resizing it, so the
        # address stays valid for the region's lifetime.
        self._pin = (ctypes.c_char * max(self.size, 1)).from_buffer(buf) if self.size else None
        self.start = ctypes.addressof(self._pin) if self._pin is not None else _null_address()
        self.end = self.start + self.size
        self.writable = writable

    def addr(self, offset: int = 0) -> int:
        return self.start + offset

    def contains(self, addr: int, size: int = 1) -> bool:
        return self.start <= addr and addr + size <= self.end

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        rw = "rw" if self.writable else "ro"
        return f"<Region {self.name or '?'} {self.start:#x}+{self.size} {rw}>"


_NULL_PIN = ctypes.create_string_buffer(1)


def _null_address() -> int:
    # Empty regions still need a unique-looking, non-zero address.
    return ctypes.addressof(_NULL_PIN)


class Memory:
    """The set of live regions, searchable by address.

    Like a kernel, ebee has one address space: :data:`SHARED` holds every
    region that more than one program or CPU can reach (map values, global
    data, ring buffers), and each :class:`~ebee.runtime.Cpu` uses it unless it
    is given a private one.  Mutations take a lock so that threads running
    programs concurrently see a consistent set; lookups copy nothing.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._regions: list[Region] = []
        # Re-entrant, because the garbage collector may finalize a Machine (which removes
        # its stack region) in the middle of add()/remove() on the same thread; such a
        # nested removal is deferred until the outer mutation has published its lists.
        self._lock = threading.RLock()
        self._busy = False
        self._deferred: list[Region] = []

    def add(self, region: Region) -> Region:
        if region.size == 0:
            return region
        with self._lock:
            self._busy = True
            try:
                i = bisect.bisect_right(self._starts, region.start)
                starts, regions = list(self._starts), list(self._regions)
                starts.insert(i, region.start)
                regions.insert(i, region)
                # publish both lists at once: a concurrent find() sees old or new, never a mix
                self._starts, self._regions = starts, regions
            finally:
                self._busy = False
            self._drain()
        return region

    def _drain(self) -> None:
        while self._deferred:
            self.remove(self._deferred.pop())

    def remove(self, region: Region) -> None:
        if region.size == 0:
            return
        with self._lock:
            if self._busy:
                self._deferred.append(region)
                return
            self._busy = True
            try:
                self._remove(region)
            finally:
                self._busy = False
            self._drain()

    def _remove(self, region: Region) -> None:
        i = bisect.bisect_left(self._starts, region.start)
        while i < len(self._regions) and self._starts[i] == region.start:
            if self._regions[i] is region:
                starts, regions = list(self._starts), list(self._regions)
                del starts[i]
                del regions[i]
                self._starts, self._regions = starts, regions
                return
            i += 1

    def find(self, addr: int, size: int = 1) -> Region | None:
        """The live region holding all of ``[addr, addr+size)``, or None."""
        starts, regions = self._starts, self._regions
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0:
            r = regions[i]
            if addr + size <= r.end:
                return r
        return None

    def read(self, addr: int, size: int) -> bytes:
        r = self.find(addr, size)
        if r is None:
            raise ValueError(f"no live region holds {size} bytes at {addr:#x}")
        off = addr - r.start
        return bytes(r.buf[off:off + size])

    def write(self, addr: int, data: bytes) -> None:
        r = self.find(addr, len(data))
        if r is None or not r.writable:
            raise ValueError(f"no writable region holds {len(data)} bytes at {addr:#x}")
        off = addr - r.start
        r.buf[off:off + len(data)] = data

    @property
    def generation(self) -> object:
        """Changes (by identity) whenever the set of live regions changes: a cheap
        staleness test for copies of the region table (the JIT's checked code)."""
        return self._regions

    def __iter__(self) -> Iterator[Region]:
        return iter(list(self._regions))

    def __len__(self) -> int:
        return len(self._regions)


SHARED = Memory()
"""The process-wide address space (see :class:`Memory`)."""
