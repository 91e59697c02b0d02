"""Kernel maps through bpf(2): BPF_MAP_CREATE and the element, batch and freeze commands.

:class:`KernelMap` mirrors the operations of :class:`ebee.maps.Map` closely
enough that the differential tests can apply one sequence of operations to
both and compare results and errno values.  Keys and values are ``bytes``;
per-CPU values are one buffer of ``round_up(value_size, 8) * possible_cpus``
bytes, as the syscall returns them.
"""
from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from types import MappingProxyType
from typing import Mapping

from ..uapi import Cmd, MapType
from .syscall import MapBatchAttr, MapCreateAttr, MapElemAttr, addr, bpf
from .info import map_info

_PERCPU = {MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
           MapType.PERCPU_CGROUP_STORAGE}


@lru_cache(maxsize=1)
def possible_cpus() -> int:
    """Number of possible CPUs (the per-CPU value count the syscall uses)."""
    try:
        text = open("/sys/devices/system/cpu/possible").read().strip()
    except OSError:
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


def _buf(data: bytes | None, size: int | None = None):
    if data is None and size is None:
        return None
    if data is None:
        return ctypes.create_string_buffer(max(size or 0, 1))
    return ctypes.create_string_buffer(bytes(data), max(len(data), size or 0, 1))


class KernelMap:
    """A map created in the kernel; ``close()`` (or ``with``) releases the fd."""

    # what the verifier reads of a map (``ebee.verifier.MapDescription``): a bare kernel map
    # carries no BTF record, is not frozen and has no address user space may print
    name = ""
    frozen = False
    record: Mapping[str, int] = MappingProxyType({})
    graph_roots: Mapping = MappingProxyType({})
    spin_lock_off = -1
    inner_map = None
    addr = None

    def __init__(self, map_type: MapType | int, key_size: int, value_size: int, max_entries: int,
                 map_flags: int = 0, *, inner_map_fd: int = 0, map_extra: int = 0, name: str = "",
                 numa_node: int = 0, btf_fd: int = 0, btf_key_type_id: int = 0,
                 btf_value_type_id: int = 0, btf_vmlinux_value_type_id: int = 0):
        attr = MapCreateAttr(map_type=int(map_type), key_size=key_size, value_size=value_size,
                             max_entries=max_entries, map_flags=map_flags, inner_map_fd=inner_map_fd,
                             numa_node=numa_node, map_name=name.encode()[:15], btf_fd=btf_fd,
                             btf_key_type_id=btf_key_type_id, btf_value_type_id=btf_value_type_id,
                             map_extra=map_extra,
                             btf_vmlinux_value_type_id=btf_vmlinux_value_type_id)
        self.fd = bpf(Cmd.MAP_CREATE, attr)
        self.type = MapType(int(map_type))
        self.key_size, self.value_size, self.max_entries = key_size, value_size, max_entries
        self.flags = map_flags
        self.percpu = self.type in _PERCPU

    @classmethod
    def from_fd(cls, fd: int) -> "KernelMap":
        """Adopt the fd of an existing map (opened by id or from a pin); closes it when done."""
        info = map_info(fd)
        self = cls.__new__(cls)
        self.fd = fd
        self.type = MapType(int(info.type))
        self.key_size, self.value_size = info.key_size, info.value_size
        self.max_entries, self.flags = info.max_entries, info.map_flags
        self.percpu = self.type in _PERCPU
        return self

    @property
    def value_buf_size(self) -> int:
        if self.percpu:
            return ((self.value_size + 7) & ~7) * possible_cpus()
        return self.value_size

    # -- elements ------------------------------------------------------------------

    def _elem(self, cmd: Cmd, key: bytes | None, value, flags: int) -> None:
        kb = _buf(key) if key is not None else None
        attr = MapElemAttr(map_fd=self.fd, key=addr(kb), value=addr(value), flags=flags)
        bpf(cmd, attr)

    def lookup(self, key: bytes | None, flags: int = 0) -> bytes:
        out = _buf(None, self.value_buf_size)
        self._elem(Cmd.MAP_LOOKUP_ELEM, key, out, flags)
        return out.raw[:self.value_buf_size]

    def update(self, key: bytes | None, value: bytes, flags: int = 0) -> None:
        self._elem(Cmd.MAP_UPDATE_ELEM, key, _buf(value), flags)

    def delete(self, key: bytes | None) -> None:
        self._elem(Cmd.MAP_DELETE_ELEM, key, None, 0)

    def lookup_and_delete(self, key: bytes | None, flags: int = 0) -> bytes:
        out = _buf(None, self.value_buf_size)
        self._elem(Cmd.MAP_LOOKUP_AND_DELETE_ELEM, key, out, flags)
        return out.raw[:self.value_buf_size]

    def get_next_key(self, key: bytes | None = None) -> bytes:
        kb = _buf(key) if key is not None else None
        out = _buf(None, self.key_size)
        attr = MapElemAttr(map_fd=self.fd, key=addr(kb), value=addr(out), flags=0)
        bpf(Cmd.MAP_GET_NEXT_KEY, attr)
        return out.raw[:self.key_size]

    def keys(self) -> list[bytes]:
        out, key = [], None
        while True:
            try:
                key = self.get_next_key(key)
            except OSError as e:
                if e.errno == 2:
                    return out
                raise
            out.append(key)

    def freeze(self) -> None:
        bpf(Cmd.MAP_FREEZE, MapElemAttr(map_fd=self.fd))

    # -- batches ---------------------------------------------------------------------

    def _batch(self, cmd: Cmd, in_batch: bytes | None, keys_buf, values_buf, count: int,
               elem_flags: int, out_batch_size: int = 0):
        inb = _buf(in_batch) if in_batch is not None else None
        outb = _buf(None, out_batch_size) if out_batch_size else None
        attr = MapBatchAttr(in_batch=addr(inb), out_batch=addr(outb), keys=addr(keys_buf),
                            values=addr(values_buf), count=count, map_fd=self.fd,
                            elem_flags=elem_flags, flags=0)
        err = None
        try:
            bpf(cmd, attr)
        except OSError as e:
            err = e
        return attr.count, (outb.raw[:out_batch_size] if outb is not None else None), err

    def _batch_token_size(self) -> int:
        # hash tables use a bucket index; arrays (and everything else) a key
        if self.type in (MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH,
                         MapType.LRU_PERCPU_HASH, MapType.HASH_OF_MAPS):
            return 4
        return self.key_size

    def lookup_batch(self, in_batch: bytes | None, count: int, elem_flags: int = 0,
                     *, delete: bool = False):
        """One batch call: ``(keys, values, out_batch, error-or-None)``."""
        ks, vs = self.key_size, self.value_buf_size
        kb, vb = _buf(None, ks * count), _buf(None, vs * count)
        cmd = Cmd.MAP_LOOKUP_AND_DELETE_BATCH if delete else Cmd.MAP_LOOKUP_BATCH
        n, out, err = self._batch(cmd, in_batch, kb, vb, count, elem_flags,
                                  self._batch_token_size())
        keys = [kb.raw[i * ks:(i + 1) * ks] for i in range(n)]
        values = [vb.raw[i * vs:(i + 1) * vs] for i in range(n)]
        return keys, values, out, err

    def update_batch(self, keys: list[bytes], values: list[bytes], elem_flags: int = 0):
        kb, vb = _buf(b"".join(keys)), _buf(b"".join(values))
        n, _, err = self._batch(Cmd.MAP_UPDATE_BATCH, None, kb, vb, len(keys), elem_flags)
        return n, err

    def delete_batch(self, keys: list[bytes], elem_flags: int = 0):
        kb = _buf(b"".join(keys))
        n, _, err = self._batch(Cmd.MAP_DELETE_BATCH, None, kb, None, len(keys), elem_flags)
        return n, err

    # -- lifetime --------------------------------------------------------------------

    def close(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "KernelMap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:       # interpreter shutdown: the exit closes the fd anyway
            pass
