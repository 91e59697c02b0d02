"""The trace pipe: where ``bpf_trace_printk`` / ``bpf_printk`` output goes.

Linux appends one line per call to the tracing ring buffer, and
``/sys/kernel/tracing/trace_pipe`` shows it as::

    <task>-<pid>     [<cpu>] <flags> <seconds>.<micros>: bpf_trace_printk: <message>

ebee keeps the same lines in :data:`PIPE` (a bounded buffer, like the
kernel's): read them line by line with :meth:`TracePipe.readline`, as
:class:`ebee.events.TraceLine` records with :meth:`TracePipe.reader` (the
shared EventReader API), or collect what a block of code printed with
``with ebee.runtime.trace_pipe.capture() as lines:``.

The flags column is the kernel's latency format (irqs-off, need-resched,
hardirq/softirq, preempt depth, migrate-disable); ebee has no interrupts, so
it shows what a BPF program typically runs with: preemption and migration
disabled (``...11``).  The timestamp is the machine clock's monotonic time.
"""
from __future__ import annotations

import collections
import threading
from typing import Callable, Iterator

from ..events import EventReader, TraceLine

DEFAULT_FLAGS = "...11"
CAPACITY = 65536            # lines kept before the oldest are overwritten


class TracePipe:
    def __init__(self, capacity: int = CAPACITY):
        self.lines: collections.deque[TraceLine] = collections.deque(maxlen=capacity)
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.seq = 0
        self.overruns = 0
        self._captures: list[list[TraceLine]] = []

    def emit(self, task: str, pid: int, cpu: int, timestamp_ns: int, message: str,
             function: str = "bpf_trace_printk", flags: str = DEFAULT_FLAGS) -> TraceLine:
        line = TraceLine(task, pid, cpu, flags, timestamp_ns / 1e9, function, message)
        with self.cond:
            if len(self.lines) == self.lines.maxlen:
                self.overruns += 1
            self.lines.append(line)
            self.seq += 1
            for c in self._captures:
                c.append(line)
            self.cond.notify_all()
        return line

    def drain(self) -> list[TraceLine]:
        """Every line not yet read, consuming them (as reading trace_pipe does)."""
        with self.cond:
            out = list(self.lines)
            self.lines.clear()
        return out

    def readline(self, timeout: float | None = 0) -> str | None:
        """The next line in trace_pipe format (None if none arrives within ``timeout``)."""
        with self.cond:
            if not self.lines and timeout != 0:
                self.cond.wait_for(lambda: bool(self.lines), timeout)
            if not self.lines:
                return None
            return str(self.lines.popleft())

    def __iter__(self) -> Iterator[str]:
        """Lines available now, in trace_pipe format."""
        for line in self.drain():
            yield str(line)

    def clear(self) -> None:
        with self.cond:
            self.lines.clear()

    def reader(self, callback: Callable[[TraceLine], object] | None = None) -> "TraceReader":
        return TraceReader(self, callback)

    def capture(self) -> "Capture":
        """Collect (without consuming) the lines emitted inside the block."""
        return Capture(self)


class Capture:
    """``with pipe.capture() as lines:`` -- a class, not a generator: every test run
    opens one, and this costs a fraction of a contextmanager's overhead."""

    __slots__ = ("pipe", "lines")

    def __init__(self, pipe: TracePipe):
        self.pipe = pipe
        self.lines: list[TraceLine] = []

    def __enter__(self) -> list[TraceLine]:
        with self.pipe.lock:
            self.pipe._captures.append(self.lines)
        return self.lines

    def __exit__(self, *exc) -> None:
        with self.pipe.lock:
            caps = self.pipe._captures
            # by identity: another capture's list may be equal to this one (both empty)
            for k in range(len(caps) - 1, -1, -1):
                if caps[k] is self.lines:
                    del caps[k]
                    break


class TraceReader(EventReader):
    def __init__(self, pipe: TracePipe, callback=None):
        super().__init__(callback)
        self.pipe = pipe

    def _fetch(self) -> list[TraceLine]:
        return self.pipe.drain()

    def _wait(self, timeout: float | None) -> bool:
        with self.pipe.cond:
            return bool(self.pipe.cond.wait_for(lambda: bool(self.pipe.lines) or self.closed,
                                                timeout))


PIPE = TracePipe()
"""The process-wide trace pipe (one, as the kernel has one)."""


def capture() -> Capture:
    """``with ebee.runtime.trace_pipe.capture() as lines:`` -- lines printed inside the block."""
    return PIPE.capture()


def readline(timeout: float | None = 0) -> str | None:
    return PIPE.readline(timeout)
