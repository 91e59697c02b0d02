"""The load plan: what creating an object's maps means, decided once for both backends.

libbpf adjusts map definitions before ``BPF_MAP_CREATE`` (perf event arrays sized to
the CPU count, ring buffers to a power-of-two number of pages, BTF dropped for fd
maps), names them as the kernel keeps them, pins some, reuses compatible pins,
freezes read-only data and fills program arrays and map-in-maps.  :func:`plan_maps`
makes those decisions from the :class:`~ebee.loader.spec.ObjectSpec` alone; the
user-space loader (``ebee.session``) and the kernel backend (``ebee.kernel.obj``)
carry the same plan out, each with its own kind of map.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

from .. import uapi as U
from .mapdefs import MapKind, MapSpec
from .spec import ObjectSpec, internal_map_name, pin_path

T = U.MapType

#: map types whose BTF key/value ids libbpf drops (the kernel would refuse them)
NO_BTF_TYPES = frozenset((T.CGROUP_ARRAY, T.STACK_TRACE, T.ARRAY_OF_MAPS, T.HASH_OF_MAPS,
                          T.DEVMAP, T.DEVMAP_HASH, T.CPUMAP, T.XSKMAP, T.SOCKMAP, T.SOCKHASH,
                          T.QUEUE, T.STACK, T.ARENA, T.PROG_ARRAY))
#: map types whose elements exist from creation (arrays): their "empty" has elements
PREFILLED = frozenset((T.ARRAY, T.PERCPU_ARRAY))


@dataclass(frozen=True)
class MapPlan:
    name: str                  # the object's name for it (``obj.maps[name]``)
    spec: MapSpec              # fixed up as libbpf fixes it up before BPF_MAP_CREATE
    kernel_name: str           # the name the kernel keeps (BPF_OBJ_NAME_LEN - 1, sanitized)
    pin: str | None            # where it is pinned; a compatible pin there is reused
    read_only: bool            # .rodata/.kconfig: frozen, read-only to programs
    inner: "MapPlan | None"    # the inner-map template of a map-in-map

    @property
    def initial(self) -> bytes | None:
        """Value 0 at creation (global data); .kconfig is filled from the externs."""
        return self.spec.data if self.spec.data is not None and self.spec.value_size else None

    @property
    def prefilled(self) -> bool:
        return self.spec.type in PREFILLED


def ringbuf_size(n: int) -> int:
    """libbpf's adjust_ringbuf_sz: a power of two, at least a page."""
    if n == 0:
        return n
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    size = page
    while size < n:
        size <<= 1
    return size


def fixup(m: MapSpec, ncpus: int) -> MapSpec:
    """What libbpf (and cilium/ebpf) adjust before BPF_MAP_CREATE, as a new spec."""
    if m.type is T.PERF_EVENT_ARRAY:
        # __type(value, struct event) only documents the records (bpf2go); the map holds fds
        return replace(m, key_size=4 if m.key_size == 0 or m.btf_key_type_id else m.key_size,
                       value_size=4 if m.value_size == 0 or m.btf_value_type_id else m.value_size,
                       btf_key_type_id=0, btf_value_type_id=0,
                       max_entries=m.max_entries or ncpus)
    if m.type in (T.RINGBUF, T.USER_RINGBUF):
        if m.btf_value_type_id or m.btf_key_type_id:
            m = replace(m, key_size=0, value_size=0, btf_key_type_id=0, btf_value_type_id=0)
        return replace(m, max_entries=ringbuf_size(m.max_entries))
    if m.type in NO_BTF_TYPES:
        return replace(m, btf_key_type_id=0, btf_value_type_id=0)
    return m


def kernel_name(spec: ObjectSpec, m: MapSpec) -> str:
    """The name the kernel keeps: libbpf's ``<obj>.rodata`` for internal maps, else the
    map's own name with characters the kernel refuses replaced (15 characters)."""
    if m.is_internal:
        return internal_map_name(spec.name, m.name)
    return "".join(c if c.isalnum() or c in "._" else "_" for c in m.name)[:15]


def reuse_mismatch(existing, m: MapSpec) -> str:
    """Why an existing (pinned) map cannot stand in for ``m`` (libbpf's
    map_is_reuse_compat), or '' if it can."""
    for attr, have, want in (("type", existing.type, m.type),
                             ("key_size", existing.key_size, m.key_size),
                             ("value_size", existing.value_size, m.value_size),
                             ("max_entries", existing.max_entries, m.max_entries),
                             ("map_flags", existing.flags, m.flags),
                             ("map_extra", existing.map_extra, m.map_extra)):
        if int(have) != int(want):
            return f"{attr} {int(have)} != {int(want)}"
    return ""


def _plan(spec: ObjectSpec, name: str, m: MapSpec, pin_root: str, ncpus: int) -> MapPlan:
    fixed = fixup(m, ncpus)
    inner = _plan(spec, m.inner.name, m.inner, pin_root, ncpus) if m.inner is not None else None
    return MapPlan(name, fixed, kernel_name(spec, fixed), pin_path(spec, m, pin_root),
                   m.kind in (MapKind.RODATA, MapKind.KCONFIG), inner)


def plan_maps(spec: ObjectSpec, pin_root: str, ncpus: int) -> list[MapPlan]:
    """Every map of the object, in creation order, with the decisions made."""
    return [_plan(spec, name, m, pin_root, ncpus) for name, m in spec.maps.items()]
