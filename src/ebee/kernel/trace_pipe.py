"""The kernel's trace pipe (``bpf_printk`` output), read line by line as TraceLines.

Reading trace_pipe consumes what it returns, for every reader on the system:
like ``bpftool prog tracelog`` and ``cat trace_pipe``, only one reader
should be active at a time.
"""
from __future__ import annotations

import os
import re
import select

from ..events import EventReader, TraceLine
from .fs import tracefs

# "  python3-1234    [001] d..31 12345.678901: bpf_trace_printk: message"
# (the task name may contain spaces and dashes; the tgid column is optional)
_LINE = re.compile(r"^\s*(?P<task>.*?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
                   r"(?:(?P<flags>[^\s\[\]]{4,})\s+)?(?P<ts>\d+\.\d+):\s+"
                   r"(?P<func>[^:]+):\s?(?P<msg>.*)$")


def parse_line(line: str) -> TraceLine:
    """One trace_pipe line as a TraceLine (unparseable lines keep their text as message)."""
    m = _LINE.match(line)
    if m is None:
        return TraceLine("", 0, -1, "", 0.0, "", line)
    return TraceLine(m["task"], int(m["pid"]), int(m["cpu"]), m["flags"] or "", float(m["ts"]),
                     m["func"].strip(), m["msg"])


def tracing_on(path: str | None = None) -> bool:
    """Whether the ring buffer records anything (``tracing_on``).  An oops switches it off
    (oops_enter() calls tracing_off()), after which bpf_printk writes nothing."""
    p = path or str(tracefs() / "tracing_on")
    try:
        with open(p) as f:
            return f.read().strip() != "0"
    except OSError:
        return True


class TracePipe(EventReader[TraceLine]):
    """``for line in TracePipe(): print(line.message)`` — or with a callback and poll()."""

    def __init__(self, callback=None, *, path: str | None = None, mount: bool | None = None):
        super().__init__(callback)
        self.path = path or str(tracefs(mount=mount) / "trace_pipe")
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        self._partial = b""

    def fileno(self) -> int:
        return self.fd

    def _fetch(self) -> list[TraceLine]:
        if self.fd < 0:
            return []
        chunks = []
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        if not chunks:
            return []
        data = self._partial + b"".join(chunks)
        *lines, self._partial = data.split(b"\n")
        return [parse_line(ln.decode(errors="replace")) for ln in lines if ln.strip()]

    def _wait(self, timeout: float | None) -> bool:
        if self.fd < 0:
            return False
        ms = None if timeout is None else max(0, int(timeout * 1000))
        return bool(self._poll.poll(ms))

    def close(self) -> None:
        super().close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
