"""Dynamic pointers (bpf_dynptr): stack slots that hold a pointer + length.

A dynptr occupies two 8-byte stack slots marked STACK_DYNPTR; helpers that
create one initialize the slots, helpers that take one check them, and
ring-buffer dynptrs are references that must be submitted or discarded.
"""
from __future__ import annotations

from ..uapi import FuncId as F
from .env import Env
from .errors import EINVAL
from .memory import grow_stack_state
from .refs import acquire_reference, release_reference
from .state import RegState, StackSlot
from .types import (BPF_REG_SIZE, CONST_PTR_TO_DYNPTR, DYNPTR_TYPE_LOCAL, DYNPTR_TYPE_RINGBUF,
                    DYNPTR_TYPE_SKB, DYNPTR_TYPE_XDP, MEM_UNINIT, PTR_TO_STACK, SCALAR_VALUE,
                    STACK_DYNPTR, STACK_INVALID)

_NAMES = {DYNPTR_TYPE_LOCAL: "local", DYNPTR_TYPE_RINGBUF: "ringbuf", DYNPTR_TYPE_SKB: "skb",
          DYNPTR_TYPE_XDP: "xdp"}
_HELPER_TYPE = {}


def _spi(env: Env, reg: RegState) -> int:
    vo = reg.bounds.var_off
    if vo.mask:
        raise env.reject("dynptr has to be at a constant offset", EINVAL)
    off = reg.off + vo.value
    if off % BPF_REG_SIZE:
        raise env.reject(f"cannot pass in dynptr at an offset={off}", EINVAL)
    spi = (-off - 1) // BPF_REG_SIZE
    if spi + 1 < 2:
        raise env.reject(f"cannot pass in dynptr at an offset={off}", EINVAL)
    return spi


def _dynptr_type_for_call(env: Env) -> str:
    insn = env.insns[env.insn_idx]
    fid = insn.imm
    if fid in (F.ringbuf_reserve_dynptr, F.ringbuf_submit_dynptr, F.ringbuf_discard_dynptr):
        return "ringbuf"
    return "local"


def dynptr_at(env: Env, reg: RegState) -> RegState | None:
    """The register state that describes the dynptr ``reg`` points to (its first
    stack slot, or ``reg`` itself for a CONST_PTR_TO_DYNPTR), None if there is none."""
    if reg.type == CONST_PTR_TO_DYNPTR:
        return reg
    if reg.type != PTR_TO_STACK:
        return None
    frame = env.cur_state.frames[reg.frameno]
    spi = _spi(env, reg)
    if spi >= len(frame.stack) or frame.stack[spi].slot_type[0] != STACK_DYNPTR:
        return None
    return frame.stack[spi].reg()


def process_dynptr_func(env: Env, regno: int, insn_idx: int, flags: int, clone_ref: int,
                        dtype: str | None = None) -> None:
    """``dtype``: the type of the dynptr a kfunc initializes (skb, xdp), which the
    helpers' ids do not tell."""
    regs = env.cur_regs()
    reg = regs[regno]
    if reg.type == CONST_PTR_TO_DYNPTR:
        if flags & MEM_UNINIT:
            raise env.reject("CONST_PTR_TO_DYNPTR cannot be initialized", EINVAL)
        return
    if reg.type != PTR_TO_STACK:
        raise env.reject(f"arg#{regno - 1} expected pointer to stack or const struct "
                         f"bpf_dynptr", EINVAL)
    frame = env.cur_state.frames[reg.frameno]
    spi = _spi(env, reg)
    if flags & MEM_UNINIT:
        grow_stack_state(env, frame, (spi + 1) * BPF_REG_SIZE)
        for k in (spi, spi - 1):
            if frame.stack[k].slot_type[0] == STACK_DYNPTR:
                raise env.reject("Dynptr has to be an uninitialized dynptr", EINVAL)
        dtype = dtype or _dynptr_type_for_call(env)
        id_ = env.new_id()
        ref = 0
        if dtype == "ringbuf":
            ref = acquire_reference(env, insn_idx)
        for k, first in ((spi, True), (spi - 1, False)):
            r = RegState(SCALAR_VALUE)
            r.mark_known(0)
            r.type = 1
            r.dynptr = (dtype, first)
            r.id = id_
            r.ref_obj_id = ref
            frame.stack[k] = StackSlot(STACK_DYNPTR * BPF_REG_SIZE, r)
            env.mark_stack_slot_scratched(k)
        return
    if spi >= len(frame.stack) or frame.stack[spi].slot_type[0] != STACK_DYNPTR or \
            not frame.stack[spi].reg().dynptr or not frame.stack[spi].reg().dynptr[1]:
        raise env.reject(f"Expected an initialized dynptr as arg #{regno - 1}", EINVAL)


def check_release_dynptr(env: Env, reg: RegState, regno: int) -> None:
    if reg.type != PTR_TO_STACK:
        raise env.reject("cannot release unowned const bpf_dynptr", EINVAL)
    frame = env.cur_state.frames[reg.frameno]
    spi = _spi(env, reg)
    if spi >= len(frame.stack) or not frame.stack[spi].reg().ref_obj_id:
        raise env.reject(f"arg {regno} is an unacquired reference", EINVAL)


def unmark_stack_slots_dynptr(env: Env, reg: RegState) -> bool:
    frame = env.cur_state.frames[reg.frameno]
    spi = _spi(env, reg)
    ref = frame.stack[spi].reg().ref_obj_id
    if ref and not release_reference(env, ref):
        return False
    for k in (spi, spi - 1):
        frame.stack[k] = StackSlot(STACK_INVALID * BPF_REG_SIZE, None)
    return True
