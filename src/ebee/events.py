"""What programs produce, read the same way from either backend.

A program emits events through a ring buffer (``bpf_ringbuf_output``/``reserve``),
a perf event array (``bpf_perf_event_output``) or the trace pipe
(``bpf_printk``).  The user-space runtime and the kernel backend each have
their own readers for these, but they share this module: the same records,
the same callback and iterator API, so code that consumes events runs
unchanged whichever backend produced them.

A reader subclasses :class:`EventReader` and implements two methods:

* ``_fetch()`` - every record available *now*, without blocking;
* ``_wait(timeout)`` - block up to ``timeout`` seconds (``None``: forever)
  until records may be available; return False on timeout.

Everything else - callbacks, ``poll``/``consume`` (libbpf's
``ring_buffer__poll``/``__consume``), ``read``, iteration, context
management - lives here once.

Getting records, the one way for each need:

* ``for rec in reader:`` - records as they arrive; Ctrl-C while it waits ends
  the loop (the reader is closed, no traceback), so ``with`` blocks around it
  detach what they attached;
* ``reader.drain()`` - the records there now, as a list (never waits);
* a callback with ``poll(timeout)`` / ``consume()`` - libbpf's calls, which
  return how many records the callback got.

Drops are counted: ``reader.lost`` is how many records the producer could not
write because the ring was full (perf's PERF_RECORD_LOST; for ebee's ring
buffers, the reservations that failed).  Each loss reaches
``lost_callback(cpu, n)`` if one is given, else it is an item of its own,
``Record(b"", cpu, lost=n)``, in the stream.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar


class Record:
    """One sample from a ring buffer or perf event array.

    ``cpu`` is the CPU whose perf ring held the sample (-1 for ring buffers);
    ``value`` is ``data`` as a Python value (a record with attribute access, for a
    struct) when the reader knows the type, as BCC's ``b["events"].event(data)``;
    ``lost`` is non-zero, with empty ``data``, for a perf ``PERF_RECORD_LOST``
    notice: that many samples were dropped because the ring was full.

    A plain class with slots rather than a frozen dataclass: readers make one per
    record, and a frozen dataclass's ``__init__`` costs several times as much.
    """
    __slots__ = ("data", "cpu", "lost", "value")

    def __init__(self, data: bytes, cpu: int = -1, lost: int = 0, value: Any = None):
        self.data = data
        self.cpu = cpu
        self.lost = lost
        self.value = value

    def _key(self) -> tuple:
        return (self.data, self.cpu, self.lost, self.value)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Record:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.data, self.cpu, self.lost))

    def __repr__(self) -> str:
        extra = f", value={self.value!r}" if self.value is not None else ""
        return f"Record(data={self.data!r}, cpu={self.cpu}, lost={self.lost}{extra})"


@dataclass(frozen=True)
class TraceLine:
    """One line of the trace pipe (``bpf_printk``/``bpf_trace_printk`` output).

    ``str(line)`` formats it as the kernel's trace_pipe does::

        curl-1234    [001] d..31 12345.678901: bpf_trace_printk: hello
    """
    task: str
    pid: int
    cpu: int
    flags: str
    timestamp: float
    function: str
    message: str

    def __str__(self) -> str:
        head = f"{self.task}-{self.pid}".rjust(16)
        return (f"{head} [{self.cpu:03d}] {self.flags} {self.timestamp:.6f}: "
                f"{self.function}: {self.message}")


T = TypeVar("T")


class EventReader(Generic[T]):
    """Callback and iterator API over a source of events.

    ``callback(item)`` is called for each item by ``poll``/``consume``;
    ``decode(data)`` (optional) fills each record's ``value``;
    without a callback, use ``read()`` or iterate.  ``lost_callback(cpu, n)``
    (perf event arrays) hears about dropped samples; without it, lost notices
    are delivered as ``Record(b"", cpu, lost=n)`` items.
    """

    def __init__(self, callback: Callable[[T], object] | None = None, *,
                 lost_callback: Callable[[int, int], object] | None = None,
                 decode: Callable[[bytes], Any] | None = None):
        self.callback = callback
        self.lost_callback = lost_callback
        self.decode = decode
        self._pending: list[T] = []
        self.closed = False
        self.lost = 0

    # --- what a backend implements -------------------------------------------------
    def _fetch(self) -> list[T]:
        raise NotImplementedError

    def _wait(self, timeout: float | None) -> bool:
        raise NotImplementedError

    # --- shared API ----------------------------------------------------------------
    def _fetch_counted(self) -> tuple[list[T], int]:
        """``_fetch()`` and how many records its lost notices stand for; a backend that
        knows the count without scanning overrides this (the hot path of fast readers)."""
        fetched = self._fetch()
        return fetched, sum(it.lost for it in fetched if isinstance(it, Record))

    def _take(self) -> list[T]:
        fetched, lost = self._fetch_counted()
        self.lost += lost
        if not lost and self.decode is None and not self._pending:
            return fetched
        if self.decode is not None:
            dec = self.decode
            for it in fetched:
                if isinstance(it, Record) and not it.lost:
                    it.value = dec(it.data)
        items = self._pending + fetched
        self._pending = []
        if self.lost_callback is not None:
            kept = []
            for it in items:
                if isinstance(it, Record) and it.lost:
                    self.lost_callback(it.cpu, it.lost)
                else:
                    kept.append(it)
            items = kept
        return items

    def consume(self) -> int:
        """Hand every available item to the callback without waiting; returns the count
        (libbpf's ``ring_buffer__consume``).  Without a callback the items are kept for
        iteration -- to get them as a list, use :meth:`drain`."""
        items = self._take()
        self._dispatch(items)
        return len(items)

    def poll(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds (None: until something arrives) for items,
        then hand them all to the callback; returns how many there were."""
        items = self._take()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not items and not self.closed:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._wait(left):
                items = self._take()
                break
            items = self._take()
            if deadline is not None and time.monotonic() >= deadline:
                break
        self._dispatch(items)
        return len(items)

    def _dispatch(self, items: list[T]) -> None:
        if self.callback is None:
            self._pending.extend(items)   # keep them for read()/iteration
            return
        for it in items:
            self.callback(it)

    def drain(self) -> list[T]:
        """Every item available now, without waiting (the callback is not called)."""
        return self._take()

    def read(self, timeout: float | None = None) -> T | None:
        """The next item, waiting up to ``timeout`` seconds; None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.closed:
            items = self._take()
            if items:
                self._pending = items[1:] + self._pending
                return items[0]
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if deadline is not None and left == 0.0:
                return None
            if not self._wait(left) and deadline is not None and time.monotonic() >= deadline:
                items = self._take()
                if items:
                    self._pending = items[1:] + self._pending
                    return items[0]
                return None
        return None

    def __iter__(self) -> Iterator[T]:
        """Items as they arrive, forever: until close(), or Ctrl-C while waiting, which
        closes the reader and ends the loop as if it had run out."""
        while not self.closed:
            try:
                item = self.read()
            except KeyboardInterrupt:
                self.close()
                return
            if item is not None:
                yield item

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
