"""Context structures, their access rules and rewrites: the data model.

A context structure (``struct __sk_buff``, ``struct xdp_md``, ...) is a list of
:class:`Field`.  Each field says which access sizes Linux accepts, whether
narrow (1/2-byte) loads of it are allowed, what kind of value a load
produces (a scalar, a packet pointer, a socket pointer...) and how a load or
store is rewritten for the runtime's own structures.  A program type then
says which fields it lets programs read and write (:class:`CtxRules`).

This mirrors the kernel's split between ``is_valid_access`` (here
:meth:`CtxRules.access`) and ``convert_ctx_access`` (here the field's
``load``/``store`` converters), and the generic narrow-load handling of
``convert_ctx_accesses`` in kernel/bpf/verifier.c (:func:`convert_access`).
"""
from __future__ import annotations

import enum
import errno
from dataclasses import dataclass, replace
from typing import Callable, Iterable

from ..isa import Instruction, Kind
from . import emit as E


class RegType(enum.Enum):
    """What a ctx load puts in the destination register (the verifier's reg types)."""
    SCALAR_VALUE = "scalar"
    PTR_TO_CTX = "ctx"
    PTR_TO_PACKET = "pkt"
    PTR_TO_PACKET_META = "pkt_meta"
    PTR_TO_PACKET_END = "pkt_end"
    PTR_TO_FLOW_KEYS = "flow_keys"
    PTR_TO_SOCKET = "sock"
    PTR_TO_SOCKET_OR_NULL = "sock_or_null"
    PTR_TO_SOCK_COMMON = "sock_common"
    PTR_TO_SOCK_COMMON_OR_NULL = "sock_common_or_null"
    PTR_TO_TCP_SOCK = "tcp_sock"
    PTR_TO_BTF_ID = "ptr_"
    PTR_TO_BTF_ID_OR_NULL = "ptr_or_null_"
    PTR_TO_MEM = "mem"
    PTR_TO_TP_BUFFER = "tp_buffer"


# (insn with the field's offset/size applied) -> (replacement, size of the real load)
Converter = Callable[[Instruction], tuple[list[Instruction], int]]


@dataclass(frozen=True)
class Field:
    """One member of a uapi context structure."""
    name: str
    off: int
    size: int
    sizes: tuple[int, ...] = (4,)      # access sizes accepted for the whole field
    narrow: bool = False               # 1/2-byte loads inside the field are accepted
    any_size: bool = False             # any aligned access inside the field (cb[], args)
    reg_type: RegType = RegType.SCALAR_VALUE
    load: Converter | None = None      # None: the runtime keeps this field at the same offset
    store: Converter | None = None
    ctx_field_size: int = 0            # bpf_ctx_record_field_size(); default: size
    elem: int = 0                      # an array of elem-byte members, each loaded on its own
    narrow_at_start: bool = False      # narrow loads only at the field's first byte

    @property
    def end(self) -> int:
        return self.off + self.size

    @property
    def load_size(self) -> int:
        return self.ctx_field_size or self.size


@dataclass(frozen=True)
class Access:
    """The answer to "may a program access ctx+off with this size?" (is_valid_access)."""
    field: Field
    off: int
    size: int
    write: bool
    reg_type: RegType
    ctx_field_size: int


class CtxAccessError(OSError):
    """A context access Linux would reject at load time (EACCES), with its log line."""

    def __init__(self, message: str, *, pc: int | None = None, err: int = errno.EACCES):
        self.pc = pc
        self.message = message
        super().__init__(err, f"insn {pc}: {message}" if pc is not None else message)


