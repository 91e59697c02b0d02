"""The runtime services engines call while a program runs: helper and kfunc
implementations by id, ``lddw`` map references, tail-call targets, LD_ABS.

Engines receive a :class:`Runtime` when they bind a program to a CPU
(``image.bind(cpu, RUNTIME)``) and reach maps, helpers and packets only through it.
"""
from __future__ import annotations

from .. import uapi as U
from ..btf.core import POISON_HELPER_ID, poisoned_reason
from ..errors import VMError
from ..isa import Instruction
from ..maps import by_addr, by_id
from ..maps.array import ProgArrayMap
from ..maps.errors import MapError
from ..packet.skbuff import from_ctx
from ..runtime.cpu import Cpu
from ..runtime.program import Runnable
from ..uapi import helper_name
from .kfuncs import impl_of
from .registry import REGISTRY


class Runtime:
    """ebee's user-space runtime, as the engines see it."""

    def helper(self, fid: int):
        """The implementation ``impl(cpu, r1..r5) -> int`` of helper ``fid``, or None."""
        h = REGISTRY.get(fid)
        return None if h is None else h.impl

    def missing_helper(self, fid: int, image: bytes, pc: int) -> str:
        """Why a call of helper ``fid`` at ``pc`` of ``image`` cannot run."""
        if fid == POISON_HELPER_ID:      # libbpf's marker for a failed CO-RE relocation
            return poisoned_reason(image, pc)
        name = helper_name(fid)
        return f"unknown helper id {fid}" if name == "unknown" else \
            f"helper {name}#{fid} is not implemented by ebee"

    def kfunc(self, btf_id: int, btf_off: int):
        if btf_off:
            return None      # kfuncs from module BTFs: not modelled
        return impl_of(btf_id)

    def ld_imm64(self, insn: Instruction) -> int:
        """Value of ``lddw`` with a pseudo source: map pointers (src 1) and direct
        map-value addresses (src 2)."""
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
                raise VMError(f"map[id:{mid}][0]+{off}: offset beyond the {mp.value_size}-byte "
                              f"value", pc=insn.pc)
            return base + off
        if src in (U.BPF_PSEUDO_MAP_IDX, U.BPF_PSEUDO_MAP_IDX_VALUE):
            raise VMError(f"lddw with src_reg {src} (map index into fd_array) must be resolved by "
                          f"the loader before the program runs", pc=insn.pc)
        if src == U.BPF_PSEUDO_BTF_ID:
            raise VMError("lddw of a kernel variable (BPF_PSEUDO_BTF_ID ksym) has no user-space "
                          "equivalent in ebee", pc=insn.pc)
        raise VMError(f"lddw with unknown src_reg {src}", pc=insn.pc)

    def tail_call_target(self, map_ptr: int, index: int, pc: int) -> Runnable | None:
        """The program in slot ``index`` of a PROG_ARRAY (None: fall through).  An
        out-of-range index or an empty slot falls through; only a tail call that happens
        counts against MAX_TAIL_CALL_CNT (Linux 6.x: the interpreter and the x86 JIT
        increment the count only when the slot holds a program)."""
        mp = by_addr(map_ptr)
        if not isinstance(mp, ProgArrayMap):
            raise VMError(f"bpf_tail_call needs a program array map; {map_ptr:#x} is not one",
                          pc=pc)
        return mp.program(index)

    def ld_abs(self, cpu: Cpu, ctx: int, offset: int, size: int, pc: int) -> int | None:
        """LD_ABS/LD_IND: a load from the socket buffer behind ``ctx`` (None: out of
        bounds, the program ends with r0 = 0)."""
        try:
            skb = from_ctx(ctx)
        except VMError:
            raise VMError("LD_ABS/LD_IND need a socket-buffer context (a socket filter or tc "
                          "program)", pc=pc) from None
        return skb.load_abs(offset if offset < 1 << 63 else offset - (1 << 64), size)


RUNTIME = Runtime()
"""The runtime every Machine uses unless given another."""
