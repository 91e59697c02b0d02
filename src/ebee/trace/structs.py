"""Struct types for scripts, from BTF (``/sys/kernel/btf/vmlinux``) and tracepoint formats.

bpftrace parses kernel headers with clang; ebee reads the same layouts from BTF,
so ``#include <linux/...>`` lines need no headers (they are accepted and
ignored) and ``(struct sk_buff *)arg0`` works on any kernel with BTF.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..btf import BTF
from ..btf.types import Kind
from ..progtypes.tracing import TracepointFormat, tracepoint_format
from . import types as T
from .types import Type


@dataclass(frozen=True)
class FieldInfo:
    offset: int
    type: Type
    bitfield: tuple[int, int] | None = None     # (bit offset in the unit, bits)
    data_loc: bool = False                       # tracepoint __data_loc: u32 (len << 16 | off)


@lru_cache(maxsize=1)
def vmlinux() -> BTF | None:
    try:
        return BTF.load_vmlinux()
    except Exception:
        return None


class Structs:
    """Record types by name: BTF structs/unions and tracepoint ``args`` records."""

    def __init__(self, btf: BTF | None = None):
        self._btf = btf
        self.tracepoints: dict[str, dict[str, FieldInfo]] = {}
        self._sizes: dict[str, int] = {}

    @property
    def btf(self) -> BTF | None:
        if self._btf is None:
            self._btf = vmlinux()
        return self._btf

    # -- BTF ------------------------------------------------------------------------------

    def lookup(self, name: str) -> Type | None:
        """``struct foo`` / ``union foo`` / a typedef name -> a record (None if unknown)."""
        btf = self.btf
        if btf is None:
            return None
        kind, _, bare = name.partition(" ")
        if not bare:
            kind, bare = "", name
        try:
            if kind in ("struct", "union"):
                t = btf.find(bare, kind.upper())
            else:
                t = btf.resolve(btf.find(bare, "TYPEDEF"))
        except KeyError:
            return None
        return self.from_btf(t.id)

    def from_btf(self, type_id: int, *, user: bool = False) -> Type:
        btf = self.btf
        t = btf.resolve(type_id)
        k = t.kind
        if k is Kind.INT:
            return T.int_t(max(1, t.size), bool(t.encoding & 1))
        if k in (Kind.ENUM, Kind.ENUM64):
            return T.int_t(t.size, False)
        if k is Kind.PTR:
            if t.type_id == 0:
                return T.ptr_t(None, user=user)
            return T.ptr_t(self.from_btf(t.type_id, user=user), user=user)
        if k in (Kind.STRUCT, Kind.UNION):
            prefix = "struct" if k is Kind.STRUCT else "union"
            return T.record_t(f"{prefix} {t.name}" if t.name else f"{prefix} (anon)", t.size, t.id,
                              user=user)
        if k is Kind.ARRAY:
            elem = self.from_btf(t.type_id, user=user)
            if elem.kind == "int" and elem.size == 1:
                return T.str_t(t.nelems)
            return T.array_t(elem, t.nelems)
        return T.int_t(8, False)

    def field(self, rec: Type, name: str) -> FieldInfo | None:
        """A member of a record, looking through anonymous structs and unions."""
        if rec.ctx or rec.name in self.tracepoints:
            return self.tracepoints.get(rec.name, {}).get(name)
        btf = self.btf
        if btf is None or not rec.btf_id:
            return None
        found = self._member(rec.btf_id, name, 0)
        if found is None:
            return None
        off_bits, m = found
        ft = self.from_btf(m.type_id, user=rec.user)
        if m.bitfield_size:
            unit = ft.size * 8
            base = off_bits // unit * unit
            return FieldInfo(base // 8, ft, (off_bits - base, m.bitfield_size))
        return FieldInfo(off_bits // 8, ft)

    def _member(self, type_id: int, name: str, base_bits: int):
        btf = self.btf
        t = btf.resolve(type_id)
        for m in getattr(t, "members", ()):
            if m.name == name:
                return base_bits + m.bits_offset, m
            if not m.name:
                inner = btf.resolve(m.type_id)
                if inner.kind in (Kind.STRUCT, Kind.UNION):
                    hit = self._member(inner.id, name, base_bits + m.bits_offset)
                    if hit is not None:
                        return hit
        return None

    # -- tracepoint args ------------------------------------------------------------------

    def tracepoint_args(self, category: str, name: str, *, user: bool) -> Type:
        """The ``args`` record of a tracepoint, from its format file."""
        rname = f"struct _tracepoint_{category}_{name}"
        if rname not in self.tracepoints:
            fmt = tracepoint_format(category, name)
            self.tracepoints[rname] = tracepoint_fields(fmt, user=user)
            self._sizes[rname] = fmt.size
        return Type("record", self._sizes[rname], name=rname, ctx=True)


def tracepoint_fields(fmt: TracepointFormat, *, user: bool) -> dict[str, FieldInfo]:
    out: dict[str, FieldInfo] = {}
    for f in fmt.fields:
        if f.name.startswith("common_"):
            continue
        ctype = f.ctype
        if ctype.startswith("__data_loc"):
            out[f.base_name] = FieldInfo(f.offset, T.ptr_t(T.int_t(1, True)), data_loc=True)
            continue
        n = f.array_len
        if n is not None:
            esize = f.size // n if n else 1
            if esize == 1 and "char" in ctype:
                out[f.base_name] = FieldInfo(f.offset, T.str_t(f.size))
            else:
                out[f.base_name] = FieldInfo(f.offset, T.array_t(T.int_t(esize, f.signed), n))
            continue
        if "*" in ctype:
            elem = T.int_t(1, True) if "char" in ctype else None
            out[f.base_name] = FieldInfo(f.offset, T.ptr_t(elem, user=user))
            continue
        size = f.size if f.size in (1, 2, 4, 8) else 8
        out[f.base_name] = FieldInfo(f.offset, T.int_t(size, f.signed))
    return out
