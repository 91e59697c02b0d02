"""The map base class: creation like BPF_MAP_CREATE, the syscall-side checks, the Python API.

Every map type is a subclass registered for its ``uapi.MapType``;
``Map(map_type, ...)`` returns an instance of the right subclass.  A subclass
implements the operations on raw bytes, as the kernel's ``bpf_map_ops`` do:

* syscall side: ``_sys_lookup``, ``_sys_update``, ``_sys_delete``,
  ``_get_next_key``, ``_sys_lookup_and_delete`` and the batch operations
  (the generic ones here are Linux's ``generic_map_*_batch``);
* program side (helpers): ``prog_lookup`` (an address or 0), ``prog_update``,
  ``prog_delete`` and, for queues, ``prog_push/pop/peek`` (0 or ``-errno``).

The base class does what ``kernel/bpf/syscall.c`` does before calling the
map: access-flag and freeze checks, flag validation, and conversion between
Python values (bytes, ints, ctypes structures) and the raw bytes.

Memory: a map registers a small read-only *handle* region in
``vm.memory.SHARED``: ebee's handle (``ebee.layouts.maps.MAP_HANDLE``, described
in ``docs/maps-layout.md``), then the map's kernel view (the kernel's struct for
the map type with the members ebee serves, ``ebee.verifier.btfaccess.map_view``).
The view's address is the map pointer programs hold (``CONST_PTR_TO_MAP``).
Values live in regions of ``SHARED`` owned by the map, so lookups from programs
return real addresses.
"""
from __future__ import annotations

import ctypes
import errno as E
import itertools
import struct
import threading
import weakref
from typing import Any, Callable, ClassVar, Iterable, Iterator

from .. import uapi as U
from ..btf.pyvalues import BTFValue
from ..errors import VMError
from ..btf.record import graph_roots, value_record
from ..layouts.maps import MAP_HANDLE, MAP_VIEW_OFF
from ..idr import map_idr
from ..uapi import MapType
from ..memory import SHARED, Region
from ..verifier.btfaccess import map_view
from . import cpus
from .errors import MapError, MapKeyError, map_error
from .shared import SharedValues, anonymous
from .hist import format_linear_hist, format_log2_hist

ACCESS_MASK = U.BPF_F_RDONLY | U.BPF_F_WRONLY | U.BPF_F_RDONLY_PROG | U.BPF_F_WRONLY_PROG

# handle region: what a map pointer points at
HANDLE = MAP_HANDLE.packer()
HANDLE_SIZE = MAP_HANDLE.size


