"""BTF -> compilable C, exactly as ``bpftool btf dump file F format c`` prints it.

This follows libbpf's ``btf_dump.c`` (the version bpftool 7.1 links):

* a first pass marks every type referenced by another one (a top-level
  anonymous enum is one nobody references);
* for each type id in order, a depth-first *ordering* pass decides which
  definitions must come first: a *strong* link (a type embedded by value, or
  anything anonymous, which C defines inline) forces the dependency to be
  defined before; a *weak* link (through a pointer to a named type) only
  needs a forward declaration;
* the *emit* pass then writes definitions in that order, adding forward
  declarations where a type is used before its definition;
* names are made unique (``name___2``), struct padding is made explicit
  (``long: 64;``) so the layout survives recompilation, packing is inferred
  from member offsets, and declarators are built inside-out from the chain
  of pointer/array/function/modifier types.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Iterable

from .errors import BTFError
from .types import Kind

if TYPE_CHECKING:
    from .btf import BTF

HEADER = ("#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n\n"
          "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
          "#pragma clang attribute push (__attribute__((preserve_access_index)), "
          "apply_to = record)\n#endif\n\n")
FOOTER = ("#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n"
          "#endif /* __VMLINUX_H__ */\n")

_PREFIX_CNT = 13
_MAX_PAD_BITS = 64 << 16          # at most 65536 `long: 64;` lines for one gap
NOT_ORDERED, ORDERING, ORDERED = 0, 1, 2
NOT_EMITTED, EMITTING, EMITTED = 0, 1, 2

# GCC emits typedefs of its internal __PolyX_t types for Arm SIMD intrinsics
_MISSING_BASE_TYPES = {"__Poly8_t": "unsigned char", "__Poly16_t": "unsigned short",
                       "__Poly64_t": "unsigned long long", "__Poly128_t": "unsigned __int128"}

_COMPOSITE = (Kind.STRUCT, Kind.UNION)
_MODS = (Kind.VOLATILE, Kind.CONST, Kind.RESTRICT)


def _pfx(lvl: int) -> str:
    return "\t" * min(lvl, _PREFIX_CNT)


def format_c(btf: "BTF", type_ids: Iterable[int] | None = None) -> str:
    """The whole header bpftool writes (``vmlinux.h`` style)."""
    d = CDumper(btf)
    ids = range(1, btf.type_count) if type_ids is None else type_ids
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20000))
    try:
        for tid in ids:
            d.dump_type(tid)
    except RecursionError:
        raise BTFError("types nest too deeply to print as C") from None
    finally:
        sys.setrecursionlimit(old)
    return HEADER + "".join(d.out) + FOOTER


class CDumper:
    """libbpf's ``struct btf_dump``: state kept across ``dump_type`` calls."""

    def __init__(self, btf: "BTF"):
        self.btf = btf
        self.out: list[str] = []
        self.ptr_sz = btf.pointer_size
        n = btf.type_count
        self.order_state = bytearray(n)
        self.emit_state = bytearray(n)
        self.fwd_emitted = bytearray(n)
        self.name_resolved = bytearray(n)
        self.referenced = bytearray(n)
        self.cached_names: dict[int, str] = {}
        self.type_names: dict[str, int] = {}
        self.ident_names: dict[str, int] = {}
        self.emit_queue: list[int] = []
        self.order_state[0] = ORDERED
        self.emit_state[0] = EMITTED
        self.t = btf.__getitem__
        for t in btf.all_types():
            self._mark_referenced(t)

    def p(self, s: str) -> None:
        self.out.append(s)

    # -------------------------------------------------------------- referenced / ordering

    def _mark_referenced(self, t) -> None:
        k = t.kind
        ref = self.referenced
        if k in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.FWD, Kind.FLOAT):
            return
        if k is Kind.ARRAY:
            ref[t.index_type_id] = 1
            ref[t.type_id] = 1
        elif k in _COMPOSITE:
            for m in t.members:
                ref[m.type_id] = 1
        elif k is Kind.FUNC_PROTO:
            for prm in t.params:
                ref[prm.type_id] = 1
        elif k is Kind.DATASEC:
            for v in t.vars:
                ref[v.type_id] = 1
        else:
            ref[t.type_id] = 1

    def dump_type(self, tid: int) -> None:
        if not 0 <= tid < self.btf.type_count:
            raise BTFError(f"no BTF type [{tid}]")
        self.emit_queue = []
        self._order(tid, False)
        for qid in self.emit_queue:
            self._emit_type(qid, 0)

    def _order(self, tid: int, through_ptr: bool) -> int:
        st = self.order_state
        if st[tid] == ORDERED:
            return 1
        t = self.t(tid)
        k = t.kind
        if st[tid] == ORDERING:
            if k in _COMPOSITE and through_ptr and t.name:
                return 0
            raise BTFError(f"unsatisfiable type cycle, id:[{tid}]")
        if k in (Kind.INT, Kind.FLOAT):
            st[tid] = ORDERED
            return 0
        if k is Kind.PTR:
            r = self._order(t.type_id, True)
            st[tid] = ORDERED
            return r
        if k is Kind.ARRAY:
            return self._order(t.type_id, False)
        if k in _COMPOSITE:
            if through_ptr and t.name:
                return 0
            st[tid] = ORDERING
            for m in t.members:
                self._order(m.type_id, False)
            if t.name:
                self.emit_queue.append(tid)
            st[tid] = ORDERED
            return 1
        if k in (Kind.ENUM, Kind.ENUM64, Kind.FWD):
            if t.name or not self.referenced[tid]:
                self.emit_queue.append(tid)
            st[tid] = ORDERED
            return 1
        if k is Kind.TYPEDEF:
            strong = self._order(t.type_id, through_ptr)
            if through_ptr and not strong:
                return 0
            self.emit_queue.append(tid)
            st[tid] = ORDERED
            return 1
        if k in _MODS or k is Kind.TYPE_TAG:
            return self._order(t.type_id, through_ptr)
        if k is Kind.FUNC_PROTO:
            strong = self._order(t.return_type_id, through_ptr) > 0
            for prm in t.params:
                if self._order(prm.type_id, through_ptr) > 0:
                    strong = True
            return int(strong)
        # FUNC, VAR, DATASEC, DECL_TAG: not part of C type definitions
        st[tid] = ORDERED
        return 0

    # -------------------------------------------------------------- emitting

    def _blacklisted(self, t) -> bool:
        # __builtin_va_list is a compiler built-in; redefining it breaks compilation
        return bool(t.name) and t.name == "__builtin_va_list"

    def _emit_type(self, tid: int, cont_id: int) -> None:
        es = self.emit_state
        if es[tid] == EMITTED:
            return
        t = self.t(tid)
        k = t.kind
        top_level = cont_id == 0
        if es[tid] == EMITTING:
            if self.fwd_emitted[tid]:
                return
            if k in _COMPOSITE:
                if tid == cont_id:
                    return
                if not t.name:
                    return      # anonymous struct/union loop: libbpf warns and goes on
                self._emit_struct_fwd(tid, t)
                self.p(";\n\n")
                self.fwd_emitted[tid] = 1
            elif k is Kind.TYPEDEF:
                if not self._blacklisted(t):
                    self._emit_typedef_def(tid, t, 0)
                    self.p(";\n\n")
                self.fwd_emitted[tid] = 1
            return
        if k is Kind.INT:
            name = self._type_name(tid)
            if name in _MISSING_BASE_TYPES:
                self.p(f"typedef {_MISSING_BASE_TYPES[name]} {name};\n\n")
            es[tid] = EMITTED
        elif k in (Kind.ENUM, Kind.ENUM64):
            if top_level:
                self._emit_enum_def(tid, t, 0)
                self.p(";\n\n")
            es[tid] = EMITTED
        elif k is Kind.PTR or k in _MODS or k is Kind.TYPE_TAG:
            self._emit_type(t.type_id, cont_id)
        elif k is Kind.ARRAY:
            self._emit_type(t.type_id, cont_id)
        elif k is Kind.FWD:
            self._emit_fwd_def(tid, t)
            self.p(";\n\n")
            es[tid] = EMITTED
        elif k is Kind.TYPEDEF:
            es[tid] = EMITTING
            self._emit_type(t.type_id, tid)
            # a typedef is also its own forward declaration: unless it was
            # already emitted as one, emit it now
            if not self.fwd_emitted[tid] and not self._blacklisted(t):
                self._emit_typedef_def(tid, t, 0)
                self.p(";\n\n")
            es[tid] = EMITTED
        elif k in _COMPOSITE:
            es[tid] = EMITTING
            if top_level or not t.name:
                new_cont = cont_id if not t.name else tid
                for m in t.members:
                    self._emit_type(m.type_id, new_cont)
            elif not self.fwd_emitted[tid] and tid != cont_id:
                self._emit_struct_fwd(tid, t)
                self.p(";\n\n")
                self.fwd_emitted[tid] = 1
            if top_level:
                self._emit_struct_def(tid, t, 0)
                self.p(";\n\n")
                es[tid] = EMITTED
            else:
                es[tid] = NOT_EMITTED
        elif k is Kind.FUNC_PROTO:
            self._emit_type(t.return_type_id, cont_id)
            for prm in t.params:
                self._emit_type(prm.type_id, cont_id)

    # -------------------------------------------------------------- structs

    def _is_struct_packed(self, t) -> bool:
        btf = self.btf
        max_align = 1
        for m in t.members:
            align = btf.alignof(m.type_id)
            if align and not m.bitfield_size and m.bits_offset % (8 * align):
                return True
            max_align = max(align, max_align)
        return t.size % max_align != 0

    def _emit_bit_padding(self, cur_off: int, next_off: int, next_align: int,
                          in_bitfield: bool, lvl: int) -> None:
        if cur_off >= next_off:
            return
        if next_off - cur_off > _MAX_PAD_BITS:
            raise BTFError(f"a {next_off - cur_off}-bit gap between struct members is too large "
                           f"to print as padding")
        pads = (("long", self.ptr_sz * 8), ("int", 32), ("short", 16), ("char", 8))
        new_off = pad_bits = 0
        pad_type = ""
        for pad_type, pad_bits in pads:
            new_off = -(-cur_off // pad_bits) * pad_bits
            if new_off <= next_off:
                break
        if cur_off < new_off <= next_off:
            # an explicit `<type>: 0` is needed when the next field sits right on the
            # boundary but aligns less strictly, or when `<type>: N` would fit the hole
            if in_bitfield or \
                    (new_off == next_off and -(-cur_off // (next_align * 8)) * next_align * 8
                     != new_off) or \
                    (new_off != next_off and next_off - new_off <= new_off - cur_off):
                self.p(f"\n{_pfx(lvl)}{pad_type}: {new_off - cur_off if in_bitfield else 0};")
            cur_off = new_off
        while cur_off != next_off:
            bits = min(next_off - cur_off, pad_bits)
            if bits == pad_bits:
                self.p(f"\n{_pfx(lvl)}{pad_type}: {pad_bits};")
                cur_off += bits
                continue
            for pad_type, pad_bits in reversed(pads):
                if pad_bits < bits:
                    continue
                self.p(f"\n{_pfx(lvl)}{pad_type}: {bits};")
                cur_off += bits
                break

    def _emit_struct_fwd(self, tid: int, t) -> None:
        kw = "struct" if t.kind is Kind.STRUCT else "union"
        self.p(f"{kw}{' ' if t.name else ''}{self._type_name(tid)}")

    def _emit_struct_def(self, tid: int, t, lvl: int) -> None:
        btf = self.btf
        is_struct = t.kind is Kind.STRUCT
        align = btf.alignof(tid)
        packed = self._is_struct_packed(t) if is_struct else False
        self.p(f"{'struct' if is_struct else 'union'}{' ' if t.name else ''}"
               f"{self._type_name(tid)} {{")
        off = 0
        prev_bitfield = False
        for m in t.members:
            m_sz = m.bitfield_size
            m_off = m.bits_offset
            m_align = 1 if packed else btf.alignof(m.type_id)
            in_bitfield = prev_bitfield and m_sz != 0
            self._emit_bit_padding(off, m_off, m_align, in_bitfield, lvl + 1)
            self.p(f"\n{_pfx(lvl + 1)}")
            self._emit_type_decl(m.type_id, m.name, lvl + 1)
            if m_sz:
                self.p(f": {m_sz}")
                off = m_off + m_sz
                prev_bitfield = True
            else:
                try:
                    sz = btf.sizeof(m.type_id)
                except BTFError:
                    sz = 0
                off = m_off + sz * 8
                prev_bitfield = False
            self.p(";")
        if is_struct:
            self._emit_bit_padding(off, t.size * 8, align, False, lvl + 1)
        if t.members or t.size:
            self.p(f"\n{_pfx(lvl)}}}")
        else:
            self.p("}")
        if packed:
            self.p(" __attribute__((packed))")

    # -------------------------------------------------------------- enums, fwds, typedefs

    def _emit_enum_def(self, tid: int, t, lvl: int) -> None:
        self.p(f"enum{' ' if t.name else ''}{self._type_name(tid)}")
        if not t.values:
            return
        self.p(" {")
        is64 = t.kind is Kind.ENUM64
        for v in t.values:
            dup = self._name_dups(self.ident_names, v.name)
            name = f"{v.name}___{dup}" if dup > 1 else v.name
            if is64:
                val = f"{v.value}LL" if t.signed else f"{v.value & 0xFFFFFFFFFFFFFFFF}ULL"
            else:
                val = str(v.value)
            self.p(f"\n{_pfx(lvl + 1)}{name} = {val},")
        self.p(f"\n{_pfx(lvl)}}}")

    def _emit_fwd_def(self, tid: int, t) -> None:
        self.p(f"{'union' if t.is_union else 'struct'} {self._type_name(tid)}")

    def _emit_typedef_def(self, tid: int, t, lvl: int) -> None:
        name = self._ident_name(tid)
        # old GCC emits __gnuc_va_list as a typedef of void
        if t.type_id == 0 and name == "__gnuc_va_list":
            self.p("typedef __builtin_va_list __gnuc_va_list")
            return
        self.p("typedef ")
        self._emit_type_decl(t.type_id, name, lvl)

    # -------------------------------------------------------------- declarators

    def _emit_type_decl(self, tid: int, fname: str, lvl: int) -> None:
        """Declare ``fname`` of type ``tid`` in C syntax (the chain is built
        outermost-first, then unwound from the base type)."""
        stack: list[int] = []
        while True:
            stack.append(tid)
            if tid == 0:
                break
            t = self.t(tid)
            k = t.kind
            if k is Kind.PTR or k in _MODS or k is Kind.FUNC_PROTO or k is Kind.TYPE_TAG:
                tid = t.return_type_id if k is Kind.FUNC_PROTO else t.type_id
            elif k is Kind.ARRAY:
                tid = t.type_id
            else:
                break
        self._emit_type_chain(stack, fname, lvl)

    def _emit_mods(self, stack: list[int]) -> None:
        while stack:
            k = self.t(stack[-1]).kind if stack[-1] else None
            if k is Kind.VOLATILE:
                self.p("volatile ")
            elif k is Kind.CONST:
                self.p("const ")
            elif k is Kind.RESTRICT:
                self.p("restrict ")
            else:
                return
            stack.pop()

    def _drop_mods(self, stack: list[int]) -> None:
        while stack and stack[-1] and (self.t(stack[-1]).kind in _MODS or
                                       self.t(stack[-1]).kind is Kind.TYPE_TAG):
            stack.pop()

    def _emit_name(self, name: str, last_was_ptr: bool) -> None:
        self.p(f"{' ' if name and not last_was_ptr else ''}{name}")

    def _emit_type_chain(self, decls: list[int], fname: str, lvl: int) -> None:
        last_was_ptr = True
        while decls:
            tid = decls.pop()
            if tid == 0:
                self._emit_mods(decls)
                self.p("void")
                last_was_ptr = False
                continue
            t = self.t(tid)
            k = t.kind
            if k in (Kind.INT, Kind.FLOAT):
                self._emit_mods(decls)
                self.p(t.name)
            elif k in _COMPOSITE:
                self._emit_mods(decls)
                if not t.name:
                    self._emit_struct_def(tid, t, lvl)
                else:
                    self._emit_struct_fwd(tid, t)
            elif k in (Kind.ENUM, Kind.ENUM64):
                self._emit_mods(decls)
                if not t.name:
                    self._emit_enum_def(tid, t, lvl)
                else:
                    self.p(f"enum {self._type_name(tid)}")
            elif k is Kind.FWD:
                self._emit_mods(decls)
                self._emit_fwd_def(tid, t)
            elif k is Kind.TYPEDEF:
                self._emit_mods(decls)
                self.p(self._ident_name(tid))
            elif k is Kind.PTR:
                self.p("*" if last_was_ptr else " *")
            elif k is Kind.VOLATILE:
                self.p(" volatile")
            elif k is Kind.CONST:
                self.p(" const")
            elif k is Kind.RESTRICT:
                self.p(" restrict")
            elif k is Kind.TYPE_TAG:
                self._emit_mods(decls)
                if t.kflag:
                    self.p(f" __attribute__(({t.name}))")
                else:
                    self.p(f' __attribute__((btf_type_tag("{t.name}")))')
            elif k is Kind.ARRAY:
                # GCC adds const/volatile to arrays of const/volatile elements
                self._drop_mods(decls)
                if not decls:
                    self._emit_name(fname, last_was_ptr)
                    self.p(f"[{t.nelems}]")
                    return
                nxt = self.t(decls[-1]) if decls[-1] else None
                multidim = nxt is not None and nxt.kind is Kind.ARRAY
                if fname and not last_was_ptr:
                    self.p(" ")
                if not multidim:
                    self.p("(")
                self._emit_type_chain(decls, fname, lvl)
                if not multidim:
                    self.p(")")
                self.p(f"[{t.nelems}]")
                return
            elif k is Kind.FUNC_PROTO:
                # GCC marks noreturn function pointers volatile; drop it like libbpf
                self._drop_mods(decls)
                if decls:
                    self.p(" (")
                    self._emit_type_chain(decls, fname, lvl)
                    self.p(")")
                else:
                    self._emit_name(fname, last_was_ptr)
                self.p("(")
                params = t.params
                if not params or (len(params) == 1 and params[0].type_id == 0):
                    self.p("void)")
                    return
                for i, prm in enumerate(params):
                    if i:
                        self.p(", ")
                    if i == len(params) - 1 and prm.type_id == 0:
                        self.p("...")
                        break
                    self._emit_type_decl(prm.type_id, prm.name, lvl)
                self.p(")")
                return
            else:
                return      # libbpf warns "unexpected type in decl chain" and stops
            last_was_ptr = k is Kind.PTR
        self._emit_name(fname, last_was_ptr)

    # -------------------------------------------------------------- names

    @staticmethod
    def _name_dups(names: dict[str, int], name: str) -> int:
        n = names.get(name, 0) + 1
        names[name] = n
        return n

    def _resolve_name(self, tid: int, names: dict[str, int]) -> str:
        t = self.t(tid)
        if not t.name:
            return ""
        if self.name_resolved[tid]:
            return self.cached_names.get(tid, t.name)
        self.name_resolved[tid] = 1
        if t.kind is Kind.FWD or (t.kind is Kind.ENUM and not t.values):
            return t.name
        dup = self._name_dups(names, t.name)
        if dup > 1:
            self.cached_names[tid] = f"{t.name}___{dup}"
        return self.cached_names.get(tid, t.name)

    def _type_name(self, tid: int) -> str:
        return self._resolve_name(tid, self.type_names)

    def _ident_name(self, tid: int) -> str:
        return self._resolve_name(tid, self.ident_names)
