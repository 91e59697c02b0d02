"""Spectre mitigations the verifier applies to unprivileged programs.

Pointer arithmetic with a register offset must stay within what the masking
fixup can cover (sanitize_ptr_alu, retrieve_ptr_limit); stack and map
pointers must stay in bounds after arithmetic (sanitize_check_bounds); and
branches whose outcome is known are also explored speculatively
(sanitize_speculative_path) with the registers involved made unknown.
Privileged programs (CAP_PERFMON) bypass all of this, as in Linux.
"""
from __future__ import annotations

from .. import uapi as U
from ..uapi import MAX_BPF_STACK
from .bounds import s32
from .branches import push_stack
from .env import Env
from .errors import EACCES, VerifierReject
from .insn import Insn
from .log import tnum_str
from .memory import check_map_access
from .state import RegState
from .types import PTR_TO_MAP_VALUE, PTR_TO_STACK

BPF_ALU_SANITIZE_SRC = 1 << 0
BPF_ALU_SANITIZE_DST = 1 << 1
BPF_ALU_NEG_VALUE = 1 << 2
BPF_ALU_NON_POINTER = 1 << 3
BPF_ALU_IMMEDIATE = 1 << 4
REASON_BOUNDS, REASON_TYPE, REASON_PATHS, REASON_LIMIT, REASON_STACK = range(-1, -6, -1)
_ERR = "pointer arithmetic with it prohibited for !root"


class SanitizeInfo:
    __slots__ = ("alu_state", "alu_limit", "mask_to_left")

    def __init__(self):
        self.alu_state = 0
        self.alu_limit = 0
        self.mask_to_left = False


def _can_skip(env: Env, insn: Insn) -> bool:
    return env.bypass_spec_v1 or not insn.srcx or env.aux[env.insn_idx].nospec


def _update_state(aux, alu_state: int, alu_limit: int) -> int:
    if aux.alu_state and (aux.alu_state != alu_state or aux.alu_limit != alu_limit):
        return REASON_PATHS
    aux.alu_state = alu_state
    aux.alu_limit = alu_limit
    return 0


def _err(env: Env, insn: Insn, reason: int, off_is_dst: bool) -> VerifierReject:
    op = "add" if insn.op == U.BPF_ADD else "sub"
    d, s = insn.dst, insn.src
    if reason == REASON_BOUNDS:
        msg = f"R{d if off_is_dst else s} has unknown scalar with mixed signed bounds, {_ERR}"
    elif reason == REASON_TYPE:
        # Linux 6.18 names the destination, also for scalar += pointer (checked
        # against the kernel: 6.12 named the pointer there)
        msg = f"R{d} has pointer with unsupported alu operation, {_ERR}"
    elif reason == REASON_PATHS:
        msg = f"R{d} tried to {op} from different maps, paths or scalars, {_ERR}"
    elif reason == REASON_LIMIT:
        msg = f"R{d} tried to {op} beyond pointer bounds, {_ERR}"
    else:
        msg = f"R{d} could not be pushed for speculative verification, {_ERR}"
    return env.reject(msg, EACCES)


def sanitize_val_alu(env: Env, insn: Insn) -> None:
    if _can_skip(env, insn):
        return
    if _update_state(env.aux[env.insn_idx], BPF_ALU_NON_POINTER, 0) < 0:
        raise _err(env, insn, REASON_PATHS, False)


def _retrieve_ptr_limit(ptr: RegState, mask_to_left: bool) -> int:
    if ptr.type == PTR_TO_STACK:
        mx = MAX_BPF_STACK + (1 if mask_to_left else 0)
        limit = (-(ptr.bounds.var_off.value + ptr.off)) & 0xFFFFFFFF
    elif ptr.type == PTR_TO_MAP_VALUE:
        mx = ptr.map.value_size
        limit = ((ptr.bounds.smin_value if mask_to_left else ptr.bounds.umax_value)
                 + ptr.off) & 0xFFFFFFFF
    else:
        return REASON_TYPE
    if limit >= mx:
        return REASON_LIMIT
    return limit


