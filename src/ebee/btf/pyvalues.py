"""Python values for BTF-typed bytes, both ways: what a map key or value, a global or a
ring-buffer record *is*, as a Python user expects to hold it.

=====================  ==========================================================
BTF                    Python
=====================  ==========================================================
integers, enums        ``int`` (``bool`` for ``_Bool``); bitfields too
floats                 ``float``
pointers               ``int`` (the address)
``char name[N]``       ``str`` up to the first NUL (UTF-8; bytes that are not
                       UTF-8 survive the round trip as surrogate escapes); arrays of
                       ``__u8`` and other typedefs stay lists, as bpftool has it
other arrays           ``list``
structs and unions     a record: a dataclass named after the type, one attribute
                       per member (``ev.pid``, ``ev.comm``), ``==``, ``repr``; an
                       anonymous member is ``_anonN`` (N: its position)
=====================  ==========================================================

Encoding takes the same shapes, and more: ``bytes`` of the exact size, a ``dict`` (or any
object with the members as attributes) for a struct -- members left out are zero --, a
list shorter than its array (the rest is zero).  :class:`BTFValue` is one type, usable
wherever a ctypes type is (``from_buffer_copy``).
"""
from __future__ import annotations

import dataclasses
import keyword
import struct
from typing import Any

from .btf import BTF
from .errors import BTFError
from .types import MODIFIERS, Kind

_FLOATS = {2: "e", 4: "f", 8: "d"}


