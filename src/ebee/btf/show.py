"""btf_show(): the kernel's rendering of a typed object as text, as
bpf_snprintf_btf() and bpf_seq_printf_btf() produce it.

This follows kernel/bpf/btf.c step for step, because its output is defined by
its algorithm rather than by a grammar:

- ``(type)value`` per leaf, ``.member = `` before struct members, ``{``/``}``
  and ``[``/``]`` around aggregates, one member per line indented by depth
  unless ``BTF_F_COMPACT``; ``BTF_F_NONAME`` drops the ``(type)`` and member
  names; zero leaves (and aggregates with no non-zero leaf beneath them, found
  by a first pass that prints nothing) are left out unless ``BTF_F_ZERO`` or
  at depth 0;
- arrays of one-byte integers print printable bytes as ``'c'`` and stop at the
  first NUL; bitfields, odd-width and 128-bit integers print in hex;
- the object is read through a 32-byte "safe" window copied with
  copy_from_kernel_nofault(), re-copied when a leaf falls outside it, so an
  object that runs into unreadable memory prints up to the chunk that fails and
  the call reports that copy's error (a later successful copy clears it, as in
  the kernel).

Pointers print as ``0x%016x`` with or without ``BTF_F_PTR_RAW``: the kernel
hashes them unless PTR_RAW with a boot-time secret key, which user space cannot
reproduce; ebee prints the address as it does for ``%p`` in printk-style
helpers.
"""
from __future__ import annotations

from typing import Callable

from ..uapi import BTF_F_COMPACT, BTF_F_NONAME, BTF_F_ZERO, BTF_INT_CHAR, BTF_INT_SIGNED
from .btf import BTF
from .types import MODIFIERS, Kind, Member, Type

#: the chunk copied into the safe buffer (BTF_SHOW_OBJ_SAFE_SIZE)
SAFE_SIZE = 32
#: the largest base type (BTF_SHOW_OBJ_BASE_TYPE_SIZE): a 128-bit integer
BASE_TYPE_SIZE = 16
#: show->state.name's size (BTF_SHOW_NAME_SIZE): longer names are cut
NAME_SIZE = 80
#: pointer/array/typedef nesting btf_show_name() follows (BTF_SHOW_MAX_ITER)
MAX_ITER = 10
MAX_RESOLVE_DEPTH = 32
U32_MAX = (1 << 32) - 1

#: read(addr, size) -> the bytes, or a negative errno (copy_from_kernel_nofault())
Reader = Callable[[int, int], "bytes | int"]
#: emit(text): where btf_show() sends each piece (vsnprintf or seq_vprintf)
Emitter = Callable[[bytes], None]


class _SizeError(Exception):
    pass


def _resolve_size(btf: BTF, t: Type) -> int:
    """btf_resolve_size(): the size of ``t``, arrays multiplied out; -EINVAL for kinds
    without a size."""
    nelems = 1
    for _ in range(MAX_RESOLVE_DEPTH):
        k = t.kind
        if k in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FLOAT, Kind.ENUM64):
            size = t.size
            break
        if k is Kind.PTR:
            size = 8
            break
        if k is Kind.TYPEDEF or k in MODIFIERS:
            t = btf[t.type_id]
        elif k is Kind.ARRAY:
            if nelems and t.nelems > U32_MAX // nelems:
                raise _SizeError
            nelems *= t.nelems
            t = btf[t.type_id]
        else:
            raise _SizeError
    else:
        raise _SizeError
    if nelems and size > U32_MAX // nelems:
        raise _SizeError
    return nelems * size


