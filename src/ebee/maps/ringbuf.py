"""RINGBUF (kernel/bpf/ringbuf.c): a multi-producer, single-consumer byte ring.

``max_entries`` is the data size: a power of two and a multiple of the page
size.  Records are an 8-byte header (``u32 len`` with BUSY/DISCARD bits,
``u32 pg_off``) plus data, rounded up to 8 bytes.  ``reserve`` hands the
program a pointer into the ring; the record is invisible to the consumer
until ``submit`` or ``discard`` clears its BUSY bit, and records are consumed
in reservation order, so an uncommitted record holds back later ones.

Linux maps the data pages twice in a row so a record that wraps is still
contiguous; ebee's data region is likewise twice the ring size, and a
committed record that ran past the end is copied back to the start (where the
consumer reads it) before its BUSY bit clears.

Wakeups: a commit notifies readers when the consumer has caught up with the
record (``BPF_RB_FORCE_WAKEUP`` always, ``BPF_RB_NO_WAKEUP`` never), as Linux
decides when to fire its irq_work.
"""
from __future__ import annotations

import errno as E
import mmap
import struct
import threading
from typing import Callable

from .. import uapi as U
from ..events import EventReader, Record
from ..uapi import MapType
from .base import Map
from .errors import map_error

HDR = struct.Struct("<II")
RINGBUF_MAX_RECORD_SZ = 0xFFFFFFFF >> 2
PAGE_SIZE = mmap.PAGESIZE