class BTFValue:
    """Encode and decode values of BTF type ``type_id`` of ``btf``."""

    def __init__(self, btf: BTF, type_id: int):
        self.btf = btf
        self.type_id = type_id
        self.size = btf.sizeof(type_id)
        self.order = "little" if btf.byteorder == "little" else "big"
        self._records: dict[int, type] = {}

    @classmethod
    def named(cls, btf: BTF, name: str) -> "BTFValue":
        """The type called ``name``: ``"struct event"``, ``"union u"``, ``"enum e"`` or a
        typedef / plain name."""
        kind, _, bare = name.strip().partition(" ")
        kinds = {"struct": Kind.STRUCT, "union": Kind.UNION, "enum": Kind.ENUM}
        if bare and kind in kinds:
            try:
                return cls(btf, btf.find(bare.strip(), kinds[kind]).id)
            except KeyError:
                if kind == "enum":
                    return cls(btf, btf.find(bare.strip(), Kind.ENUM64).id)
                raise
        return cls(btf, btf.find(name.strip()).id)

    def __repr__(self) -> str:
        return f"<BTFValue [{self.type_id}] {self.describe()}>"

    def describe(self) -> str:
        t = self.btf[self.type_id]
        kw = {Kind.STRUCT: "struct ", Kind.UNION: "union ", Kind.ENUM: "enum ",
              Kind.ENUM64: "enum "}.get(t.kind, "")
        return f"{kw}{t.name or '(anon)'}"

    # -- decoding ---------------------------------------------------------------------------

    def from_buffer_copy(self, data) -> Any:
        return self.decode(bytes(data))

    def decode(self, data: bytes) -> Any:
        if len(data) < self.size:
            raise BTFError(f"{len(data)} bytes for {self.describe()} of {self.size} bytes")
        return self._get(self.type_id, bytes(data), 0, 0)

    def _get(self, tid: int, data: bytes, pos: int, depth: int) -> Any:
        if depth > 64:
            raise BTFError(f"type [{tid}] nests too deeply")
        btf = self.btf
        t = btf.resolve(tid)
        k = t.kind
        if k is Kind.INT:
            if t.bits_offset or t.nr_bits % 8:
                return self._bits(data, pos * 8 + t.bits_offset, t.nr_bits, t.signed)
            v = int.from_bytes(data[pos:pos + t.size], self.order, signed=t.signed)
            return bool(v) if t.encoding & 4 else v
        if k in (Kind.ENUM, Kind.ENUM64):
            return int.from_bytes(data[pos:pos + t.size], self.order, signed=t.signed)
        if k is Kind.PTR:
            return int.from_bytes(data[pos:pos + btf.pointer_size], self.order)
        if k is Kind.FLOAT:
            return struct.unpack_from(("<" if self.order == "little" else ">")
                                      + _FLOATS[t.size], data, pos)[0]
        if k is Kind.ARRAY:
            if self._is_chars(t.type_id):
                raw = data[pos:pos + t.nelems]
                end = raw.find(b"\0")
                return raw[:end if end >= 0 else len(raw)].decode("utf-8", "surrogateescape")
            es = btf.sizeof(t.type_id)
            return [self._get(t.type_id, data, pos + i * es, depth + 1) for i in range(t.nelems)]
        if k in (Kind.STRUCT, Kind.UNION):
            cls = self.record_class(t.id)
            vals = {}
            for f, m in zip(dataclasses.fields(cls), t.members):
                if m.bitfield_size:
                    ti = btf.resolve(m.type_id)
                    signed = ti.kind in (Kind.INT, Kind.ENUM, Kind.ENUM64) and ti.signed
                    v = self._bits(data, pos * 8 + m.bits_offset, m.bitfield_size, signed)
                    vals[f.name] = bool(v) if ti.kind is Kind.INT and ti.encoding & 4 else v
                else:
                    vals[f.name] = self._get(m.type_id, data, pos + m.bits_offset // 8,
                                             depth + 1)
            return cls(**vals)
        raise BTFError(f"type [{tid}] ({k.name}) has no Python value")

    def _bits(self, data: bytes, bit_off: int, nbits: int, signed: bool) -> int:
        first, last = bit_off // 8, (bit_off + nbits + 7) // 8
        raw = int.from_bytes(data[first:last], self.order)
        shift = bit_off % 8 if self.order == "little" else (last - first) * 8 - bit_off % 8 - nbits
        v = (raw >> shift) & ((1 << nbits) - 1)
        return v - (1 << nbits) if signed and v >> (nbits - 1) else v

    def _is_chars(self, tid: int) -> bool:
        # bpftool's rule: char (not __u8 or another typedef of it) is text
        e = self.btf[tid]
        while e.kind in MODIFIERS:
            e = self.btf[e.type_id]
        return e.kind is Kind.INT and e.size == 1 and (e.is_char or e.name == "char")

    def record_class(self, tid: int) -> type:
        """The dataclass that stands for struct/union ``tid`` (one per type)."""
        cls = self._records.get(tid)
        if cls is None:
            t = self.btf[tid]
            names = []
            for i, m in enumerate(t.members):
                n = m.name or f"_anon{i}"
                names.append(n + "_" if keyword.iskeyword(n) else n)
            cls = dataclasses.make_dataclass(t.name or "anon", names)
            cls.__module__ = "ebee.btf.pyvalues"
            self._records[tid] = cls
        return cls

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            b = bytes(value)
            if len(b) != self.size:
                raise ValueError(f"{self.describe()} is {self.size} bytes, got {len(b)}")
            return b
        buf = bytearray(self.size)
        self._put(self.type_id, buf, 0, value, self.describe(), 0)
        return bytes(buf)

    def _put(self, tid: int, buf: bytearray, pos: int, v: Any, where: str, depth: int) -> None:
        if depth > 64:
            raise BTFError(f"type [{tid}] nests too deeply")
        btf = self.btf
        t = btf.resolve(tid)
        k = t.kind
        if isinstance(v, (bytes, bytearray)) and k is not Kind.ARRAY:
            size = btf.sizeof(t.id)
            if len(v) != size:
                raise ValueError(f"{where}: {size} bytes, got {len(v)}")
            buf[pos:pos + size] = v
            return
        if k is Kind.INT and (t.bits_offset or t.nr_bits % 8):
            self._put_bits(buf, pos * 8 + t.bits_offset, t.nr_bits, self._int(v, where), where)
        elif k in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.PTR):
            size = btf.pointer_size if k is Kind.PTR else t.size
            n = self._int(v, where)
            if not -(1 << (8 * size - 1)) <= n < 1 << (8 * size):
                raise ValueError(f"{where}: {n} does not fit in {size} bytes")
            buf[pos:pos + size] = (n & ((1 << 8 * size) - 1)).to_bytes(size, self.order)
        elif k is Kind.FLOAT:
            struct.pack_into(("<" if self.order == "little" else ">") + _FLOATS[t.size], buf,
                             pos, float(v))
        elif k is Kind.ARRAY:
            if self._is_chars(t.type_id) and isinstance(v, (str, bytes, bytearray)):
                raw = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else bytes(v)
                if len(raw) > t.nelems:
                    raise ValueError(f"{where}: {len(raw)} bytes do not fit in char[{t.nelems}]")
                buf[pos:pos + len(raw)] = raw
                return
            items = list(v)
            if len(items) > t.nelems:
                raise ValueError(f"{where}: {len(items)} elements for an array of {t.nelems}")
            es = btf.sizeof(t.type_id)
            for i, item in enumerate(items):
                self._put(t.type_id, buf, pos + i * es, item, f"{where}[{i}]", depth + 1)
        elif k in (Kind.STRUCT, Kind.UNION):
            if isinstance(v, (int, float, str, list, tuple)):
                raise TypeError(f"{where}: a record, a dict or bytes, not {type(v).__name__}")
            cls = self.record_class(t.id)
            names = [f.name for f in dataclasses.fields(cls)]
            get = v.get if isinstance(v, dict) else (lambda n, d=None: getattr(v, n, d))
            if isinstance(v, dict):
                unknown = set(v) - set(names)
                if unknown:
                    raise ValueError(f"{where} has no member {sorted(unknown)[0]!r}")
            for n, m in zip(names, t.members):
                mv = get(n)
                if mv is None:
                    continue
                if m.bitfield_size:
                    self._put_bits(buf, pos * 8 + m.bits_offset, m.bitfield_size,
                                   self._int(mv, f"{where}.{n}"), f"{where}.{n}")
                else:
                    self._put(m.type_id, buf, pos + m.bits_offset // 8, mv, f"{where}.{n}",
                              depth + 1)
        else:
            raise BTFError(f"type [{tid}] ({k.name}) has no Python value")

    @staticmethod
    def _int(v: Any, where: str) -> int:
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int):
            return v
        raise TypeError(f"{where}: an int, not {type(v).__name__}")

    def _put_bits(self, buf: bytearray, bit_off: int, nbits: int, n: int, where: str) -> None:
        if not -(1 << (nbits - 1)) <= n < 1 << nbits:
            raise ValueError(f"{where}: {n} does not fit in {nbits} bits")
        n &= (1 << nbits) - 1
        first, last = bit_off // 8, (bit_off + nbits + 7) // 8
        raw = int.from_bytes(buf[first:last], self.order)
        shift = bit_off % 8 if self.order == "little" else (last - first) * 8 - bit_off % 8 - nbits
        raw = (raw & ~(((1 << nbits) - 1) << shift)) | (n << shift)
        buf[first:last] = raw.to_bytes(last - first, self.order)


__all__ = ["BTFValue"]
