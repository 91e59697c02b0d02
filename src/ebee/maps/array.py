"""Arrays: ARRAY, PERCPU_ARRAY and the fd arrays (PROG_ARRAY, CGROUP_ARRAY, ARRAY_OF_MAPS).

ARRAY values are contiguous in one region with Linux's element size
(``round_up(value_size, 8)``), so ``values + index * elem_size`` is the
value's address -- the inline lookup Linux's ``array_map_gen_lookup`` emits,
and what a JIT can emit too.  PERCPU_ARRAY keeps each element's CPU slots
together: ``values + (index * ncpus + cpu) * elem_size``.
"""
from __future__ import annotations

import errno as E
import struct
from typing import Any, Iterator

from .. import uapi as U
from ..isa import Instruction
from ..runtime.program import RawProgram, Runnable
from ..uapi import MapType
from .base import ACCESS_MASK, MappedValues, Map, round_up
from .errors import map_error
from .base import by_id

_U32 = struct.Struct("<I")

MAX_MAP_BYTES = 1 << 34      # beyond this ebee answers ENOMEM, as a kernel would run out


def _index(key: bytes) -> int:
    return _U32.unpack(key)[0]


class _ArrayBase(Map):
    create_flags = U.BPF_F_NUMA_NODE | U.BPF_F_MMAPABLE | ACCESS_MASK | U.BPF_F_PRESERVE_ELEMS | \
        U.BPF_F_INNER_MAP

    def check_attr(self) -> None:
        # array_map_alloc_check()
        if self.max_entries == 0 or self.key_size != 4 or self.value_size == 0:
            raise map_error(E.EINVAL, "arrays need key_size 4, value_size > 0, max_entries > 0")
        if self.percpu and self.flags & U.BPF_F_NUMA_NODE:
            raise map_error(E.EINVAL, "per-CPU arrays take no NUMA node")
        if self.type is not MapType.ARRAY and self.flags & (U.BPF_F_MMAPABLE | U.BPF_F_INNER_MAP):
            raise map_error(E.EINVAL, "BPF_F_MMAPABLE and BPF_F_INNER_MAP are for plain arrays")
        if self.type is not MapType.PERF_EVENT_ARRAY and self.flags & U.BPF_F_PRESERVE_ELEMS:
            raise map_error(E.EINVAL, "BPF_F_PRESERVE_ELEMS is for perf event arrays")
        if self.value_size > U.INT_MAX:
            raise map_error(E.E2BIG)
        if self.percpu and round_up(self.value_size, 8) > U.PCPU_MIN_UNIT_SIZE:
            raise map_error(E.E2BIG, f"per-CPU values are limited to {U.PCPU_MIN_UNIT_SIZE} bytes")

    def _get_next_key(self, key: bytes | None) -> bytes:
        # array_map_get_next_key(): a missing or out-of-range key restarts at 0
        idx = _index(key) if key is not None else self.max_entries
        if idx >= self.max_entries:
            return _U32.pack(0)
        if idx == self.max_entries - 1:
            raise map_error(E.ENOENT)
        return _U32.pack(idx + 1)