def round_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def roundup_pow_of_two(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


# ---------------------------------------------------------------------------------
# live maps, by id and by handle address
# ---------------------------------------------------------------------------------

_by_addr: "weakref.WeakValueDictionary[int, Map]" = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def by_id(map_id: int) -> "Map":
    """The live map with this id; ``MapError(ENOENT)`` if there is none."""
    m = map_idr.get(map_id)
    if m is None:
        raise map_error(E.ENOENT, f"no map with id {map_id}")
    return m


def by_addr(addr: int) -> "Map | None":
    """The map whose handle is at ``addr`` (a program's map pointer), or None."""
    return _by_addr.get(addr)


def live_maps() -> list["Map"]:
    return map_idr.live()


def _name_ok(name: str) -> bool:
    # bpf_obj_name_cpy: alphanumerics, '_' and '.', at most 15 characters
    return len(name) < U.BPF_OBJ_NAME_LEN and all(c.isascii() and (c.isalnum() or c in "_.")
                                                  for c in name)


class Converter:
    """Python values <-> the raw bytes of a key or value of ``size`` bytes."""

    __slots__ = ("size", "type", "what")

    def __init__(self, size: int, typ: Any, what: str):
        self.size = size
        self.type = typ
        self.what = what

    def pack(self, v: Any) -> bytes:
        size = self.size
        if isinstance(self.type, BTFValue) and not isinstance(v, (bytes, bytearray, memoryview)):
            return self.type.encode(v)
        if isinstance(v, (bytes, bytearray, memoryview)):
            b = bytes(v)
        elif isinstance(v, bool):
            raise TypeError(f"{self.what} must be bytes, an int or a ctypes object, not bool")
        elif isinstance(v, int):
            if size == 0:
                raise ValueError(f"this map has no {self.what}s")
            if not -(1 << (8 * size - 1)) <= v < (1 << (8 * size)):
                raise ValueError(f"{self.what} {v} does not fit in {size} bytes")
            return (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        elif isinstance(v, (ctypes.Structure, ctypes.Union, ctypes.Array, ctypes._SimpleCData)):
            b = bytes(memoryview(v).cast("B")) if not isinstance(v, ctypes._SimpleCData) else \
                ctypes.string_at(ctypes.addressof(v), ctypes.sizeof(v))
        else:
            raise TypeError(f"{self.what} must be bytes, an int or a ctypes object, "
                            f"not {type(v).__name__}")
        if len(b) != size:
            raise ValueError(f"{self.what} must be {size} bytes, got {len(b)}")
        return b

    def unpack(self, b: bytes) -> Any:
        t = self.type
        if t is None or t is bytes:
            return b
        if t is int:
            return int.from_bytes(b, "little")
        return t.from_buffer_copy(b)


class Map:
    """An eBPF map.  ``Map(type, key_size, value_size, max_entries, flags, ...)``
    creates one as ``bpf(BPF_MAP_CREATE)`` would and returns the subclass for
    its type; creation errors are :class:`MapError` with the kernel's errno.

    Keys and values are ``bytes``, ints (little-endian, of the key/value size)
    or ctypes objects; lookups return bytes unless ``key_type``/``value_type``
    is set (``int`` or a ctypes type).  Per-CPU maps take and return one value
    per CPU (a list).
    """

    _types: ClassVar[dict[MapType, type["Map"]]] = {}
    map_type: ClassVar[MapType]
    percpu: ClassVar[bool] = False
    #: map types whose elements the syscall side addresses without a key
    keyless: ClassVar[bool] = False

    def __new__(cls, map_type: MapType | int = 0, *args, **kwargs):
        if cls is Map:
            try:
                mt = MapType(int(map_type))
            except ValueError:
                raise map_error(E.EINVAL, f"unknown map type {map_type}") from None
            sub = Map._types.get(mt)
            if sub is None:
                raise map_error(E.EINVAL, f"map type {mt.name} is not supported by ebee "
                                          f"(see docs/maps.md)")
            return object.__new__(sub)
        return object.__new__(cls)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        mt = cls.__dict__.get("map_type")
        if mt is not None:
            Map._types[mt] = cls

    def __init__(self, map_type: MapType | int, key_size: int, value_size: int, max_entries: int,
                 map_flags: int = 0, *, map_extra: int = 0, inner_map: "Map | None" = None,
                 name: str = "", numa_node: int = 0, btf: Any = None, btf_key_type_id: int = 0,
                 btf_value_type_id: int = 0, key_type: Any = None, value_type: Any = None,
                 btf_vmlinux_value_type_id: int = 0, ncpus: int | None = None):
        self.type = MapType(int(map_type))
        self.key_size, self.value_size, self.max_entries = key_size, value_size, max_entries
        self.flags = map_flags
        self.map_extra = map_extra
        self.name = name
        self.numa_node = numa_node
        self.btf, self.btf_key_type_id, self.btf_value_type_id = btf, btf_key_type_id, btf_value_type_id
        self.btf_vmlinux_value_type_id = btf_vmlinux_value_type_id
        self.inner_map = inner_map
        self.frozen = False
        self._write_active = 0
        self.id = 0
        self._check_common()
        self.check_attr()
        self.record = value_record(btf, btf_value_type_id) if btf is not None else {}
        self.graph_roots = graph_roots(btf, [(btf_value_type_id, 0)]) if btf is not None and (
            "bpf_list_head" in self.record or "bpf_rb_root" in self.record) else {}
        if self.graph_roots is None:        # Linux refuses such a value's whole record
            self.record, self.graph_roots = {}, {}
        self.spin_lock_off = self.record.get("bpf_spin_lock", -1)
        # ncpus: a pinned per-CPU map opened again keeps the CPU count of its file
        self.ncpus = ncpus or cpus.num_cpus()
        self.elem_size = round_up(value_size, 8)
        self.lock = threading.RLock()
        #: the pin file behind the values when the map is shared with other processes
        self.shared: SharedValues | None = None
        # called as ``watcher(map, key)`` after every write from user space (key None: a
        # batch or a keyless map) -- how the pin store writes pinned maps through
        self.watchers: list[Callable[[Map, bytes | None], None]] = []
        # the BTF of the object that defined the map, even where the map itself has none
        # (ring buffers): where reader(type="struct event") looks the name up
        self.source_btf = btf
        self.key_conv = Converter(key_size, key_type, "key")
        self.value_conv = Converter(value_size, value_type, "value")
        self._regions: list[Region] = []
        self.alloc()
        self.id = map_idr.register(self)
        self._view = map_view(self.type)
        # without kernel BTF there is no view, but the map pointer stays inside its region
        self.handle = Region(MAP_VIEW_OFF + (self._view.size if self._view else 8),
                             f"map {self.id} {self.name or self.type.name.lower()}",
                             writable=False)
        self._write_handle()
        SHARED.add(self.handle)
        with _registry_lock:
            _by_addr[self.addr] = self
        self._finalizer = weakref.finalize(self, _release, self._regions, self.handle)

    # -- creation ---------------------------------------------------------------------

    #: map_flags this type accepts (besides which, EINVAL)
    create_flags: ClassVar[int] = 0
    #: every element (key and value) lives in :attr:`regions`, nowhere else: equal region
    #: bytes mean equal elements (what the pin store's sync relies on)
    elements_in_regions: ClassVar[bool] = False

    @property
    def regions(self) -> tuple[Region, ...]:
        """The memory the map's elements occupy."""
        return tuple(self._regions)

    def _check_common(self) -> None:
        if self.btf_vmlinux_value_type_id and (self.type is not MapType.STRUCT_OPS or
                                               self.btf_key_type_id or self.btf_value_type_id):
            raise map_error(E.EINVAL, "btf_vmlinux_value_type_id is for struct_ops maps alone")
        if self.name and not _name_ok(self.name):
            raise map_error(E.EINVAL, f"invalid map name {self.name!r}")
        if self.map_extra and self.type not in (MapType.BLOOM_FILTER, MapType.ARENA):
            raise map_error(E.EINVAL, "map_extra is only for bloom filters and arenas")
        f = self.flags
        if (f & U.BPF_F_RDONLY) and (f & U.BPF_F_WRONLY):
            raise map_error(E.EINVAL, "BPF_F_RDONLY and BPF_F_WRONLY together")
        if (f & U.BPF_F_RDONLY_PROG) and (f & U.BPF_F_WRONLY_PROG):
            raise map_error(E.EINVAL, "BPF_F_RDONLY_PROG and BPF_F_WRONLY_PROG together")
        if f & U.BPF_F_NUMA_NODE and self.numa_node != 0:
            raise map_error(E.EINVAL, f"NUMA node {self.numa_node} is not online")
        if f & ~self.create_flags:
            raise map_error(E.EINVAL, f"map flags {f & ~self.create_flags:#x} are not valid "
                                      f"for {self.type.name}")

    def check_attr(self) -> None:
        """The type's map_alloc_check: raise MapError for invalid attributes."""

    def alloc(self) -> None:
        """Allocate the map's memory (regions added with :meth:`_add_region`)."""

    def _add_region(self, size: int, what: str, *, shared: bool = True,
                    writable: bool = True, mappable: bool = False) -> Region:
        # mappable: mmap'd pages a pin can replace in place with a file other processes
        # map too (ebee.maps.shared), keeping every address programs already hold
        r = Region(anonymous(size) if mappable else size, f"{self.type.name.lower()} {what}",
                   writable=writable)
        self._regions.append(r)
        if shared:
            SHARED.add(r)
        return r

    def _drop_region(self, r: Region) -> None:
        SHARED.remove(r)
        if r in self._regions:
            self._regions.remove(r)

    def _write_handle(self, values: int | None = None, ctl: int | None = None) -> None:
        if values is not None:
            self._handle_ptrs = (values, ctl or 0)
        handle = getattr(self, "handle", None)
        if handle is None:
            return
        values, ctl = getattr(self, "_handle_ptrs", (0, 0))
        HANDLE.pack_into(handle.buf, 0, int(self.type), self.key_size, self.value_size,
                         self.max_entries, self.flags, self.id, self.elem_size,
                         self.ncpus if self.percpu else 1, values, ctl, self.ncpus)
        if self._view is not None:
            handle.buf[MAP_VIEW_OFF:MAP_VIEW_OFF + self._view.size] = self._view.pack(self)

    @property
    def addr(self) -> int:
        """The map pointer programs hold (address of the map's kernel view)."""
        return self.handle.start + MAP_VIEW_OFF

    def close(self) -> None:
        """Release the map's memory now (also happens when it is garbage-collected)."""
        if self.record:
            for fn in MAP_FREE:
                fn(self)
        map_idr.remove(self.id)
        with _registry_lock:
            _by_addr.pop(self.addr, None)
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return (f"<{type(self).__name__}{name} id={self.id} key_size={self.key_size} "
                f"value_size={self.value_size} max_entries={self.max_entries} flags={self.flags:#x}>")

    # -- conversions -----------------------------------------------------------------------

    @property
    def key_type(self):
        return self.key_conv.type

    @key_type.setter
    def key_type(self, t) -> None:
        self.key_conv.type = t

    @property
    def value_type(self):
        return self.value_conv.type

    @value_type.setter
    def value_type(self, t) -> None:
        self.value_conv.type = t

    def use_btf(self) -> "Map":
        """Keys and values as the Python values their BTF types describe (ints, records
        with attribute access, lists, strings for ``char[]``: :mod:`ebee.btf.pyvalues`) in
        lookups, iteration and ``items()``; updates take those or bytes.  Returns the map.
        A map without BTF for its key or value keeps bytes for that side."""
        if self.btf is not None:
            if self.btf_key_type_id and self.key_size:
                self.key_conv.type = BTFValue(self.btf, self.btf_key_type_id)
            if self.btf_value_type_id and self.value_size:
                self.value_conv.type = BTFValue(self.btf, self.btf_value_type_id)
        return self

    def _k(self, key: Any) -> bytes | None:
        if self.keyless:
            if key not in (None, b""):
                raise ValueError(f"{self.type.name} maps have no keys")
            return None
        return self.key_conv.pack(key)

    def _v(self, value: Any) -> bytes:
        """A Python value as the raw buffer the syscall takes (all CPUs for per-CPU maps)."""
        if not self.percpu:
            return self.value_conv.pack(value)
        es, vs = self.elem_size, self.value_size
        if isinstance(value, (list, tuple)):
            if len(value) != self.ncpus:
                raise ValueError(f"per-CPU map needs {self.ncpus} values, got {len(value)}")
            return b"".join(self.value_conv.pack(v) + bytes(es - vs) for v in value)
        if isinstance(value, (bytes, bytearray)) and len(value) == es * self.ncpus and es * self.ncpus != vs:
            return bytes(value)
        one = self.value_conv.pack(value) + bytes(es - vs)
        return one * self.ncpus   # one value for every CPU

    def _unv(self, raw: bytes) -> Any:
        if not self.percpu:
            return self.value_conv.unpack(raw)
        es, vs = self.elem_size, self.value_size
        return [self.value_conv.unpack(raw[i * es:i * es + vs]) for i in range(self.ncpus)]

    @property
    def value_buf_size(self) -> int:
        """Size of the raw value buffer the syscall side exchanges."""
        return self.elem_size * self.ncpus if self.percpu else self.value_size

    # -- syscall-side checks (kernel/bpf/syscall.c) ----------------------------------------

    def _check_read(self, flags: int) -> None:
        if flags & ~U.BPF_F_LOCK:
            raise map_error(E.EINVAL, f"invalid lookup flags {flags:#x}")
        if self.flags & U.BPF_F_WRONLY:
            raise map_error(E.EPERM, "map is write-only from user space")
        if flags & U.BPF_F_LOCK and self.spin_lock_off < 0:
            raise map_error(E.EINVAL, "BPF_F_LOCK needs a value with a bpf_spin_lock")

    def _check_write(self) -> None:
        if self.flags & U.BPF_F_RDONLY or self.frozen:
            raise map_error(E.EPERM, "map is frozen" if self.frozen else "map is read-only from user space")

    def _check_lock_flag(self, flags: int) -> None:
        if flags & U.BPF_F_LOCK and self.spin_lock_off < 0:
            raise map_error(E.EINVAL, "BPF_F_LOCK needs a value with a bpf_spin_lock")

    def _check_lookup_and_delete(self, flags: int) -> None:
        if flags & ~U.BPF_F_LOCK:
            raise map_error(E.EINVAL, f"invalid flags {flags:#x}")
        if self.flags & (U.BPF_F_RDONLY | U.BPF_F_WRONLY) or self.frozen:
            raise map_error(E.EPERM, "map is not both readable and writable from user space")
        if flags and self.type in (MapType.QUEUE, MapType.STACK):
            raise map_error(E.EINVAL, "queues and stacks take no flags")
        if flags & U.BPF_F_LOCK and self.spin_lock_off < 0:
            raise map_error(E.EINVAL, "BPF_F_LOCK needs a value with a bpf_spin_lock")

    # -- the public, Python-facing API ------------------------------------------------------

    def lookup(self, key: Any = None, flags: int = 0) -> Any:
        """BPF_MAP_LOOKUP_ELEM.  Raises MapKeyError (ENOENT) if there is no such element."""
        self._check_read(flags)
        with self.lock:
            return self._unv(self._sys_lookup(self._k(key), flags))

    def update(self, key: Any, value: Any = None, flags: int = U.BPF_ANY) -> None:
        """BPF_MAP_UPDATE_ELEM with BPF_ANY / BPF_NOEXIST / BPF_EXIST (| BPF_F_LOCK).

        For keyless maps (queue, stack, bloom filter) ``update(value, flags=...)``
        pushes ``value``.
        """
        if self.keyless and value is None:
            key, value = None, key
        self._check_write()
        self._check_lock_flag(flags)
        kb = self._k(key)
        with self.lock:
            self._sys_update(kb, self._sys_value(value), flags)
        self._changed(None if key is None else kb)

    def _sys_value(self, value: Any) -> Any:
        return self._v(value)

    push = update

    def delete(self, key: Any = None) -> None:
        """BPF_MAP_DELETE_ELEM."""
        self._check_write()
        kb = self._k(key)
        with self.lock:
            self._sys_delete(kb)
        self._changed(None if key is None else kb)

    def get_next_key(self, key: Any = None) -> Any:
        """BPF_MAP_GET_NEXT_KEY: the key after ``key`` (the first key for None or a
        missing key, as Linux does for hash tables); MapKeyError at the end."""
        if self.flags & U.BPF_F_WRONLY:
            raise map_error(E.EPERM, "map is write-only from user space")
        with self.lock:
            return self.key_conv.unpack(self._get_next_key(None if key is None else self._k(key)))

    def lookup_and_delete(self, key: Any = None, flags: int = 0) -> Any:
        """BPF_MAP_LOOKUP_AND_DELETE_ELEM (pop for queues and stacks)."""
        self._check_lookup_and_delete(flags)
        kb = self._k(key)
        with self.lock:
            out = self._unv(self._sys_lookup_and_delete(kb, flags))
        self._changed(None if key is None else kb)
        return out

    pop = lookup_and_delete

    def peek(self) -> Any:
        return self.lookup(None)

    def _changed(self, key: bytes | None) -> None:
        for watch in self.watchers:
            watch(self, key)

    def freeze(self) -> None:
        """BPF_MAP_FREEZE: user space can no longer write; programs still can."""
        if self.record:
            raise map_error(U.ENOTSUPP, "maps with special fields (spin lock, timer, kptr) cannot be frozen")
        if self.flags & U.BPF_F_RDONLY or self.frozen:
            # a frozen map's fd is read-only, so a second freeze fails the permission check
            raise map_error(E.EPERM, "map is already frozen" if self.frozen
                            else "map is read-only from user space")
        with self.lock:
            if self._write_active:
                raise map_error(E.EBUSY, "map is mapped writable")
            self.frozen = True

    # -- batches ------------------------------------------------------------------------

    def lookup_batch(self, in_batch: Any = None, count: int = 0, elem_flags: int = 0, *,
                     delete: bool = False) -> "Batch":
        """BPF_MAP_LOOKUP_BATCH (or _AND_DELETE_BATCH with ``delete=True``).

        Returns a :class:`Batch` (keys, values, out_batch); the end of the map is
        ``batch.done`` (Linux's ENOENT) -- other errors raise MapError.
        """
        if delete:
            if self.flags & (U.BPF_F_RDONLY | U.BPF_F_WRONLY) or self.frozen:
                raise map_error(E.EPERM, "map is not writable and readable from user space")
        elif self.flags & U.BPF_F_WRONLY:
            raise map_error(E.EPERM, "map is write-only from user space")
        with self.lock:
            keys, values, out, err = self._lookup_batch(in_batch, count, elem_flags, delete)
        if delete and keys:
            self._changed(None)
        if err not in (0, E.ENOENT):
            raise map_error(err)
        return Batch([self.key_conv.unpack(k) for k in keys], [self._unv(v) for v in values],
                     out, err == E.ENOENT)

    def lookup_and_delete_batch(self, in_batch: Any = None, count: int = 0,
                                elem_flags: int = 0) -> "Batch":
        return self.lookup_batch(in_batch, count, elem_flags, delete=True)

    def update_batch(self, keys: list, values: list, elem_flags: int = 0) -> int:
        """BPF_MAP_UPDATE_BATCH; returns how many were applied (raises on the first error,
        with ``.count`` on the exception)."""
        self._check_write()
        if len(keys) != len(values):
            raise ValueError("update_batch needs as many values as keys")
        ks = [self._k(k) for k in keys]
        vs = [self._sys_value(v) for v in values]
        with self.lock:
            n, err = self._update_batch(ks, vs, elem_flags)
        if n:
            self._changed(None)
        if err:
            exc = map_error(err)
            exc.count = n or 0
            raise exc
        return n

    def delete_batch(self, keys: list, elem_flags: int = 0) -> int:
        """BPF_MAP_DELETE_BATCH; returns how many were deleted (see update_batch)."""
        self._check_write()
        ks = [self._k(k) for k in keys]
        with self.lock:
            n, err = self._delete_batch(ks, elem_flags)
        if n:
            self._changed(None)
        if err:
            exc = map_error(err)
            exc.count = n or 0
            raise exc
        return n

    # raw (bytes-level) batch entry points, shared with the differential tests
    def _lookup_batch(self, in_batch, count, elem_flags, delete):
        return self.generic_lookup_batch(in_batch, count, elem_flags, delete)

    def _update_batch(self, keys, values, elem_flags):
        return self.generic_update_batch(keys, values, elem_flags)

    def _delete_batch(self, keys, elem_flags):
        return self.generic_delete_batch(keys, elem_flags)

    batch_ops: ClassVar[frozenset[str]] = frozenset()

    def generic_lookup_batch(self, in_batch, count, elem_flags, delete):
        """generic_map_lookup_batch(): walk with get_next_key, copy with lookup."""
        if "lookup" not in self.batch_ops or delete:
            return [], [], None, U.ENOTSUPP
        if elem_flags & ~U.BPF_F_LOCK:
            return [], [], None, E.EINVAL
        if elem_flags & U.BPF_F_LOCK and self.spin_lock_off < 0:
            return [], [], None, E.EINVAL
        if not count:
            return [], [], None, 0
        prev = None if in_batch is None else self._k(in_batch) if not isinstance(in_batch, bytes) \
            else in_batch
        keys, values, err = [], [], 0
        while len(keys) < count:
            try:
                k = self._get_next_key(prev)
            except MapError as e:
                err = e.errno
                break
            try:
                v = self._sys_lookup(k, elem_flags)
            except MapKeyError:
                prev = k          # vanished under us: Linux retries, then moves on
                continue
            keys.append(k)
            values.append(v)
            prev = k
            err = 0
        return keys, values, (keys[-1] if keys else None), err

    def generic_update_batch(self, keys, values, elem_flags):
        # (None, errno): refused before touching anything (Linux leaves count as it was)
        if "update" not in self.batch_ops:
            return None, U.ENOTSUPP
        if elem_flags & ~U.BPF_F_LOCK or (elem_flags & U.BPF_F_LOCK and self.spin_lock_off < 0):
            return None, E.EINVAL
        n = 0
        for k, v in zip(keys, values):
            try:
                self._sys_update(k, v, elem_flags)
            except MapError as e:
                return n, e.errno
            n += 1
        return n, 0

    def generic_delete_batch(self, keys, elem_flags):
        if "delete" not in self.batch_ops:
            return None, U.ENOTSUPP
        if elem_flags & ~U.BPF_F_LOCK:
            return None, E.EINVAL
        n = 0
        for k in keys:
            try:
                self._sys_delete(k)
            except MapError as e:
                return n, e.errno
            n += 1
        return n, 0

    # -- dict-like access -------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        return self.lookup(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value, U.BPF_ANY)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def __contains__(self, key: Any) -> bool:
        try:
            self.lookup(key)
        except MapKeyError:
            return False
        return True

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self.lookup(key)
        except MapKeyError:
            return default

    def _raw_keys(self) -> Iterator[bytes]:
        key = None
        while True:
            try:
                with self.lock:
                    key = self._get_next_key(key)
            except MapKeyError:
                return
            yield key

    def raw_keys(self) -> Iterator[bytes]:
        """Keys as raw bytes, in get_next_key order: the byte-level view bpftool uses."""
        return self._raw_keys()

    def raw_lookup(self, key: bytes, flags: int = 0) -> bytes:
        """BPF_MAP_LOOKUP_ELEM on raw key bytes, returning the raw value (every CPU's copy
        of a per-CPU map): the byte-level view bpftool uses.  MapKeyError if absent."""
        with self.lock:
            return self._sys_lookup(key, flags)

    def keys(self) -> Iterator[Any]:
        """Keys in get_next_key order."""
        for k in self._raw_keys():
            yield self.key_conv.unpack(k)

    __iter__ = keys

    def values(self) -> Iterator[Any]:
        for _, v in self.items():
            yield v

    def items(self) -> Iterator[tuple[Any, Any]]:
        for k in self._raw_keys():
            try:
                with self.lock:
                    raw = self._sys_lookup(k, 0)
            except MapKeyError:
                continue
            yield self.key_conv.unpack(k), self._unv(raw)

    def __len__(self) -> int:
        return sum(1 for _ in self._raw_keys())

    def clear(self) -> None:
        for k in list(self._raw_keys()):
            try:
                self.delete(k)
            except MapKeyError:
                pass

    # -- histograms (BCC's table methods) ----------------------------------------------------

    def print_log2_hist(self, val_type: str = "value", section_header: str = "Bucket ptr",
                        section_print_fn: Callable[[Any], str] | None = None,
                        bucket_fn: Callable[[Any], Any] | None = None,
                        strip_leading_zero: bool | None = None,
                        bucket_sort_fn: Callable[[list], Iterable] | None = None, *,
                        file: Any = None) -> None:
        """Print the map as a log2 histogram, exactly as BCC's ``print_log2_hist``: keys
        are slots (``bpf_log2l`` of the value), values counts.  A struct key
        ``{bucket, slot}`` prints one histogram per bucket under
        ``"<section_header> = <bucket>"`` (``section_print_fn(bucket)`` formats it,
        ``bucket_fn`` maps it first, ``bucket_sort_fn`` orders the buckets).  ``file``:
        where to print (stdout).  See :mod:`ebee.maps.hist`."""
        print(format_log2_hist(self, val_type, section_header, section_print_fn, bucket_fn,
                               strip_leading_zero, bucket_sort_fn), end="", file=file)

    def print_linear_hist(self, val_type: str = "value", section_header: str = "Bucket ptr",
                          section_print_fn: Callable[[Any], str] | None = None,
                          bucket_fn: Callable[[Any], Any] | None = None,
                          bucket_sort_fn: Callable[[list], Iterable] | None = None, *,
                          file: Any = None) -> None:
        """Print the map as a linear histogram (one row per slot 0..last used), exactly
        as BCC's ``print_linear_hist``; struct keys as in :meth:`print_log2_hist`."""
        print(format_linear_hist(self, val_type, section_header, section_print_fn,
                                 bucket_fn, bucket_sort_fn), end="", file=file)

    # -- operations a type implements (raw bytes) ---------------------------------------------

    def _sys_lookup(self, key: bytes | None, flags: int) -> bytes:
        raise map_error(U.ENOTSUPP)

    def _sys_update(self, key: bytes | None, value: Any, flags: int) -> None:
        raise map_error(U.ENOTSUPP)

    def _sys_delete(self, key: bytes | None) -> None:
        raise map_error(U.ENOTSUPP)

    def _get_next_key(self, key: bytes | None) -> bytes:
        raise map_error(U.ENOTSUPP)

    def _sys_lookup_and_delete(self, key: bytes | None, flags: int) -> bytes:
        raise map_error(U.ENOTSUPP)

    # -- program side (helpers call these; results as the helpers return them) ---------------

    def cpu_slot(self, cpu: int) -> int:
        """The CPU whose per-CPU state a program on virtual CPU ``cpu`` uses.

        A map keeps the CPU count it was created with, as Linux sizes per-CPU areas
        once.  A per-CPU map's values are per CPU: a program on a higher CPU would
        index past them (or share another CPU's slot and lose counts), so its run
        stops here, naming the fix.  Other maps keep per-CPU bookkeeping only (a
        hash table's spare elements, LRU free lists), which CPUs may share under the
        map's lock: a higher CPU uses ``cpu % ncpus``'s."""
        if 0 <= cpu < self.ncpus:
            return cpu
        if not self.percpu and cpu >= 0:
            return cpu % self.ncpus
        raise VMError(f"virtual CPU {cpu} has no slot in per-CPU map {self.id}"
                      f"{f' ({self.name})' if self.name else ''}: the map was created with "
                      f"{self.ncpus} CPUs; raise ebee.maps.set_num_cpus() before creating "
                      f"maps to run on more")

    def prog_lookup(self, key: bytes, cpu: int) -> int:
        """Address of the value for ``key`` as the program sees it (its CPU's slot), or 0."""
        raise MapError(U.ENOTSUPP, f"{self.type.name} maps do not support bpf_map_lookup_elem")

    def prog_update(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        return -U.ENOTSUPP

    def prog_delete(self, key: bytes, cpu: int) -> int:
        return -U.ENOTSUPP

    def prog_push(self, value: bytes, flags: int, cpu: int) -> int:
        return -U.ENOTSUPP

    def prog_pop(self, cpu: int) -> bytes | int:
        return -U.ENOTSUPP

    def prog_peek(self, cpu: int) -> bytes | int:
        return -U.ENOTSUPP

    def prog_lookup_percpu(self, key: bytes, cpu: int) -> int:
        return 0

    def for_each(self, cpu: int) -> Iterator[tuple[int, int]]:
        """(key address, value address) pairs for bpf_for_each_map_elem."""
        raise MapError(E.EINVAL, f"bpf_for_each_map_elem does not support {self.type.name}")

    def value_addr_of_first(self) -> int:
        """Address of value 0 (``map[id:N][0]``: BPF_PSEUDO_MAP_VALUE), for direct-value maps."""
        raise MapError(E.EINVAL, f"{self.type.name} maps have no direct value access")

    def mmap(self, writable: bool = True) -> "MappedValues":
        raise map_error(E.EINVAL, "only BPF_F_MMAPABLE arrays (and ring buffers) can be mapped")


class Batch:
    """What one batch lookup returned."""

    __slots__ = ("keys", "values", "out_batch", "done")

    def __init__(self, keys: list, values: list, out_batch: Any, done: bool):
        self.keys, self.values, self.out_batch, self.done = keys, values, out_batch, done

    def __iter__(self):
        return iter(zip(self.keys, self.values))

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"<Batch {len(self.keys)} elements out_batch={self.out_batch!r} done={self.done}>"


class MappedValues:
    """A ``memoryview`` of a mappable map's memory, as mmap(2) of the map fd gives.

    Use as a context manager; while a writable mapping is open the map cannot be
    frozen (EBUSY), as in Linux.
    """

    def __init__(self, m: Map, view: memoryview, writable: bool):
        self.map, self.view, self.writable = m, view, writable
        if writable:
            m._write_active += 1

    def close(self) -> None:
        if self.view is not None:
            if self.writable:
                self.map._write_active -= 1
            self.view.release()
            self.view = None

    def __enter__(self) -> memoryview:
        return self.view

    def __exit__(self, *exc) -> None:
        self.close()


def _release(regions: list[Region], handle: Region) -> None:
    for r in list(regions):
        SHARED.remove(r)
    regions.clear()
    SHARED.remove(handle)


# -------------------------------------------------------------------------------------
# special fields of a value (found by ebee.btf.record): what freeing them does
# -------------------------------------------------------------------------------------

#: What freeing a value does to a special field it holds (Linux's
#: bpf_obj_free_fields): ``fn(map, buffer, offset)``.  Registered by the module
#: that implements the field -- the timer helpers cancel and forget the timer.
FIELD_FREE: dict[str, Callable[[Any, Any, int], None]] = {}


#: ... and what freeing a whole map does: ``fn(map)`` for each hook.
MAP_FREE: list[Callable[[Any], None]] = []


def free_fields(m: Any, buf: Any, off: int) -> None:
    """Run the destructors of the special fields in the value at ``buf[off:]``."""
    for kind, at in getattr(m, "record", {}).items():
        fn = FIELD_FREE.get(kind)
        if fn is not None and at >= 0:
            fn(m, buf, off + at)
