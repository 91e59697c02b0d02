"""bpf_trace_printk, bpf_trace_vprintk, bpf_snprintf: the kernel's format rules and limits.

The format is checked as ``bpf_bprintf_prepare`` checks it: printable ASCII
only, NUL-terminated within its size, at most 3 (trace_printk) or 12
(vprintk/snprintf) conversions, each one of ``%d %i %u %x %X`` (with ``l`` or
``ll``), ``%c``, ``%s``, ``%%``, ``%p`` with the ``K x s S B`` / ``ks us`` /
``i4 I4 i6 I6`` extensions, optional ``0 + - space`` flags and a width -- any
other conversion, a precision or a ``#`` is -EINVAL.  The text is then
rendered as vsnprintf would, into at most MAX_BPRINTF_BUF bytes.

``%p`` prints the raw address (as ``%px``): the kernel would print a hashed
value whose key is secret.  ``%ps``/``%pS``/``%pB`` print the address in hex
too, since ebee has no kernel symbols.
"""
from __future__ import annotations

import errno as E

from .. import uapi as U
from ..errors import MemoryFault
from ..runtime.trace_pipe import PIPE
from ..uapi import FuncId
from .registry import implements
from .task import current_task

M64 = (1 << 64) - 1


class FormatError(Exception):
    pass


def _isprint(c: int) -> bool:
    return 0x20 <= c < 0x7F or c in (9, 10, 11, 12, 13)


def read_cstr(m, addr: int, limit: int) -> bytes | None:
    """A NUL-terminated string at ``addr`` (at most ``limit`` bytes), or None if unreadable."""
    r = m.find(addr, 1) if 0 < addr < 1 << 64 else None
    if r is None:
        return None
    off = addr - r.start
    end = min(m.live_end(r) - r.start, off + max(limit, 0))
    chunk = bytes(r.buf[off:end])
    i = chunk.find(b"\0")
    return chunk if i < 0 else chunk[:i]


def _pad(s: str, flags: str, width: int) -> str:
    if width <= len(s):
        return s
    if "-" in flags:
        return s.ljust(width)
    return s.rjust(width)


def _int(v: int, conv: str, size: int, flags: str, width: int) -> str:
    bits = size * 8
    v &= (1 << bits) - 1
    if conv in "di":
        if v >> (bits - 1):
            v -= 1 << bits
        sign = "-" if v < 0 else "+" if "+" in flags else " " if " " in flags else ""
        digits = str(abs(v))
    else:
        sign = ""
        digits = {"u": str(v), "x": f"{v:x}", "X": f"{v:X}"}[conv]
    if "0" in flags and "-" not in flags and width > len(sign) + len(digits):
        digits = digits.rjust(width - len(sign), "0")
    return _pad(sign + digits, flags, width)


def format_bprintf(m, fmt: bytes, args: list[int], max_args: int) -> str:
    """Validate ``fmt`` and render it with ``args``; FormatError means -EINVAL."""
    out: list[str] = []
    n = len(fmt)
    i = 0
    spec = 0
    while i < n:
        c = fmt[i]
        if not _isprint(c):
            raise FormatError(f"non-printable character {c:#x} in format")
        if c != 0x25:   # '%'
            out.append(chr(c))
            i += 1
            continue
        if i + 1 < n and fmt[i + 1] == 0x25:
            out.append("%")
            i += 2
            continue
        if spec >= max_args:
            raise FormatError(f"more than {max_args} conversions")
        i += 1
        start = i
        while i < n and chr(fmt[i]) in "0+- ":
            i += 1
        flags = fmt[start:i].decode()
        wstart = i
        if i < n and 0x31 <= fmt[i] <= 0x39:
            i += 1
            while i < n and 0x30 <= fmt[i] <= 0x39:
                i += 1
        width = int(fmt[wstart:i]) if i > wstart else 0
        ch = chr(fmt[i]) if i < n else "\0"
        nxt = chr(fmt[i + 1]) if i + 1 < n else "\0"
        nxt2 = chr(fmt[i + 2]) if i + 2 < n else "\0"
        arg = args[spec] & M64
        if ch == "p":
            if nxt == "\0" or nxt.isspace() or (nxt.isascii() and not nxt.isalnum() and nxt.isprintable()):
                out.append(_pad(f"{arg:016x}", flags, width))
                i += 1
            elif nxt in "ku" and nxt2 == "s":
                i += 3
                out.append(_pad(_string(m, arg), flags, width))
                _check_str_end(fmt, i)
            elif nxt in "KxsSB":
                out.append(_pad(f"{arg:016x}", flags, width))
                i += 2
            elif nxt in "iI" and nxt2 in "46":
                size = 4 if nxt2 == "4" else 16
                try:
                    raw = m.read(arg, size)
                except MemoryFault:
                    raw = None
                if raw is None:
                    text = "(efault)"
                elif size == 4:
                    text = ".".join(f"{b:03d}" if nxt == "i" else str(b) for b in raw)
                else:
                    words = [raw[k:k + 2].hex() for k in range(0, 16, 2)]
                    text = "".join(words) if nxt == "i" else ":".join(words)
                out.append(_pad(text, flags, width))
                i += 3
            else:
                raise FormatError("invalid %p extension")
        elif ch == "s":
            i += 1
            _check_str_end(fmt, i)
            out.append(_pad(_string(m, arg), flags, width))
        elif ch == "c":
            i += 1
            out.append(_pad(chr(arg & 0xFF), flags, width))
        else:
            size = 4
            if ch == "l":
                size = 8
                i += 1
                ch = chr(fmt[i]) if i < n else "\0"
                if ch == "l":
                    i += 1
                    ch = chr(fmt[i]) if i < n else "\0"
            if ch not in "iduxX" or ch == "\0":
                raise FormatError(f"invalid conversion %{ch}")
            i += 1
            out.append(_int(arg, ch, size, flags, width))
        spec += 1
    return "".join(out)


