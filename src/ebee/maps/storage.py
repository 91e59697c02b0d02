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
        if self.value_size > U.BPF_LOCAL_STORAGE_MAX_VALUE_SIZE:
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


# ---------------------------------------------------------------------------------------
# cgroup storage (kernel/bpf/local_storage.c): one value per (cgroup, attach type)
# ---------------------------------------------------------------------------------------

#: struct bpf_cgroup_storage_key { __u64 cgroup_inode_id; __u32 attach_type; } (padded)
CGROUP_STORAGE_KEY_SIZE = 16


class _CgroupStorage(Map):
    """CGROUP_STORAGE / PERCPU_CGROUP_STORAGE: the kernel creates an element when a program
    using the map is attached to a cgroup, and frees it on detach; user space reads and
    overwrites existing elements only (ENOENT otherwise) and cannot delete (EINVAL).  The
    key is ``struct bpf_cgroup_storage_key`` (16 bytes) or the cgroup id alone (8 bytes:
    the map is then shared by the cgroup's attach types).  :meth:`attach` makes an
    element as attaching does."""

    # map_flags are checked after the sizes (cgroup_storage_map_alloc's order)
    create_flags = ~0
    valid_flags = U.BPF_F_NUMA_NODE | ACCESS_MASK
    max_value_size = U.BPF_LOCAL_STORAGE_MAX_VALUE_SIZE

    def check_attr(self) -> None:
        if self.key_size not in (CGROUP_STORAGE_KEY_SIZE, 8) or not self.value_size:
            raise map_error(E.EINVAL, "cgroup storage needs key_size 16 (struct "
                                      "bpf_cgroup_storage_key) or 8 and value_size > 0")
        if self.value_size > self.max_value_size:
            raise map_error(E.E2BIG, f"value_size is over {self.max_value_size}")
        if self.flags & ~self.valid_flags:
            raise map_error(E.EINVAL, f"map flags {self.flags & ~self.valid_flags:#x} are not "
                                      f"valid for {self.type.name}")
        if self.max_entries:
            raise map_error(E.EINVAL, "cgroup storage takes max_entries 0")
        if self.btf is not None and self.btf_key_type_id:
            self._check_key_btf()

    def _check_key_btf(self) -> None:
        """cgroup_storage_check_btf(): the key is the u64 id, or the key struct's two
        integers at their offsets."""
        b = self.btf
        t = b.resolve(self.btf_key_type_id)
        kind = t.kind.name
        if self.key_size == 8:
            ok = kind == "INT" and t.size == 8 and not t.bits_offset and t.nr_bits == 64
        else:
            ms = getattr(t, "members", ())
            ok = kind == "STRUCT" and len(ms) == 2 and all(
                m.bits_offset == off * 8 and not m.bitfield_size and
                b.resolve(m.type_id).kind.name == "INT" and b.sizeof(m.type_id) == size
                for m, (off, size) in zip(ms, ((0, 8), (8, 4))))
        if not ok:
            raise map_error(E.EINVAL, "cgroup storage key type must be u64 or "
                                      "struct bpf_cgroup_storage_key")

    def alloc(self) -> None:
        self.store: dict[bytes, Region] = {}      # key -> value (every CPU's, per-CPU maps)

    def attach(self, cgroup_id: int, attach_type: int = 0) -> int:
        """The element a program attached to cgroup ``cgroup_id`` gets (made zeroed if there
        is none yet, as bpf_cgroup_storage_alloc does); returns its address (CPU 0's)."""
        key = cgroup_id.to_bytes(8, "little")
        if self.key_size == CGROUP_STORAGE_KEY_SIZE:
            key += attach_type.to_bytes(4, "little") + bytes(4)
        with self.lock:
            r = self.store.get(key)
            if r is None:
                r = self._add_region(self.value_buf_size, "value")
                self.store[key] = r
        return r.start

    def _find(self, key: bytes) -> Region:
        r = self.store.get(self._norm(key))
        if r is None:
            raise map_error(E.ENOENT)
        return r

    def _norm(self, key: bytes) -> bytes:
        # the key's padding is not compared (bpf_cgroup_storage_key_cmp)
        return key[:12] + bytes(4) if len(key) == CGROUP_STORAGE_KEY_SIZE else key

    def _sys_lookup(self, key: bytes, flags: int) -> bytes:
        return bytes(self._find(key).buf)

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        if flags & ~(U.BPF_F_LOCK | U.BPF_EXIST):
            raise map_error(E.EINVAL, f"invalid update flags {flags:#x}")
        self._find(key).buf[:] = value

    def _sys_delete(self, key: bytes) -> None:
        raise map_error(E.EINVAL, "cgroup storage elements go away with their cgroup")

    def _get_next_key(self, key: bytes | None) -> bytes:
        keys = list(self.store)
        if key is None:
            i = 0
        else:
            k = self._norm(key)
            if k not in self.store:
                raise map_error(E.ENOENT)
            i = keys.index(k) + 1
        if i >= len(keys):
            raise map_error(E.ENOENT)
        return keys[i]


class CgroupStorage(_CgroupStorage):
    map_type = MapType.CGROUP_STORAGE


class PercpuCgroupStorage(_CgroupStorage):
    map_type = MapType.PERCPU_CGROUP_STORAGE
    percpu = True
    max_value_size = min(U.BPF_LOCAL_STORAGE_MAX_VALUE_SIZE, U.PCPU_MIN_UNIT_SIZE)

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        if flags not in (U.BPF_ANY, U.BPF_EXIST):     # bpf_percpu_cgroup_storage_update
            raise map_error(E.EINVAL, f"invalid update flags {flags:#x}")
        self._find(key).buf[:] = value