class ArrayMap(_ArrayBase):
    """BPF_MAP_TYPE_ARRAY (and, with ``percpu``, PERCPU_ARRAY)."""

    map_type = MapType.ARRAY
    batch_ops = frozenset({"lookup", "update"})
    elements_in_regions = True

    def alloc(self) -> None:
        stride = self.elem_size * (self.ncpus if self.percpu else 1)
        total = stride * self.max_entries
        if total > MAX_MAP_BYTES:
            raise map_error(E.ENOMEM, f"{total} bytes of values")
        self.stride = stride
        self.value_region = self._add_region(total, "values", mappable=True,
                                             writable=not self.flags & U.BPF_F_RDONLY_PROG)
        self.buf = self.value_region.buf
        self._write_handle(self.value_region.start)

    # -- syscall side -----------------------------------------------------------------

    def _sys_lookup(self, key: bytes, flags: int) -> bytes:
        idx = _index(key)
        if idx >= self.max_entries:
            raise map_error(E.ENOENT)
        off = idx * self.stride
        if self.shared is not None:
            with self.shared:       # no half-written value of another process
                raw = self.buf[off:off + self.stride]
        else:
            raw = self.buf[off:off + self.stride]
        if self.percpu:
            return bytes(raw)
        out = bytearray(raw[:self.value_size])
        if flags & U.BPF_F_LOCK or self.spin_lock_off >= 0:
            # copy_map_value_locked / check_and_init_map_value: the lock reads as zero
            out[self.spin_lock_off:self.spin_lock_off + 4] = bytes(4)
        return bytes(out)

    def _check_update(self, idx: int, flags: int) -> None:
        if self.percpu:
            if flags > U.BPF_EXIST:
                raise map_error(E.EINVAL, f"invalid update flags {flags:#x}")
        elif (flags & ~U.BPF_F_LOCK) > U.BPF_EXIST:
            raise map_error(E.EINVAL, f"invalid update flags {flags:#x}")
        if idx >= self.max_entries:
            raise map_error(E.E2BIG, f"index {idx} is beyond max_entries {self.max_entries}")
        if flags & U.BPF_NOEXIST:
            raise map_error(E.EEXIST, "array elements always exist")
        if flags & U.BPF_F_LOCK and self.spin_lock_off < 0:
            raise map_error(E.EINVAL)

    def _copy_in(self, off: int, value: bytes) -> None:
        lo = self.spin_lock_off
        if self.shared is not None:
            with self.shared:
                if lo >= 0:
                    cur = self.buf[off + lo:off + lo + 4]
                    value = value[:lo] + cur + value[lo + 4:self.value_size]
                self.shared.write(off, value[:self.value_size])
            return
        if lo >= 0:   # copy_map_value(): special fields are not overwritten
            self.buf[off:off + lo] = value[:lo]
            self.buf[off + lo + 4:off + self.value_size] = value[lo + 4:self.value_size]
        else:
            self.buf[off:off + self.value_size] = value[:self.value_size]

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        idx = _index(key)
        self._check_update(idx, flags)
        off = idx * self.stride
        if self.percpu:
            es, vs = self.elem_size, self.value_size
            if self.shared is not None:
                with self.shared:   # every CPU's value in one journaled step
                    raw = bytearray(self.buf[off:off + self.stride])
                    for c in range(self.ncpus):
                        raw[c * es:c * es + vs] = value[c * es:c * es + vs]
                    self.shared.write(off, bytes(raw))
                return
            for c in range(self.ncpus):
                self.buf[off + c * es:off + c * es + vs] = value[c * es:c * es + vs]
        else:
            self._copy_in(off, value)

    def _sys_delete(self, key: bytes) -> None:
        raise map_error(E.EINVAL, "array elements cannot be deleted")

    def _sys_lookup_and_delete(self, key, flags) -> bytes:
        raise map_error(U.ENOTSUPP)

    # -- program side ------------------------------------------------------------------

    def prog_lookup(self, key: bytes, cpu: int) -> int:
        idx = _index(key)
        if idx >= self.max_entries:
            return 0
        off = idx * self.stride + (cpu * self.elem_size if self.percpu else 0)
        return self.value_region.start + off

    def prog_lookup_percpu(self, key: bytes, cpu: int) -> int:
        if not self.percpu:
            return 0
        if cpu >= self.ncpus:
            return 0
        return self.prog_lookup(key, cpu)

    def prog_update(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        idx = _index(key)
        try:
            self._check_update(idx, flags)
        except OSError as e:
            return -e.errno
        off = idx * self.stride
        if self.percpu:
            off += cpu * self.elem_size
            if self.shared is not None:
                with self.shared:
                    self.shared.write(off, value[:self.value_size])
            else:
                self.buf[off:off + self.value_size] = value[:self.value_size]
        else:
            self._copy_in(off, value)
        return 0

    def prog_delete(self, key: bytes, cpu: int) -> int:
        return -E.EINVAL

    def for_each(self, cpu: int) -> Iterator[tuple[bytes, int]]:
        for i in range(self.max_entries):
            off = i * self.stride + (cpu * self.elem_size if self.percpu else 0)
            yield _U32.pack(i), self.value_region.start + off

    def value_addr_of_first(self) -> int:
        if self.percpu:
            return super().value_addr_of_first()
        return self.value_region.start

    def mmap(self, writable: bool = True) -> MappedValues:
        """The values as one writable ``memoryview`` (BPF_F_MMAPABLE arrays only)."""
        if not self.flags & U.BPF_F_MMAPABLE:
            raise map_error(E.EINVAL, "the array was not created with BPF_F_MMAPABLE")
        if writable and self.frozen:
            raise map_error(E.EPERM, "a frozen map cannot be mapped writable")
        view = memoryview(self.buf)
        return MappedValues(self, view if writable else view.toreadonly(), writable)


class PercpuArrayMap(ArrayMap):
    map_type = MapType.PERCPU_ARRAY
    percpu = True


# ---------------------------------------------------------------------------------------
class SparseSlots:
    """``n`` slots, ``None`` where empty, holding memory only for the filled ones: an fd
    array may declare up to 2^32 entries (Linux allocates a pointer for each; a mutated
    object asking for billions must not cost gigabytes before any slot is used)."""

    __slots__ = ("n", "_filled")

    def __init__(self, n: int):
        self.n = n
        self._filled: dict[int, Any] = {}

    def __len__(self) -> int:
        return self.n

    def _check(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(f"slot {i} of {self.n}")
        return i

    def __getitem__(self, i: int) -> Any:
        return self._filled.get(self._check(i))

    def __setitem__(self, i: int, value: Any) -> None:
        if value is None:
            self._filled.pop(self._check(i), None)
        else:
            self._filled[self._check(i)] = value

    def filled(self) -> list[Any]:
        """The objects in the filled slots, by index."""
        return [self._filled[i] for i in sorted(self._filled)]


# fd arrays: slots hold objects (programs, maps, cgroups, perf rings)
# ---------------------------------------------------------------------------------------

class FdArray(_ArrayBase):
    """The common part of arrays whose values are references to kernel objects.

    User space stores the object itself (a program, a map, ...) where Linux takes
    a file descriptor; ``m[i]`` returns it.
    """

    def check_attr(self) -> None:
        # fd_array_map_alloc_check()
        if self.value_size != 4:
            raise map_error(E.EINVAL, "fd arrays need value_size 4")
        if self.flags & (U.BPF_F_RDONLY_PROG | U.BPF_F_WRONLY_PROG):
            raise map_error(E.EINVAL, "fd arrays take no program access flags")
        super().check_attr()

    def alloc(self) -> None:
        self.slots = SparseSlots(self.max_entries)

    def _sys_value(self, value: Any) -> Any:
        return self.check_value(value)

    def check_value(self, value: Any) -> Any:
        """map_fd_get_ptr(): validate what user space stores (raise MapError)."""
        return value

    def _unv(self, raw: Any) -> Any:
        return raw

    def _sys_lookup(self, key: bytes, flags: int) -> Any:
        idx = _index(key)
        obj = self.slots[idx] if idx < self.max_entries else None
        if obj is None:
            raise map_error(E.ENOENT)
        return obj

    def _sys_update(self, key: bytes, value: Any, flags: int) -> None:
        # bpf_fd_array_map_update_elem()
        if flags != U.BPF_ANY:
            raise map_error(E.EINVAL, "fd arrays take only BPF_ANY")
        idx = _index(key)
        if idx >= self.max_entries:
            raise map_error(E.E2BIG)
        self.slots[idx] = value

    def _sys_delete(self, key: bytes) -> None:
        idx = _index(key)
        if idx >= self.max_entries:
            raise map_error(E.E2BIG)
        if self.slots[idx] is None:
            raise map_error(E.ENOENT)
        self.slots[idx] = None

    def prog_delete(self, key: bytes, cpu: int) -> int:
        return -E.EINVAL   # fd arrays cannot be changed from programs


class ProgArrayMap(FdArray):
    """BPF_MAP_TYPE_PROG_ARRAY: tail-call targets.  A slot holds a program: a
    :class:`~ebee.runtime.Runnable` (a loaded ``Program``) or a list of Instructions,
    kept as a :class:`~ebee.runtime.RawProgram`."""

    map_type = MapType.PROG_ARRAY

    def check_value(self, value: Any) -> Any:
        if isinstance(value, Runnable):
            return value
        if isinstance(value, (list, tuple)) and value and all(isinstance(i, Instruction)
                                                              for i in value):
            return RawProgram(value)
        raise map_error(E.EINVAL, f"a program array slot takes a program, not {type(value).__name__}")

    def program(self, index: int) -> Runnable | None:
        return self.slots[index] if index < self.max_entries else None


class CgroupArrayMap(FdArray):
    """BPF_MAP_TYPE_CGROUP_ARRAY: slots hold cgroup ids (ints) or paths (str)."""

    map_type = MapType.CGROUP_ARRAY

    def check_value(self, value: Any) -> Any:
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            return value
        raise map_error(E.EBADF, "a cgroup array slot takes a cgroup id or path")


def meta_equal(template: Map, inner: Map) -> bool:
    """bpf_map_meta_equal(): can ``inner`` stand where ``template`` was declared?"""
    return (template.type == inner.type and template.key_size == inner.key_size
            and template.value_size == inner.value_size and template.flags == inner.flags
            and (template.max_entries == inner.max_entries or bool(template.flags & U.BPF_F_INNER_MAP))
            and template.record == inner.record)


def check_inner_template(m: Map) -> None:
    inner = m.inner_map
    if inner is None:
        raise map_error(E.EINVAL, "map-in-map needs an inner map template")
    if isinstance(inner, MapInMapMixin):
        raise map_error(E.EINVAL, "map-in-map nesting is limited to one level")
    if inner.type in (MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY,
                      MapType.STACK_TRACE, MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE):
        raise map_error(U.ENOTSUPP, f"{inner.type.name} cannot be an inner map")


class MapInMapMixin:
    """Values are maps compatible with the inner map template; programs get the map pointer."""

    def check_value(self, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = by_id(value)
        if not isinstance(value, Map):
            raise map_error(E.EBADF, f"a map-in-map slot takes a map, not {type(value).__name__}")
        if not meta_equal(self.inner_map, value):
            raise map_error(E.EINVAL, f"map {value.id} does not match the inner map template")
        return value


class ArrayOfMaps(MapInMapMixin, FdArray):
    map_type = MapType.ARRAY_OF_MAPS

    def check_attr(self) -> None:
        if self.flags & U.BPF_F_INNER_MAP:
            raise map_error(E.EINVAL)
        super().check_attr()
        check_inner_template(self)

    def prog_lookup(self, key: bytes, cpu: int) -> int:
        idx = _index(key)
        obj = self.slots[idx] if idx < self.max_entries else None
        return obj.addr if obj is not None else 0
