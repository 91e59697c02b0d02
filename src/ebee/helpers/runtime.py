"""The Machine hooks the maps/helpers layer provides: lddw pseudo sources, tail calls, kfuncs."""
from __future__ import annotations

from .. import uapi as U
from ..errors import VMError


def resolve_ld_imm64(m, insn) -> int:
    from ..maps import by_id
    from ..maps.errors import MapError
    src = insn.src
    if src in (U.BPF_PSEUDO_MAP_FD, U.BPF_PSEUDO_MAP_VALUE):
        mid = insn.imm & 0xFFFFFFFF
        try:
            mp = by_id(mid)
        except MapError:
            raise VMError(f"lddw refers to map id {mid}, but no live map has that id",
                          pc=insn.pc) from None
        if src == U.BPF_PSEUDO_MAP_FD:
            return mp.addr
        try:
            base = mp.value_addr_of_first()
        except OSError as e:
            raise VMError(f"map[id:{mid}][0]: {e.strerror}", pc=insn.pc) from None
        off = insn.imm_hi & 0xFFFFFFFF
        if off >= mp.value_size:
            raise VMError(f"map[id:{mid}][0]+{off}: offset beyond the {mp.value_size}-byte value",
                          pc=insn.pc)
        return base + off
    if src in (U.BPF_PSEUDO_MAP_IDX, U.BPF_PSEUDO_MAP_IDX_VALUE):
        raise VMError(f"lddw with src_reg {src} (map index into fd_array) must be resolved by "
                      f"the loader before the program runs", pc=insn.pc)
    if src == U.BPF_PSEUDO_BTF_ID:
        raise VMError("lddw of a kernel variable (BPF_PSEUDO_BTF_ID ksym) has no user-space "
                      "equivalent in ebee", pc=insn.pc)
    raise VMError(f"lddw with unknown src_reg {src}", pc=insn.pc)


def tail_call_target(m, map_ptr: int, index: int, pc: int):
    """An out-of-range index or an empty slot falls through; only a tail call that
    happens counts against MAX_TAIL_CALL_CNT (Linux 6.x: the interpreter and the x86
    JIT increment the count only when the slot holds a program)."""
    from ..maps import by_addr
    from ..maps.array import ProgArrayMap
    mp = by_addr(map_ptr)
    if not isinstance(mp, ProgArrayMap):
        raise VMError(f"bpf_tail_call needs a program array map; {map_ptr:#x} is not one", pc=pc)
    if index >= mp.max_entries:
        return None
    prog = mp.slots[index]
    if prog is None:
        return None
    return list(prog.insns) if hasattr(prog, "insns") else prog


def kfunc_impl(m, btf_id: int, btf_off: int):
    from .kfuncs import impl_of
    if btf_off:
        return None      # kfuncs from module BTFs: not modelled
    return impl_of(btf_id)