class _Show:
    def __init__(self, btf: BTF, flags: int, read: Reader, emit: Emitter) -> None:
        self.btf = btf
        self.flags = flags
        self.read = read
        self.emit = emit
        # show->state
        self.depth = 0
        self.depth_to_show = 0
        self.depth_check = 0
        self.array_member = False
        self.array_terminated = False
        self.array_encoding = 0
        self.type_id = 0
        self.status = 0
        self.type: Type | None = None
        self.member: Member | None = None
        # show->obj
        self.obj_size = 0
        self.obj_head = 0
        self.obj_data = 0
        self.safe = bytes(SAFE_SIZE)

    # ------------------------------------------------------------------ types

    def by_id(self, tid: int) -> Type | None:
        try:
            return self.btf[tid]
        except KeyError:
            return None

    def skip_modifiers(self, tid: int) -> tuple[Type | None, int]:
        """btf_type_skip_modifiers(): typedefs included; the final id too."""
        t = self.by_id(tid)
        while t is not None and (t.kind is Kind.TYPEDEF or t.kind in MODIFIERS):
            tid = t.type_id
            t = self.by_id(tid)
        return t, tid

    def skip_qualifiers(self, tid: int) -> Type | None:
        """btf_type_skip_qualifiers(): modifiers but not typedefs."""
        t = self.by_id(tid)
        while t is not None and t.kind in MODIFIERS:
            t = self.by_id(t.type_id)
        return t

    # ------------------------------------------------------------------ text

    def out(self, text: str) -> None:
        """btf_show(): nothing during a pass that only looks for non-zero data."""
        if not self.depth_check:
            self.emit(text.encode("latin-1"))

    def indent(self) -> str:
        return "" if self.flags & BTF_F_COMPACT else " " * min(self.depth, 32)

    def newline(self) -> str:
        return "" if self.flags & BTF_F_COMPACT else "\n"

    def delim(self) -> str:
        if self.depth == 0:
            return ""
        if self.flags & BTF_F_COMPACT and self.type is not None and \
                self.type.kind is Kind.UNION:
            return "|"
        return ","

    def name(self) -> str:
        """btf_show_name(): ``[.member = ](type name[ *...][[]...])`` and the opening
        ``{`` or ``[`` of an aggregate."""
        if self.array_member:
            return ""
        m = self.member
        tid = self.type_id
        member = ""
        if m is not None:
            member = m.name
            tid = m.type_id
        t = self.by_id(tid)
        if t is None:
            return ""
        name: str | None = None
        parens = ""
        n_arrays = n_ptrs = 0
        has_ptr = has_typedef = has_array = False
        for i in range(MAX_ITER):
            k = t.kind
            if k is Kind.TYPEDEF:
                if name is None:
                    name = t.name
                has_typedef = True
                tid = t.type_id
            elif k is Kind.ARRAY:
                has_array = True
                parens = "["
                n_arrays = min(n_arrays + 1, MAX_ITER)
                tid = t.type_id
            elif k is Kind.PTR:
                has_ptr = True
                n_ptrs = min(n_ptrs + 1, MAX_ITER)
                tid = t.type_id
            else:
                tid = 0
            if not tid:
                break
            t = self.skip_qualifiers(tid)
            if t is None:
                return ""
        else:
            return ""
        if name is None:
            name = t.name
        prefix = ""
        if t.kind in (Kind.STRUCT, Kind.UNION):
            prefix = "struct" if t.kind is Kind.STRUCT else "union"
            if not has_array:
                parens = "{"
        elif t.kind in (Kind.ENUM, Kind.ENUM64):
            prefix = "enum"
        if has_ptr:
            parens = ""
        if has_typedef:
            prefix = ""
        if self.flags & BTF_F_NONAME:
            return parens
        ptr_suffix = "*" * n_ptrs
        text = "".join((
            f".{member} = " if member else "",
            "(", prefix, " " if prefix and name else "", name,
            " " if ptr_suffix else "", ptr_suffix, "[]" * n_arrays, ")", parens))
        return text[:NAME_SIZE - 1]

    def value(self, text: str, nonzero: bool) -> None:
        """btf_show_type_value(): a leaf, left out when zero below depth 0."""
        if nonzero or self.flags & BTF_F_ZERO or self.depth == 0:
            self.values(text)

    def values(self, text: str) -> None:
        """btf_show_type_values(): a leaf shown whatever its value."""
        self.out(f"{self.indent()}{self.name()}{text}{self.delim()}{self.newline()}")
        if self.depth > self.depth_to_show:
            self.depth_to_show = self.depth

    # ------------------------------------------------------------------ safe copy

    def obj_safe(self, t: Type, data: int) -> int | None:
        """btf_show_obj_safe(): the offset of ``data`` in the safe copy, recopied
        when the leaf could fall outside it; None (and the status set) on failure."""
        try:
            size = _resolve_size(self.btf, t)
        except (_SizeError, KeyError):
            self.status = -22             # -EINVAL
            return None
        if self.depth == 0:
            self.obj_size = size
            self.obj_head = data
        else:
            n = min(size, BASE_TYPE_SIZE)
            if data >= self.obj_data and data + n < self.obj_data + SAFE_SIZE:
                return data - self.obj_data
        size_left = min(self.obj_head + self.obj_size - data, SAFE_SIZE)
        got = self.read(data, size_left) if size_left >= 0 else -14
        if isinstance(got, int):
            self.status = got
            return None
        self.status = 0
        self.obj_data = data
        self.safe = bytes(got) + self.safe[len(got):]
        return 0

    def start_type(self, t: Type, tid: int, data: int) -> int | None:
        self.type = t
        self.type_id = tid
        return self.obj_safe(t, data)

    def end_type(self) -> None:
        self.type = None
        self.type_id = 0

    def bytes_at(self, off: int, n: int) -> bytes:
        b = self.safe[off:off + n]
        return b + bytes(n - len(b))

    def start_aggr(self, t: Type, tid: int, data: int) -> bool:
        if self.start_type(t, tid, data) is None:
            return False
        self.out(f"{self.indent()}{self.name()}{self.newline()}")
        self.depth += 1
        return True

    def end_aggr(self, suffix: str) -> None:
        self.depth -= 1
        self.out(f"{self.indent()}{suffix}{self.delim()}{self.newline()}")
        self.end_type()

    # ------------------------------------------------------------------ kinds

    def show(self, t: Type, tid: int, data: int, bits_offset: int) -> None:
        k = t.kind
        if k is Kind.INT:
            self.int_show(t, tid, data, bits_offset)
        elif k is Kind.PTR:
            self.ptr_show(t, tid, data)
        elif k is Kind.ARRAY:
            self.aggregate(self.array_body, t, tid, data, bits_offset)
        elif k in (Kind.STRUCT, Kind.UNION):
            self.aggregate(self.struct_body, t, tid, data, bits_offset)
        elif k in (Kind.ENUM, Kind.ENUM64):
            self.enum_show(t, tid, data)
        elif k is Kind.TYPEDEF or k in MODIFIERS:
            rt, _ = self.skip_modifiers(tid)
            if rt is None or rt.kind is Kind.UNKN:
                self.out(f"<unsupported kind:{int(rt.kind) if rt is not None else 0}>")
            else:
                self.show(rt, tid, data, bits_offset)
        elif k is Kind.VAR:
            rt, rid = self.skip_modifiers(t.type_id)
            if rt is not None:
                self.show(rt, rid, data, bits_offset)
        elif k is Kind.DATASEC:
            self.datasec_show(t, tid, data, bits_offset)
        else:       # FWD, FUNC, FUNC_PROTO, FLOAT, DECL_TAG: btf_df_show()
            self.out(f"<unsupported kind:{int(k)}>")

    def int_show(self, t: Type, tid: int, data: int, bits_offset: int) -> None:
        off = self.start_type(t, tid, data)
        if off is None:
            return
        nr_bits = t.nr_bits
        sign = bool(t.encoding & BTF_INT_SIGNED)
        if bits_offset or t.bits_offset or nr_bits % 8 or nr_bits not in (8, 16, 32, 64, 128):
            self.bits_show(off, bits_offset + t.bits_offset, nr_bits)
        elif nr_bits == 128:
            self.int128(int.from_bytes(self.bytes_at(off, 16), "little"))
        elif nr_bits == 8 and self.array_encoding == BTF_INT_CHAR and \
                (self.array_terminated or self.bytes_at(off, 1) == b"\0"):
            self.array_terminated = True
        elif nr_bits == 8 and self.array_encoding == BTF_INT_CHAR and \
                _isprint(self.bytes_at(off, 1)[0]):
            self.value(f"'{chr(self.bytes_at(off, 1)[0])}'", True)
        else:
            v = int.from_bytes(self.bytes_at(off, nr_bits // 8), "little", signed=sign)
            self.value(str(v), v != 0)
        self.end_type()

    def bits_show(self, off: int, total_bits: int, nr_bits: int) -> None:
        """btf_int_bits_show() + btf_bitfield_show(): the bits as a 128-bit number."""
        off += total_bits // 8
        self.bitfield(self.bytes_at(off, 16), total_bits % 8, nr_bits)

    def bitfield(self, raw: bytes, bits_offset: int, nr_bits: int) -> None:
        nr_copy_bits = nr_bits + bits_offset
        n = int.from_bytes(raw[:(nr_copy_bits + 7) // 8], "little")
        left = 128 - nr_copy_bits
        right = 128 - nr_bits
        self.int128(((n << left) & ((1 << 128) - 1)) >> right)

    def int128(self, v: int) -> None:
        upper, lower = v >> 64, v & ((1 << 64) - 1)
        if upper == 0:
            self.value(f"0x{lower:x}", lower != 0)
        else:
            self.values(f"0x{upper:x}{lower:016x}")

    def ptr_show(self, t: Type, tid: int, data: int) -> None:
        off = self.start_type(t, tid, data)
        if off is None:
            return
        v = int.from_bytes(self.bytes_at(off, 8), "little")
        self.value(f"0x{v:016x}", v != 0)
        self.end_type()

    def enum_show(self, t: Type, tid: int, data: int) -> None:
        off = self.start_type(t, tid, data)
        if off is None:
            return
        wide = t.kind is Kind.ENUM64
        bits = 64 if wide else 32
        mask = (1 << bits) - 1
        v = int.from_bytes(self.bytes_at(off, bits // 8), "little")
        for e in t.values:
            if e.value & mask == v:
                self.value(e.name, True)     # a name is a non-zero pointer: always shown
                break
        else:
            if t.signed and v >> (bits - 1):
                v -= 1 << bits
            self.value(str(v), v != 0)
        self.end_type()

    def aggregate(self, body, t: Type, tid: int, data: int, bits_offset: int) -> None:
        """btf_struct_show()/btf_array_show(): below depth 0, a first pass that prints
        nothing finds whether any leaf is non-zero."""
        m = self.member
        if self.depth > 0 and not self.flags & BTF_F_ZERO:
            if not self.depth_check:
                self.depth_check = self.depth + 1
                self.depth_to_show = 0
            body(t, tid, data, bits_offset)
            self.member = m
            if self.depth_check != self.depth + 1:
                return
            self.depth_check = 0
            if self.depth_to_show <= self.depth:
                return
        body(t, tid, data, bits_offset)

    def array_body(self, t: Type, tid: int, data: int, bits_offset: int) -> None:
        elem_id = t.type_id
        elem, _ = self.skip_modifiers(elem_id)
        elem_size = 0
        encoding = 0
        if elem is not None and elem.kind in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM,
                                              Kind.DATASEC, Kind.FLOAT, Kind.ENUM64):
            elem_size = elem.size
        if elem is not None and elem.kind is Kind.INT:
            encoding = elem.encoding
            if elem_size == 1:
                encoding = BTF_INT_CHAR
        self.array_encoding = encoding
        self.array_terminated = False
        if self.start_aggr(t, tid, data):
            if elem is not None:
                for _ in range(t.nelems):
                    self.array_member = True
                    self.member = None
                    self.show(elem, elem_id, data, bits_offset)
                    data += elem_size
                    self.array_member = False
                    self.member = None
                    if self.array_terminated:
                        break
            self.array_encoding = 0
            self.array_terminated = False
            self.end_aggr("]")

    def struct_body(self, t: Type, tid: int, data: int, bits_offset: int) -> None:
        if not self.start_aggr(t, tid, data):
            return
        for mem in t.members:
            self.member = mem
            mt = self.by_id(mem.type_id)
            byte_off, bits8 = mem.bits_offset // 8, mem.bits_offset % 8
            if mt is None:
                pass
            elif mem.bitfield_size:
                off = self.start_type(mt, mem.type_id, data + byte_off)
                if off is not None:
                    self.bitfield(self.bytes_at(off, 16), bits8, mem.bitfield_size)
                self.end_type()
            else:
                self.show(mt, mem.type_id, data + byte_off, bits8)
            self.member = None
        self.end_aggr("}")

    def datasec_show(self, t: Type, tid: int, data: int, bits_offset: int) -> None:
        if self.start_type(t, tid, data) is None:
            return
        self.value(f'section ("{t.name}") = {{', True)
        for i, vsi in enumerate(t.vars):
            var = self.by_id(vsi.type_id)
            if i:
                self.out(",")
            if var is not None:
                self.show(var, vsi.type_id, data + vsi.offset, bits_offset)
        self.end_type()


def _isprint(c: int) -> bool:
    """The kernel's isprint() (lib/ctype.c): ASCII 0x20..0x7e and Latin-1 0xa0..0xff."""
    return 0x20 <= c <= 0x7E or c >= 0xA0


def show(btf: BTF, type_id: int, addr: int, flags: int, read: Reader, emit: Emitter) -> int:
    """btf_type_show() of the object of type ``type_id`` at ``addr``: the text goes to
    ``emit`` piece by piece; returns 0 or the negative errno of the last failed copy."""
    s = _Show(btf, flags, read, emit)
    t = s.by_id(type_id)
    if t is None:
        return -2                         # -ENOENT
    s.show(t, type_id, addr, 0)
    return s.status


def snprintf(btf: BTF, type_id: int, addr: int, flags: int, read: Reader,
             size: int) -> tuple[bytes, int]:
    """btf_type_snprintf_show() into a ``size``-byte buffer: the bytes vsnprintf wrote
    there (text and terminating NUL, cut to fit) and the return value -- the length the
    whole text needed, or the copy error."""
    buf = bytearray()
    left = [size]
    need = [0]
    nul = [False]

    def emit(piece: bytes) -> None:
        need[0] += len(piece)
        if left[0] <= 0:
            return                        # vsnprintf(buf, 0, ...) writes nothing
        nul[0] = True                     # and otherwise always NUL-terminates
        if len(piece) >= left[0]:
            buf[len(buf):] = piece[:left[0] - 1]
            left[0] = 0
        else:
            buf[len(buf):] = piece
            left[0] -= len(piece)

    status = show(btf, type_id, addr, flags, read, emit)
    return bytes(buf) + (b"\0" if nul[0] else b""), status if status else need[0]


def render(btf: BTF, type_id: int, data: bytes, flags: int = 0) -> str:
    """The text bpf_snprintf_btf() gives for ``data`` as a ``type_id`` object (pointers as
    their values): for tests and for printing values the way the kernel does."""
    def read(addr: int, n: int) -> bytes | int:
        return data[addr:addr + n] if 0 <= addr and addr + n <= len(data) else -14
    out = bytearray()
    status = show(btf, type_id, 0, flags, read, out.extend)
    if status:
        raise ValueError(f"type [{type_id}]: cannot show {len(data)} bytes (errno {-status})")
    return out.decode("latin-1")
