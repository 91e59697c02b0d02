"""Map definitions found in an object: ``.maps`` (BTF), legacy ``maps``, global data.

A :class:`MapSpec` is a parsed definition, never a live map (cilium/ebpf's
MapSpec/Map split): the object turns specs into :class:`ebee.Map` instances
when it loads.  Three sources, as libbpf and iproute2 read them:

* ``SEC(".maps")`` -- one BTF ``VAR`` per map in the ``.maps`` DATASEC whose
  struct members are the ``__uint``/``__type``/``__array`` attributes
  (libbpf's ``parse_btf_map_def``);
* ``SEC("maps")`` (and old ``maps/NAME`` sections) -- fixed-layout structs:
  libbpf's ``struct bpf_map_def`` (16/20 bytes), the kernel samples' 28-byte
  form (``inner_map_idx``, ``numa_node``), and iproute2's ``struct bpf_elf_map``
  (``id``, ``pinning``, ``inner_id``, ``inner_idx``; 28 or 36 bytes) that tc and
  Cilium objects use;
* global data (``.data``, ``.rodata``, ``.bss``, ``.data.*``, ``.rodata.*``) and
  ``.kconfig`` -- single-element arrays holding the section's bytes.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Any

from .. import uapi as U
from ..errors import LoadError
from .elf import SHT_NOBITS, STT_SECTION, ElfObject, Section
from ..btf import Kind


class Pinning(enum.Enum):
    """Where a map is pinned when the object loads."""
    NONE = "none"
    BY_NAME = "by_name"          # libbpf LIBBPF_PIN_BY_NAME: <pin_root>/<name>
    OBJECT_NS = "object_ns"      # iproute2 PIN_OBJECT_NS: <pin_root>/tc/<object hash>/<name>
    GLOBAL_NS = "global_ns"      # iproute2 PIN_GLOBAL_NS: <pin_root>/tc/globals/<name>
    REPLACE = "replace"          # Cilium CILIUM_PIN_REPLACE: by name, an incompatible pin is replaced


class MapKind(enum.Enum):
    USER = "user"                # a map the program author defined
    DATA = "data"                # .data, .data.*
    RODATA = "rodata"            # .rodata, .rodata.*
    BSS = "bss"                  # .bss
    KCONFIG = "kconfig"          # .kconfig externs


LIBBPF_PIN_NONE, LIBBPF_PIN_BY_NAME = 0, 1
CILIUM_PIN_REPLACE = 1 << 4      # Cilium's loader (bpf/lib/common.h); libbpf refuses it
PIN_NONE, PIN_OBJECT_NS, PIN_GLOBAL_NS = 0, 1, 2   # iproute2's bpf_elf_map.pinning


@dataclass
class MapSpec:
    """A map definition parsed from an object file."""
    name: str
    type: U.MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    numa_node: int = 0
    map_extra: int = 0
    pinning: Pinning = Pinning.NONE
    inner: "MapSpec | None" = None
    kind: MapKind = MapKind.USER
    section: str = ""             # ELF section the definition (or data) lives in
    sec_index: int = 0
    sec_offset: int = 0           # offset of the definition in its section
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    data: bytes | None = None     # initial value of global-data / kconfig maps
    # initial contents from `values` (BTF maps) or iproute2 inner_idx: slot -> map or program name
    init_slots: dict[int, str] = field(default_factory=dict)
    legacy_id: int = 0            # iproute2 bpf_elf_map.id
    inner_id: int = 0             # iproute2 bpf_elf_map.inner_id
    inner_idx: int = 0            # iproute2 bpf_elf_map.inner_idx / samples' inner_map_idx
    inner_by_index: bool = False  # kernel samples: inner_idx names the template map by index
    # STRUCT_OPS maps (loader.struct_ops): the table, and the kernel's value type once loaded
    struct_ops: Any = None
    btf_vmlinux_value_type_id: int = 0
    # a global-data map resized so that its DATASEC no longer describes it: created
    # without BTF, as libbpf clears the map's BTF type ids (loader.resize)
    btf_cleared: bool = False

    @property
    def is_internal(self) -> bool:
        return self.kind is not MapKind.USER

    def describe(self) -> str:
        return (f"{self.name}: {self.type.name.lower()} key {self.key_size}B value "
                f"{self.value_size}B max_entries {self.max_entries} flags {self.flags:#x}")


def _err(msg: str):
    raise LoadError(msg)


def _map_type(v: int, name: str) -> U.MapType:
    try:
        return U.MapType(v)
    except ValueError:
        _err(f"map '{name}': unknown map type {v}")


# ---------------------------------------------------------------------------
# legacy "maps" sections

def legacy_maps(elf: ElfObject, sections: list[Section]) -> list[MapSpec]:
    """Definitions from ``maps`` / ``maps/NAME`` sections (fixed-layout structs)."""
    out: list[MapSpec] = []
    for sec in sections:
        syms = sorted((s for s in elf.symbols_in(sec.index)
                       if s.type != STT_SECTION and s.name), key=lambda s: s.value)
        if not syms:
            if sec.size:
                _err(f"section '{sec.name}' holds map definitions but no symbols name them")
            continue
        if sec.type == SHT_NOBITS:
            _err(f"map section '{sec.name}' has no contents (SHT_NOBITS)")
        data = elf.section_data(sec)
        if not data or len(data) % len(syms):
            _err(f"unable to determine map definition size: section '{sec.name}' has "
                 f"{len(syms)} maps in {len(data)} bytes")
        sz = len(data) // len(syms)
        if sz < 16 or sz % 4:
            _err(f"section '{sec.name}': map definition size {sz} is not a bpf_map_def "
                 f"(at least 16 bytes, a multiple of 4)")
        rows = []
        for s in syms:
            if s.value % 4 or s.value + sz > len(data):
                _err(f"map '{s.name}': definition at offset {s.value} of '{sec.name}' is "
                     f"misaligned or runs past the section")
            rows.append((s, struct.unpack_from(f"<{sz // 4}I", data, s.value)))
        layout = _legacy_layout(sz, [r for _, r in rows])
        for s, r in rows:
            out.append(_legacy_spec(s.name, sec, s.value, r, layout))
    return out


def _legacy_layout(sz: int, rows: list[tuple[int, ...]]) -> str:
    """Which struct a section of ``sz``-byte definitions holds."""
    if sz <= 20:
        return "libbpf"
    if sz == 28:
        # bpf_load.c's {..., inner_map_idx, numa_node} or iproute2's {..., id, pinning}:
        # numa_node only means something with BPF_F_NUMA_NODE, pinning is 0..2.
        for r in rows:
            if r[6] and not r[4] & U.BPF_F_NUMA_NODE:
                return "iproute2"
        return "samples"
    return "iproute2"


def _legacy_spec(name: str, sec: Section, off: int, r: tuple[int, ...], layout: str) -> MapSpec:
    spec = MapSpec(name, _map_type(r[0], name), r[1], r[2], r[3], r[4] if len(r) > 4 else 0,
                   section=sec.name, sec_index=sec.index, sec_offset=off)
    if layout == "samples":
        spec.inner_idx, spec.numa_node = r[5], r[6]
        spec.inner_by_index = spec.type in (U.MapType.ARRAY_OF_MAPS, U.MapType.HASH_OF_MAPS)
        extra = r[7:]
    elif layout == "iproute2":
        spec.legacy_id, pin = r[5], r[6]
        spec.inner_id = r[7] if len(r) > 7 else 0
        spec.inner_idx = r[8] if len(r) > 8 else 0
        try:
            spec.pinning = {PIN_NONE: Pinning.NONE, PIN_OBJECT_NS: Pinning.OBJECT_NS,
                            PIN_GLOBAL_NS: Pinning.GLOBAL_NS}[pin]
        except KeyError:
            _err(f"map '{name}': unknown pinning type {pin} (tc knows 0 none, "
                 f"1 object namespace, 2 global namespace)")
        extra = r[9:]
    else:
        extra = ()
    if any(extra):
        _err(f"maps section '{sec.name}': map '{name}' has unrecognized, non-zero options")
    if spec.type in _MIM and spec.value_size == 0:
        spec.value_size = 4    # bpf_create_map_in_map() sets it: the value is a map fd
    return spec


_MIM = (U.MapType.ARRAY_OF_MAPS, U.MapType.HASH_OF_MAPS)


def resolve_legacy_inner(specs: list[MapSpec]) -> None:
    """Wire up map-in-map templates and iproute2 prepopulation between legacy maps."""
    by_id = {s.legacy_id: s for s in specs if s.legacy_id}
    mim = (U.MapType.ARRAY_OF_MAPS, U.MapType.HASH_OF_MAPS)
    for s in specs:
        if s.inner_by_index:
            if not 0 <= s.inner_idx < len(specs) or specs[s.inner_idx] is s:
                _err(f"map '{s.name}': inner_map_idx {s.inner_idx} does not name another map")
            s.inner = _template(specs[s.inner_idx])
        elif s.type in mim and s.inner_id:
            t = by_id.get(s.inner_id)
            if t is None or t is s:
                _err(f"map '{s.name}': inner_id {s.inner_id} matches no map's id")
            s.inner = _template(t)
        elif s.inner_id and s.type not in mim:
            # iproute2: this map goes into slot inner_idx of the map whose id is inner_id
            outer = by_id.get(s.inner_id)
            if outer is None or outer.type not in mim:
                _err(f"map '{s.name}': inner_id {s.inner_id} names no map-in-map")
            outer.init_slots[s.inner_idx] = s.name
    for s in specs:
        if s.type in mim and s.inner is None:
            _err(f"map '{s.name}': {s.type.name.lower()} needs an inner map definition "
                 f"(inner_map_idx / inner_id)")


def _template(t: MapSpec) -> MapSpec:
    from dataclasses import replace
    return replace(t, pinning=Pinning.NONE, init_slots={}, inner=t.inner)


# ---------------------------------------------------------------------------
# BTF-defined maps (SEC(".maps"))

_MIM = (U.MapType.ARRAY_OF_MAPS, U.MapType.HASH_OF_MAPS)


def btf_maps(btf, sec: Section, datasec, var_offsets: dict[str, tuple[int, int, int]]) -> list[MapSpec]:
    """Definitions from the ``.maps`` DATASEC.  ``var_offsets``: name -> (type_id, off, size)."""
    out: list[MapSpec] = []
    for vname, (vtid, off, vsize) in var_offsets.items():
        var = btf[vtid]
        if var.kind is not Kind.VAR:
            _err(f"map #{len(out)}: unexpected var kind {var.kind.name.lower()}")
        name = var.name
        if int(var.linkage) not in (0, 1):  # static or global allocated
            _err(f"map '{name}': unsupported map linkage {getattr(var.linkage, 'name', var.linkage)}.")
        def_t = btf.resolve(var.type_id)
        if def_t.kind is not Kind.STRUCT:
            _err(f"map '{name}': unexpected def kind {def_t.kind.name.lower()}.")
        if def_t.size > vsize:
            _err(f"map '{name}': invalid def size.")
        spec = MapSpec(name, U.MapType.UNSPEC, 0, 0, 0, section=sec.name, sec_index=sec.index,
                       sec_offset=off)
        _parse_btf_def(btf, name, def_t, spec, is_inner=False)
        out.append(spec)
    return out


def _field_long(btf, map_name: str, m) -> int:
    """libbpf's get_map_field_long: ``__uint`` (a pointer to an array) or ``__ulong``
    (an enum, or enum64, of one value: arena addresses do not fit in an array size)."""
    t = btf.resolve(m.type_id)
    if t.kind is Kind.PTR:
        return _field_int(btf, map_name, m)
    if t.kind not in (Kind.ENUM, Kind.ENUM64):
        _err(f"map '{map_name}': attr '{m.name}': expected ENUM or ENUM64, got "
             f"{t.kind.name.lower()}.")
    if len(t.values) != 1:
        _err(f"map '{map_name}': attr '{m.name}': invalid __ulong")
    return t.values[0].value & ((1 << 64) - 1)


def _field_int(btf, map_name: str, m) -> int:
    t = btf.resolve(m.type_id)
    if t.kind is not Kind.PTR:
        _err(f"map '{map_name}': attr '{m.name}': expected PTR, got {t.kind.name.lower()}.")
    a = btf.resolve(t.type_id)
    if a.kind is not Kind.ARRAY:
        _err(f"map '{map_name}': attr '{m.name}': type [{t.type_id}] is not an array.")
    return a.nelems


def _parse_btf_def(btf, map_name: str, def_t, spec: MapSpec, *, is_inner: bool) -> None:
    key_size = value_size = None
    members = def_t.members
    for i, m in enumerate(members):
        n = m.name
        if not n:
            _err(f"map '{map_name}': invalid field #{i}.")
        if n == "type":
            spec.type = _map_type(_field_int(btf, map_name, m), map_name)
        elif n == "max_entries":
            spec.max_entries = _field_int(btf, map_name, m)
        elif n == "map_flags":
            spec.flags = _field_int(btf, map_name, m)
        elif n == "numa_node":
            spec.numa_node = _field_int(btf, map_name, m)
        elif n == "map_extra":
            spec.map_extra = _field_long(btf, map_name, m)
        elif n == "key_size":
            sz = _field_int(btf, map_name, m)
            if key_size is not None and key_size != sz:
                _err(f"map '{map_name}': conflicting key size {key_size} != {sz}.")
            key_size = sz
        elif n == "value_size":
            sz = _field_int(btf, map_name, m)
            if value_size is not None and value_size != sz:
                _err(f"map '{map_name}': conflicting value size {value_size} != {sz}.")
            value_size = sz
        elif n in ("key", "value"):
            t = btf.resolve(m.type_id) if m.type_id else None
            if t is None or t.kind is not Kind.PTR:
                _err(f"map '{map_name}': {n} spec is not PTR: "
                     f"{t.kind.name.lower() if t else 'void'}.")
            sz = btf.sizeof(t.type_id)
            cur = key_size if n == "key" else value_size
            if cur is not None and cur != sz:
                _err(f"map '{map_name}': conflicting {n} size {cur} != {sz}.")
            if n == "key":
                key_size, spec.btf_key_type_id = sz, t.type_id
            else:
                value_size, spec.btf_value_type_id = sz, t.type_id
        elif n == "values":
            if is_inner:
                _err(f"map '{map_name}': multi-level inner maps not supported.")
            if i != len(members) - 1:
                _err(f"map '{map_name}': '{n}' member should be last.")
            a = btf.resolve(m.type_id)
            if a.kind is not Kind.ARRAY or a.nelems:
                _err(f"map '{map_name}': should be map-in-map or prog-array.")
            p = btf.resolve(a.type_id)
            if p.kind is not Kind.PTR:
                _err(f"map '{map_name}': {n} elem type {p.kind.name.lower()} is not a pointer.")
            target = btf.resolve(p.type_id)
            if target.kind is Kind.FUNC_PROTO:
                if spec.type is not U.MapType.PROG_ARRAY:
                    _err(f"map '{map_name}': should be map-in-map or prog-array.")
                value_size = 4 if value_size is None else value_size
            elif target.kind is Kind.STRUCT:
                if spec.type not in _MIM:
                    _err(f"map '{map_name}': should be map-in-map or prog-array.")
                inner = MapSpec(f"{map_name}.inner", U.MapType.UNSPEC, 0, 0, 0,
                                section=spec.section, sec_index=spec.sec_index)
                _parse_btf_def(btf, inner.name, target, inner, is_inner=True)
                spec.inner = inner
                if value_size is not None and value_size != 4:
                    _err(f"map '{map_name}': conflicting value size {value_size} != 4.")
                value_size = 4
            else:
                _err(f"map '{map_name}': map-in-map inner def is of unexpected kind "
                     f"{target.kind.name.lower()}.")
        elif n == "pinning":
            if is_inner:
                _err(f"map '{map_name}': inner def can't be pinned.")
            v = _field_int(btf, map_name, m)
            if v not in (LIBBPF_PIN_NONE, LIBBPF_PIN_BY_NAME, CILIUM_PIN_REPLACE):
                _err(f"map '{map_name}': invalid pinning value {v}.")
            spec.pinning = {LIBBPF_PIN_NONE: Pinning.NONE, LIBBPF_PIN_BY_NAME: Pinning.BY_NAME,
                            CILIUM_PIN_REPLACE: Pinning.REPLACE}[v]
        else:
            _err(f"map '{map_name}': unknown field '{n}'.")
    if spec.type is U.MapType.UNSPEC:
        _err(f"map '{map_name}': map type isn't specified.")
    spec.key_size = key_size or 0
    spec.value_size = value_size or 0
    if spec.type in _MIM and spec.inner is None:
        _err(f"map '{map_name}': map-in-map needs an inner map definition ('values').")
