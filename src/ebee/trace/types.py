"""The types of bpftrace expressions and map values (bpftrace's ``SizedType``).

A :class:`Type` knows its size in the generated program's memory (a map value, a
stack slot, an event record) and how bpftrace spells it in diagnostics
(``int64``, ``string[16]``, ``struct task_struct *``).  Aggregation kinds
(``count`` ... ``lhist``) only appear as map value types.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

STRLEN = 64             # BPFTRACE_STRLEN: str() reads at most this many bytes (with the NUL)
COMM_LEN = 16
STACK_DEPTH = 127       # bpftrace's default stack depth (perf_event_max_stack)

AGGREGATES = ("count", "sum", "min", "max", "avg", "stats", "hist", "lhist")


@dataclass(frozen=True)
class Type:
    kind: str                       # "int", "str", "ptr", "record", "tuple", ... (see below)
    size: int = 0
    signed: bool = False
    elem: "Type | None" = None      # pointee (ptr) or element (array)
    count: int = 0                  # array length
    elems: tuple["Type", ...] = ()  # tuple element types
    name: str = ""                  # record: "struct task_struct"; map aggregates: map name
    btf_id: int = 0                 # record types from BTF
    user: bool = False              # pointer into user memory (uprobe args, syscall args)
    ctx: bool = False               # a field read from the program's context
    params: tuple[int, ...] = field(default=(), compare=False)   # lhist(min, max, step)

    # -- spelling --------------------------------------------------------------------

    def __str__(self) -> str:
        k = self.kind
        if k == "int":
            return f"{'' if self.signed else 'unsigned '}int{self.size * 8}"
        if k == "str":
            return f"string[{self.size}]"
        if k == "buf":
            return f"buffer[{self.count}]"
        if k == "ptr":
            inner = str(self.elem) if self.elem is not None else "void"
            return f"{inner} *"
        if k == "record":
            return self.name
        if k == "array":
            return f"{self.elem}[{self.count}]"
        if k == "tuple":
            return "(" + ",".join(str(e) for e in self.elems) + ")"
        return k

    # -- predicates ------------------------------------------------------------------

    @property
    def is_int(self) -> bool:
        return self.kind == "int"

    @property
    def is_aggregate(self) -> bool:
        return self.kind in AGGREGATES

    @property
    def on_stack(self) -> bool:
        """Whether values of this type live in memory (stack buffers) rather than in a
        register."""
        return self.kind not in ("int", "ptr", "none", "ctx") and not self.is_aggregate

    def compatible(self, other: "Type") -> bool:
        if self.kind != other.kind:
            return False
        if self.kind == "tuple":
            return len(self.elems) == len(other.elems) and all(
                a.compatible(b) for a, b in zip(self.elems, other.elems))
        if self.kind == "record":
            return self.name == other.name
        return True

    def widened(self, other: "Type") -> "Type":
        """The type a variable or map keeps after holding both (strings: the larger)."""
        if self.kind in ("str", "buf"):
            return self if self.size >= other.size else other
        if self.kind == "tuple":
            return tuple_of([a.widened(b) for a, b in zip(self.elems, other.elems)])
        return self


# -- constructors ------------------------------------------------------------------------

def int_t(size: int = 8, signed: bool = False) -> Type:
    return Type("int", size, signed)


INT64 = int_t(8, True)
UINT64 = int_t(8, False)
UINT32 = int_t(4, False)
INT32 = int_t(4, True)
NONE = Type("none")
VOID = Type("void")


def str_t(size: int = STRLEN) -> Type:
    return Type("str", size)


def buf_t(size: int) -> Type:
    # { u64 length; u8 data[size] }
    return Type("buf", size + 8, count=size)


def ptr_t(elem: Type | None, *, user: bool = False) -> Type:
    return Type("ptr", 8, elem=elem, user=user)


def record_t(name: str, size: int, btf_id: int = 0, *, user: bool = False) -> Type:
    return Type("record", size, name=name, btf_id=btf_id, user=user)


def array_t(elem: Type, count: int) -> Type:
    return Type("array", elem.size * count, elem=elem, count=count)


def align_of(t: Type) -> int:
    if t.kind in ("int", "ptr"):
        return t.size
    if t.kind == "tuple":
        return max((align_of(e) for e in t.elems), default=1)
    if t.kind in ("str", "buf", "inet", "mac", "array"):
        return 1
    return 8


def tuple_layout(elems: list[Type] | tuple[Type, ...]) -> tuple[list[int], int]:
    """Offsets of a tuple's elements (C struct rules) and its size (rounded to 8)."""
    offs = []
    pos = 0
    for e in elems:
        a = align_of(e)
        pos = (pos + a - 1) // a * a
        offs.append(pos)
        pos += e.size
    return offs, max(8, (pos + 7) // 8 * 8)


def tuple_of(elems: list[Type]) -> Type:
    _, size = tuple_layout(elems)
    return Type("tuple", size, elems=tuple(elems))


KSYM = Type("ksym", 8)
USYM = Type("usym", 16)           # address, pid
INET = Type("inet", 24)           # af (8), address (16)
KSTACK = Type("kstack", 8)        # stack id
USTACK = Type("ustack", 16)       # stack id, pid
PROBE = Type("probe", 8)          # probe id
TIMESTAMP = Type("timestamp", 8)  # strftime: format id ... (see codegen)
USERNAME = Type("username", 8)
CGROUP_PATH = Type("cgroup_path", 16)
MAC = Type("mac", 6)
CTX = Type("ctx", 8)


def aggregate(kind: str, params: tuple[int, ...] = ()) -> Type:
    size = {"count": 8, "sum": 8, "min": 16, "max": 16, "avg": 16, "stats": 16,
            "hist": 8, "lhist": 8}[kind]
    return Type(kind, size, signed=kind in ("sum", "min", "max", "avg", "stats"),
                params=params)


def with_signed(t: Type, signed: bool) -> Type:
    return replace(t, signed=signed)


def stored(t: Type) -> Type:
    """How a value is kept in a variable, a map key or a map value: integers widened to
    64 bits (bpftrace promotes them), everything else as it is."""
    if t.kind == "int":
        return int_t(8, t.signed)
    if t.ctx:
        return replace(t, ctx=False)
    return t


# names bpftrace accepts in casts
CAST_INTS = {f"{u}int{b}": int_t(b // 8, u == "") for u in ("", "u") for b in (8, 16, 32, 64)}
CAST_INTS.update({"char": int_t(1, True), "short": int_t(2, True), "int": int_t(4, True),
                  "long": int_t(8, True), "unsigned": int_t(4, False), "bool": int_t(1, False),
                  "u8": int_t(1), "u16": int_t(2), "u32": int_t(4), "u64": int_t(8),
                  "s8": int_t(1, True), "s16": int_t(2, True), "s32": int_t(4, True),
                  "s64": int_t(8, True), "size_t": int_t(8), "pid_t": int_t(4, True)})
