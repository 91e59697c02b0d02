"""Printing map keys and values through their BTF, as ``bpftool map dump`` does.

bpftool walks the value with its ``btf_dumper`` and writes through its own
``json_writer``; the plain-text dump is that writer in "pretty" mode with a
few non-JSON spellings (``(nil)``/``0x...`` pointers, bare hex for 128-bit
integers and bitfields), the ``-j`` dump's ``"formatted"`` member is the same
walk in strict JSON.  Both are reproduced here, quirks included:

* bitfields and integers that are not whole bytes print as hex;
* a ``char`` array holding a NUL-terminated printable string prints as a string;
* an enum value prints as its enumerator's name when one matches;
* ``_Bool`` is read as a 4-byte int (bpftool's ``*(int *)data``).

One deliberate difference: bpftool 7.1 cannot print FLOAT (it writes
``(unsupported-kind`` and abandons the value); ebee prints the number.
"""
from __future__ import annotations

import json
import math
import struct
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .errors import BTFError
from .types import MODIFIERS, Kind

if TYPE_CHECKING:
    from .btf import BTF


class JsonWriter:
    """bpftool's ``json_writer.c``: same separators, same indentation, same escapes."""

    def __init__(self, pretty: bool = False):
        self.out: list[str] = []
        self.depth = 0
        self.pretty = pretty
        self.sep = ""

    def _eol(self) -> None:
        if self.pretty:
            self.out.append("\n" + "    " * self.depth)

    def _eor(self) -> None:
        if self.sep:
            self.out.append(self.sep)
        self.sep = ","

    @staticmethod
    def quote(s: str) -> str:
        esc = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f", "\b": "\\b", "\\": "\\\\",
               '"': '\\"'}
        return '"' + "".join(esc.get(c, c) for c in s) + '"'

    def start_object(self) -> None:
        self._begin("{")

    def end_object(self) -> None:
        self._end("}")

    def start_array(self) -> None:
        self._begin("[")

    def end_array(self) -> None:
        self._end("]")

    def _begin(self, c: str) -> None:
        self._eor()
        self.out.append(c)
        self.depth += 1
        self.sep = ""

    def _end(self, c: str) -> None:
        self.depth -= 1
        if self.sep:
            self._eol()
        self.out.append(c)
        self.sep = ","

    def name(self, name: str) -> None:
        self._eor()
        self._eol()
        self.sep = ""
        self.out.append(self.quote(name) + (": " if self.pretty else ":"))

    def raw(self, text: str) -> None:
        """``jsonw_printf``: a value spelled exactly as given."""
        self._eor()
        self.out.append(text)

    def string(self, s: str) -> None:
        self._eor()
        self.out.append(self.quote(s))

    def bool(self, v: bool) -> None:
        self.raw("true" if v else "false")

    def text(self) -> str:
        return "".join(self.out)


_MAX_EMPTY_ELEMS = 1 << 16


class _Unsupported(Exception):
    """bpftool gave up on this value (it returns an error and stops the walk)."""


def _c_str(data: bytes) -> str:
    end = data.find(b"\0")
    return data[:end if end >= 0 else len(data)].decode("latin-1")


