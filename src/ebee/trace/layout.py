"""What compiled programs and user space agree on: map layouts and event records.

Every map a script uses gets a :class:`MapSpec` (its BPF map type, key and
value layout); every asynchronous action (``printf``, ``print``, ``clear``,
``exit`` ...) an :class:`Event` whose index is the u64 id at the start of the
ring-buffer record the program writes.  The generator fills these in; the
runtime reads the maps and decodes the records with the same layouts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..uapi import MapType
from .semantic import MapInfo
from .types import Type, tuple_layout

MAX_MAP_KEYS = 4096             # BPFTRACE_MAP_KEYS_MAX
RINGBUF_SIZE = 1 << 24          # the event ring in the kernel (bytes, a power of two pages)
USER_RINGBUF_SIZE = 1 << 20     # ... and in ebee's runtime, drained after every event
JOIN_ARGNUM = 16                # bpftrace's join(): at most 16 arguments ...
JOIN_ARGSIZE = 1024             # ... of at most 1024 bytes each
EVENTS_MAP = "__events"
LOST_MAP = "__lost"             # one u64: records the ring had no room for


def round8(n: int) -> int:
    return (n + 7) // 8 * 8


def slot_size(t: Type) -> int:
    """Bytes a value of ``t`` takes in a map key, map value or event record."""
    if t.kind in ("int", "ptr", "ksym", "kstack", "probe", "timestamp", "username", "none"):
        return 8
    return round8(t.size)


@dataclass
class MapSpec:
    name: str
    map_type: MapType
    key_size: int
    value_size: int
    max_entries: int = MAX_MAP_KEYS
    info: MapInfo | None = None
    key_parts: list[tuple[int, Type]] = field(default_factory=list)
    bucketed: bool = False       # hist/lhist: the bucket index is the key's last u64

    @property
    def kernel_name(self) -> str:
        return ("AT_" + self.name[1:] if self.name.startswith("@") else self.name)[:15]

    @property
    def value(self) -> Type | None:
        return self.info.value if self.info is not None else None

    @property
    def percpu(self) -> bool:
        return self.map_type in (MapType.PERCPU_HASH, MapType.PERCPU_ARRAY)


def map_spec(info: MapInfo) -> MapSpec:
    keys = info.keys or []
    parts = []
    pos = 0
    for k in keys:
        parts.append((pos, k))
        pos += slot_size(k)
    value = info.value
    bucketed = value is not None and value.kind in ("hist", "lhist")
    key_size = max(8, pos + (8 if bucketed else 0))
    if value is None:
        vsize = 8
    elif value.is_aggregate:
        vsize = value.size
    else:
        vsize = slot_size(value)
    mtype = MapType.PERCPU_HASH if info.percpu else MapType.HASH
    return MapSpec(info.name, mtype, key_size, vsize, MAX_MAP_KEYS, info, parts, bucketed)


@dataclass
class Event:
    """One asynchronous action's record: ``u64 id`` then the arguments."""
    kind: str                      # printf system cat print_value print_map clear zero exit
    #                                time join
    fmt: str = ""
    args: list[tuple[int, Type]] = field(default_factory=list)
    size: int = 8
    map: str = ""
    top: int = 0
    div: int = 0


def args_layout(types: list[Type]) -> tuple[list[tuple[int, Type]], int]:
    """Arguments after the 8-byte id, each in its slot (ints as 8 bytes)."""
    widened = [t if t.kind not in ("int", "ptr") else Type("int", 8, t.signed) for t in types]
    sized = [Type(t.kind, slot_size(t), t.signed, t.elem, t.count, t.elems, t.name, t.btf_id,
                  t.user, t.ctx, t.params) for t in widened]
    offs, size = tuple_layout(sized)
    return [(8 + o, t) for o, t in zip(offs, types)], 8 + (size if types else 0)


@dataclass
class Resources:
    maps: dict[str, MapSpec] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    probes: list[str] = field(default_factory=list)
    strftime: list[str] = field(default_factory=list)
    stack_maps: dict[tuple[str, str, int], str] = field(default_factory=dict)
    needs_events: bool = False
    needs_lost: bool = False

    def event(self, ev: Event) -> int:
        self.events.append(ev)
        self.needs_events = True
        return len(self.events) - 1

    def probe_id(self, name: str) -> int:
        if name not in self.probes:
            self.probes.append(name)
        return self.probes.index(name)

    def strftime_id(self, fmt: str) -> int:
        if fmt not in self.strftime:
            self.strftime.append(fmt)
        return self.strftime.index(fmt)

    def stack_map(self, kind: str, mode: str, limit: int) -> str:
        key = (kind, mode, limit)
        if key not in self.stack_maps:
            name = f"__stack{len(self.stack_maps)}"
            self.stack_maps[key] = name
            self.maps[name] = MapSpec(name, MapType.STACK_TRACE, 4, 8 * max(limit, 1), 4096)
        return self.stack_maps[key]
