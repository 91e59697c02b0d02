"""Skeleton-style access to global data: ``obj.rodata.my_var`` through the BTF DATASEC."""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator

from ..btf import Kind
from ..btf.pyvalues import BTFValue


class DataSection:
    """Skeleton-style access to a global-data map's variables by name (BTF DATASEC)."""

    def __init__(self, maps: dict[str, Any], btf: Any, sec: str,
                 layout: list[tuple[str, int, int, int]]):
        object.__setattr__(self, "_maps", maps)
        object.__setattr__(self, "_btf", btf)
        object.__setattr__(self, "_sec", sec)
        object.__setattr__(self, "_vars", {n: (off, size, tid) for n, off, size, tid in layout})

    @property
    def map(self):
        return self._maps[self._sec]

    def _raw(self) -> bytes:
        return bytes(self.map.lookup(0))

    def _type(self, tid: int):
        """The resolved type of a variable (``tid`` is its VAR, or already its type)."""
        btf = self._btf
        t = btf[tid]
        return btf.resolve(t.type_id if t.kind is Kind.VAR else tid)

    def _conv(self, tid: int, raw: bytes) -> Any:
        btf = self._btf
        t = self._type(tid)
        if t.kind is Kind.INT and t.size <= 8 and t.name != "char" or t.kind in (Kind.ENUM, Kind.ENUM64):
            v = int.from_bytes(raw, "little", signed=bool(getattr(t, "signed", False)))
            return bool(v) if t.kind is Kind.INT and t.is_bool else v
        if t.kind is Kind.INT and t.size == 1:
            return raw
        if t.kind is Kind.PTR:
            return int.from_bytes(raw, "little")
        if t.kind is Kind.ARRAY:
            el = btf.resolve(t.type_id)
            if el.kind is Kind.INT and el.size == 1:
                is_char = el.is_char or el.name in ("char", "signed char", "unsigned char")
                return raw.split(b"\0", 1)[0] if is_char else raw
        if t.kind in (Kind.ARRAY, Kind.STRUCT, Kind.UNION, Kind.FLOAT):
            # ``__u64 stats[8]`` reads as a list, a struct as a record (ebee.btf.pyvalues)
            return BTFValue(btf, t.id).decode(raw)
        return raw

    def __getattr__(self, name: str) -> Any:
        try:
            off, size, tid = self._vars[name]
        except KeyError:
            raise AttributeError(f"{self._sec} has no variable {name!r} "
                                 f"(has: {', '.join(self._vars) or 'none'})") from None
        return self._conv(tid, self._raw()[off:off + size])

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            off, size, tid = self._vars[name]
        except KeyError:
            raise AttributeError(f"{self._sec} has no variable {name!r}") from None
        m = self.map
        if m.frozen:
            raise PermissionError(f"{self._sec} is frozen: set read-only data before the "
                                  f"object's first run (as libbpf: before load)")
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int):
            t = self._type(tid)
            signed = bool(getattr(t, "signed", False)) or value < 0
            try:
                raw = value.to_bytes(size, "little", signed=signed)
            except OverflowError:
                raise ValueError(f"{name}: {value} does not fit in {size} bytes") from None
        elif isinstance(value, str):
            raw = value.encode()
        elif isinstance(value, (list, tuple, dict, float)) or dataclasses.is_dataclass(value):
            raw = BTFValue(self._btf, self._type(tid).id).encode(value)
        else:
            raw = bytes(value)
        if len(raw) > size:
            raise ValueError(f"{name}: {len(raw)} bytes do not fit in {size}")
        raw = raw + bytes(size - len(raw))
        cur = bytearray(self._raw())
        cur[off:off + size] = raw
        m.update(0, bytes(cur))

    def __dir__(self) -> list[str]:
        return list(self._vars)

    def __iter__(self) -> Iterator[str]:
        return iter(self._vars)

    def __repr__(self) -> str:
        return f"<DataSection {self._sec} vars={list(self._vars)}>"
