"""Kernel maps with the Python API of ``ebee.Map``.

:class:`KernelMapHandle` is an :class:`ebee.maps.Map` whose storage is a map
in the kernel: the same dict-style access, conversions (``key_type``,
``value_type``, per-CPU lists), batch API and ``MapError``/``MapKeyError``
exceptions, so code and tests written against one backend run against the
other.  The kernel performs every check itself (access flags, freezing,
flags): the Python-side checks of the user-space maps are not repeated.
The raw syscalls are those of :class:`ebee.kernel.maps.KernelMap`.
"""
from __future__ import annotations

import errno as E
import mmap as _mmap
import threading
from typing import Any

from ..btf.record import value_record
from ..maps.base import Converter, Map, MappedValues, round_up
from ..maps.errors import map_error
from ..maps.ringbuf import record_decoder
from ..uapi import MapType
from .maps import KernelMap, possible_cpus
from .syscall import PRIVILEGE_HINT
from .info import map_info
from .info import Kind, fd_by_id
from .pin import obj_get
from .pin import obj_pin
from .btf import KernelBTF
from ..uapi import BPF_F_MMAPABLE
from .ringbuf import RingBufReader
from .perfbuf import PerfBufReader

_PERCPU = {MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
           MapType.PERCPU_CGROUP_STORAGE}
_KEYLESS = {MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER}
_FD_VALUES = {MapType.PROG_ARRAY, MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS,
              MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.SOCKMAP, MapType.SOCKHASH,
              MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP}


def _oserror(e: OSError):
    return map_error(e.errno, PRIVILEGE_HINT if PRIVILEGE_HINT in (e.strerror or "") else None)


