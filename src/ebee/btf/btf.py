"""Parsing and querying BTF (``.BTF`` sections, ``/sys/kernel/btf/*`` files).

Layout (include/uapi/linux/btf.h)::

    header (24+ bytes) | type section (u32 words) | string section (NUL-separated)

Parsing is two-stage so that the 6 MB vmlinux BTF is usable interactively:
``from_bytes`` reads the header, indexes every type record and validates the
whole blob strictly (every kind, every reference, every string offset, no
type that contains itself), all on the raw u32 words; records become
``types.Type`` objects only when asked for, and are cached.

Split BTF (kernel module BTF) continues the ids and string offsets of a base
BTF: ids below ``start_id`` and string offsets below the base's string size
are looked up in ``base``.
"""
from __future__ import annotations

import hashlib
import marshal
import struct
import sys
from array import array
from functools import lru_cache
from pathlib import Path
from bisect import bisect_left
from typing import Callable, Iterator

from .. import cache
from ..uapi import BTF_MAGIC, BTF_VERSION, BtfFuncLinkage, BtfVarLinkage
from .errors import BTFError
from .types import (CLASSES, MODIFIERS, VOID, Array, Composite, Datasec, DeclTag, Enum, Enum64,
                    EnumValue, Float, Func, FuncProto, Fwd, Int, Kind, Member, Param, Struct,
                    Type, TypeTag, Union, Var, VarSecinfo, kind_of)
from .elf import btf_sections
from .dump_raw import format_raw
from .dump_raw import format_json
from .dump_c import format_c
from .values import format_value, value_json

HEADER = struct.Struct("HBBIIIII")   # magic version flags hdr_len type_off type_len str_off str_len
HEADER_SIZE = HEADER.size            # 24
MAX_RESOLVE_DEPTH = 32               # libbpf's bound on typedef/modifier chains
VMLINUX_PATH = "/sys/kernel/btf/vmlinux"

# u32 words a record takes beyond its 3-word header: (fixed, per vlen entry)
EXTRA_WORDS = {
    Kind.INT: (1, 0), Kind.PTR: (0, 0), Kind.ARRAY: (3, 0), Kind.STRUCT: (0, 3),
    Kind.UNION: (0, 3), Kind.ENUM: (0, 2), Kind.FWD: (0, 0), Kind.TYPEDEF: (0, 0),
    Kind.VOLATILE: (0, 0), Kind.CONST: (0, 0), Kind.RESTRICT: (0, 0), Kind.FUNC: (0, 0),
    Kind.FUNC_PROTO: (0, 2), Kind.VAR: (1, 0), Kind.DATASEC: (0, 3), Kind.FLOAT: (0, 0),
    Kind.DECL_TAG: (1, 0), Kind.TYPE_TAG: (0, 0), Kind.ENUM64: (0, 3),
}
_EXTRA_BY_INT = [None] * 32
for _k, _v in EXTRA_WORDS.items():
    _EXTRA_BY_INT[int(_k)] = _v

_NATIVE = sys.byteorder
_SWAPPED_MAGIC = (BTF_MAGIC & 0xFF) << 8 | BTF_MAGIC >> 8
_INT_SIZES = (1, 2, 4, 8, 16)
_ENUM_SIZES = (1, 2, 4, 8)
_FLOAT_SIZES = (2, 4, 8, 12, 16)
# kinds that embed their target by value (a cycle through them is an infinite type)
_EMBED_ONE = frozenset(int(k) for k in (Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT,
                                         Kind.TYPE_TAG, Kind.VAR))
# kinds whose references are followed when looking for cycles without a struct
_CHAIN_KINDS = frozenset(int(k) for k in (Kind.PTR, Kind.ARRAY, Kind.TYPEDEF, Kind.VOLATILE,
                                           Kind.CONST, Kind.RESTRICT, Kind.FUNC, Kind.FUNC_PROTO,
                                           Kind.VAR, Kind.DECL_TAG, Kind.TYPE_TAG))
_CHAIN_ONE = _CHAIN_KINDS - {int(Kind.ARRAY), int(Kind.FUNC_PROTO)}
_DECL_TAG_TARGETS = frozenset({Kind.STRUCT, Kind.UNION, Kind.VAR, Kind.FUNC, Kind.TYPEDEF})


def essential_name_len(name: str) -> int:
    """Length of ``name`` without its ``___flavor`` suffix (libbpf's rule)."""
    if "___" not in name:          # nearly every name: no flavor to strip
        return len(name)
    n = len(name)
    for i in range(n - 5, -1, -1):
        if name[i] != "_" and name[i + 1:i + 4] == "___" and name[i + 4] != "_":
            return i + 1
    return n


def essential_name(name: str) -> str:
    return name[:essential_name_len(name)]