def sanitize_ptr_alu(env: Env, insn: Insn, ptr: RegState, off: RegState, dst: RegState,
                     info: SanitizeInfo | None, commit: bool, ptr_is_dst: bool | None = None,
                     off_is_dst: bool | None = None):
    """Record the masking a pointer +/- register needs; returns the info for the
    commit phase (called again after the result is computed).  ``off_is_dst``: the
    scalar operand is the destination (``scalar += ptr``), which names the register
    an error blames; callers holding a copy of it say so."""
    if info is None:
        info = SanitizeInfo()
    if _can_skip(env, insn):
        return info
    aux = env.aux[env.insn_idx]
    ob = off.bounds
    off_is_imm = not ob.var_off.mask
    off_is_neg = ob.smin_value < 0
    if ptr_is_dst is None:
        ptr_is_dst = ptr is dst
    if off_is_dst is None:
        off_is_dst = off is dst
    op = insn.op
    if not env.cur_state.speculative:
        if not commit:
            if not off_is_imm and (ob.smin_value < 0) != (ob.smax_value < 0):
                raise _err(env, insn, REASON_BOUNDS, off_is_dst)
            info.mask_to_left = (op == U.BPF_ADD and off_is_neg) or \
                (op == U.BPF_SUB and not off_is_neg)
        limit = _retrieve_ptr_limit(ptr, info.mask_to_left)
        if limit < 0:
            raise _err(env, insn, limit, off_is_dst)
        if commit:
            state = info.alu_state
            limit = abs(info.alu_limit - limit)
            if _update_state(aux, state, limit) < 0:
                raise _err(env, insn, REASON_PATHS, off_is_dst)
            return info
        state = (BPF_ALU_NEG_VALUE if off_is_neg else 0) | \
            (BPF_ALU_IMMEDIATE if off_is_imm else 0) | \
            (BPF_ALU_SANITIZE_SRC if ptr_is_dst else BPF_ALU_SANITIZE_DST)
        if not off_is_imm:
            env.explore_alu_limits = True
        info.alu_state, info.alu_limit = state, limit
        scratch = _Scratch()
        if _update_state(scratch, state, limit) < 0:
            raise _err(env, insn, REASON_PATHS, off_is_dst)
    if commit or off_is_imm:
        return info
    tmp = None
    if not ptr_is_dst:
        tmp = dst.copy()
        dst.assign(ptr)
    sanitize_speculative_path(env, None, env.insn_idx + 1, env.insn_idx)
    if tmp is not None:
        dst.assign(tmp)
    return info


class _Scratch:
    alu_state = 0
    alu_limit = 0


def sanitize_check_bounds(env: Env, insn: Insn, dst: RegState) -> int:
    if env.bypass_spec_v1:
        return 0
    d = insn.dst
    if dst.type == PTR_TO_STACK:
        off = s32(dst.off + dst.bounds.var_off.value)      # Linux's int off
        if dst.bounds.var_off.mask:
            env.last_exc = env.reject(f"R{d} variable stack access prohibited for !root, "
                                      f"var_off={tnum_str(dst.bounds.var_off)} off={off}")
            return -EACCES
        if off >= 0 or off < -MAX_BPF_STACK:
            env.last_exc = env.reject(f"R{d} stack pointer arithmetic goes out of range, "
                                      f"prohibited for !root; off={off}")
            return -EACCES
    elif dst.type == PTR_TO_MAP_VALUE:
        try:
            check_map_access(env, d, dst.off, 1, False, False)
        except VerifierReject:
            env.last_exc = env.reject(f"R{d} pointer arithmetic of map value goes out of "
                                      f"range, prohibited for !root")
            return -EACCES
    return 0


def sanitize_speculative_path(env: Env, insn: Insn | None, next_idx: int, curr_idx: int):
    branch = push_stack(env, next_idx, curr_idx, True)
    if insn is not None:
        regs = branch.frames[branch.curframe].regs
        env.mark_reg_unknown(regs, insn.dst)
        if insn.srcx:
            env.mark_reg_unknown(regs, insn.src)
    return branch