class KernelMapHandle(Map):
    """A map in the kernel (``fd``, kernel ``id``), used like ``ebee.Map``."""

    def __init__(self, kmap: KernelMap, *, name: str = "", btf: Any = None,
                 btf_key_type_id: int = 0, btf_value_type_id: int = 0, map_extra: int = 0,
                 key_type: Any = None, value_type: Any = None):
        self.kmap = kmap
        self.type = MapType(int(kmap.type))
        self.key_size, self.value_size = kmap.key_size, kmap.value_size
        self.max_entries, self.flags = kmap.max_entries, kmap.flags
        self.map_extra = map_extra
        self.name = name
        self.numa_node = 0
        self.btf, self.btf_key_type_id, self.btf_value_type_id = btf, btf_key_type_id, btf_value_type_id
        # the BTF of the object that defined the map (set by load_kernel): where
        # reader(type="struct event") looks the name up, as the user-space map does
        self.source_btf = btf
        self.inner_map = None
        self.watchers = []
        self.frozen = False
        self._write_active = 0
        self.percpu = self.type in _PERCPU
        self.keyless = self.type in _KEYLESS
        try:
            self.record = value_record(btf, btf_value_type_id) if btf is not None else {}
        except Exception:
            self.record = {}
        self.spin_lock_off = self.record.get("bpf_spin_lock", -1)
        self.ncpus = possible_cpus()
        self.elem_size = round_up(self.value_size, 8)
        self.lock = threading.RLock()
        self.key_conv = Converter(self.key_size, key_type, "key")
        self.value_conv = Converter(self.value_size, value_type, "value")
        self._mmaps: list = []
        self.id = self.info().id

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def from_fd(cls, fd: int) -> "KernelMapHandle":
        info = map_info(fd)
        h = cls(KernelMap.from_fd(fd), name=info.name, btf_key_type_id=info.btf_key_type_id,
                btf_value_type_id=info.btf_value_type_id, map_extra=info.map_extra)
        h.frozen = info.frozen
        return h

    @classmethod
    def from_id(cls, map_id: int) -> "KernelMapHandle":
        return cls.from_fd(fd_by_id(Kind.MAP, map_id))

    @classmethod
    def from_pinned(cls, path) -> "KernelMapHandle":
        return cls.from_fd(obj_get(path))

    # --- the kernel object --------------------------------------------------------------------
    @property
    def fd(self) -> int:
        return self.kmap.fd

    def fileno(self) -> int:
        return self.kmap.fd

    def info(self):
        return map_info(self.kmap.fd)

    def pin(self, path) -> None:
        obj_pin(self.kmap.fd, path)

    def kernel_btf(self):
        """The map's BTF as loaded in the kernel (parsed), or None."""
        info = self.info()
        if not info.btf_id:
            return None
        with KernelBTF.from_id(info.btf_id) as b:
            return b.parse()

    def close(self) -> None:
        for m in self._mmaps:
            try:
                m.close()
            except BufferError:
                pass
        self._mmaps = []
        self.kmap.close()

    def __del__(self) -> None:
        try:
            self.kmap.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return (f"<KernelMapHandle{name} {self.type.name.lower()} id={self.id} fd={self.fd} "
                f"key_size={self.key_size} value_size={self.value_size} "
                f"max_entries={self.max_entries}>")

    @property
    def addr(self) -> None:
        """None: a kernel map has no address in ebee's memory (the verifier prints none)."""
        return None

    # --- the kernel checks everything itself -------------------------------------------------
    def _check_read(self, flags: int) -> None:
        pass

    def _check_write(self) -> None:
        pass

    def _check_lock_flag(self, flags: int) -> None:
        pass

    def _check_lookup_and_delete(self, flags: int) -> None:
        pass

    def _sys_value(self, value: Any) -> Any:
        if self.type in _FD_VALUES and hasattr(value, "fd") and not isinstance(value, int):
            return int(value.fd).to_bytes(4, "little")       # programs and maps go in by fd
        return self._v(value)

    # --- raw operations: the syscalls -----------------------------------------------------------
    def _sys_lookup(self, key, flags):
        try:
            return self.kmap.lookup(key, flags)
        except OSError as e:
            raise _oserror(e) from None

    def _sys_update(self, key, value, flags):
        try:
            self.kmap.update(key, value, flags)
        except OSError as e:
            raise _oserror(e) from None

    def _sys_delete(self, key):
        try:
            self.kmap.delete(key)
        except OSError as e:
            raise _oserror(e) from None

    def raw_update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        """BPF_MAP_UPDATE_ELEM with raw key and value bytes, as bpftool writes them."""
        with self.lock:
            self._sys_update(key, value, flags)

    def raw_delete(self, key: bytes) -> None:
        """BPF_MAP_DELETE_ELEM of a raw key, as bpftool deletes it."""
        with self.lock:
            self._sys_delete(key)

    def _get_next_key(self, key):
        try:
            return self.kmap.get_next_key(key)
        except OSError as e:
            raise _oserror(e) from None

    def _sys_lookup_and_delete(self, key, flags):
        try:
            return self.kmap.lookup_and_delete(key, flags)
        except OSError as e:
            raise _oserror(e) from None

    def _lookup_batch(self, in_batch, count, elem_flags, delete):
        if in_batch is not None and not isinstance(in_batch, (bytes, bytearray)):
            in_batch = self._k(in_batch)
        keys, values, out, err = self.kmap.lookup_batch(in_batch, count, elem_flags,
                                                        delete=delete)
        return keys, values, out, (err.errno if err is not None else 0)

    def _update_batch(self, keys, values, elem_flags):
        n, err = self.kmap.update_batch(keys, values, elem_flags)
        return n, (err.errno if err is not None else 0)

    def _delete_batch(self, keys, elem_flags):
        n, err = self.kmap.delete_batch(keys, elem_flags)
        return n, (err.errno if err is not None else 0)

    def freeze(self) -> None:
        try:
            self.kmap.freeze()
        except OSError as e:
            raise _oserror(e) from None
        self.frozen = True

    def mmap(self, writable: bool = True) -> MappedValues:
        """mmap(2) of a BPF_F_MMAPABLE array's values (``with m.mmap() as view: ...``)."""
        if not self.flags & BPF_F_MMAPABLE:
            raise map_error(E.EINVAL, "only BPF_F_MMAPABLE arrays (and ring buffers) can be "
                                      "mapped")
        size = round_up(self.elem_size * self.max_entries, _mmap.PAGESIZE)
        prot = _mmap.PROT_READ | (_mmap.PROT_WRITE if writable else 0)
        try:
            mm = _mmap.mmap(self.fd, size, _mmap.MAP_SHARED, prot)
        except OSError as e:
            raise _oserror(e) from None
        self._mmaps.append(mm)
        view = memoryview(mm)[:self.elem_size * self.max_entries]
        return _KernelMapped(self, view, writable, mm)

    # --- what programs produce ----------------------------------------------------------------
    def reader(self, callback=None, *, lost_callback=None, type=None, **options):
        """An event reader (``ebee.events.EventReader``) for a ring buffer or perf event
        array; ``type`` (``"struct event"``, or a ``BTFValue``) decodes each record into
        ``rec.value``, as the user-space map's reader does."""
        decode = record_decoder(self, type)
        if self.type == MapType.RINGBUF:
            return RingBufReader(self, callback, max_entries=self.max_entries, decode=decode,
                                 **options)
        if self.type == MapType.PERF_EVENT_ARRAY:
            return PerfBufReader(self, callback, lost_callback=lost_callback, decode=decode,
                                 **options)
        raise TypeError(f"{self.type.name} maps produce no events to read")

    def format_items(self, btf=None) -> list[tuple[Any, Any]]:
        """(key, value) pairs pretty-printed through the map's BTF (raw bytes without one)."""
        btf = btf if btf is not None else (self.btf or self.kernel_btf())
        out = []
        for k in self._raw_keys():
            try:
                v = self._sys_lookup(k, 0)
            except KeyError:
                continue
            out.append((_fmt(btf, self.btf_key_type_id, k), _fmt(btf, self.btf_value_type_id, v)))
        return out


def _fmt(btf, type_id: int, data: bytes):
    if btf is None or not type_id:
        return data
    try:
        return btf.format_value(type_id, data, json=True)
    except Exception:
        return data


class _KernelMapped(MappedValues):
    def __init__(self, m, view, writable, mm):
        super().__init__(m, view, writable)
        self._mm = mm

    def close(self) -> None:
        super().close()
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass
            if self._mm in self.map._mmaps:
                self.map._mmaps.remove(self._mm)
            self._mm = None