@dataclass(frozen=True)
class CtxStruct:
    """A uapi context structure: its C name, size and fields (sorted by offset)."""
    name: str
    size: int
    fields: tuple[Field, ...]

    def field_at(self, off: int) -> Field | None:
        """The innermost field holding byte ``off`` (a padding member beats its neighbour)."""
        best = None
        for f in self.fields:
            if f.off <= off < f.end and (best is None or f.size < best.size):
                best = f
        return best

    def __getitem__(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def offsetof(self, name: str) -> int:
        return self[name].off

    def with_fields(self, *fields: Field) -> "CtxStruct":
        """A copy with some fields replaced (same name) -- per-type conversions."""
        by = {f.name: f for f in fields}
        return replace(self, fields=tuple(by.get(f.name, f) for f in self.fields))


@dataclass(frozen=True)
class CtxRules:
    """Which fields of a context a program type may read and write.

    ``readable``/``writable`` hold field names; None means every field.
    ``check`` may refine the answer (for rules that depend on offsets or the
    attach type) and returns a rejection message or None.  ``read_cap_bpf`` /
    ``write_cap_bpf``: fields only a loader with CAP_BPF may read / write.
    """
    struct: CtxStruct
    readable: frozenset[str] | None = None
    writable: frozenset[str] = frozenset()
    check: Callable[[Field, int, int, bool], str | None] | None = None
    read_cap_bpf: frozenset[str] = frozenset()
    write_cap_bpf: frozenset[str] = frozenset()

    def access(self, off: int, size: int, write: bool, *,
               bpf_capable: bool = True) -> Access | None:
        s = self.struct
        if off < 0 or size not in (1, 2, 4, 8) or off + size > s.size or off % size:
            return None
        f = s.field_at(off)
        if f is None or off + size > f.end:
            return None
        if write:
            if f.name not in self.writable:
                return None
        elif self.readable is not None and f.name not in self.readable:
            return None
        if not bpf_capable and f.name in (self.write_cap_bpf if write else self.read_cap_bpf):
            return None
        if f.elem:
            start = f.off + (off - f.off) // f.elem * f.elem
            if off + size > start + f.elem or (write and (size != f.elem or off != start)):
                return None
            if not (off == start and size == f.elem) and not f.narrow:
                return None
            cfs = f.elem
        elif f.any_size:
            cfs = size
        elif off == f.off and size in f.sizes:
            cfs = f.load_size if not write else size
        elif f.narrow and not write and size < f.load_size and \
                (off == f.off or not f.narrow_at_start):
            cfs = f.load_size
        else:
            return None
        if self.check is not None and self.check(f, off, size, write):
            return None
        return Access(f, off, size, write, f.reg_type if not write else RegType.SCALAR_VALUE, cfs)


def convert_access(insn: Instruction, acc: Access, pc: int | None = None) -> list[Instruction]:
    """Rewrite one ctx access as Linux's convert_ctx_accesses() does.

    Narrow loads are widened to the field's recorded size, converted, then
    shifted and masked; accesses the runtime keeps at the same offset (no
    converter) stay as they are.
    """
    f = acc.field
    write = insn.kind in (Kind.STX, Kind.ST)
    conv = f.store if write else f.load
    size = acc.size
    off = insn.off
    narrow = not write and not f.any_size and size < acc.ctx_field_size
    if conv is None:
        return [insn]
    size_default = {8: 8, 2: 2}.get(acc.ctx_field_size, 4)
    if narrow:
        cfs = acc.ctx_field_size
        base = E.ldx(cfs if cfs in (2, 4, 8) else 4, insn.dst, insn.src, off & ~(size_default - 1))
    else:
        base = insn
    if write and insn.kind is Kind.ST:
        raise CtxAccessError(f"BPF_ST stores into R{insn.dst} ctx is not allowed", pc=pc)
    out, target = conv(base)
    if narrow and size < target:
        shift = (off & (size_default - 1)) * 8
        if acc.ctx_field_size <= 4:
            if shift:
                out.append(E.alu32_imm("rsh", insn.dst, shift))
            out.append(E.alu32_imm("and", insn.dst, (1 << (size * 8)) - 1))
        else:
            if shift:
                out.append(E.alu64_imm("rsh", insn.dst, shift))
            out.append(E.alu32_imm("and", insn.dst, (1 << (size * 8)) - 1))
    return out


# -- converters built from small recipes -------------------------------------------------

def at(kernel_off: int, kernel_size: int, field_off: int = 0, *,
       any_size: bool = False) -> tuple[Converter, Converter]:
    """(load, store) for a field that lives at ``kernel_off`` with ``kernel_size`` bytes.

    With ``any_size`` the access keeps its own size and its offset inside the
    field (cb[], arrays); otherwise the real member's size is used.
    """
    def load(i: Instruction):
        sz = i.spec.size if any_size else kernel_size
        return [E.ldx(sz, i.dst, i.src, kernel_off + (i.off - field_off if any_size else 0))], sz

    def store(i: Instruction):
        sz = i.spec.size if any_size else kernel_size
        return [E.stx(sz, i.dst, i.src, kernel_off + (i.off - field_off if any_size else 0))], sz
    return load, store


def via(ptr_off: int, member_off: int, member_size: int, *, null_check: bool = False,
        ptr_size: int = 8) -> Converter:
    """Load through a pointer member: dst = ptr->member (optionally skipping a NULL ptr)."""
    def load(i: Instruction):
        out = [E.ldx(ptr_size, i.dst, i.src, ptr_off)]
        if null_check:
            out.append(E.jmp_imm("jeq", i.dst, 0, 1))
        out.append(E.ldx(member_size, i.dst, i.dst, member_off))
        return out, member_size
    return load


def sequence(*steps: Callable[[Instruction], Iterable[Instruction]], target: int) -> Converter:
    def conv(i: Instruction):
        return [x for s in steps for x in s(i)], target
    return conv