class NameIndex:
    """Type ids by name, each list in id order, as flat arrays: the keys are (offset,
    length) spans of the BTF's string section sorted by their text, so that the index is
    stored and read back (``ebee.cache``) as a few byte strings and a lookup is a binary
    search that decodes a dozen names -- no Python object per name until asked."""

    __slots__ = ("string", "offs", "lens", "starts", "ids")

    def __init__(self, string: Callable[[int], str], offs: bytes, lens: bytes, starts: bytes,
                 ids: bytes):
        self.string = string
        self.offs, self.lens, self.starts, self.ids = (array("I"), array("I"), array("I"),
                                                       array("I"))
        for arr, raw in ((self.offs, offs), (self.lens, lens), (self.starts, starts),
                         (self.ids, ids)):
            arr.frombytes(raw)

    @classmethod
    def build(cls, string: Callable[[int], str],
              groups: dict[str, tuple[int, int, list[int]]]) -> "NameIndex":
        """From ``{key: (string offset, length, ids)}``."""
        offs, lens, starts, ids = array("I"), array("I"), array("I", [0]), array("I")
        for key in sorted(groups):
            off, n, tids = groups[key]
            offs.append(off)
            lens.append(n)
            ids.extend(sorted(tids))
            starts.append(len(ids))
        return cls(string, offs.tobytes(), lens.tobytes(), starts.tobytes(), ids.tobytes())

    def state(self) -> tuple[bytes, bytes, bytes, bytes]:
        return (self.offs.tobytes(), self.lens.tobytes(), self.starts.tobytes(),
                self.ids.tobytes())

    def key(self, k: int) -> str:
        return self.string(self.offs[k])[:self.lens[k]]

    def get(self, key: str, default=()) -> list[int]:
        n = len(self.offs)
        k = bisect_left(range(n), key, key=self.key)
        if k == n or self.key(k) != key:
            return list(default)
        return self.ids[self.starts[k]:self.starts[k + 1]].tolist()

    def items(self) -> Iterator[tuple[str, list[int]]]:
        st, ids = self.starts, self.ids
        for k in range(len(self.offs)):
            yield self.key(k), ids[st[k]:st[k + 1]].tolist()


