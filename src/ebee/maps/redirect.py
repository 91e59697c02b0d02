"""Redirect targets: DEVMAP, DEVMAP_HASH, CPUMAP, XSKMAP.

User space fills them as in Linux; XDP programs name a slot with
``bpf_redirect_map`` (engineer E's packet helpers ask :meth:`target`).  ebee
has no network devices, CPUs' backlogs or AF_XDP sockets: a DEVMAP entry is
just the ifindex (and optional program id) it records, a CPUMAP entry its
queue size, an XSKMAP entry the Python object standing for the socket --
enough to see where a packet would go, which is what a test run reports.
"""
from __future__ import annotations

import errno as E
import struct
from typing import Any

from .. import uapi as U
from ..uapi import MapType
from .base import Map
from .errors import map_error
from .jhash import jhash
from .cpus import num_cpus

_U32 = struct.Struct("<I")
NR_CPUS = 8192
CPUMAP_QSIZE_MAX = 16384


class _SlotMap(Map):
    """Index-keyed redirect maps: values stored as the bytes user space gave."""

    create_flags = U.BPF_F_NUMA_NODE | U.BPF_F_RDONLY | U.BPF_F_WRONLY
    value_sizes: tuple[int, ...] = (4,)

    def check_attr(self) -> None:
        if self.max_entries == 0 or self.key_size != 4 or self.value_size not in self.value_sizes:
            raise map_error(E.EINVAL, f"{self.type.name} needs key_size 4 and value_size "
                                      f"{' or '.join(map(str, self.value_sizes))}")

    def alloc(self) -> None:
        self.slots: dict[int, Any] = {}
        self.value_region = self._add_region(self.max_entries * self.value_size, "values", writable=False)
        self._write_handle(self.value_region.start)

    def _idx(self, key: bytes) -> int:
        return _U32.unpack(key)[0]

    def _store(self, idx: int, value: Any) -> None:
        self.slots[idx] = value
        if isinstance(value, (bytes, bytearray)) and idx < self.max_entries:
            off = idx * self.value_size
            self.value_region.buf[off:off + self.value_size] = value

    def _sys_lookup(self, key: bytes, flags: int) -> Any:
        v = self.slots.get(self._idx(key))
        if v is None:
            raise map_error(E.ENOENT)
        return v

    def _sys_update(self, key: bytes, value: Any, flags: int) -> None:
        if flags > U.BPF_EXIST:
            raise map_error(E.EINVAL)
        idx = self._idx(key)
        if idx >= self.max_entries:
            raise map_error(E.E2BIG)
        if flags == U.BPF_NOEXIST:
            raise map_error(E.EEXIST)
        self._set(idx, value)

    def _set(self, idx: int, value: Any) -> None:
        self._store(idx, value)

    def _sys_delete(self, key: bytes) -> None:
        idx = self._idx(key)
        if idx >= self.max_entries:
            raise map_error(E.EINVAL)
        self.slots.pop(idx, None)
        off = idx * self.value_size
        self.value_region.buf[off:off + self.value_size] = bytes(self.value_size)

    def _get_next_key(self, key: bytes | None) -> bytes:
        idx = self._idx(key) if key is not None else self.max_entries
        if idx >= self.max_entries:
            return _U32.pack(0)
        if idx == self.max_entries - 1:
            raise map_error(E.ENOENT)
        return _U32.pack(idx + 1)

    def target(self, key: int) -> Any:
        """What slot ``key`` redirects to (None if empty)."""
        return self.slots.get(key)

    def prog_lookup(self, key: bytes, cpu: int) -> int:
        idx = self._idx(key)
        if idx not in self.slots or idx >= self.max_entries:
            return 0
        return self.value_region.start + idx * self.value_size

    def prog_update(self, key, value, flags, cpu) -> int:
        return -E.EINVAL

    def prog_delete(self, key, cpu) -> int:
        return -E.EINVAL


class DevMap(_SlotMap):
    """Values: ``u32 ifindex`` or ``struct bpf_devmap_val {u32 ifindex; u32 prog}``."""

    map_type = MapType.DEVMAP
    value_sizes = (4, 8)

    def _set(self, idx: int, value: Any) -> None:
        ifindex = _U32.unpack_from(value)[0]
        prog = _U32.unpack_from(value, 4)[0] if self.value_size == 8 else 0
        if not ifindex:
            if prog:
                raise map_error(E.EINVAL, "a program needs an ifindex")
            self.slots.pop(idx, None)
            return
        self._store(idx, bytes(value))


class DevMapHash(DevMap):
    """DEVMAP_HASH: any u32 key, at most max_entries of them."""

    map_type = MapType.DEVMAP_HASH

    def _sys_update(self, key: bytes, value: Any, flags: int) -> None:
        if flags > U.BPF_EXIST:
            raise map_error(E.EINVAL)
        idx = self._idx(key)
        present = idx in self.slots
        if present and flags == U.BPF_NOEXIST:
            raise map_error(E.EEXIST)
        if not present and flags == U.BPF_EXIST:
            raise map_error(E.ENOENT)
        if not present and len(self.slots) >= self.max_entries:
            raise map_error(E.E2BIG)
        ifindex = _U32.unpack_from(value)[0]
        if not ifindex:
            raise map_error(E.EINVAL)
        self.slots[idx] = bytes(value)

    def _sys_delete(self, key: bytes) -> None:
        if self.slots.pop(self._idx(key), None) is None:
            raise map_error(E.ENOENT)

    def _get_next_key(self, key: bytes | None) -> bytes:
        keys = sorted(self.slots, key=lambda k: (jhash(_U32.pack(k)), k))
        if key is not None and self._idx(key) in self.slots:
            i = keys.index(self._idx(key)) + 1
        else:
            i = 0
        if i >= len(keys):
            raise map_error(E.ENOENT)
        return _U32.pack(keys[i])

    def prog_lookup(self, key: bytes, cpu: int) -> int:
        return 0   # DEVMAP_HASH values are not addressable by programs in ebee


class CpuMap(_SlotMap):
    """Values: ``u32 qsize`` or ``struct bpf_cpumap_val {u32 qsize; u32 prog}``."""

    map_type = MapType.CPUMAP
    create_flags = U.BPF_F_NUMA_NODE
    value_sizes = (4, 8)

    def check_attr(self) -> None:
        super().check_attr()
        if self.max_entries > NR_CPUS:
            raise map_error(E.E2BIG)

    def _set(self, idx: int, value: Any) -> None:
        qsize = _U32.unpack_from(value)[0]
        if qsize > CPUMAP_QSIZE_MAX:
            raise map_error(E.EOVERFLOW)
        if idx >= num_cpus():
            raise map_error(E.ENODEV)
        if qsize == 0:
            self.slots.pop(idx, None)
            return
        self._store(idx, bytes(value))


class XskMap(_SlotMap):
    """Values: the object standing for an AF_XDP socket (ebee has none of its own)."""

    map_type = MapType.XSKMAP

    def _sys_value(self, value: Any) -> Any:
        if value is None:
            raise map_error(E.EBADF)
        return value

    def _unv(self, raw: Any) -> Any:
        return raw

    def _sys_lookup(self, key, flags):
        raise map_error(E.EOPNOTSUPP)

    def _set(self, idx: int, value: Any) -> None:
        self.slots[idx] = value