def _check_str_end(fmt: bytes, i: int) -> None:
    if i < len(fmt):
        c = chr(fmt[i])
        if not (c.isspace() or (c.isprintable() and not c.isalnum())):
            raise FormatError("%s must be followed by a space, punctuation or the end")


def _string(m, addr: int) -> str:
    s = read_cstr(m, addr, U.MAX_BPRINTF_BUF)
    return "" if s is None else s.decode("latin-1")


def _fmt_bytes(m, addr: int, size: int) -> bytes:
    """The format string: must be NUL-terminated within ``size`` bytes."""
    if size == 0:
        raise FormatError("empty format")
    raw = m.read(addr, size)
    end = raw.find(b"\0")
    if end < 0:
        raise FormatError("format is not NUL-terminated")
    return raw[:end]


def _render(m, fmt_addr, fmt_size, args, max_args) -> tuple[str, int]:
    fmt = _fmt_bytes(m, fmt_addr, fmt_size)
    text = format_bprintf(m, fmt, args, max_args)
    full = len(text.encode("latin-1"))
    return text.encode("latin-1")[:U.MAX_BPRINTF_BUF - 1].decode("latin-1"), full


def emit_trace(m, text: str) -> None:
    t = current_task(m)
    msg = text[:-1] if text.endswith("\n") else text
    PIPE.emit(t.comm, t.pid, m.cpu, m.clock.monotonic_ns(), msg)


@implements(FuncId.trace_printk)
def trace_printk(m, fmt, size, a1, a2, a3):
    try:
        text, n = _render(m, fmt, size, [a1, a2, a3], U.MAX_TRACE_PRINTK_VARARGS)
    except FormatError:
        return -E.EINVAL
    emit_trace(m, text)
    return n


def _data_args(m, data: int, data_len: int) -> list[int] | None:
    if data_len & 7 or data_len > U.MAX_BPRINTF_VARARGS * 8 or (data_len and not data):
        return None
    raw = m.read(data, data_len) if data_len else b""
    return [int.from_bytes(raw[k:k + 8], "little") for k in range(0, data_len, 8)]


@implements(FuncId.trace_vprintk)
def trace_vprintk(m, fmt, size, data, data_len, _):
    args = _data_args(m, data, data_len)
    if args is None:
        return -E.EINVAL
    try:
        text, n = _render(m, fmt, size, args, len(args))
    except FormatError:
        return -E.EINVAL
    emit_trace(m, text)
    return n


@implements(FuncId.snprintf)
def snprintf(m, out, out_size, fmt, data, data_len):
    args = _data_args(m, data, data_len)
    if args is None:
        return -E.EINVAL
    s = read_cstr(m, fmt, 1 << 16)
    if s is None:
        return -E.EINVAL
    try:
        text = format_bprintf(m, s, args, len(args))
    except FormatError:
        return -E.EINVAL
    raw = text.encode("latin-1")
    if out_size:
        m.write(out, raw[:out_size - 1] + b"\0")
    return len(raw) + 1