class BTF:
    """A parsed, validated, immutable BTF blob.

    ``btf[type_id]`` gives the type record; iteration yields this blob's own
    types (not a split BTF's base) in id order.
    """

    def __init__(self, *_: object) -> None:
        raise TypeError("use BTF.from_bytes(), BTF.from_file() or BTF.load_vmlinux()")

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, base: "BTF | None" = None, *,
                   pointer_size: int | None = None) -> "BTF":
        """Parse raw BTF (header, types, strings); ``base`` for split BTF."""
        self = object.__new__(cls)
        self._init(bytes(data), base, pointer_size)
        return self

    @classmethod
    def from_file(cls, path: str | Path, base: "BTF | None" = None) -> "BTF":
        """A raw BTF file, or the ``.BTF`` section of an ELF object (like bpftool)."""
        data = Path(path).read_bytes()
        if data[:4] == b"\x7fELF":
            secs = btf_sections(data)
            return cls.from_bytes(secs.btf, base, pointer_size=secs.pointer_size)
        return cls.from_bytes(data, base)

    @classmethod
    def load_vmlinux(cls, path: str = VMLINUX_PATH) -> "BTF":
        """The running kernel's BTF (parsed once per process)."""
        return _load_cached(path)

    def _init(self, data: bytes, base: "BTF | None", pointer_size: int | None,
              parsed: tuple | None = None) -> None:
        # ``parsed``: the type index and name indexes of exactly these bytes, from the
        # on-disk cache (they validated when the entry was written)
        self.data = data
        self.base = base
        magic = struct.unpack_from("<H", data)[0] if len(data) >= 2 else None
        if len(data) < HEADER_SIZE and magic in (BTF_MAGIC, _SWAPPED_MAGIC, None):
            raise BTFError(f"BTF header truncated: {len(data)} bytes, need at least {HEADER_SIZE}")
        if magic == BTF_MAGIC:
            self.byteorder = "little"
            hdr = struct.Struct("<" + HEADER.format)
        elif magic == _SWAPPED_MAGIC:
            self.byteorder = "big"
            hdr = struct.Struct(">" + HEADER.format)
        else:
            raise BTFError(f"bad BTF magic {data[0]:02x}{data[1]:02x} at offset 0, "
                           f"expected {BTF_MAGIC:#06x}")
        (_, version, flags, hdr_len, type_off, type_len, str_off, str_len) = hdr.unpack_from(data)
        if version != BTF_VERSION:
            raise BTFError(f"unsupported BTF version {version} at offset 2, expected {BTF_VERSION}")
        if flags:
            raise BTFError(f"unsupported BTF header flags {flags:#x} at offset 3, expected 0")
        if hdr_len < HEADER_SIZE or hdr_len > len(data):
            raise BTFError(f"BTF header length {hdr_len} is invalid (data is {len(data)} bytes)")
        if any(data[HEADER_SIZE:hdr_len]):
            raise BTFError(f"BTF header has unknown non-zero fields in bytes "
                           f"{HEADER_SIZE}..{hdr_len - 1}")
        body = len(data) - hdr_len
        if type_off % 4:
            raise BTF_layout(f"type section offset {type_off} is not 4-byte aligned")
        if type_len % 4:
            raise BTF_layout(f"type section length {type_len} is not a multiple of 4")
        if type_off + type_len > body:
            raise BTF_layout(f"type section {type_off}+{type_len} runs past the end of the "
                             f"data ({body} bytes after the header)")
        if str_off + str_len > body:
            raise BTF_layout(f"string section {str_off}+{str_len} runs past the end of the "
                             f"data ({body} bytes after the header)")
        if type_len and str_len and type_off < str_off + str_len and str_off < type_off + type_len:
            raise BTF_layout(f"type section {type_off}+{type_len} overlaps string section "
                             f"{str_off}+{str_len}")
        self._strs = data[hdr_len + str_off:hdr_len + str_off + str_len]
        if base is None:
            if not str_len or self._strs[0] != 0:
                raise BTF_layout("string section must start with the empty string")
        if str_len and self._strs[-1] != 0:
            raise BTF_layout("string section is not NUL-terminated")
        self._str_base = base._str_total if base is not None else 0
        self._str_total = self._str_base + str_len
        self._str_cache: dict[int, str] = {0: ""}
        if base is not None and base.byteorder != self.byteorder:
            raise BTFError(f"split BTF is {self.byteorder}-endian but its base is "
                           f"{base.byteorder}-endian")

        words = array("I")
        if words.itemsize != 4:      # pragma: no cover - every CPython platform has 4-byte I
            words = array("L")
        words.frombytes(data[hdr_len + type_off:hdr_len + type_off + type_len])
        if self.byteorder != _NATIVE:
            words.byteswap()
        self._words = words
        self.start_id = base.type_count if base is not None else 1
        self._by_name: NameIndex | None = None
        self._core_index: NameIndex | None = None
        if parsed is None:
            self._index()
        else:
            offs = array("I")
            offs.frombytes(parsed[0])
            self._offs, self._kinds = offs, parsed[1]
            self._by_name = NameIndex(self.string, *parsed[2])
            self._core_index = NameIndex(self.string, *parsed[3])
        self.type_count = self.start_id + len(self._offs)
        self._cache: list[Type | None] = [None] * len(self._offs)
        if parsed is None:
            self._validate()
        if pointer_size is None:
            pointer_size = base.pointer_size if base is not None else self._guess_pointer_size()
        self.pointer_size = pointer_size

    # ------------------------------------------------------------------ indexing and validation

    def _index(self) -> None:
        w = self._words
        n = len(w)
        offs = array("I")
        kinds = bytearray()
        extra = _EXTRA_BY_INT
        i = 0
        tid = self.start_id
        while i < n:
            if i + 3 > n:
                raise self._err(tid, i, "record truncated: type section ends inside its header")
            info = w[i + 1]
            k = (info >> 24) & 0x1F
            sizes = extra[k]
            if sizes is None:
                raise self._err(tid, i, f"unknown kind {k}")
            nxt = i + 3 + sizes[0] + sizes[1] * (info & 0xFFFF)
            if nxt > n:
                raise self._err(tid, i, f"{Kind(k).name} record truncated: needs "
                                        f"{(nxt - i) * 4} bytes, {(n - i) * 4} left")
            offs.append(i)
            kinds.append(k)
            i = nxt
            tid += 1
        self._offs = offs
        self._kinds = bytes(kinds)

    def _err(self, tid: int, word: int, msg: str) -> BTFError:
        return BTFError(f"type [{tid}] at type-section offset {word * 4}: {msg}")

    def _kind_of(self, tid: int) -> int:
        if tid >= self.start_id:
            idx = tid - self.start_id
            # out of range: only while validating (a reference not checked yet)
            return self._kinds[idx] if idx < len(self._kinds) else 0xFF
        if tid == 0:
            return 0
        return self.base._kind_of(tid)

    def _validate(self) -> None:
        w = self._words
        total = self.type_count
        nstr = self._str_total
        start = self.start_id
        kinds = self._kinds
        kind_of = self._kind_of
        INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
        FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = \
            12, 13, 14, 15, 16, 17, 18, 19

        for idx, i in enumerate(self._offs):
            tid = start + idx
            name_off, info, st = w[i], w[i + 1], w[i + 2]
            k = kinds[idx]
            vlen = info & 0xFFFF
            kflag = info >> 31

            if info & 0x60FF0000:
                raise self._err(tid, i, f"reserved bits set in info word {info:#010x}")
            if name_off >= nstr:
                raise self._err(tid, i, f"name offset {name_off} is outside the string section ({nstr} bytes)")
            if kflag and k not in (STRUCT, UNION, ENUM, FWD, ENUM64, TYPE_TAG):
                raise self._err(tid, i, f"kind_flag is set on {Kind(k).name}")
            if vlen and k in (INT, PTR, ARRAY, FWD, TYPEDEF, 9, 10, 11, VAR, FLOAT, DECL_TAG,
                              TYPE_TAG):
                raise self._err(tid, i, f"vlen {vlen} on {Kind(k).name}, must be 0")

            if k == INT:
                data = w[i + 3]
                enc, off, bits = (data >> 24) & 0xF, (data >> 16) & 0xFF, data & 0xFF
                if data & 0xF000FF00:
                    raise self._err(tid, i, f"reserved bits set in INT data {data:#010x}")
                if st not in _INT_SIZES:
                    raise self._err(tid, i, f"INT size {st} is not 1, 2, 4, 8 or 16")
                if enc not in (0, 1, 2, 4):
                    raise self._err(tid, i, f"INT encoding {enc:#x} is not one of SIGNED, CHAR, BOOL")
                if not bits or bits > 128 or off + bits > st * 8:
                    raise self._err(tid, i, f"INT of {st} bytes cannot hold {bits} bits at bit offset {off}")
            elif k in (PTR, TYPEDEF, 9, 10, 11, TYPE_TAG, FUNC, VAR, DECL_TAG):
                if st >= total:
                    raise self._err(tid, i, f"refers to type [{st}], but the last type is [{total - 1}]")
                if k in (TYPEDEF, TYPE_TAG, FUNC, VAR, DECL_TAG):
                    if not name_off:
                        raise self._err(tid, i, f"{Kind(k).name} must have a name")
                elif name_off:
                    raise self._err(tid, i, f"{Kind(k).name} must not have a name")
                if k == FUNC:
                    if vlen > 2:
                        raise self._err(tid, i, f"FUNC linkage {vlen} is not static, global or extern")
                    if kind_of(st) != FUNC_PROTO:
                        raise self._err(tid, i, f"FUNC refers to [{st}], which is not a FUNC_PROTO")
                elif k == VAR:
                    if w[i + 3] > 2:
                        raise self._err(tid, i, f"VAR linkage {w[i + 3]} is not static, global or extern")
                    if st == 0:
                        raise self._err(tid, i, "VAR has type void")
                elif k == DECL_TAG:
                    cidx = w[i + 3]
                    cidx = cidx - (1 << 32) if cidx & 0x80000000 else cidx
                    tk = kind_of(st)
                    if tk not in _DECL_TAG_TARGETS:
                        raise self._err(tid, i, f"DECL_TAG target [{st}] is a {Kind(tk).name}")
                    if cidx < -1:
                        raise self._err(tid, i, f"DECL_TAG component_idx {cidx} < -1")
                    if cidx >= 0:
                        if tk in (STRUCT, UNION):
                            limit = self._vlen_of(st)
                        elif tk == FUNC:
                            proto = self._ref_of(st)
                            if kind_of(proto) != FUNC_PROTO:
                                raise self._err(tid, i, f"DECL_TAG target [{st}] is a FUNC "
                                                        f"without a FUNC_PROTO")
                            limit = self._vlen_of(proto)
                        else:
                            raise self._err(tid, i, f"DECL_TAG component_idx {cidx} on a {Kind(tk).name}")
                        if cidx >= limit:
                            raise self._err(tid, i, f"DECL_TAG component_idx {cidx} out of range (vlen {limit})")
            elif k == ARRAY:
                elem, index, _ = w[i + 3], w[i + 4], w[i + 5]
                if name_off:
                    raise self._err(tid, i, "ARRAY must not have a name")
                if st:
                    raise self._err(tid, i, f"ARRAY size field is {st}, must be 0")
                for ref in (elem, index):
                    if ref >= total:
                        raise self._err(tid, i, f"refers to type [{ref}], but the last type is [{total - 1}]")
                if elem == 0:
                    raise self._err(tid, i, "ARRAY of void")
            elif k in (STRUCT, UNION):
                j = i + 3
                for m in range(vlen):
                    mname, mtype, moff = w[j], w[j + 1], w[j + 2]
                    j += 3
                    if mname >= nstr:
                        raise self._err(tid, i, f"member {m} name offset {mname} is outside the string section")
                    if mtype >= total or mtype == 0:
                        raise self._err(tid, i, f"member {m} refers to type [{mtype}], which does not exist"
                                  if mtype else f"member {m} has type void")
                    bit_off = moff & 0xFFFFFF if kflag else moff
                    bsz = moff >> 24 if kflag else 0
                    if (bit_off + bsz + 7) // 8 > st:
                        raise self._err(tid, i, f"member {m} at bit offset {bit_off} lies beyond the "
                                  f"{Kind(k).name} size {st}")
            elif k in (ENUM, ENUM64):
                if st not in _ENUM_SIZES:
                    raise self._err(tid, i, f"{Kind(k).name} size {st} is not 1, 2, 4 or 8")
                step = 2 if k == ENUM else 3
                for m in range(vlen):
                    vname = w[i + 3 + m * step]
                    if not vname or vname >= nstr:
                        raise self._err(tid, i, f"enumerator {m} has an invalid name offset {vname}")
            elif k == FWD:
                if not name_off:
                    raise self._err(tid, i, "FWD must have a name")
            elif k == FUNC_PROTO:
                if name_off:
                    raise self._err(tid, i, "FUNC_PROTO must not have a name")
                if st >= total:
                    raise self._err(tid, i, f"return type [{st}] does not exist")
                for m in range(vlen):
                    pname, ptype = w[i + 3 + 2 * m], w[i + 4 + 2 * m]
                    if pname >= nstr:
                        raise self._err(tid, i, f"parameter {m} name offset {pname} is outside the string "
                                  f"section")
                    if ptype >= total:
                        raise self._err(tid, i, f"parameter {m} refers to type [{ptype}], which does not exist")
                    if ptype == 0 and m != vlen - 1:
                        raise self._err(tid, i, f"parameter {m} is void but not the last (vararg) one")
            elif k == DATASEC:
                if not name_off:
                    raise self._err(tid, i, "DATASEC must have a name")
                for m in range(vlen):
                    vt = w[i + 3 + 3 * m]
                    if vt >= total or kind_of(vt) not in (VAR, FUNC):
                        raise self._err(tid, i, f"DATASEC entry {m} refers to [{vt}], which is not a VAR or FUNC")
            elif k == FLOAT:
                if st not in _FLOAT_SIZES:
                    raise self._err(tid, i, f"FLOAT size {st} is not 2, 4, 8, 12 or 16")
        self._check_cycles()

    def _vlen_of(self, tid: int) -> int:
        if tid == 0:
            return 0
        if tid >= self.start_id:
            return self._words[self._offs[tid - self.start_id] + 1] & 0xFFFF
        return self.base._vlen_of(tid)

    def _ref_of(self, tid: int) -> int:
        if tid == 0:
            return 0
        if tid >= self.start_id:
            return self._words[self._offs[tid - self.start_id] + 2]
        return self.base._ref_of(tid)

    def _embedded(self, idx: int) -> list[int]:
        """Own type ids that type number ``idx`` contains by value."""
        w = self._words
        i = self._offs[idx]
        k = self._kinds[idx]
        start = self.start_id
        if k in _EMBED_ONE:
            out = [w[i + 2]]
        elif k == 3:
            out = [w[i + 3]]
        elif k in (4, 5):
            out = [w[i + 4 + 3 * m] for m in range(w[i + 1] & 0xFFFF)]
        elif k == 15:
            out = [w[i + 3 + 3 * m] for m in range(w[i + 1] & 0xFFFF)]
        else:
            return []
        return [t for t in out if t >= start]

    def _chained(self, idx: int) -> list[int]:
        """Own non-struct type ids that type number ``idx`` refers to (pointers included)."""
        w = self._words
        i = self._offs[idx]
        k = self._kinds[idx]
        if k in _CHAIN_ONE:
            out = [w[i + 2]]
        elif k == 3:
            out = [w[i + 3]]
        elif k == 13:
            out = [w[i + 2]] + [w[i + 4 + 2 * m] for m in range(w[i + 1] & 0xFFFF)]
        else:
            return []
        start, kinds = self.start_id, self._kinds
        return [t for t in out if t >= start and kinds[t - start] in _CHAIN_KINDS]

    def _check_cycles(self) -> None:
        """Reject reference cycles C cannot express: a type containing itself by value
        (no pointer on the way), or a chain of pointers, modifiers, typedefs, arrays and
        function prototypes leading back to itself (no struct or union on the way)."""
        n = len(self._offs)
        kinds = self._kinds
        for edges, roots, what in (
                (self._embedded, (3, 4, 5, 8, 9, 10, 11, 14, 15, 18),
                 "type contains itself (reference cycle not broken by a pointer)"),
                (self._chained, _CHAIN_KINDS,
                 "type refers to itself through pointers/modifiers only (no struct or union)")):
            state = bytearray(n)       # 0 new, 1 on stack, 2 done
            for root in range(n):
                if state[root] or kinds[root] not in roots:
                    continue
                stack = [(root, iter(edges(root)))]
                state[root] = 1
                while stack:
                    node, it = stack[-1]
                    for t in it:
                        c = t - self.start_id
                        if state[c] == 1:
                            raise self._err(t, self._offs[c], what)
                        if state[c] == 0:
                            state[c] = 1
                            stack.append((c, iter(edges(c))))
                            break
                    else:
                        state[node] = 2
                        stack.pop()

    def _guess_pointer_size(self) -> int:
        """libbpf's rule: the size of ``long`` if the BTF names it, else the host's."""
        longs = {"long", "long int", "int long", "unsigned long", "long unsigned",
                 "unsigned long int", "unsigned int long", "long unsigned int",
                 "long int unsigned", "int unsigned long", "int long unsigned"}
        w = self._words
        for idx, k in enumerate(self._kinds):
            if k == 1:
                i = self._offs[idx]
                if w[i + 2] in (4, 8) and self.string(w[i]) in longs:
                    return w[i + 2]
        return struct.calcsize("P")

    # ------------------------------------------------------------------ strings

    def string(self, off: int) -> str:
        """The NUL-terminated string at ``off`` in the (split-aware) string section."""
        s = self._str_cache.get(off)
        if s is not None:
            return s
        if off < self._str_base:
            return self.base.string(off)
        local = off - self._str_base
        if not 0 <= local < len(self._strs):
            raise BTFError(f"string offset {off} is outside the string section "
                           f"({self._str_total} bytes)")
        end = self._strs.index(b"\0", local)
        s = self._strs[local:end].decode("utf-8", "backslashreplace")
        self._str_cache[off] = s
        return s

    # ------------------------------------------------------------------ types

    def __len__(self) -> int:
        """Number of this blob's own types (void and a base's types excluded)."""
        return len(self._offs)

    def __iter__(self) -> Iterator[Type]:
        for tid in range(self.start_id, self.type_count):
            yield self[tid]

    def all_types(self) -> Iterator[Type]:
        """Every type from id 1, a split BTF's base types included."""
        if self.base is not None:
            yield from self.base.all_types()
        yield from self

    def __contains__(self, tid: object) -> bool:
        return isinstance(tid, int) and 0 <= tid < self.type_count

    def __getitem__(self, tid: int) -> Type:
        if tid >= self.start_id:
            idx = tid - self.start_id
            if idx >= len(self._offs):
                raise KeyError(f"no BTF type [{tid}] (the last is [{self.type_count - 1}])")
            t = self._cache[idx]
            if t is None:
                t = self._cache[idx] = self._decode(tid, idx)
            return t
        if tid == 0:
            return VOID
        if tid < 0 or self.base is None:
            raise KeyError(f"no BTF type [{tid}]")
        return self.base[tid]

    def kind(self, tid: int) -> Kind:
        """The kind of type ``tid`` without decoding it."""
        if not 0 <= tid < self.type_count:
            raise KeyError(f"no BTF type [{tid}]")
        return Kind(self._kind_of(tid))

    def _decode(self, tid: int, idx: int) -> Type:
        w = self._words
        i = self._offs[idx]
        name_off, info, st = w[i], w[i + 1], w[i + 2]
        k = self._kinds[idx]
        vlen = info & 0xFFFF
        kflag = bool(info >> 31)
        s = self.string
        name = s(name_off) if name_off else ""
        if k == 1:
            d = w[i + 3]
            return Int(tid, name, st, (d >> 24) & 0xF, (d >> 16) & 0xFF, d & 0xFF)
        if k in (4, 5):
            ms = []
            j = i + 3
            for _ in range(vlen):
                mo = w[j + 2]
                if kflag:
                    ms.append(Member(s(w[j]), w[j + 1], mo & 0xFFFFFF, mo >> 24))
                else:
                    ms.append(Member(s(w[j]), w[j + 1], mo, 0))
                j += 3
            return (Struct if k == 4 else Union)(tid, name, st, tuple(ms), kflag)
        if k == 13:
            return FuncProto(tid, name, st, tuple(Param(s(w[i + 3 + 2 * m]), w[i + 4 + 2 * m])
                                                  for m in range(vlen)))
        if k == 6:
            vals = []
            for m in range(vlen):
                v = w[i + 4 + 2 * m]
                if kflag and v & 0x80000000:
                    v -= 1 << 32
                vals.append(EnumValue(s(w[i + 3 + 2 * m]), v))
            return Enum(tid, name, st, tuple(vals), kflag)
        if k == 19:
            vals = []
            for m in range(vlen):
                j = i + 3 + 3 * m
                v = w[j + 1] | (w[j + 2] << 32)
                if kflag and v >> 63:
                    v -= 1 << 64
                vals.append(EnumValue(s(w[j]), v))
            return Enum64(tid, name, st, tuple(vals), kflag)
        if k == 3:
            return Array(tid, name, w[i + 3], w[i + 4], w[i + 5])
        if k == 12:
            return Func(tid, name, st, BtfFuncLinkage(vlen))
        if k == 14:
            return Var(tid, name, st, BtfVarLinkage(w[i + 3]))
        if k == 15:
            return Datasec(tid, name, st, tuple(VarSecinfo(w[i + 3 + 3 * m], w[i + 4 + 3 * m],
                                                           w[i + 5 + 3 * m])
                                                for m in range(vlen)))
        if k == 7:
            return Fwd(tid, name, kflag)
        if k == 16:
            return Float(tid, name, st)
        if k == 17:
            c = w[i + 3]
            return DeclTag(tid, name, st, c - (1 << 32) if c & 0x80000000 else c)
        if k == 18:
            return TypeTag(tid, name, st, kflag)
        return CLASSES[Kind(k)](tid, name, st)

    # ------------------------------------------------------------------ lookups

    def _names(self) -> NameIndex:
        if self._by_name is None:
            by: dict[str, tuple[int, int, list[int]]] = {}
            w = self._words
            s = self.string
            for idx, i in enumerate(self._offs):
                off = w[i]
                if off:
                    name = s(off)
                    g = by.get(name)
                    if g is None:
                        g = by[name] = (off, len(name), [])
                    g[2].append(self.start_id + idx)
            self._by_name = NameIndex.build(s, by)
        return self._by_name

    def core_index(self) -> NameIndex:
        """This blob's named types by essential name (``___flavor`` stripped), in id
        order: where CO-RE looks up a local type's candidates (built once)."""
        if self._core_index is None:
            idx: dict[str, tuple[int, int, list[int]]] = {}
            names = self._names()
            for k in range(len(names.offs)):
                name = names.key(k)
                n = essential_name_len(name)
                ess = name[:n]
                g = idx.get(ess)
                if g is None:
                    g = idx[ess] = (names.offs[k], n, [])
                g[2].extend(names.ids[names.starts[k]:names.starts[k + 1]])
            self._core_index = NameIndex.build(self.string, idx)
        return self._core_index

    def find_all(self, name: str, kind: "Kind | str | None" = None) -> list[Type]:
        """Every type named ``name`` (of ``kind``), base types first, in id order."""
        k = kind_of(kind) if kind is not None else None
        out = self.base.find_all(name, k) if self.base is not None else []
        for tid in self._names().get(name, ()):
            if k is None or self._kinds[tid - self.start_id] == k:
                out.append(self[tid])
        return out

    def find(self, name: str, kind: "Kind | str | None" = None) -> Type:
        """The first type named ``name`` (of ``kind``); KeyError if there is none."""
        if self.base is not None:
            try:
                return self.base.find(name, kind)
            except KeyError:
                pass
        k = kind_of(kind) if kind is not None else None
        for tid in self._names().get(name, ()):
            if k is None or self._kinds[tid - self.start_id] == k:
                return self[tid]
        what = f"{k.name} " if k is not None else ""
        raise KeyError(f"no BTF {what}type named {name!r}")

    def _type(self, t: "Type | int") -> Type:
        return self[t] if isinstance(t, int) else t

    def resolve(self, t: "Type | int") -> Type:
        """Skip typedefs and modifiers (const, volatile, restrict, type tags)."""
        t = self._type(t)
        for _ in range(MAX_RESOLVE_DEPTH):
            if t.kind is Kind.TYPEDEF or t.kind in MODIFIERS:
                t = self[t.type_id]
            else:
                return t
        raise BTFError(f"type [{t.id}]: typedef/modifier chain longer than {MAX_RESOLVE_DEPTH}")

    def skip_mods(self, t: "Type | int") -> Type:
        """Skip modifiers only (typedefs stay)."""
        t = self._type(t)
        for _ in range(MAX_RESOLVE_DEPTH):
            if t.kind in MODIFIERS:
                t = self[t.type_id]
            else:
                return t
        raise BTFError(f"type [{t.id}]: modifier chain longer than {MAX_RESOLVE_DEPTH}")

    def sizeof(self, t: "Type | int") -> int:
        """Size in bytes, as ``btf__resolve_size``; BTFError for void, FWD and functions."""
        t = self._type(t)
        first = t
        nelems = 1
        for _ in range(MAX_RESOLVE_DEPTH):
            k = t.kind
            if k in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.DATASEC,
                     Kind.FLOAT):
                size = t.size
                break
            if k is Kind.PTR:
                size = self.pointer_size
                break
            if k in (Kind.TYPEDEF, Kind.VAR, Kind.DECL_TAG) or k in MODIFIERS:
                t = self[t.type_id]
            elif k is Kind.ARRAY:
                nelems *= t.nelems
                t = self[t.type_id]
            else:
                what = "void" if t.id == 0 else t.kind.name
                raise BTFError(f"type [{first.id}] has no size ({what})")
        else:
            raise BTFError(f"type [{first.id}]: type chain longer than {MAX_RESOLVE_DEPTH}")
        total = nelems * size
        if total > 0xFFFFFFFF:
            raise BTFError(f"type [{first.id}] is larger than 4 GiB")
        return total

    def alignof(self, t: "Type | int") -> int:
        """Natural alignment, as ``btf__align_of`` (1 for packed structs)."""
        t = self._type(t)
        for _ in range(MAX_RESOLVE_DEPTH):
            k = t.kind
            if k in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.FLOAT):
                return min(self.pointer_size, t.size)
            if k is Kind.PTR:
                return self.pointer_size
            if k is Kind.TYPEDEF or k in MODIFIERS:
                t = self[t.type_id]
            elif k is Kind.ARRAY:
                t = self[t.type_id]
            elif k in (Kind.STRUCT, Kind.UNION):
                return self._composite_align(t)
            else:
                raise BTFError(f"type [{t.id}] ({t.kind.name}) has no alignment")
        raise BTFError(f"type [{t.id}]: type chain longer than {MAX_RESOLVE_DEPTH}")

    def _align_target(self, tid: int) -> Type:
        """The type whose alignment ``tid`` has (through typedefs, modifiers, arrays)."""
        t = self[tid]
        for _ in range(MAX_RESOLVE_DEPTH):
            if t.kind is Kind.TYPEDEF or t.kind in MODIFIERS or t.kind is Kind.ARRAY:
                t = self[t.type_id]
            else:
                return t
        raise BTFError(f"type [{tid}]: type chain longer than {MAX_RESOLVE_DEPTH}")

    def _composite_align(self, t: Composite) -> int:
        # iterative (structs nest arbitrarily deep); the cycle check guarantees it ends
        cache = self.__dict__.setdefault("_align_cache", {})
        stack = [t]
        while stack:
            cur = stack[-1]
            if cur.id in cache:
                stack.pop()
                continue
            inner = [x for m in cur.members
                     if (x := self._align_target(m.type_id)).kind in (Kind.STRUCT, Kind.UNION)
                     and x.id not in cache]
            if inner:
                stack.extend(inner)
                continue
            a = 1
            for m in cur.members:
                ma = self.alignof(m.type_id)
                # a member not at a multiple of its own alignment, or a size
                # that is not a multiple of the alignment, means the struct
                # was packed: then the struct itself is byte-aligned
                if not m.bitfield_size and m.bits_offset % (8 * ma):
                    a = 0
                    break
                a = max(a, ma)
            cache[cur.id] = 1 if a == 0 or cur.size % a else a
            stack.pop()
        return cache[t.id]

    # ------------------------------------------------------------------ derived BTF

    def with_datasecs(self, layout: "dict[str, tuple[int, dict[str, tuple[int, int]]]]") -> "BTF":
        """A copy with DATASEC sizes and variable offsets filled in.

        Clang leaves them zero in objects; the loader knows them from the ELF
        section and symbol table (libbpf's ``btf_fixup_datasec``) and the
        kernel, map dumps and skeleton-style access need them.  ``layout``
        maps a section name to (section size, {variable name: (offset, size)}).
        """
        words = array(self._words.typecode, self._words)
        for idx, k in enumerate(self._kinds):
            if k != Kind.DATASEC:
                continue
            i = self._offs[idx]
            entry = layout.get(self.string(words[i]))
            if entry is None:
                continue
            size, offsets = entry
            words[i + 2] = size
            for m in range(words[i + 1] & 0xFFFF):
                j = i + 3 + 3 * m
                var = self[words[j]]
                if var.name in offsets:
                    words[j + 1], words[j + 2] = offsets[var.name]
        return self._with_words(words)

    def with_static_funcs(self, names: "set[str]") -> "BTF":
        """A copy where the first GLOBAL FUNC of each name is STATIC: libbpf's treatment
        of hidden global subprograms (``__weak __hidden``), which the verifier then checks
        in their caller's context."""
        words = array(self._words.typecode, self._words)
        left = set(names)
        for idx, k in enumerate(self._kinds):
            if k != Kind.FUNC or not left:
                continue
            i = self._offs[idx]
            name = self.string(words[i])
            if name in left and words[i + 1] & 0xFFFF == BtfFuncLinkage.GLOBAL:
                words[i + 1] = (words[i + 1] & ~0xFFFF) | BtfFuncLinkage.STATIC
                left.discard(name)
        return self._with_words(words)

    def _with_words(self, words) -> "BTF":
        if self.byteorder != _NATIVE:
            words.byteswap()
        hdr_fmt = ("<" if self.byteorder == "little" else ">") + HEADER.format
        _, _, _, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(hdr_fmt,
                                                                                    self.data)
        start = hdr_len + type_off
        data = self.data[:start] + words.tobytes() + self.data[start + type_len:]
        return BTF.from_bytes(data, self.base, pointer_size=self.pointer_size)

    # ------------------------------------------------------------------ output

    def format_raw(self, type_ids: "list[int] | None" = None) -> str:
        """``bpftool btf dump file F`` (raw format), byte for byte."""
        return format_raw(self, type_ids)

    def format_json(self, type_ids: "list[int] | None" = None) -> dict:
        """``bpftool -j btf dump file F`` as a Python object."""
        return format_json(self, type_ids)

    def format_c(self, type_ids: "list[int] | None" = None) -> str:
        """``bpftool btf dump file F format c``, byte for byte."""
        return format_c(self, type_ids)

    def format_value(self, type_id: int, data: bytes, *, json: bool = False):
        """Pretty-print ``data`` as a value of ``type_id`` like ``bpftool map dump``."""
        return value_json(self, type_id, data) if json else format_value(self, type_id, data)

    def __repr__(self) -> str:
        base = f", base of {self.start_id - 1} types" if self.base is not None else ""
        return f"<BTF {len(self)} types, {self.byteorder}-endian{base}>"


