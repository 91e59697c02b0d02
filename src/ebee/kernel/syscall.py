"""The bpf(2) system call through ctypes: no libbpf, no C toolchain.

``bpf(cmd, attr)`` issues one command with its part of ``union bpf_attr``
(the layouts are in :mod:`ebee.kernel.attrs`).  Failures are ``OSError`` with
the kernel's errno; a permission failure says which capabilities are missing.
:class:`FdObject` is the base of every handle that owns a kernel file
descriptor (programs, maps, BTF, links, perf events): ``close()``, ``with``,
and closing when garbage-collected.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform

from ..uapi import Cmd
from .attrs import (  # noqa: F401  (the historical home of these layouts)
    MapBatchAttr, MapCreateAttr, MapElemAttr, ProgLoadAttr, TestRunAttr, c_s32, c_u32, c_u64,
)

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "arm64": 280, "riscv64": 280, "ppc64le": 361,
            "s390x": 351, "i686": 357, "armv7l": 386, "loongarch64": 280}
_SYS_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "arm64": 241, "riscv64": 241,
                        "ppc64le": 319, "s390x": 331, "i686": 336, "armv7l": 364,
                        "loongarch64": 241}

PRIVILEGE_HINT = "needs CAP_BPF and CAP_PERFMON, or root"

# capability numbers (include/uapi/linux/capability.h)
_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF, _CAP_NET_ADMIN = 21, 38, 39, 12

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.syscall.restype = ctypes.c_long
        _libc.ioctl.restype = ctypes.c_int
        _libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
        _libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
        _libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    return _libc


def effective_caps() -> int:
    """This process's effective capability mask (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def privileged() -> bool:
    """Whether this process holds what loading and attaching programs needs."""
    caps = effective_caps()
    return bool(caps & (1 << _CAP_SYS_ADMIN)) or \
        (bool(caps & (1 << _CAP_BPF)) and bool(caps & (1 << _CAP_PERFMON)))


def _error(err: int, what: str) -> OSError:
    msg = f"{what}: {os.strerror(err)}"
    if err == errno.EPERM and not privileged():
        msg += f" ({PRIVILEGE_HINT})"
    return OSError(err, msg)


def syscall_nr(table: dict[str, int], name: str) -> int:
    nr = table.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"{name}(): unknown syscall number on {platform.machine()}")
    return nr


def bpf(cmd: Cmd | int, attr: ctypes.Structure, size: int | None = None) -> int:
    """Issue one bpf() command; returns its non-negative result or raises OSError."""
    nr = syscall_nr(_SYS_BPF, "bpf")
    ret = libc().syscall(ctypes.c_long(nr), ctypes.c_int(int(cmd)), ctypes.byref(attr),
                         ctypes.c_uint(ctypes.sizeof(attr) if size is None else size))
    if ret < 0:
        err = ctypes.get_errno()
        raise _error(err, f"bpf({Cmd(int(cmd)).name})")
    return ret


def perf_event_open(attr: ctypes.Structure, pid: int, cpu: int, group_fd: int = -1,
                    flags: int = 0) -> int:
    nr = syscall_nr(_SYS_PERF_EVENT_OPEN, "perf_event_open")
    ret = libc().syscall(ctypes.c_long(nr), ctypes.byref(attr), ctypes.c_int(pid),
                         ctypes.c_int(cpu), ctypes.c_int(group_fd), ctypes.c_ulong(flags))
    if ret < 0:
        err = ctypes.get_errno()
        raise _error(err, "perf_event_open")
    return ret


def ioctl(fd: int, request: int, arg: int | ctypes.Structure | None = 0) -> int:
    if isinstance(arg, ctypes.Structure):
        ret = libc().ioctl(fd, request, ctypes.cast(ctypes.byref(arg), ctypes.c_void_p))
    else:
        ret = libc().ioctl(fd, request, ctypes.c_void_p(arg or 0))
    if ret < 0:
        err = ctypes.get_errno()
        raise _error(err, f"ioctl({request:#x})")
    return ret


def addr(buf) -> int:
    """Address of a ctypes object or buffer, as the u64 the kernel expects."""
    return ctypes.addressof(buf) if buf is not None else 0


def cbuf(data: bytes | bytearray | None):
    """A ctypes buffer holding ``data`` (None for empty), kept alive by the caller."""
    if not data:
        return None
    return ctypes.create_string_buffer(bytes(data), len(data))


class FdObject:
    """Something the kernel holds for us through a file descriptor.

    ``close()`` releases it (idempotent); so do ``with`` and garbage collection.
    """
    kind = "object"
    fd: int = -1

    def __init__(self, fd: int):
        self.fd = fd

    def fileno(self) -> int:
        if self.fd < 0:
            raise ValueError(f"{self.kind} is closed")
        return self.fd

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd is not None and fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
