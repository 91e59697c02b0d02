"""Decoding what programs write (map keys and values, event arguments) into values,
and those values into the text bpftrace prints.

A :class:`Resolver` supplies what only the runtime knows -- kernel and user
symbols, stack traces, probe names, user names; the kernel runtime resolves
against ``/proc/kallsyms`` and ELF symbol tables, the user-space runtime
against the synthetic task's addresses.
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Protocol

from . import types as T
from .types import Type

STACK_INDENT_MAP = 4          # frames of a stack printed as a map key
STACK_INDENT_PRINTF = 8       # ... and through printf("%s")


class Resolver(Protocol):
    def ksym(self, addr: int) -> str: ...

    def usym(self, addr: int, pid: int) -> str: ...

    def stack(self, kind: str, mode: str, limit: int, stack_id: int, pid: int) -> list[str]: ...

    def probe(self, probe_id: int) -> str: ...

    def username(self, uid: int) -> str: ...

    def strftime(self, fmt: str, ns: int) -> str: ...


@dataclass(frozen=True)
class Stack:
    """A decoded stack: its frames (symbols), printed per context."""
    frames: tuple[str, ...]

    def text(self, indent: int) -> str:
        return "\n" + "".join(f"{' ' * indent}{f}\n" for f in self.frames)


@dataclass(frozen=True)
class Sym:
    """A resolved symbol (ksym/usym/func): prints as its name."""
    name: str

    def __str__(self) -> str:
        return self.name


def _slot(t: Type) -> Type:
    if t.kind in ("int", "ptr", "ksym", "kstack", "probe", "timestamp", "username"):
        return T.int_t(8, t.signed)
    return t


def decode(t: Type, data: bytes, off: int, r: Resolver) -> Any:
    """The value of type ``t`` at ``data[off:]``."""
    k = t.kind
    if k in ("int", "ptr"):
        return int.from_bytes(data[off:off + 8], "little", signed=t.signed and k == "int")
    if k == "str":
        raw = data[off:off + t.size]
        return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
    if k == "buf":
        n = min(int.from_bytes(data[off:off + 8], "little"), t.count)
        return bytes(data[off + 8:off + 8 + n])
    if k == "ksym":
        return Sym(r.ksym(int.from_bytes(data[off:off + 8], "little")))
    if k == "usym":
        addr, pid = struct.unpack_from("<QQ", data, off)
        return Sym(r.usym(addr, pid))
    if k == "probe":
        return Sym(r.probe(int.from_bytes(data[off:off + 8], "little")))
    if k == "username":
        return Sym(r.username(int.from_bytes(data[off:off + 8], "little")))
    if k == "timestamp":
        ns = int.from_bytes(data[off:off + 8], "little")
        return Sym(r.strftime(t.params[0] if t.params else "%H:%M:%S", ns))
    if k in ("kstack", "ustack"):
        sid = int.from_bytes(data[off:off + 8], "little", signed=True)
        pid = int.from_bytes(data[off + 8:off + 16], "little") if k == "ustack" else 0
        mode, limit = t.params
        return Stack(tuple(r.stack(k, mode, limit, sid, pid)))
    if k == "inet":
        af = int.from_bytes(data[off:off + 8], "little")
        raw = bytes(data[off + 8:off + 24])
        try:
            if af == socket.AF_INET6:
                return Sym(socket.inet_ntop(socket.AF_INET6, raw[:16]))
            return Sym(socket.inet_ntop(socket.AF_INET, raw[:4]))
        except (ValueError, OSError):
            return Sym("")
    if k == "tuple":
        offs, _ = T.tuple_layout([_slot(e) for e in t.elems])
        return tuple(decode(e, data, off + o, r) for e, o in zip(t.elems, offs))
    if k == "array":
        es = t.elem.size
        return tuple(int.from_bytes(data[off + i * es:off + (i + 1) * es], "little",
                                    signed=t.elem.signed) for i in range(t.count))
    if k == "mac":
        return Sym(":".join(f"{b:02X}" for b in data[off:off + 6]))
    return None


def text(v: Any, *, indent: int = STACK_INDENT_PRINTF) -> str:
    """How bpftrace prints a value (in a map, through print(), or for printf's %s)."""
    if isinstance(v, Stack):
        return v.text(indent)
    if isinstance(v, tuple):
        return "(" + ", ".join(text(x, indent=indent) for x in v) + ")"
    if isinstance(v, bytes):
        return "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in v)
    if isinstance(v, Sym):
        return v.name
    return str(v)


def json_value(v: Any) -> Any:
    if isinstance(v, tuple):
        return tuple(json_value(x) for x in v)
    if isinstance(v, (Sym, Stack, bytes)):
        return text(v)
    return v


def printf_arg(v: Any) -> Any:
    """What printf's conversion gets: ints stay ints, everything else is text."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return text(v)


def strftime(fmt: str, epoch_ns: int) -> str:
    """strftime() with bpftrace's ``%f`` (microseconds) extension."""
    secs, ns = divmod(epoch_ns, 1_000_000_000)
    fmt = fmt.replace("%f", f"{ns // 1000:06d}")
    return time.strftime(fmt, time.localtime(secs))