def BTF_layout(msg: str) -> BTFError:   # noqa: N802 - reads like the error it builds
    return BTFError(f"BTF header: {msg}")


BTF_CACHE = cache.Cache("btf")
_CACHE_FORMAT = 3


def _cache_key(data: bytes) -> str:
    here = Path(__file__).parent
    return cache.digest("vmlinux btf", str(_CACHE_FORMAT), hashlib.sha256(data).digest(),
                        sys.version, cache.source_digest(str(here / "btf.py"),
                                                         str(here / "types.py")))


@lru_cache(maxsize=4)
def _load_cached(path: str) -> BTF:
    """Kernel BTF, parsed once per process and kept parsed on disk (``ebee.cache``):
    the second process to load it reads the index instead of rebuilding it."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BTFError(f"{path}: cannot read kernel BTF: {e.strerror}") from None
    key = _cache_key(data) if cache.enabled() else None
    payload = BTF_CACHE.get(key) if key else None
    if payload is not None:
        try:
            fmt, pointer_size, *parsed = marshal.loads(payload)
            if fmt == _CACHE_FORMAT:
                btf = object.__new__(BTF)
                btf._init(data, None, pointer_size, tuple(parsed))
                return btf
        except Exception:      # checksummed, so only a format change lands here: rebuild
            pass
    try:
        btf = BTF.from_bytes(data)
    except BTFError as e:
        raise BTFError(f"{path}: {e}") from None
    if key:
        BTF_CACHE.put(key, marshal.dumps((_CACHE_FORMAT, btf.pointer_size, btf._offs.tobytes(),
                                          btf._kinds, btf._names().state(),
                                          btf.core_index().state())))
    return btf