class ValueDumper:
    """``struct btf_dumper``: walks ``data`` as type ``type_id`` into a JsonWriter."""

    def __init__(self, btf: "BTF", jw: JsonWriter, plain: bool):
        self.btf = btf
        self.jw = jw
        self.plain = plain
        self.little = btf.byteorder == "little"
        self.e = "<" if self.little else ">"

    def dump(self, type_id: int, data: bytes) -> bool:
        """Write the value; False if bpftool would have stopped with an error."""
        try:
            need = self.btf.sizeof(type_id)
        except BTFError:
            need = 0
        if len(data) < need:
            raise BTFError(f"{len(data)} bytes of data for type [{type_id}] of {need} bytes")
        try:
            self._do_type(type_id, 0, data, 0)
            return True
        except _Unsupported:
            return False
        except RecursionError:
            raise BTFError(f"type [{type_id}] nests too deeply to print") from None

    # ---------------------------------------------------------------- kinds

    def _do_type(self, tid: int, bit_off: int, data: bytes, pos: int) -> None:
        btf = self.btf
        t = btf[tid]
        k = t.kind
        if k is Kind.INT:
            self._int(t, bit_off, data, pos)
        elif k in (Kind.STRUCT, Kind.UNION):
            self._struct(t, data, pos)
        elif k is Kind.ARRAY:
            self._array(t, data, pos)
        elif k is Kind.ENUM:
            self._enum(t, data, pos)
        elif k is Kind.ENUM64:
            self._enum64(t, data, pos)
        elif k is Kind.PTR:
            v = self._uint(data, pos, btf.pointer_size)
            if self.plain:
                self.jw.raw(f"{v:#x}" if v else "(nil)")
            else:
                self.jw.raw(str(v))
        elif k is Kind.UNKN:
            self.jw.raw("(unknown)")
        elif k is Kind.FWD:
            self.jw.raw("(fwd-kind-invalid)")
            raise _Unsupported
        elif k is Kind.TYPEDEF or k in MODIFIERS:
            r = btf.resolve(tid)
            if r.id == 0:
                raise _Unsupported
            self._do_type(r.id, bit_off, data, pos)
        elif k is Kind.VAR:
            self.jw.start_object()
            self.jw.name(t.name)
            try:
                self._do_type(t.type_id, bit_off, data, pos)
            finally:
                self.jw.end_object()
        elif k is Kind.DATASEC:
            self.jw.start_object()
            self.jw.name(t.name)
            self.jw.start_array()
            try:
                for v in t.vars:
                    self._do_type(v.type_id, 0, data, pos + v.offset)
            finally:
                self.jw.end_array()
                self.jw.end_object()
        elif k is Kind.FLOAT:
            self._float(t, data, pos)
        else:
            self.jw.raw("(unsupported-kind")
            raise _Unsupported

    def _bytes(self, data: bytes, pos: int, n: int) -> bytes:
        if pos + n > len(data):
            # only types whose members overrun their own size get here
            raise BTFError(f"value data ends at byte {len(data)}, but the type reads "
                           f"{pos}+{n}")
        return data[pos:pos + n]

    def _uint(self, data: bytes, pos: int, n: int) -> int:
        return int.from_bytes(self._bytes(data, pos, n), "little" if self.little else "big")

    def _sint(self, data: bytes, pos: int, n: int) -> int:
        return int.from_bytes(self._bytes(data, pos, n), "little" if self.little else "big",
                              signed=True)

    def _int128(self, value: int) -> None:
        hi, lo = value >> 64, value & 0xFFFFFFFFFFFFFFFF
        s = f"0x{lo:x}" if hi == 0 else f"0x{hi:x}{lo:016x}"
        self.jw.raw(s if self.plain else f'"{s}"')

    def _bitfield(self, nr_bits: int, bit_off: int, data: bytes, pos: int) -> None:
        nbytes = (bit_off + nr_bits + 7) // 8
        raw = self._bytes(data, pos, nbytes)
        if self.little:
            v = int.from_bytes(raw, "little") >> bit_off
        else:
            v = int.from_bytes(raw, "big") >> (nbytes * 8 - bit_off - nr_bits)
        self._int128(v & ((1 << nr_bits) - 1))

    def _int(self, t, bit_off: int, data: bytes, pos: int) -> None:
        nr_bits = t.nr_bits
        if bit_off or t.bits_offset or nr_bits % 8:
            total = bit_off + t.bits_offset
            self._bitfield(nr_bits, total % 8, data, pos + total // 8)
            return
        if nr_bits == 128:
            self._int128(self._uint(data, pos, 16))
            return
        enc = t.encoding
        n = nr_bits // 8
        if enc in (0, 1):
            if n not in (1, 2, 4, 8):
                self._bitfield(nr_bits, bit_off, data, pos)
                return
            v = self._sint(data, pos, n) if enc == 1 else self._uint(data, pos, n)
            self.jw.raw(str(v))
        elif enc == 2:       # CHAR
            c = self._bytes(data, pos, 1)[0]
            if 0x20 <= c < 0x7F:
                self.jw.raw(f'"{chr(c)}"')
            elif self.plain:
                self.jw.raw(f"0x{c:x}")
            else:
                self.jw.raw(f'"\\u00{c:02x}"')
        elif enc == 4:       # BOOL, read as an int like bpftool does
            avail = max(0, min(4, len(data) - pos))
            self.jw.bool(self._uint(data, pos, avail) != 0 if avail else False)
        else:
            raise _Unsupported

    def _float(self, t, data: bytes, pos: int) -> None:
        fmt = {2: "e", 4: "f", 8: "d"}.get(t.size)
        if fmt is None:
            self.jw.raw("(unsupported-kind")
            raise _Unsupported
        v = struct.unpack(self.e + fmt, self._bytes(data, pos, t.size))[0]
        if math.isfinite(v):
            self.jw.raw(repr(v))
        else:
            s = "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
            self.jw.raw(s if self.plain else f'"{s}"')

    def _enum(self, t, data: bytes, pos: int) -> None:
        if t.size not in (1, 2, 4, 8):
            raise _Unsupported
        v = self._sint(data, pos, t.size)
        for ev in t.values:
            # bpftool compares the sign-extended value with the __s32 enumerator
            ev32 = ev.value - (1 << 32) if ev.value >= 1 << 31 else ev.value
            if v == ev32:
                self.jw.string(ev.name)
                return
        self.jw.raw(str(v))

    def _enum64(self, t, data: bytes, pos: int) -> None:
        v = self._uint(data, pos, 8)
        for ev in t.values:
            if v == ev.value & 0xFFFFFFFFFFFFFFFF:
                self.jw.string(ev.name)
                return
        self.jw.raw(str(v - (1 << 64) if v >> 63 else v))

    def _is_str_array(self, t, data: bytes, pos: int) -> bool:
        if not t.nelems:
            return False
        btf = self.btf
        e = btf[t.type_id]
        while e.kind in MODIFIERS:       # typedefs of char do not count
            e = btf[e.type_id]
        if e.kind is not Kind.INT or e.size != 1:
            return False
        if e.encoding != 2 and e.name != "char":
            return False
        for c in self._bytes(data, pos, t.nelems):
            if c == 0:
                return True
            if c <= 0x1F or c >= 0x7F:
                return False
        return False

    def _array(self, t, data: bytes, pos: int) -> None:
        if self._is_str_array(t, data, pos):
            self.jw.string(_c_str(self._bytes(data, pos, t.nelems)))
            return
        try:
            esize = self.btf.sizeof(t.type_id)
        except BTFError:
            raise _Unsupported from None
        if pos + esize * t.nelems > len(data):
            raise BTFError(f"array [{t.id}] of {t.nelems} elements runs past the end of the "
                           f"value data ({len(data)} bytes)")
        if esize == 0 and t.nelems > _MAX_EMPTY_ELEMS:
            raise BTFError(f"array [{t.id}] of {t.nelems} zero-size elements is too long to print")
        self.jw.start_array()
        try:
            for i in range(t.nelems):
                self._do_type(t.type_id, 0, data, pos + i * esize)
        finally:
            self.jw.end_array()

    def _struct(self, t, data: bytes, pos: int) -> None:
        self.jw.start_object()
        try:
            for m in t.members:
                self.jw.name(m.name)
                off = pos + m.bits_offset // 8
                if m.bitfield_size:
                    self._bitfield(m.bitfield_size, m.bits_offset % 8, data, off)
                else:
                    self._do_type(m.type_id, m.bits_offset % 8, data, off)
        finally:
            self.jw.end_object()


# -------------------------------------------------------------------------------- API


def format_value(btf: "BTF", type_id: int, data: bytes, *, indent: int = 0) -> str:
    """The plain-text form of one value, as it appears in ``bpftool map dump``
    (nested lines indented by 4 spaces per level, starting at ``indent`` levels)."""
    jw = JsonWriter(pretty=True)
    jw.depth = indent
    ValueDumper(btf, jw, plain=True).dump(type_id, data)
    return jw.text()


def value_json(btf: "BTF", type_id: int, data: bytes) -> Any:
    """The value as ``bpftool -j map dump`` formats it, as a Python object."""
    jw = JsonWriter(pretty=False)
    ok = ValueDumper(btf, jw, plain=False).dump(type_id, data)
    text = jw.text()
    if not ok:
        raise BTFError(f"type [{type_id}] ({btf[type_id].kind.name}) cannot be formatted: "
                       f"{text!r}")
    return json.loads(text, strict=False)     # bpftool does not escape control characters


def hex_json(data: bytes) -> list[str]:
    """bpftool's ``print_hex_data_json``: ["0x01", "0x00", ...]."""
    return [f"0x{b:02x}" for b in data]


def _entry(jw: JsonWriter, dumper: ValueDumper, key_type_id: int, value_type_id: int,
           key: bytes, value: bytes | Sequence[bytes]) -> None:
    jw.start_object()
    try:
        if key_type_id:
            jw.name("key")
            if not dumper.dump(key_type_id, key):
                return
        if isinstance(value, (bytes, bytearray)):
            jw.name("value")
            dumper.dump(value_type_id, bytes(value))
        else:
            jw.name("values")
            jw.start_array()
            for cpu, v in enumerate(value):
                jw.start_object()
                jw.name("cpu")
                jw.raw(str(cpu))
                jw.name("value")
                ok = dumper.dump(value_type_id, bytes(v))
                jw.end_object()
                if not ok:
                    break
            jw.end_array()
    finally:
        jw.end_object()


def format_map_dump(btf: "BTF", key_type_id: int, value_type_id: int,
                    entries: Iterable[tuple[bytes, bytes | Sequence[bytes]]]) -> str:
    """``bpftool map dump`` of a map with BTF, plain text, trailing newline included.

    ``entries`` are (key, value) pairs; a per-CPU map gives a sequence of
    per-CPU values instead of one value.  ``key_type_id`` 0 omits the key
    (array maps of global data).
    """
    jw = JsonWriter(pretty=True)
    d = ValueDumper(btf, jw, plain=True)
    jw.start_array()
    for key, value in entries:
        _entry(jw, d, key_type_id, value_type_id, bytes(key), value)
    jw.end_array()
    return jw.text() + "\n"


def map_dump_json(btf: "BTF | None", key_type_id: int, value_type_id: int,
                  entries: Iterable[tuple[bytes, bytes | Sequence[bytes]]]) -> list[dict]:
    """``bpftool -j map dump`` as Python objects (hex bytes plus "formatted")."""
    out = []
    for key, value in entries:
        e: dict[str, Any] = {"key": hex_json(key)}
        if isinstance(value, (bytes, bytearray)):
            e["value"] = hex_json(value)
        else:
            e["values"] = [{"cpu": i, "value": hex_json(v)} for i, v in enumerate(value)]
        if btf is not None:
            jw = JsonWriter(pretty=False)
            _entry(jw, ValueDumper(btf, jw, plain=False), key_type_id, value_type_id,
                   bytes(key), value)
            e["formatted"] = json.loads(jw.text(), strict=False)
        out.append(e)
    return out
