"""Local storage: TASK_STORAGE, INODE_STORAGE, SK_STORAGE, CGRP_STORAGE.

A value is attached to an owner object.  In Linux the owner is a task, inode,
socket or cgroup (user space names it by a pidfd or fd); in ebee it is any
hashable Python object from user space and, from programs, the address of the
object the program was handed (e.g. the simulated task's ``task_struct`` from
``bpf_get_current_task_btf``).  Linux requires BTF for these maps; ebee does
not (see docs/maps.md).
"""
from __future__ import annotations

import errno as E
from typing import Any

from .. import uapi as U
from ..uapi import MapType
from ..memory import SHARED, Region
from .base import ACCESS_MASK, Map
from .errors import map_error


class _LocalStorage(Map):
    create_flags = U.BPF_F_NO_PREALLOC | U.BPF_F_CLONE | ACCESS_MASK

    def check_attr(self) -> None:
        if (self.flags & ~self.create_flags or not self.flags & U.BPF_F_NO_PREALLOC
                or self.max_entries or self.key_size != 4 or not self.value_size):
            raise map_error(E.EINVAL, "local storage maps need BPF_F_NO_PREALLOC, key_size 4, "
                                      "max_entries 0 and value_size > 0")
        if self.value_size > U.KMALLOC_MAX_SIZE:
            raise map_error(E.E2BIG)

    def alloc(self) -> None:
        self.store: dict[Any, Region] = {}

    def _owner(self, key: Any) -> Any:
        return key

    def _k(self, key: Any) -> Any:        # owners are objects, not bytes
        if key is None:
            raise map_error(E.EBADF)
        return key

    def _sys_lookup(self, key: Any, flags: int) -> bytes:
        r = self.store.get(key)
        if r is None:
            raise map_error(E.ENOENT)
        return bytes(r.buf)

    def _sys_update(self, key: Any, value: bytes, flags: int) -> None:
        if (flags & ~U.BPF_F_LOCK) > U.BPF_EXIST:
            raise map_error(E.EINVAL)
        r = self.store.get(key)
        if r is not None and flags & ~U.BPF_F_LOCK == U.BPF_NOEXIST:
            raise map_error(E.EEXIST)
        if r is None and flags & ~U.BPF_F_LOCK == U.BPF_EXIST:
            raise map_error(E.ENOENT)
        if r is None:
            r = self._new(key)
        r.buf[:] = value

    def _new(self, key: Any) -> Region:
        r = Region(self.value_size, f"{self.type.name.lower()} value")
        SHARED.add(r)
        self._regions.append(r)
        self.store[key] = r
        return r

    def _sys_delete(self, key: Any) -> None:
        r = self.store.pop(key, None)
        if r is None:
            raise map_error(E.ENOENT)
        self._drop_region(r)

    def _get_next_key(self, key):
        raise map_error(E.ENOTSUPP if hasattr(E, "ENOTSUPP") else U.ENOTSUPP)

    def get_next_key(self, key=None):
        raise map_error(U.ENOTSUPP, "local storage maps cannot be iterated")

    def keys(self):
        return iter(list(self.store))

    __iter__ = keys

    def items(self):
        for k, r in list(self.store.items()):
            yield k, self.value_conv.unpack(bytes(r.buf))

    # -- program side: bpf_*_storage_get / _delete -----------------------------------------

    def storage_get(self, owner: int, init: bytes | None, flags: int) -> int:
        if flags & ~U.BPF_LOCAL_STORAGE_GET_F_CREATE:
            return 0
        with self.lock:
            r = self.store.get(owner)
            if r is None:
                if not flags & U.BPF_LOCAL_STORAGE_GET_F_CREATE:
                    return 0
                r = self._new(owner)
                if init is not None:
                    r.buf[:] = init[:self.value_size]
        return r.start

    def storage_delete(self, owner: int) -> int:
        with self.lock:
            r = self.store.pop(owner, None)
            if r is None:
                return -E.ENOENT
            self._drop_region(r)
        return 0


class TaskStorage(_LocalStorage):
    map_type = MapType.TASK_STORAGE


class InodeStorage(_LocalStorage):
    map_type = MapType.INODE_STORAGE


class SkStorage(_LocalStorage):
    map_type = MapType.SK_STORAGE


class CgrpStorage(_LocalStorage):
    map_type = MapType.CGRP_STORAGE