class RingBuf(Map):
    map_type = MapType.RINGBUF
    keyless = True
    create_flags = U.BPF_F_NUMA_NODE

    def check_attr(self) -> None:
        n = self.max_entries
        if self.key_size or self.value_size or n == 0 or n & (n - 1) or n % PAGE_SIZE:
            raise map_error(E.EINVAL, "ring buffers need key_size 0, value_size 0 and a "
                                      "power-of-two, page-aligned max_entries")

    def alloc(self) -> None:
        self.size = self.max_entries
        self.mask = self.size - 1
        self.data = self._add_region(2 * self.size, "data")
        self.consumer_pos = 0
        self.producer_pos = 0
        self.pending_pos = 0
        self.cond = threading.Condition()
        self.notifications = 0
        self.dropped = 0          # reservations refused (ring full or record too large)
        self._write_handle(self.data.start)

    # -- producer (programs) -------------------------------------------------------------

    def reserve(self, size: int) -> int:
        """__bpf_ringbuf_reserve(): address of the record's data, or 0 (counted in
        ``dropped``: Linux keeps no such count, but a reader here reports it)."""
        if size > RINGBUF_MAX_RECORD_SZ:
            self.dropped += 1
            return 0
        length = (size + U.BPF_RINGBUF_HDR_SZ + 7) & ~7
        if length > self.size:
            self.dropped += 1
            return 0
        with self.lock:
            cons, prod = self.consumer_pos, self.producer_pos
            pend = self.pending_pos
            buf = self.data.buf
            while pend < prod:
                hlen = HDR.unpack_from(buf, pend & self.mask)[0]
                if hlen & U.BPF_RINGBUF_BUSY_BIT:
                    break
                pend += ((hlen & ~U.BPF_RINGBUF_DISCARD_BIT) + U.BPF_RINGBUF_HDR_SZ + 7) & ~7
            self.pending_pos = pend
            new = prod + length
            if new - cons > self.mask or new - pend > self.mask:
                self.dropped += 1
                return 0
            off = prod & self.mask
            HDR.pack_into(buf, off, size | U.BPF_RINGBUF_BUSY_BIT, off // PAGE_SIZE)
            self.producer_pos = new
        return self.data.start + off + U.BPF_RINGBUF_HDR_SZ

    def commit(self, addr: int, flags: int, discard: bool) -> None:
        """bpf_ringbuf_commit(): make the record at ``addr`` visible (or discarded)."""
        off = addr - U.BPF_RINGBUF_HDR_SZ - self.data.start
        buf = self.data.buf
        with self.lock:
            hlen = HDR.unpack_from(buf, off)[0]
            size = hlen & ~(U.BPF_RINGBUF_BUSY_BIT | U.BPF_RINGBUF_DISCARD_BIT)
            end = off + U.BPF_RINGBUF_HDR_SZ + size
            if end > self.size:    # the record ran into the second mapping: fold it back
                lo = max(off, self.size)
                buf[lo - self.size:end - self.size] = buf[lo:end]
            new = size | (U.BPF_RINGBUF_DISCARD_BIT if discard else 0)
            struct.pack_into("<I", buf, off, new)
            rec_pos = off
            cons = self.consumer_pos & self.mask
        if flags & U.BPF_RB_FORCE_WAKEUP or (cons == rec_pos and not flags & U.BPF_RB_NO_WAKEUP):
            self.notify()

    def notify(self) -> None:
        with self.cond:
            self.notifications += 1
            self.cond.notify_all()

    def owns(self, addr: int) -> bool:
        return self.data.start + U.BPF_RINGBUF_HDR_SZ <= addr < self.data.start + 2 * self.size

    def output(self, data: bytes, flags: int) -> int:
        if flags & ~(U.BPF_RB_NO_WAKEUP | U.BPF_RB_FORCE_WAKEUP):
            return -E.EINVAL
        addr = self.reserve(len(data))
        if not addr:
            return -E.EAGAIN
        off = addr - self.data.start
        self.data.buf[off:off + len(data)] = data
        self.commit(addr, flags, False)
        return 0

    def query(self, flags: int) -> int:
        if flags == U.BPF_RB_AVAIL_DATA:
            return self.producer_pos - self.consumer_pos
        if flags == U.BPF_RB_RING_SIZE:
            return self.size
        if flags == U.BPF_RB_CONS_POS:
            return self.consumer_pos
        if flags == U.BPF_RB_PROD_POS:
            return self.producer_pos
        return 0

    # -- consumer (user space) -------------------------------------------------------------

    def consume(self) -> list[bytes]:
        """Every committed record available now, in order: the ring's own consumer step.
        Applications read through :meth:`reader` (``for rec in reader``,
        ``reader.drain()``), which also reports drops."""
        out = []
        buf = self.data.buf
        with self.lock:
            cons = self.consumer_pos
            while cons < self.producer_pos:
                hlen, _ = HDR.unpack_from(buf, cons & self.mask)
                if hlen & U.BPF_RINGBUF_BUSY_BIT:
                    break
                size = hlen & ~U.BPF_RINGBUF_DISCARD_BIT
                if not hlen & U.BPF_RINGBUF_DISCARD_BIT:
                    start = (cons & self.mask) + U.BPF_RINGBUF_HDR_SZ
                    first = min(size, self.size - start) if start < self.size else 0
                    rec = bytes(buf[start:start + first])
                    if first < size:
                        s2 = (start + first) - self.size
                        rec += bytes(buf[s2:s2 + size - first])
                    out.append(rec)
                cons += (size + U.BPF_RINGBUF_HDR_SZ + 7) & ~7
                self.consumer_pos = cons
        return out

    def reader(self, callback: Callable | None = None, *, lost_callback=None) -> "RingBufReader":
        """An :class:`ebee.events.EventReader` over this ring (BCC's open_ring_buffer)."""
        return RingBufReader(self, callback, lost_callback=lost_callback)

    def _sys_lookup(self, key, flags):
        raise map_error(U.ENOTSUPP)

    def _get_next_key(self, key):
        raise map_error(U.ENOTSUPP)

    def __iter__(self):
        raise TypeError("ring buffers cannot be iterated by key; use reader()")


class RingBufReader(EventReader):
    def __init__(self, rb: RingBuf, callback=None, *, lost_callback=None):
        super().__init__(callback, lost_callback=lost_callback)
        self.rb = rb
        self._seen = rb.notifications
        self._dropped = rb.dropped

    def _fetch(self) -> list[Record]:
        out = [Record(d) for d in self.rb.consume()]
        n = self.rb.dropped - self._dropped
        if n:
            # the losses happened while the ring was full of the records before them
            self._dropped += n
            out.append(Record(b"", -1, lost=n))
        return out

    def _wait(self, timeout: float | None) -> bool:
        rb = self.rb
        with rb.cond:
            ok = rb.cond.wait_for(lambda: rb.notifications != self._seen or self.closed, timeout)
            self._seen = rb.notifications
        return bool(ok)


class UserRingBuf(Map):
    """USER_RINGBUF: the ring the other way round -- user space produces
    (libbpf's ``user_ring_buffer__reserve``/``__submit``, here :meth:`submit`), programs
    consume with ``bpf_user_ringbuf_drain`` (:meth:`drain` is that side).  Created
    with the ring buffer's rules; it has no elements to look up or update (ENOTSUPP)."""
    map_type = MapType.USER_RINGBUF
    keyless = True
    create_flags = U.BPF_F_NUMA_NODE
    check_attr = RingBuf.check_attr

    def alloc(self) -> None:
        self.size = self.max_entries
        self.mask = self.size - 1
        self.data = self._add_region(self.size, "data")
        self.consumer_pos = 0
        self.producer_pos = 0
        self._write_handle(self.data.start)

    def submit(self, data: bytes, *, discard: bool = False) -> None:
        """Reserve a sample, copy ``data`` in and commit it (or discard it).  MapError:
        E2BIG for a sample that can never fit, ENOSPC while the ring is full."""
        size = len(data)
        if size & (U.BPF_RINGBUF_BUSY_BIT | U.BPF_RINGBUF_DISCARD_BIT):
            raise map_error(E.E2BIG, "sample too large")
        total = (size + U.BPF_RINGBUF_HDR_SZ + 7) // 8 * 8
        if total > self.size:
            raise map_error(E.E2BIG, f"a {size}-byte sample does not fit in the ring")
        with self.lock:
            prod = self.producer_pos
            if self.size - (prod - self.consumer_pos) < total:
                raise map_error(E.ENOSPC, "the ring is full")
            self._put(prod + U.BPF_RINGBUF_HDR_SZ, data)
            flag = U.BPF_RINGBUF_DISCARD_BIT if discard else 0
            self._put(prod, HDR.pack(size | flag, 0))
            self.producer_pos = prod + total

    def _put(self, pos: int, data: bytes) -> None:
        off = pos & self.mask
        first = min(len(data), self.size - off)
        buf = self.data.buf
        buf[off:off + first] = data[:first]
        buf[:len(data) - first] = data[first:]

    def drain(self, limit: int | None = None) -> list[bytes]:
        """The committed samples, consumed in order (discarded ones skipped), as
        ``bpf_user_ringbuf_drain`` hands them to its callback."""
        out: list[bytes] = []
        buf = self.data.buf
        with self.lock:
            while self.consumer_pos < self.producer_pos and (limit is None or len(out) < limit):
                cons = self.consumer_pos
                off = cons & self.mask
                hlen = int.from_bytes(bytes(buf[off:off + 4]), "little")
                if hlen & U.BPF_RINGBUF_BUSY_BIT:
                    break
                size = hlen & ~U.BPF_RINGBUF_DISCARD_BIT
                if not hlen & U.BPF_RINGBUF_DISCARD_BIT:
                    start = (cons + U.BPF_RINGBUF_HDR_SZ) & self.mask
                    first = min(size, self.size - start)
                    out.append(bytes(buf[start:start + first]) + bytes(buf[:size - first]))
                self.consumer_pos = cons + (size + U.BPF_RINGBUF_HDR_SZ + 7) // 8 * 8
        return out

    def __iter__(self):
        raise TypeError("user ring buffers cannot be iterated by key; use drain()")
