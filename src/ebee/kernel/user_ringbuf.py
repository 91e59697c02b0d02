"""Writing a kernel BPF_MAP_TYPE_USER_RINGBUF from user space, as libbpf's
``user_ring_buffer`` does (``user_ring_buffer__reserve``/``__submit``/``__discard``).

The map is mmap'ed as libbpf maps it: the consumer position page read-only (the
kernel refuses a writable mapping of it, EPERM), then the producer position page and
the data area, read-write, the data twice in a row so a sample that wraps is written
in one piece.  A sample's header is written with its BUSY bit and the producer
position published at reserve time; submit clears the bit (discard sets DISCARD), so
the kernel's reader stops at a sample still being written.  The API is the one of
:class:`ebee.maps.UserRingBuf`, so a test feeds both backends the same way.

Memory ordering: libbpf publishes with release stores; this writer relies on x86
keeping stores ordered.
"""
from __future__ import annotations

import errno as E
import mmap
import struct

from ..uapi import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ
from .info import map_info

PAGE = mmap.PAGESIZE
_U64 = struct.Struct("=Q")
_HDR = struct.Struct("=II")


class KernelUserSample:
    """A reserved sample: :meth:`write`, then :meth:`submit` or :meth:`discard`."""

    def __init__(self, ring: "UserRingBufWriter", pos: int, size: int):
        self.ring, self.pos, self.size = ring, pos, size
        self.done = False

    def write(self, data: bytes, offset: int = 0) -> None:
        if offset < 0 or offset + len(data) > self.size:
            raise ValueError(f"{len(data)} bytes at {offset} do not fit a {self.size}-byte sample")
        start = (self.pos + BPF_RINGBUF_HDR_SZ + offset) & self.ring.mask
        self.ring.data[start:start + len(data)] = bytes(data)

    def submit(self) -> None:
        self._commit(0)

    def discard(self) -> None:
        self._commit(BPF_RINGBUF_DISCARD_BIT)

    def _commit(self, flag: int) -> None:
        if self.done:
            raise ValueError("this sample was already submitted or discarded")
        self.done = True
        _HDR.pack_into(self.ring.data, self.pos & self.ring.mask, self.size | flag, 0)


class UserRingBufWriter:
    """The producer side of a kernel user ring buffer (``map``: a handle with ``fd``)."""

    def __init__(self, map, *, max_entries: int | None = None):
        self.map = map                      # keeps the map alive
        fd = map if isinstance(map, int) else map.fd
        if max_entries is None:
            max_entries = map_info(fd).max_entries
        self.size = max_entries
        self.mask = max_entries - 1
        self._cons = mmap.mmap(fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
        try:
            self._prod = mmap.mmap(fd, PAGE + 2 * max_entries, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE, offset=PAGE)
        except BaseException:
            self._cons.close()
            raise
        self.data = memoryview(self._prod)[PAGE:]

    @property
    def consumer_pos(self) -> int:
        return _U64.unpack_from(self._cons, 0)[0]

    @property
    def producer_pos(self) -> int:
        return _U64.unpack_from(self._prod, 0)[0]

    @producer_pos.setter
    def producer_pos(self, pos: int) -> None:
        _U64.pack_into(self._prod, 0, pos)

    def reserve(self, size: int) -> KernelUserSample:
        """OSError E2BIG for a sample that can never fit, ENOSPC while the ring is full
        (libbpf's errno)."""
        if size < 0 or size & (BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT):
            raise OSError(E.E2BIG, "sample too large")
        cons, prod = self.consumer_pos, self.producer_pos
        total = (size + BPF_RINGBUF_HDR_SZ + 7) // 8 * 8
        if total > self.size:
            raise OSError(E.E2BIG, f"a {size}-byte sample does not fit in the ring")
        if self.size - (prod - cons) < total:
            raise OSError(E.ENOSPC, "the ring is full")
        _HDR.pack_into(self.data, prod & self.mask, size | BPF_RINGBUF_BUSY_BIT, 0)
        self.producer_pos = prod + total
        return KernelUserSample(self, prod, size)

    def submit(self, data: bytes, *, discard: bool = False) -> None:
        s = self.reserve(len(data))
        s.write(data)
        s.discard() if discard else s.submit()

    def close(self) -> None:
        self.data.release()
        self._prod.close()
        self._cons.close()

    def __enter__(self) -> "UserRingBufWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
