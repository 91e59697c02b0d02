"""cgroup/sysctl helpers: bpf_sysctl_get_name, bpf_sysctl_get_current_value,
bpf_sysctl_get_new_value and bpf_sysctl_set_new_value, on a modelled sysctl access.

Linux runs a cgroup/sysctl program when a task reads or writes /proc/sys/<name>; the
program's context (``struct bpf_sysctl``: ``write``, ``file_pos``) stands for the kernel's
``bpf_sysctl_kern`` (the table entry, the current value as its handler prints it, the
value being written).  In ebee that access is a :class:`SysctlAccess`; its ``ctx`` is the
context to run the program with, and after the run ``new_value``/``new_updated`` say what
the program made of the write::

    acc = SysctlAccess("net/ipv4/tcp_mem", current=b"1 2 3\\n", new=b"4 5 6")
    machine.run(prog, acc.ctx.start)
    acc.new_value        # what the write will store, as the program left it
"""
from __future__ import annotations

import errno
import struct
import weakref

from ..errors import VMError
from ..memory import SHARED, Memory, Region
from ..uapi import FuncId as F
from .registry import implements

M64 = (1 << 64) - 1
BPF_F_SYSCTL_BASE_NAME = 1
PAGE_SIZE = 4096

_live: "weakref.WeakValueDictionary[int, SysctlAccess]" = weakref.WeakValueDictionary()


def neg(e: int) -> int:
    return -e & M64


class SysctlAccess:
    """One read (``new`` None) or write of /proc/sys/``name``."""

    def __init__(self, name: str, current: bytes | None = b"", new: bytes | None = None, *,
                 file_pos: int = 0, memory: Memory = SHARED):
        self.name = name.strip("/")
        self.current = current            # None: the handler could not print it
        self.write = new is not None
        self.new_value = new
        self.new_updated = False
        self.memory = memory
        self.ctx = memory.add(Region(struct.pack("<II", int(self.write), file_pos),
                                     "bpf_sysctl"))
        _live[self.ctx.start] = self

    def close(self) -> None:
        self.memory.remove(self.ctx)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def access_of(ctx: int) -> SysctlAccess:
    a = _live.get(ctx)
    if a is None:
        raise VMError(f"{ctx:#x} is not a sysctl access context (ebee.helpers.sysctl."
                      f"SysctlAccess)")
    return a


def _strscpy(src: bytes, count: int) -> tuple[bytes, int]:
    """strscpy(): (the bytes written, the length copied or -E2BIG when truncated)."""
    if count <= 0:
        return b"", -errno.E2BIG
    if len(src) < count:
        return src + b"\0", len(src)
    return src[:count - 1] + b"\0", -errno.E2BIG


@implements(F.sysctl_get_name)
def sysctl_get_name(m, ctx, buf, buf_len, flags, _):
    a = access_of(ctx)
    if not buf:
        return neg(errno.EINVAL)
    parts = a.name.split("/")
    out = b""
    total = 0
    if not flags & BPF_F_SYSCTL_BASE_NAME:
        # sysctl_cpy_dir(): every directory, each with its '/'
        for d in parts[:-1]:
            for piece in (d.encode(), b"/"):
                w, r = _strscpy(piece, buf_len - len(out))
                m.write(buf + len(out), w)
                if r < 0:
                    return neg(-r)
                out += w[:-1]
                total += r
    w, r = _strscpy(parts[-1].encode(), buf_len - len(out))
    m.write(buf + len(out), w)
    return neg(-r) if r < 0 else total + r


def _copy_value(m, dst: int, dst_len: int, src: bytes | None) -> int:
    """copy_sysctl_value()."""
    if not dst:
        return neg(errno.EINVAL)
    if not dst_len:
        return neg(errno.E2BIG)
    if not src:
        m.write(dst, bytes(dst_len))
        return neg(errno.EINVAL)
    if dst_len > len(src):
        m.write(dst, src + bytes(dst_len - len(src)))
        return len(src)
    m.write(dst, src[:dst_len - 1] + b"\0")
    return neg(errno.E2BIG)


@implements(F.sysctl_get_current_value)
def sysctl_get_current_value(m, ctx, buf, buf_len, *_):
    return _copy_value(m, buf, buf_len, access_of(ctx).current)


@implements(F.sysctl_get_new_value)
def sysctl_get_new_value(m, ctx, buf, buf_len, *_):
    a = access_of(ctx)
    if not a.write:
        if buf and buf_len:
            m.write(buf, bytes(buf_len))
        return neg(errno.EINVAL)
    return _copy_value(m, buf, buf_len, a.new_value)


@implements(F.sysctl_set_new_value)
def sysctl_set_new_value(m, ctx, buf, buf_len, *_):
    a = access_of(ctx)
    if not a.write or not a.new_value or not buf or not buf_len:
        return neg(errno.EINVAL)
    if buf_len > PAGE_SIZE - 1:
        return neg(errno.E2BIG)
    a.new_value = m.read(buf, buf_len)
    a.new_updated = True
    return 0
