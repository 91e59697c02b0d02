"""BTF in the kernel: BTF_LOAD, loaded BTF objects, and finding kernel types by name.

Programs and maps refer to types by (BTF object, type id): an object's own BTF
is loaded with BTF_LOAD; kernel functions (fentry targets, kfuncs) are looked
up in vmlinux BTF or, failing that, in the BTF of loaded modules, which is
split BTF on top of vmlinux and is passed to the kernel by fd.
"""
from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..uapi import Cmd
from .attrs import BtfLoadAttr
from .info import Kind, btf_data, btf_info, fd_by_id, ids
from .syscall import FdObject, addr, bpf, cbuf
from ..btf import BTF
from ..btf import BTFError

SYSFS_BTF = Path("/sys/kernel/btf")


class BTFLoadError(OSError):
    """The kernel refused a BTF blob; ``log`` holds its BTF verifier's output."""

    def __init__(self, errno_: int, log: str):
        self.log = log
        last = next((ln for ln in reversed(log.splitlines()) if ln.strip()), "")
        super().__init__(errno_, f"BTF_LOAD: {os.strerror(errno_)}" + (f": {last}" if last else ""))


class KernelBTF(FdObject):
    """A BTF object loaded into (or found in) the kernel."""
    kind = "BTF"

    def __init__(self, data: bytes, *, log_level: int = 0, log_size: int = 1 << 20):
        super().__init__(-1)
        blob = cbuf(data)
        level = log_level
        while True:
            log = ctypes.create_string_buffer(log_size) if level else None
            attr = BtfLoadAttr(btf=addr(blob), btf_size=len(data), btf_log_buf=addr(log),
                               btf_log_size=log_size if level else 0, btf_log_level=level)
            try:
                self.fd = bpf(Cmd.BTF_LOAD, attr)
                break
            except OSError as e:
                if log is None:
                    level = 1
                    continue
                if e.errno == errno.ENOSPC and log_size < (1 << 28):
                    log_size *= 4
                    continue
                raise BTFLoadError(e.errno, log.value.decode(errors="replace")) from None
        self.log = log.value.decode(errors="replace") if log is not None else ""
        self._data = bytes(data)

    @classmethod
    def from_fd(cls, fd: int) -> "KernelBTF":
        self = cls.__new__(cls)
        FdObject.__init__(self, fd)
        self.log, self._data = "", None
        return self

    @classmethod
    def from_id(cls, btf_id: int) -> "KernelBTF":
        return cls.from_fd(fd_by_id(Kind.BTF, btf_id))

    def info(self):
        return btf_info(self.fileno())

    @property
    def id(self) -> int:
        return self.info().id

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = btf_data(self.fileno())
        return self._data

    def parse(self):
        """The blob as an :class:`ebee.btf.BTF` (module BTF is split on vmlinux)."""
        info = self.info()
        base = vmlinux() if info.kernel_btf and info.name != "vmlinux" else None
        return BTF.from_bytes(self.data, base)


@lru_cache(maxsize=1)
def vmlinux():
    """The running kernel's BTF, parsed (cached for the process)."""
    return BTF.load_vmlinux()


@lru_cache(maxsize=None)
def module_btf(name: str):
    """A loaded module's BTF (split on vmlinux), from /sys/kernel/btf/NAME."""
    return BTF.from_bytes((SYSFS_BTF / name).read_bytes(), vmlinux())


def module_names() -> list[str]:
    try:
        return sorted(p.name for p in SYSFS_BTF.iterdir() if p.name != "vmlinux")
    except OSError:
        return []


def module_btf_id(name: str) -> int:
    """The kernel's BTF object id of a module's BTF (to open it by fd)."""
    for i in ids(Kind.BTF):
        try:
            fd = fd_by_id(Kind.BTF, i)
        except OSError:
            continue
        try:
            info = btf_info(fd)
        finally:
            os.close(fd)
        if info.kernel_btf and info.name == name:
            return i
    raise OSError(errno.ENOENT, f"no kernel BTF object for module {name}")


@dataclass(frozen=True)
class KernelType:
    """Where a kernel type lives: ``module`` is None for vmlinux."""
    type_id: int
    module: str | None
    name: str

    def open_btf(self) -> KernelBTF | None:
        """The module's BTF object as an fd holder (None for vmlinux)."""
        if self.module is None:
            return None
        return KernelBTF.from_id(module_btf_id(self.module))


def find_kernel_type(name: str, kind: str = "func") -> KernelType:
    """A named kernel type (default: a FUNC), in vmlinux first, then modules.

    Raises OSError(ENOENT) with the name when no BTF in the kernel has it.
    """
    try:
        t = vmlinux().find(name, kind)
        return KernelType(t.id, None, name)
    except (KeyError, LookupError, BTFError):
        pass
    for mod in module_names():
        try:
            btf = module_btf(mod)
            t = btf.find(name, kind)
        except (KeyError, LookupError, BTFError, OSError):
            continue
        return KernelType(t.id, mod, name)
    raise OSError(errno.ENOENT, f"{kind} {name!r} not found in kernel BTF")

