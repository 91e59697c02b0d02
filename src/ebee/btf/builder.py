"""Building BTF blobs programmatically (libbpf's ``btf__add_*`` family).

Useful wherever BTF has to be made rather than read: synthetic targets for
CO-RE, split BTF on top of a base, test inputs, type information for maps
created from Python.  ``add_*`` methods return the new type id; ``to_bytes``
encodes header, types and strings in the chosen byte order.
"""
from __future__ import annotations

import struct
from typing import Iterable

from ..uapi import BTF_INT_BOOL, BTF_INT_CHAR, BTF_INT_SIGNED, BTF_MAGIC, BTF_VERSION
from .types import Kind
from .btf import BTF



class BTFBuilder:
    def __init__(self, base: "BTF | None" = None, byteorder: str = "little"):
        if byteorder not in ("little", "big"):
            raise ValueError("byteorder must be 'little' or 'big'")
        self.base = base
        self.byteorder = byteorder
        self.start_id = base.type_count if base is not None else 1
        self.str_base = base._str_total if base is not None else 0
        self._strs = bytearray() if base is not None else bytearray(b"\0")
        self._str_off: dict[str, int] = {"": 0}
        self._types: list[list[int]] = []      # u32 words per type

    # ------------------------------------------------------------------ strings and records

    def string(self, s: str) -> int:
        off = self._str_off.get(s)
        if off is None:
            off = self.str_base + len(self._strs)
            self._strs += s.encode() + b"\0"
            self._str_off[s] = off
        return off

    def _add(self, name: str, kind: Kind, vlen: int, kflag: bool, size_or_type: int,
             extra: Iterable[int] = ()) -> int:
        info = (int(kflag) << 31) | (int(kind) << 24) | (vlen & 0xFFFF)
        self._types.append([self.string(name), info, size_or_type & 0xFFFFFFFF,
                            *(w & 0xFFFFFFFF for w in extra)])
        return self.start_id + len(self._types) - 1

    @property
    def next_id(self) -> int:
        return self.start_id + len(self._types)

    # ------------------------------------------------------------------ kinds

    def add_int(self, name: str, size: int, *, signed: bool = False, char: bool = False,
                bool_: bool = False, bits: int | None = None, offset: int = 0) -> int:
        enc = (BTF_INT_SIGNED if signed else 0) | (BTF_INT_CHAR if char else 0) | \
            (BTF_INT_BOOL if bool_ else 0)
        nbits = size * 8 if bits is None else bits
        return self._add(name, Kind.INT, 0, False, size, [(enc << 24) | (offset << 16) | nbits])

    def add_float(self, name: str, size: int) -> int:
        return self._add(name, Kind.FLOAT, 0, False, size)

    def add_ptr(self, type_id: int) -> int:
        return self._add("", Kind.PTR, 0, False, type_id)

    def add_typedef(self, name: str, type_id: int) -> int:
        return self._add(name, Kind.TYPEDEF, 0, False, type_id)

    def add_const(self, type_id: int) -> int:
        return self._add("", Kind.CONST, 0, False, type_id)

    def add_volatile(self, type_id: int) -> int:
        return self._add("", Kind.VOLATILE, 0, False, type_id)

    def add_restrict(self, type_id: int) -> int:
        return self._add("", Kind.RESTRICT, 0, False, type_id)

    def add_type_tag(self, name: str, type_id: int, *, attribute: bool = False) -> int:
        return self._add(name, Kind.TYPE_TAG, 0, attribute, type_id)

    def add_array(self, elem_type_id: int, index_type_id: int, nelems: int) -> int:
        return self._add("", Kind.ARRAY, 0, False, 0, [elem_type_id, index_type_id, nelems])

    def _composite(self, kind: Kind, name: str, size: int,
                   members: Iterable[tuple]) -> int:
        ms = [tuple(m) + (0,) * (4 - len(m)) for m in members]   # name, type, bit_off, bitfield
        kflag = any(m[3] for m in ms)
        words: list[int] = []
        for mname, mtype, bit_off, bsz in ms:
            words += [self.string(mname), mtype, (bsz << 24) | bit_off if kflag else bit_off]
        return self._add(name, kind, len(ms), kflag, size, words)

    def add_struct(self, name: str, size: int, members: Iterable[tuple]) -> int:
        """``members``: (name, type_id, bit_offset[, bitfield_size])."""
        return self._composite(Kind.STRUCT, name, size, members)

    def add_union(self, name: str, size: int, members: Iterable[tuple]) -> int:
        return self._composite(Kind.UNION, name, size, members)

    def add_enum(self, name: str, size: int, values: Iterable[tuple[str, int]], *,
                 signed: bool = False) -> int:
        vals = list(values)
        words: list[int] = []
        for vname, v in vals:
            words += [self.string(vname), v & 0xFFFFFFFF]
        return self._add(name, Kind.ENUM, len(vals), signed, size, words)

    def add_enum64(self, name: str, size: int, values: Iterable[tuple[str, int]], *,
                   signed: bool = False) -> int:
        vals = list(values)
        words: list[int] = []
        for vname, v in vals:
            v &= 0xFFFFFFFFFFFFFFFF
            words += [self.string(vname), v & 0xFFFFFFFF, v >> 32]
        return self._add(name, Kind.ENUM64, len(vals), signed, size, words)

    def add_fwd(self, name: str, *, union: bool = False) -> int:
        return self._add(name, Kind.FWD, 0, union, 0)

    def add_func_proto(self, ret_type_id: int, params: Iterable[tuple[str, int]]) -> int:
        ps = list(params)
        words: list[int] = []
        for pname, ptype in ps:
            words += [self.string(pname), ptype]
        return self._add("", Kind.FUNC_PROTO, len(ps), False, ret_type_id, words)

    def add_func(self, name: str, proto_id: int, linkage: int = 0) -> int:
        return self._add(name, Kind.FUNC, linkage, False, proto_id)

    def add_var(self, name: str, type_id: int, linkage: int = 0) -> int:
        return self._add(name, Kind.VAR, 0, False, type_id, [linkage])

    def add_datasec(self, name: str, size: int, vars_: Iterable[tuple[int, int, int]]) -> int:
        vs = list(vars_)
        words: list[int] = []
        for t, off, sz in vs:
            words += [t, off, sz]
        return self._add(name, Kind.DATASEC, len(vs), False, size, words)

    def add_decl_tag(self, name: str, type_id: int, component_idx: int = -1) -> int:
        return self._add(name, Kind.DECL_TAG, 0, False, type_id, [component_idx])

    # ------------------------------------------------------------------ output

    def to_bytes(self) -> bytes:
        e = "<" if self.byteorder == "little" else ">"
        types = b"".join(struct.pack(f"{e}{len(w)}I", *w) for w in self._types)
        strs = bytes(self._strs)
        hdr = struct.pack(e + "HBBIIIII", BTF_MAGIC, BTF_VERSION, 0, 24, 0, len(types),
                          len(types), len(strs))
        return hdr + types + strs

    def build(self) -> "BTF":
        return BTF.from_bytes(self.to_bytes(), self.base)
