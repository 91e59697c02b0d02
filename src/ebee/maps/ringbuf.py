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

A record's header lives in memory the program holding the record can write
(an unverified program may overwrite it).  The ring therefore keeps its own
table of the records it reserved -- size, committed, discarded -- and trusts
that, never the header: ``submit`` of anything but a live reservation is a
``VMError``, a commit rewrites the header from the table, and the consumer
skips a record whose header no longer matches, counting it in ``corrupted``
and reporting it to readers as one lost record, then carries on with the
next one.

Wakeups: a commit notifies readers when the consumer has caught up with the
record (``BPF_RB_FORCE_WAKEUP`` always, ``BPF_RB_NO_WAKEUP`` never), as Linux
decides when to fire its irq_work.
"""
from __future__ import annotations

import errno as E
import itertools
import mmap
import operator
import struct
import threading
from typing import Callable

from .. import uapi as U
from ..btf.pyvalues import BTFValue
from ..errors import VMError
from ..events import EventReader, Record
from ..uapi import MapType
from .base import Map
from .errors import map_error

HDR = struct.Struct("<II")
_SIZE, _DISCARD = operator.itemgetter(0), operator.itemgetter(2)   # of a _records entry
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
        # ring offset -> [size, committed, discarded] of every record not yet consumed
        self._records: dict[int, list] = {}
        self.corrupted = 0
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
            pend = max(self.pending_pos, cons)     # consumed records were all committed
            buf = self.data.buf
            while pend < prod:
                rec = self._records.get(pend & self.mask)
                if rec is None or not rec[1]:
                    break
                pend += (rec[0] + U.BPF_RINGBUF_HDR_SZ + 7) & ~7
            self.pending_pos = pend
            new = prod + length
            if new - cons > self.mask or new - pend > self.mask:
                self.dropped += 1
                return 0
            off = prod & self.mask
            HDR.pack_into(buf, off, size | U.BPF_RINGBUF_BUSY_BIT, off // PAGE_SIZE)
            self._records[off] = [size, False, False]
            self.producer_pos = new
        return self.data.start + off + U.BPF_RINGBUF_HDR_SZ

    def commit(self, addr: int, flags: int, discard: bool) -> None:
        """bpf_ringbuf_commit(): make the record at ``addr`` visible (or discarded)."""
        off = addr - U.BPF_RINGBUF_HDR_SZ - self.data.start
        buf = self.data.buf
        with self.lock:
            rec = self._records.get(off)
            if rec is None or rec[1]:
                raise VMError(f"{addr:#x} is not a reserved ring buffer record (never reserved, "
                              f"or already submitted or discarded)")
            size = rec[0]
            rec[1], rec[2] = True, discard
            end = off + U.BPF_RINGBUF_HDR_SZ + size
            if end > self.size:    # the record ran into the second mapping: fold it back
                lo = max(off, self.size)
                buf[lo - self.size:end - self.size] = buf[lo:end]
            new = size | (U.BPF_RINGBUF_DISCARD_BIT if discard else 0)
            HDR.pack_into(buf, off, new, off // PAGE_SIZE)
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
        """Every committed record available now, in order: the ring's own consumer step;
        records whose header a program overwrote are skipped (see ``corrupted``).
        Applications read through :meth:`reader` (``for rec in reader``,
        ``reader.drain()``), which also reports drops and corrupted records."""
        return self.consume_raw()[0]

    def consume_records(self) -> list[Record]:
        """As :meth:`consume`, with each skipped corrupted record as ``Record(b"", lost=1)``."""
        data, bad = self.consume_raw()
        out = [Record(d) for d in data]
        for i in reversed(bad):
            out.insert(i, Record(b"", lost=1))
        return out

    def consume_raw(self) -> tuple[list[bytes], list[int]]:
        """The consumer step at full speed: the records' data, and the positions in that
        list where a corrupted record was skipped (counted in ``corrupted``).

        One pass with everything in locals; the data of every record that does not wrap
        is sliced out of one copy of the consumed span, so a record costs one ``bytes``
        object and no other allocation."""
        with self.lock:
            fast = self._consume_batch()
        if fast is not None:
            return fast, []
        data: list[bytes] = []
        bad: list[int] = []
        append = data.append
        buf = self.data.buf
        records = self._records
        get = records.get
        unpack = HDR.unpack_from
        ring, mask = self.size, self.mask
        hdr_sz = U.BPF_RINGBUF_HDR_SZ
        discard_bit = U.BPF_RINGBUF_DISCARD_BIT
        with self.lock:
            cons = first = self.consumer_pos
            prod = self.producer_pos
            # the span a single copy covers: from the consumer to the producer, or to the
            # end of the ring if the producer wrapped
            base = cons & mask
            span = bytes(buf[base:base + min(prod - cons, ring - base)])
            limit = len(span)
            while cons < prod:
                off = cons & mask
                rec = get(off)
                if rec is None or not rec[1]:
                    break
                size, _, discard = rec
                hlen, pg_off = unpack(buf, off)
                rel = off - base
                if hlen != (size | discard_bit if discard else size) or \
                        pg_off != off // PAGE_SIZE:
                    self.corrupted += 1
                    bad.append(len(data))
                elif not discard:
                    start = rel + hdr_sz
                    if 0 <= rel and start + size <= limit:
                        append(span[start:start + size])
                    else:   # wrapped: the tail of the ring, then its start (folded back)
                        a = off + hdr_sz
                        n1 = min(size, ring - a) if a < ring else 0
                        d = bytes(buf[a:a + n1])
                        if n1 < size:
                            s2 = a + n1 - ring
                            d += bytes(buf[s2:s2 + size - n1])
                        append(d)
                del records[off]
                cons += (size + hdr_sz + 7) & ~7
            if cons != first:
                self.consumer_pos = cons
        return data, bad

    def _consume_batch(self) -> list[bytes] | None:
        """The common case in bulk, or None to take the record-by-record walk: every
        committed record lies in one unwrapped span and every header is intact.

        ``_records`` keeps insertion order, which is reservation order, so its first
        entries are the records the consumer reaches next; the header check compares
        whole lists (one C-level comparison) instead of record by record."""
        records = self._records
        if not records:
            return []
        states = [r[1] for r in records.values()]
        try:
            k = states.index(False)
        except ValueError:
            k = len(states)
        if k == 0:
            return []
        offs = list(itertools.islice(records, k))
        recs = list(itertools.islice(records.values(), k))
        ring, mask, hdr_sz = self.size, self.mask, U.BPF_RINGBUF_HDR_SZ
        base = self.consumer_pos & mask
        last = recs[-1][0]
        end = offs[-1] + hdr_sz + last
        if offs[0] != base or offs[-1] < base or end > ring:
            return None     # wraps: the walk folds it
        sizes = list(map(_SIZE, recs))
        size = sizes[0]
        step = (size + hdr_sz + 7) & ~7
        if sizes.count(size) == k and not any(map(_DISCARD, recs)) and \
                offs[-1] == base + (k - 1) * step:    # reservations are contiguous
            # records of one size, none discarded: every step is done by C loops
            # (map, slice, list comparison), none by Python bytecode per record
            total = k * step
            span = bytes(self.data.buf[base:base + total])
            w = memoryview(span).cast("I")
            if w[0::step // 4].tolist() != [size] * k or w[1::step // 4].tolist() != list(
                    map(operator.floordiv, range(base, base + total, step),
                        itertools.repeat(PAGE_SIZE))):
                return None
            first = hdr_sz + size
            data = list(map(span.__getitem__, map(slice, range(hdr_sz, hdr_sz + total, step),
                                                  range(first, first + total, step))))
        else:
            data = self._batch_mixed(offs, recs, base, end)
            if data is None:
                return None
        if k == len(records):
            records.clear()
        else:
            for o in offs:
                del records[o]
        self.consumer_pos += (end - base + 7) & ~7
        return data

    def _batch_mixed(self, offs, recs, base, end) -> list[bytes] | None:
        hdr_sz = U.BPF_RINGBUF_HDR_SZ
        span = bytes(self.data.buf[base:end])
        words = memoryview(span).cast("Q") if not len(span) % 8 else \
            memoryview(span + bytes(8 - len(span) % 8)).cast("Q")
        disc = U.BPF_RINGBUF_DISCARD_BIT
        got = [words[(o - base) >> 3] for o in offs]
        want = [(r[0] | disc if r[2] else r[0]) | (o // PAGE_SIZE) << 32
                for o, r in zip(offs, recs)]
        if got != want:
            return None     # a corrupted header: the walk reports which
        return [span[o - base + hdr_sz:o - base + hdr_sz + r[0]]
                for o, r in zip(offs, recs) if not r[2]]

    def reader(self, callback: Callable | None = None, *, lost_callback=None,
               type: "str | BTFValue | None" = None, raw: bool = False) -> "RingBufReader":
        """An :class:`ebee.events.EventReader` over this ring (BCC's open_ring_buffer).
        ``type`` -- a BTF type name such as ``"struct event"`` (looked up in the BTF of
        the object that defined the map) or a :class:`~ebee.btf.pyvalues.BTFValue` --
        decodes each record into ``rec.value``; ``raw=True`` -- items are the records'
        ``bytes``, no object per record (see :class:`RingBufReader`)."""
        return RingBufReader(self, callback, lost_callback=lost_callback,
                             decode=record_decoder(self, type), raw=raw)

    def _sys_lookup(self, key, flags):
        raise map_error(U.ENOTSUPP)

    def _get_next_key(self, key):
        raise map_error(U.ENOTSUPP)

    def __iter__(self):
        raise TypeError("ring buffers cannot be iterated by key; use reader()")


def record_decoder(m: Map, type: "str | BTFValue | None"):
    """``decode`` for a reader of ``m`` whose records are of ``type``."""
    if type is None:
        return None
    if isinstance(type, BTFValue):
        return type.decode
    btf = m.btf if m.btf is not None else m.source_btf
    if btf is None:
        raise ValueError(f"map {m.name!r} has no BTF to find {type!r} in; pass a BTFValue")
    try:
        return BTFValue.named(btf, type).decode
    except KeyError:
        raise ValueError(f"no BTF type {type!r} in the object of map {m.name!r}") from None


class RingBufReader(EventReader):
    """``raw=True``: items are the records' ``bytes`` themselves -- no :class:`Record`
    per record, the fastest way to consume; losses are then only counted
    (``reader.lost``, ``lost_callback``), not items of the stream."""

    def __init__(self, rb: RingBuf, callback=None, *, lost_callback=None, decode=None,
                 raw: bool = False):
        if raw and decode is not None:
            raise ValueError("a raw reader hands out bytes: it cannot also decode a type")
        super().__init__(callback, lost_callback=lost_callback, decode=decode)
        self.rb = rb
        self.raw = raw
        self._seen = rb.notifications
        self._dropped = rb.dropped

    def _fetch(self) -> list[Record]:
        return self._fetch_counted()[0]

    def _fetch_counted(self):
        rb = self.rb
        data, bad = rb.consume_raw()
        n = rb.dropped - self._dropped
        self._dropped += n
        if self.raw:
            lost = n + len(bad)
            if lost and self.lost_callback is not None:
                self.lost_callback(-1, lost)
            return data, lost
        out = [Record(d) for d in data]
        for i in reversed(bad):
            out.insert(i, Record(b"", lost=1))
        if n:
            # the losses happened while the ring was full of the records before them
            out.append(Record(b"", -1, lost=n))
        return out, n + len(bad)

    def _wait(self, timeout: float | None) -> bool:
        rb = self.rb
        with rb.cond:
            ok = rb.cond.wait_for(lambda: rb.notifications != self._seen or self.closed, timeout)
            self._seen = rb.notifications
        return bool(ok)


#: at most this many samples per bpf_user_ringbuf_drain call (kernel/bpf/ringbuf.c)
BPF_MAX_USER_RINGBUF_SAMPLES = 128 * 1024
#: bpf_dynptr_check_size(): a dynptr holds at most 2^24 - 1 bytes
DYNPTR_MAX_SIZE = (1 << 24) - 1


class UserSample:
    """A sample user space reserved in a :class:`UserRingBuf` (libbpf's
    ``user_ring_buffer__reserve``): write it, then :meth:`submit` or :meth:`discard`.
    Until then its header's BUSY bit holds back the kernel's reader at this sample."""

    def __init__(self, ring: "UserRingBuf", pos: int, size: int):
        self.ring, self.pos, self.size = ring, pos, size
        self.done = False

    def write(self, data: bytes, offset: int = 0) -> None:
        if offset < 0 or offset + len(data) > self.size:
            raise ValueError(f"{len(data)} bytes at {offset} do not fit a {self.size}-byte sample")
        self.ring._put(self.pos + U.BPF_RINGBUF_HDR_SZ + offset, bytes(data))

    def submit(self) -> None:
        self._commit(0)

    def discard(self) -> None:
        self._commit(U.BPF_RINGBUF_DISCARD_BIT)

    def _commit(self, flag: int) -> None:
        if self.done:
            raise ValueError("this sample was already submitted or discarded")
        self.done = True
        self.ring._put(self.pos, HDR.pack(self.size | flag, 0))


class UserRingBuf(Map):
    """USER_RINGBUF: the ring the other way round -- user space produces
    (libbpf's ``user_ring_buffer__reserve``/``__submit``: :meth:`reserve` and
    :meth:`submit`), programs consume with ``bpf_user_ringbuf_drain`` (:meth:`peek` and
    :meth:`release` are that side, :meth:`drain` all of it at once).  Created with the
    ring buffer's rules; it has no elements to look up or update (ENOTSUPP).

    As in Linux the data pages are mapped twice in a row (here: a region twice the ring
    size whose halves are kept equal), so a sample that wraps is contiguous where the
    program's dynptr points.  ``producer_pos`` and the headers are user memory in Linux:
    a test may overwrite them, and the reader answers as ``__bpf_user_ringbuf_peek``."""
    map_type = MapType.USER_RINGBUF
    keyless = True
    create_flags = U.BPF_F_NUMA_NODE
    check_attr = RingBuf.check_attr

    def alloc(self) -> None:
        self.size = self.max_entries
        self.mask = self.size - 1
        self.data = self._add_region(2 * self.size, "data")
        self.consumer_pos = 0
        self.producer_pos = 0
        self.corrupted = 0          # samples drain() refused, as the kernel's reader does
        self.busy = False           # a bpf_user_ringbuf_drain is running (rb->busy)
        self._write_handle(self.data.start)

    # -- the producer (user space, libbpf's side) ---------------------------------------

    def reserve(self, size: int) -> UserSample:
        """user_ring_buffer__reserve: MapError E2BIG for a sample that can never fit,
        ENOSPC while the ring is full."""
        if size < 0 or size & (U.BPF_RINGBUF_BUSY_BIT | U.BPF_RINGBUF_DISCARD_BIT):
            raise map_error(E.E2BIG, "sample too large")
        total = (size + U.BPF_RINGBUF_HDR_SZ + 7) // 8 * 8
        if total > self.size:
            raise map_error(E.E2BIG, f"a {size}-byte sample does not fit in the ring")
        with self.lock:
            prod = self.producer_pos
            if self.size - (prod - self.consumer_pos) < total:
                raise map_error(E.ENOSPC, "the ring is full")
            self._put(prod, HDR.pack(size | U.BPF_RINGBUF_BUSY_BIT, 0))
            self.producer_pos = prod + total
        return UserSample(self, prod, size)

    def submit(self, data: bytes, *, discard: bool = False) -> None:
        """Reserve a sample, copy ``data`` in and commit it (or discard it)."""
        s = self.reserve(len(data))
        s.write(data)
        s.discard() if discard else s.submit()

    def _put(self, pos: int, data: bytes) -> None:
        off = pos & self.mask
        buf, n, size = self.data.buf, len(data), self.size
        first = min(n, size - off)
        for base in (0, size):           # both copies of the pages
            buf[base + off:base + off + first] = data[:first]
            buf[base:base + n - first] = data[first:]

    # -- the consumer (bpf_user_ringbuf_drain's side) ------------------------------------

    def peek(self) -> tuple[int, int, int]:
        """__bpf_user_ringbuf_peek: (0, address, size) of the next sample, or (-errno,
        0, 0): ENODATA when there is none (or it is still being written), EAGAIN for a
        discarded one (consumed here), EINVAL/E2BIG for a header the producer
        corrupted."""
        prod, cons = self.producer_pos, self.consumer_pos
        if prod % 8:
            return -E.EINVAL, 0, 0
        if cons >= prod:
            return -E.ENODATA, 0, 0
        off = cons & self.mask
        hlen = int.from_bytes(bytes(self.data.buf[off:off + 4]), "little")
        flags = hlen & (U.BPF_RINGBUF_BUSY_BIT | U.BPF_RINGBUF_DISCARD_BIT)
        size = hlen & ~flags
        total = (size + U.BPF_RINGBUF_HDR_SZ + 7) // 8 * 8
        if total > prod - cons:
            return -E.EINVAL, 0, 0
        if total > self.size or size > DYNPTR_MAX_SIZE:
            return -E.E2BIG, 0, 0
        if flags & U.BPF_RINGBUF_DISCARD_BIT:
            self.consumer_pos = cons + total
            return -E.EAGAIN, 0, 0
        if flags & U.BPF_RINGBUF_BUSY_BIT:
            return -E.ENODATA, 0, 0
        return 0, self.data.start + ((cons + U.BPF_RINGBUF_HDR_SZ) & self.mask), size

    def release(self, size: int) -> None:
        """__bpf_user_ringbuf_sample_release: consume the sample just peeked."""
        self.consumer_pos += (size + U.BPF_RINGBUF_HDR_SZ + 7) // 8 * 8

    def drain(self, limit: int | None = None) -> list[bytes]:
        """The committed samples, consumed in order (discarded ones skipped), as
        ``bpf_user_ringbuf_drain`` hands them to its callback."""
        out: list[bytes] = []
        with self.lock:
            while limit is None or len(out) < limit:
                err, addr, size = self.peek()
                if err == -E.EAGAIN:
                    continue
                if err:
                    if err != -E.ENODATA:
                        self.corrupted += 1
                    break
                off = addr - self.data.start
                out.append(bytes(self.data.buf[off:off + size]))
                self.release(size)
        return out

    def __iter__(self):
        raise TypeError("user ring buffers cannot be iterated by key; use drain()")
