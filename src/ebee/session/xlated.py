"""What ``bpftool prog dump xlated`` shows for a program Linux loaded, computed without
loading it: ebee's context rewriting (:meth:`ebee.Program.xlated`) plus the kernel's
``do_misc_fixups`` rewrites of helper calls --

* ``bpf_map_lookup_elem`` on an array map inlined (``array_map_gen_lookup``), on a hash
  map turned into ``__htab_map_lookup_elem`` and the step to the value
  (``htab_map_gen_lookup``);
* other map helpers called through the map's ops (``trie_lookup_elem``);
* every other helper call's ``imm`` set to the helper's address relative to
  ``__bpf_call_base`` (``BPF_CALL_IMM``), which bpftool resolves through kallsyms.

Addresses and struct offsets come from the running kernel (``/proc/kallsyms``, vmlinux
BTF); where they cannot be read the call keeps its helper number.  Map ids are ebee's.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from .. import uapi as U
from ..asm import assemble
from ..isa import Instruction, Kind
from ..kernel.btf import vmlinux
from ..kernel.kallsyms import text_symbols
from ..runtime.deadcode import adjust_func_info, adjust_line_info, prune_dead_code
from ..runtime.rewrite import relink

_LOOKUP, _UPDATE, _DELETE = 1, 2, 3
_TAIL_CALL = 12

# map type -> the kernel's ops functions for update/delete/lookup (a lookup not listed
# here is inlined or left alone)
_OPS = {
    U.MapType.HASH: {_UPDATE: "htab_map_update_elem", _DELETE: "htab_map_delete_elem"},
    U.MapType.ARRAY: {_UPDATE: "array_map_update_elem", _DELETE: "array_map_delete_elem"},
    U.MapType.PERCPU_HASH: {_LOOKUP: "htab_percpu_map_lookup_elem",
                            _UPDATE: "htab_percpu_map_update_elem",
                            _DELETE: "htab_map_delete_elem"},
    U.MapType.LRU_HASH: {_UPDATE: "htab_lru_map_update_elem",
                         _DELETE: "htab_lru_map_delete_elem"},
    U.MapType.LPM_TRIE: {_LOOKUP: "trie_lookup_elem", _UPDATE: "trie_update_elem",
                         _DELETE: "trie_delete_elem"},
}

_P, _F = U.ProgType, U.FuncId
_RAW_TP = {_F.perf_event_output: "bpf_perf_event_output_raw_tp",
           _F.get_stackid: "bpf_get_stackid_raw_tp", _F.get_stack: "bpf_get_stack_raw_tp"}
# helpers whose implementation the kernel picks by program type (the *_func_proto of
# kernel/trace/bpf_trace.c and net/core/filter.c): program type -> helper -> symbol
_BY_TYPE = {
    _P.TRACEPOINT: {_F.perf_event_output: "bpf_perf_event_output_tp",
                    _F.get_stackid: "bpf_get_stackid_tp", _F.get_stack: "bpf_get_stack_tp"},
    _P.PERF_EVENT: {_F.perf_event_output: "bpf_perf_event_output_tp",
                    _F.get_stackid: "bpf_get_stackid_pe", _F.get_stack: "bpf_get_stack_pe"},
    _P.RAW_TRACEPOINT: _RAW_TP, _P.RAW_TRACEPOINT_WRITABLE: _RAW_TP, _P.TRACING: _RAW_TP,
    _P.LSM: _RAW_TP,
    _P.XDP: {_F.perf_event_output: "bpf_xdp_event_output"},
    _P.SCHED_CLS: {_F.perf_event_output: "bpf_skb_event_output"},
    _P.SCHED_ACT: {_F.perf_event_output: "bpf_skb_event_output"},
}


@functools.lru_cache(maxsize=1)
def _symbols() -> tuple[int, dict[str, int]]:
    syms = text_symbols()
    return syms.call_base, dict(zip(syms.names, syms.addrs))


def call_imm(symbol: str) -> int | None:
    """``BPF_CALL_IMM(symbol)``: its address less ``__bpf_call_base`` (None if hidden)."""
    base, addrs = _symbols()
    a = addrs.get(symbol)
    if not base or not a:
        return None
    d = a - base
    return d if -(1 << 31) <= d < (1 << 31) else None


@functools.lru_cache(maxsize=1)
def _offsets() -> dict[str, int] | None:
    """offsetof(struct bpf_array, value) and offsetof(struct htab_elem, key) in the
    running kernel (its BTF), or None."""
    try:
        btf = vmlinux()
        out = {}
        for struct, member, key in (("bpf_array", "value", "array_value"),
                                    ("htab_elem", "key", "htab_key")):
            t = btf.find(struct, "struct")
            m = next(m for m in t.members if m.name == member or (
                not m.name and _has_member(btf, m.type_id, member)))
            out[key] = m.bits_offset // 8
        return out
    except Exception:       # no BTF, or a kernel whose structs differ: no inlining
        return None


def _has_member(btf, tid: int, name: str, depth: int = 0) -> bool:
    """``name`` is a member of ``tid`` or of its anonymous members (DECLARE_FLEX_ARRAY
    wraps a flexible array in an anonymous struct at offset 0)."""
    if depth > 4:
        return False
    for m in getattr(btf[tid], "members", None) or ():
        if m.name == name or (not m.name and m.bits_offset == 0
                              and _has_member(btf, m.type_id, name, depth + 1)):
            return True
    return False


def _asm(text: str, first: Instruction) -> list[Instruction]:
    return [replace(x, pc=first.pc) for x in assemble(text)]


def _array_lookup(m, i: Instruction, off: int) -> list[Instruction]:
    elem = (m.value_size + 7) & ~7
    scale = f"r0 <<= {elem.bit_length() - 1}" if elem & (elem - 1) == 0 else f"r0 *= {elem}"
    return _asm(f"r1 += {off}\nr0 = *(u32 *)(r2 + 0)\nif r0 >= {m.max_entries} goto +3\n"
                f"{scale}\nr0 += r1\ngoto +1\nr0 = 0\n", i)


def _fixup_call(i: Instruction, m, prog_type) -> list[Instruction]:
    fid = i.imm
    offs = _offsets()
    if m is not None and fid in (_LOOKUP, _UPDATE, _DELETE):
        t = U.MapType(m.type)
        inner = bool(getattr(m, "inner_map_meta", None))
        if fid == _LOOKUP and t is U.MapType.ARRAY and offs and not inner:
            return _array_lookup(m, i, offs["array_value"])
        if fid == _LOOKUP and t is U.MapType.HASH and offs:
            imm = call_imm("__htab_map_lookup_elem")
            if imm is not None:
                step = ((m.key_size + 7) & ~7) + offs["htab_key"]
                return [replace(i, imm=imm), *_asm(f"if r0 == 0 goto +1\nr0 += {step}\n", i)]
        name = _OPS.get(t, {}).get(fid)
        imm = call_imm(name) if name else None
        return [replace(i, imm=imm)] if imm is not None else [i]
    if fid == _TAIL_CALL:
        return [i]
    try:
        f = U.FuncId(fid)
    except ValueError:
        return [i]
    name = _BY_TYPE.get(prog_type, {}).get(f) or "bpf_" + f.name.lower()
    imm = call_imm(name)
    return [replace(i, imm=imm)] if imm is not None else [i]


@dataclass
class Xlated:
    """A program as Linux's xlated image has it: the instructions, original pc -> pc
    there, and the BTF line and func info records at their pcs there."""
    insns: list[Instruction]
    moved: dict[int, int]
    line_info: list[tuple[int, object]]
    func_info: list[tuple[int, object]]


def kernel_xlated(prog) -> Xlated:
    """The program as Linux's xlated image has it: ebee's rewrites, the verifier's dead
    code removed (or trapped, for an unprivileged loader), helper calls fixed up."""
    insns, moved = prog.xlated()
    end = sum(i.slots for i in prog.insns)
    try:
        verdict = prog.verdict()
    except Exception:           # the verifier cannot judge it: show it as rewritten
        verdict = None
    if verdict is not None and verdict.accepted:
        pruned = prune_dead_code(insns, moved, verdict.dead_insns,
                                 privileged=getattr(prog, "privileged", True))
        insns, moved = pruned.insns, pruned.moved
        line_info = adjust_line_info(list(prog.line_info), pruned, end)
        func_info = adjust_func_info(list(prog.func_info), pruned, end)
    else:
        line_info = [(moved.get(li.insn, li.insn), li) for li in prog.line_info]
        func_info = [(moved.get(fi.insn, fi.insn), fi) for fi in prog.func_info]
    insns, again = _fixup_calls(prog, insns)
    if again:
        moved = {pc: again.get(p, p) for pc, p in moved.items()}
        line_info = [(again.get(at, at), li) for at, li in line_info]
        func_info = [(again.get(at, at), fi) for at, fi in func_info]
    return Xlated(insns, moved, line_info, func_info)


def _fixup_calls(prog, insns: list[Instruction]
                 ) -> tuple[list[Instruction], dict[int, int]]:
    """do_misc_fixups' helper call rewrites; the pc map is empty when nothing changed."""
    obj = getattr(prog, "object", None)
    by_id = {m.id: m for m in obj.maps.values()} if obj is not None else {}
    pieces: list[list[Instruction]] = []
    r1_map = None           # the map the latest `r1 = map[...]` loaded (straight-line code)
    changed = False
    for i in insns:
        if i.kind is Kind.CALL and i.src == 0:
            piece = _fixup_call(i, r1_map, prog.type)
            changed |= piece != [i]
            pieces.append(piece)
            r1_map = None
            continue
        pieces.append([i])
        if i.kind is Kind.LD_IMM64 and i.dst == 1:
            r1_map = by_id.get(i.imm) if i.src == U.BPF_PSEUDO_MAP_FD else None
        elif getattr(i, "dst", None) == 1 and i.kind not in (Kind.STX, Kind.ST, Kind.JCC,
                                                             Kind.JA, Kind.EXIT):
            r1_map = None
    if not changed:
        return insns, {}
    return relink(insns, pieces)


__all__ = ["Xlated", "call_imm", "kernel_xlated"]
