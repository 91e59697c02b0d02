"""Calls and exits: helper calls against their prototypes, bpf-to-bpf calls, callbacks
and the program's return value.

check_helper_call, check_func_arg, check_reg_type, check_map_func_compatibility,
check_func_call, prepare_func_exit, push_callback_call and check_return_code of
kernel/bpf/verifier.c.  Prototypes come from the helper table
(``ebee.protos.helpers.HELPERS``) in the kernel's arg type + flag words
(:mod:`.func_proto`); which helpers a program type may call comes from the
program-type registry.  References are tracked in :mod:`.refs`, locks in
:mod:`.locks`, helper memory arguments are checked by :mod:`.memory`.
"""
from __future__ import annotations

import os

from .. import uapi as U
from ..uapi import ENOTSUPP, MAX_CALL_FRAMES
from ..uapi import FuncId as F
from ..btf import BTF
from .branches import init_func_state, push_async_cb, push_stack
from .btfids import btf_struct_ids_match
from .btfaccess import check_btf_id_arg, helper_ret_btf
from .dynptr import check_release_dynptr, process_dynptr_func, unmark_stack_slots_dynptr
from .env import DST_OP_NO_MARK, SRC_OP, Env
from .errors import E2BIG, EACCES, EFAULT, EINVAL, VerifierReject
from .func_proto import (ARG_ANYTHING, ARG_CONST_ALLOC_SIZE_OR_ZERO, ARG_CONST_MAP_PTR,
                         ARG_CONST_SIZE, ARG_CONST_SIZE_OR_ZERO, ARG_DONTCARE, ARG_KPTR_XCHG_DEST,
                         ARG_PTR_TO_BTF_ID, ARG_PTR_TO_BTF_ID_SOCK_COMMON, ARG_PTR_TO_CONST_STR,
                         ARG_PTR_TO_CTX, ARG_PTR_TO_DYNPTR, ARG_PTR_TO_FUNC, ARG_PTR_TO_MAP_KEY,
                         ARG_PTR_TO_MAP_VALUE, ARG_PTR_TO_MEM, ARG_PTR_TO_PERCPU_BTF_ID,
                         ARG_PTR_TO_RINGBUF_MEM, ARG_PTR_TO_SOCKET, ARG_PTR_TO_SOCK_COMMON,
                         ARG_PTR_TO_SPIN_LOCK, ARG_PTR_TO_STACK, ARG_PTR_TO_TIMER,
                         BPF_FUNC_MAX_ID, RET_INTEGER, RET_PTR_TO_BTF_ID, RET_PTR_TO_MAP_VALUE,
                         RET_PTR_TO_MEM, RET_PTR_TO_MEM_OR_BTF_ID, RET_PTR_TO_SOCK_COMMON,
                         RET_PTR_TO_SOCKET, RET_PTR_TO_TCP_SOCK, RET_VOID, CallArgMeta, Proto,
                         func_id_name, helper_allowed, helper_changes_pkt_data, helper_proto,
                         is_async_callback_calling_insn)
from .globals import ARG_ANYTHING as SUB_ANYTHING
from .globals import ARG_PTR_TO_ARENA as SUB_ARENA
from .globals import ARG_PTR_TO_BTF_ID as SUB_BTF_ID
from .globals import ARG_PTR_TO_CTX as SUB_CTX
from .globals import ARG_PTR_TO_DYNPTR as SUB_DYNPTR
from .globals import ARG_PTR_TO_MEM as SUB_MEM
from .globals import prepare_subprog_args
from .insn import Insn
from .locks import (process_kptr_func, process_spin_lock, process_timer_helper,
                    reg_may_point_to_spin_lock)
from .memory import (BPF_READ, BPF_WRITE, check_helper_mem_access, check_map_access,
                     check_mem_access, check_ptr_alignment, check_ptr_off_reg,
                     may_access_direct_pkt_data, register_is_null)
from .precision import mark_chain_precision, mark_chain_precision_stack
from .printf import check_format
from .prune import find_prev_entry, widen_imprecise_scalars
from .refs import (acquire_reference, check_resource_leak, mark_reg_invalid, release_reference,
                   release_reference_nomark)
from .state import FuncState, RegState, VerifierState, for_each_reg
from .struct_ops import void_return
from .types import (BPF_REG_SIZE, CONST_PTR_TO_DYNPTR, CONST_PTR_TO_MAP, DYNPTR_TYPE_LOCAL,
                    DYNPTR_TYPE_RINGBUF, DYNPTR_TYPE_SKB, DYNPTR_TYPE_XDP,
                    MEM_ALIGNED, MEM_ALLOC, MEM_FIXED_SIZE, MEM_PERCPU, MEM_RCU, MEM_RDONLY,
                    MEM_RINGBUF, MEM_UNINIT, MEM_WRITE, NON_OWN_REF, NOT_INIT, OBJ_RELEASE,
                    PTR_MAYBE_NULL, PTR_TO_ARENA, PTR_TO_BTF_ID, PTR_TO_BUF, PTR_TO_CTX,
                    PTR_TO_FUNC, PTR_TO_MAP_KEY, PTR_TO_MAP_VALUE, PTR_TO_MEM, PTR_TO_PACKET,
                    PTR_TO_PACKET_META, PTR_TO_SOCK_COMMON, PTR_TO_SOCKET, PTR_TO_STACK,
                    PTR_TO_TCP_SOCK, PTR_TO_XDP_SOCK, PTR_TRUSTED, PTR_UNTRUSTED, SCALAR_VALUE,
                    STACK_SPILL,
                    STACK_ZERO, base_type, reg_type_str, type_is_pkt_pointer)

MAX_BPF_FUNC_REG_ARGS = 5
BPF_MAX_VAR_SIZ = 1 << 29
MAX_ERRNO = 4095

_ACQUIRE = {F.sk_lookup_tcp, F.sk_lookup_udp, F.skc_lookup_tcp, F.ringbuf_reserve, F.kptr_xchg}
_PTR_CAST = {F.tcp_sock, F.sk_fullsock, F.skc_to_tcp_sock, F.skc_to_tcp6_sock,
             F.skc_to_udp6_sock, F.skc_to_mptcp_sock, F.skc_to_tcp_timewait_sock,
             F.skc_to_tcp_request_sock}


# ---------------------------------------------------------------------------
# packet pointers a call that changes packet data invalidates


def clear_all_pkt_pointers(env: Env) -> None:
    def fn(frame, reg):
        if type_is_pkt_pointer(reg.type) or reg.type == 9 or (   # PTR_TO_PACKET_END
                base_type(reg.type) == PTR_TO_MEM and reg.type & (DYNPTR_TYPE_SKB |
                                                                  DYNPTR_TYPE_XDP)):
            mark_reg_invalid(env, reg)
            return True
        return False
    for_each_reg(env.cur_state, fn)


# ---------------------------------------------------------------------------
# argument checks


_SOCK = (PTR_TO_SOCK_COMMON, PTR_TO_SOCKET, PTR_TO_TCP_SOCK, PTR_TO_XDP_SOCK)
_MEM = (PTR_TO_STACK, PTR_TO_PACKET, PTR_TO_PACKET_META, PTR_TO_MAP_KEY, PTR_TO_MAP_VALUE,
        PTR_TO_MEM, PTR_TO_MEM | MEM_RINGBUF, PTR_TO_BUF, PTR_TO_BTF_ID | PTR_TRUSTED)
COMPATIBLE = {
    ARG_PTR_TO_MAP_KEY: _MEM, ARG_PTR_TO_MAP_VALUE: _MEM,
    ARG_CONST_SIZE: (SCALAR_VALUE,), ARG_CONST_SIZE_OR_ZERO: (SCALAR_VALUE,),
    ARG_CONST_ALLOC_SIZE_OR_ZERO: (SCALAR_VALUE,), ARG_CONST_MAP_PTR: (CONST_PTR_TO_MAP,),
    ARG_PTR_TO_CTX: (PTR_TO_CTX,), ARG_PTR_TO_SOCK_COMMON: _SOCK,
    ARG_PTR_TO_BTF_ID_SOCK_COMMON: _SOCK + (PTR_TO_BTF_ID, PTR_TO_BTF_ID | PTR_TRUSTED),
    ARG_PTR_TO_SOCKET: (PTR_TO_SOCKET,),
    ARG_PTR_TO_BTF_ID: (PTR_TO_BTF_ID, PTR_TO_BTF_ID | PTR_TRUSTED, PTR_TO_BTF_ID | MEM_RCU),
    ARG_PTR_TO_SPIN_LOCK: (PTR_TO_MAP_VALUE, PTR_TO_BTF_ID | MEM_ALLOC),
    ARG_PTR_TO_MEM: _MEM, ARG_PTR_TO_RINGBUF_MEM: (PTR_TO_MEM | MEM_RINGBUF,),
    ARG_PTR_TO_PERCPU_BTF_ID: (PTR_TO_BTF_ID | MEM_PERCPU, PTR_TO_BTF_ID | MEM_PERCPU | MEM_RCU,
                               PTR_TO_BTF_ID | MEM_PERCPU | PTR_TRUSTED),
    ARG_PTR_TO_FUNC: (PTR_TO_FUNC,), ARG_PTR_TO_STACK: (PTR_TO_STACK,),
    ARG_PTR_TO_CONST_STR: (PTR_TO_MAP_VALUE,), ARG_PTR_TO_TIMER: (PTR_TO_MAP_VALUE,),
    ARG_KPTR_XCHG_DEST: (PTR_TO_MAP_VALUE, PTR_TO_BTF_ID | MEM_ALLOC),
    ARG_PTR_TO_DYNPTR: (PTR_TO_STACK, CONST_PTR_TO_DYNPTR),
}
DYNPTR_TYPE_FLAG_MASK = DYNPTR_TYPE_LOCAL | DYNPTR_TYPE_RINGBUF | DYNPTR_TYPE_SKB | DYNPTR_TYPE_XDP


def check_reg_type(env: Env, regno: int, arg_base: int, arg_flags: int, meta: CallArgMeta,
                   arg_btf: str | None = None) -> None:
    reg = env.cur_regs()[regno]
    t = reg.type
    compatible = COMPATIBLE[arg_base]
    if arg_flags & MEM_RDONLY:
        t &= ~MEM_RDONLY
    if arg_flags & PTR_MAYBE_NULL:
        t &= ~PTR_MAYBE_NULL
    if arg_base == ARG_PTR_TO_MEM:
        t &= ~DYNPTR_TYPE_FLAG_MASK
    if meta.func_id == F.kptr_xchg and t & MEM_ALLOC and regno == 2:
        t &= ~(MEM_ALLOC | MEM_PERCPU)
    if t in compatible:
        if base_type(reg.type) != PTR_TO_BTF_ID:
            return
        if compatible is _MEM:
            # a kernel struct is memory a helper may read, never write
            if not arg_flags & MEM_RDONLY:
                raise env.reject(f"{func_id_name(meta.func_id)}() may "
                                 f"write into memory pointed by R{regno} "
                                 f"type={reg_type_str(reg.type)}")
            return
        check_btf_id_arg(env, regno, reg, arg_base, meta, arg_flags, arg_btf)
        return
    raise env.reject(f"R{regno} type={reg_type_str(reg.type)} expected=" +
                     ", ".join(reg_type_str(x) for x in compatible))


_FIXED_OFF_OK = {PTR_TO_STACK, PTR_TO_PACKET, PTR_TO_PACKET_META, PTR_TO_MAP_KEY,
                 PTR_TO_MAP_VALUE, PTR_TO_MEM, PTR_TO_MEM | MEM_RDONLY, PTR_TO_MEM | MEM_RINGBUF,
                 PTR_TO_BUF, PTR_TO_BUF | MEM_RDONLY, PTR_TO_ARENA, SCALAR_VALUE}
_BTF_FIXED = {PTR_TO_BTF_ID, PTR_TO_BTF_ID | MEM_ALLOC, PTR_TO_BTF_ID | PTR_TRUSTED,
              PTR_TO_BTF_ID | MEM_RCU, PTR_TO_BTF_ID | MEM_ALLOC | NON_OWN_REF,
              PTR_TO_BTF_ID | MEM_ALLOC | NON_OWN_REF | MEM_RCU}


def check_func_arg_reg_off(env: Env, reg: RegState, regno: int, arg_base: int,
                           arg_flags: int) -> None:
    t = reg.type
    if arg_flags & OBJ_RELEASE:
        if arg_base == ARG_PTR_TO_DYNPTR and t == PTR_TO_STACK:
            return
        if reg.off:
            raise env.reject(f"R{regno} must have zero offset when passed to release func or "
                             f"trusted arg to kfunc", EINVAL)
        check_ptr_off_reg(env, reg, regno, False)
        return
    if t in _FIXED_OFF_OK:
        return
    check_ptr_off_reg(env, reg, regno, t in _BTF_FIXED)


def check_mem_size_reg(env: Env, reg: RegState, regno: int, access_type: int, zero_ok: bool,
                       meta: CallArgMeta) -> None:
    b = reg.bounds
    meta.msize_max_value = b.umax_value
    m = meta if not b.var_off.mask else None
    if b.smin_value < 0:
        raise env.reject(f"R{regno} min value is negative, either use unsigned or 'var &= const'")
    if b.umin_value == 0 and not zero_ok:
        raise env.reject(f"R{regno} invalid zero-sized read: u64=[{b.umin_value},"
                         f"{_s64(b.umax_value)}]")
    if b.umax_value >= BPF_MAX_VAR_SIZ:
        raise env.reject(f"R{regno} unbounded memory access, use 'var &= const' or "
                         f"'if (var < const)'")
    check_helper_mem_access(env, regno - 1, b.umax_value, access_type, zero_ok, m)
    mark_chain_precision(env, regno)


def _s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def check_func_arg(env: Env, arg: int, meta: CallArgMeta, fn: Proto, insn_idx: int) -> None:
    if arg >= len(fn.args):
        return
    regno = 1 + arg
    regs = env.cur_regs()
    reg = regs[regno]
    base, flags = fn.args[arg]
    if base == ARG_DONTCARE:
        return
    env.check_reg_arg(regno, SRC_OP)
    if base == ARG_ANYTHING:
        if env.is_pointer_value(reg):
            raise env.reject(f"R{regno} leaks addr into helper function")
        return
    if type_is_pkt_pointer(reg.type) and not may_access_direct_pkt_data(env, meta.pkt_access,
                                                                         BPF_READ):
        raise env.reject("helper access to the packet is not allowed")
    if base == ARG_PTR_TO_MAP_VALUE:
        base, flags = _resolve_map_arg_type(env, meta, flags)
    if not (register_is_null(reg) and flags & PTR_MAYBE_NULL):
        arg_btf = fn.arg_btf_id[arg] if arg < len(fn.arg_btf_id) else None
        check_reg_type(env, regno, base, flags, meta, arg_btf)
        check_func_arg_reg_off(env, reg, regno, base, flags)
    elif base == ARG_PTR_TO_STACK:
        # the NULL skipped the type checks, so a state where this register is
        # another scalar must not be pruned as equivalent (the 6.18.44 builds
        # mark it precise; seen for bpf_loop's callback_ctx)
        mark_chain_precision(env, regno)
    if flags & OBJ_RELEASE:
        if base == ARG_PTR_TO_DYNPTR:
            check_release_dynptr(env, reg, regno)
        elif not reg.ref_obj_id and not register_is_null(reg):
            raise env.reject(f"R{regno} must be referenced when passed to release function",
                             EINVAL)
        if meta.release_regno:
            raise env.bug("more than one release argument")
        meta.release_regno = regno
    if reg.ref_obj_id and base != ARG_KPTR_XCHG_DEST:
        if meta.ref_obj_id:
            raise env.reject(f"more than one arg with ref_obj_id R{regno} {reg.ref_obj_id} "
                             f"{meta.ref_obj_id}")
        meta.ref_obj_id = reg.ref_obj_id
    if base == ARG_CONST_MAP_PTR:
        if meta.map_ptr is not None:
            if meta.map_ptr is not reg.map or meta.map_uid != reg.map_uid:
                raise env.reject(f"timer pointer in R1 map_uid={meta.map_uid} doesn't match map "
                                 f"pointer in R2 map_uid={reg.map_uid}", EINVAL)
        meta.map_ptr = reg.map
        meta.map_uid = reg.map_uid
    elif base == ARG_PTR_TO_MAP_KEY:
        if meta.map_ptr is None:
            raise env.bug("invalid map_ptr to access map->key")
        check_helper_mem_access(env, regno, meta.map_ptr.key_size, BPF_READ, False, None)
        if _can_elide_value_nullness(meta.map_ptr):
            meta.const_map_key = _get_constant_map_key(env, reg, meta.map_ptr.key_size)
    elif base == ARG_PTR_TO_MAP_VALUE:
        if flags & PTR_MAYBE_NULL and register_is_null(reg):
            return
        if meta.map_ptr is None:
            raise env.bug("invalid map_ptr to access map->value")
        meta.raw_mode = bool(flags & MEM_UNINIT)
        check_helper_mem_access(env, regno, meta.map_ptr.value_size,
                                BPF_WRITE if flags & MEM_WRITE else BPF_READ, False, meta)
    elif base == ARG_PTR_TO_PERCPU_BTF_ID:
        if not reg.btf_id:
            raise env.reject(f"Helper has invalid btf_id in R{regno}")
        meta.ret_btf, meta.ret_btf_id = reg.btf, reg.btf_id
    elif base == ARG_PTR_TO_SPIN_LOCK:
        if meta.func_id == F.spin_lock:
            process_spin_lock(env, regno, True)
        elif meta.func_id == F.spin_unlock:
            process_spin_lock(env, regno, False)
        else:
            raise env.bug("spin lock arg on unexpected helper")
    elif base == ARG_PTR_TO_TIMER:
        process_timer_helper(env, regno, meta)
    elif base == ARG_PTR_TO_FUNC:
        meta.subprogno = reg.subprogno
    elif base == ARG_PTR_TO_MEM:
        meta.raw_mode = bool(flags & MEM_UNINIT)
        if flags & MEM_FIXED_SIZE:
            size = fn.arg_size[arg]
            check_helper_mem_access(env, regno, size,
                                    BPF_WRITE if flags & MEM_WRITE else BPF_READ, False, meta)
            if flags & MEM_ALIGNED:
                check_ptr_alignment(env, reg, 0, size, True)
    elif base in (ARG_CONST_SIZE, ARG_CONST_SIZE_OR_ZERO):
        prev_flags = fn.args[arg - 1][1]
        check_mem_size_reg(env, reg, regno, BPF_WRITE if prev_flags & MEM_WRITE else BPF_READ,
                           base == ARG_CONST_SIZE_OR_ZERO, meta)
    elif base == ARG_PTR_TO_DYNPTR:
        process_dynptr_func(env, regno, insn_idx, flags, 0)
    elif base == ARG_CONST_ALLOC_SIZE_OR_ZERO:
        if reg.bounds.var_off.mask:
            raise env.reject(f"R{regno} is not a known constant'")
        meta.mem_size = reg.bounds.var_off.value
        mark_chain_precision(env, regno)
    elif base == ARG_PTR_TO_CONST_STR:
        check_reg_const_str(env, reg, regno)
    elif base == ARG_KPTR_XCHG_DEST:
        process_kptr_func(env, regno, meta)


def _resolve_map_arg_type(env: Env, meta: CallArgMeta, flags: int) -> tuple[int, int]:
    """resolve_map_arg_type: a socket map's value is a socket, and a bloom filter's
    peek reads the value it is given rather than filling it."""
    m = meta.map_ptr
    if m is None:
        raise env.reject("invalid map_ptr to access map->type", EACCES)
    mt = int(m.type)
    if mt in (U.MapType.SOCKMAP, U.MapType.SOCKHASH):
        if flags:
            raise env.reject("invalid arg_type for sockmap/sockhash", EINVAL)
        return ARG_PTR_TO_BTF_ID_SOCK_COMMON, 0
    if mt == U.MapType.BLOOM_FILTER and meta.func_id == F.map_peek_elem:
        return ARG_PTR_TO_MAP_VALUE, 0
    return ARG_PTR_TO_MAP_VALUE, flags


def _can_elide_value_nullness(m) -> bool:
    return int(m.type) in (U.MapType.ARRAY, U.MapType.PERCPU_ARRAY)


def _get_constant_map_key(env: Env, key: RegState, key_size: int) -> int:
    """The constant array index a stack-resident key holds, or -1 (get_constant_map_key).
    Only for bpf_capable programs: the elided NULL check leans on precision tracking."""
    if not env.bpf_capable:
        return -1
    if key.type != PTR_TO_STACK or key.bounds.var_off.mask:
        return -1
    frame = env.cur_state.frames[key.frameno]
    off = key.off + key.bounds.var_off.value
    if off >= 0:
        return -1
    slot = -off - 1
    spi = slot // BPF_REG_SIZE
    stack_off = slot % BPF_REG_SIZE
    if spi >= len(frame.stack):
        return -1
    s = frame.stack[spi]
    zero = True
    for i in range(key_size):
        k = stack_off - i
        if k < 0 or s.slot_type[k] != STACK_ZERO:
            zero = False
            break
    if zero:
        return 0
    if not (s.is_spill() and s.spilled_ptr is not None and
            s.spilled_ptr.type == SCALAR_VALUE):
        return -1
    spill_size = 0
    for i in range(BPF_REG_SIZE - 1, -1, -1):
        if s.slot_type[i] == STACK_SPILL:
            spill_size += 1
        else:
            break
    if spill_size != key_size:
        return -1
    r = s.spilled_ptr
    if r.bounds.var_off.mask:
        return -1
    mark_chain_precision_stack(env, key.frameno, spi)
    return r.bounds.var_off.value


def check_reg_const_str(env: Env, reg: RegState, regno: int) -> None:
    m = reg.map
    if reg.type != PTR_TO_MAP_VALUE:
        return
    if reg.bounds.var_off.mask:
        raise env.reject(f"R{regno} is not a constant address'")
    if not (m.flags & U.BPF_F_RDONLY_PROG and m.frozen):
        raise env.reject(f"R{regno} does not point to a readonly map'")
    if int(m.type) != U.MapType.ARRAY or m.max_entries != 1:
        raise env.reject("no direct value access support for this map type")
    check_map_access(env, regno, reg.off, m.value_size - reg.off, False, False)
    off = reg.off + reg.bounds.var_off.value
    try:
        data = bytes(m.lookup(b"\0\0\0\0"))
    except Exception:
        raise env.reject(f"direct value access on string failed") from None
    if b"\0" not in data[off:]:
        raise env.reject("string is not zero-terminated", EINVAL)


# ---------------------------------------------------------------------------
# the helper call


def check_helper_call(env: Env, insn: Insn) -> None:
    func_id = insn.imm
    insn_idx = env.insn_idx
    if func_id < 0 or func_id >= BPF_FUNC_MAX_ID:
        raise env.reject(f"invalid func {func_id_name(func_id)}#{func_id}", EINVAL)
    fn = helper_proto(env, func_id)
    if fn is None:
        raise env.reject(f"program of this type cannot use helper {func_id_name(func_id)}"
                         f"#{func_id}", EINVAL)
    if not env.gpl and fn.gpl_only:
        raise env.reject("cannot call GPL-restricted function from non-GPL compatible program",
                         EINVAL)
    if fn.allowed is not None and not helper_allowed(env, fn.allowed):
        raise env.reject("helper call is not allowed in probe", EINVAL)
    if not env.sleepable and fn.might_sleep:
        raise env.reject("helper call might sleep in a non-sleepable prog", EINVAL)
    s = env.cur_state
    if s.active_rcu_lock and fn.might_sleep:
        raise env.reject(f"sleepable helper {func_id_name(func_id)}#{func_id} in rcu_read_lock "
                         f"region", EINVAL)
    if s.active_preempt_locks and fn.might_sleep:
        raise env.reject(f"sleepable helper {func_id_name(func_id)}#{func_id} in "
                         f"non-preemptible region", EINVAL)
    if s.active_irq_id and fn.might_sleep:
        raise env.reject(f"sleepable helper {func_id_name(func_id)}#{func_id} in IRQ-disabled "
                         f"region", EINVAL)
    changes_data = helper_changes_pkt_data(func_id)
    meta = CallArgMeta(pkt_access=fn.pkt_access, func_id=func_id)
    for i in range(MAX_BPF_FUNC_REG_ARGS):
        check_func_arg(env, i, meta, fn, insn_idx)
    _record_func_map(env, meta, func_id, insn_idx)
    _record_func_key(env, meta, func_id, insn_idx)
    for i in range(meta.access_size):
        check_mem_access(env, insn_idx, meta.regno, i, U.BPF_B, BPF_WRITE, -1, False, False)
    regs = env.cur_regs()
    if meta.release_regno:
        ok = False
        base = fn.args[meta.release_regno - 1][0]
        if base == ARG_PTR_TO_DYNPTR:
            ok = unmark_stack_slots_dynptr(env, regs[meta.release_regno])
        elif func_id == F.kptr_xchg and meta.ref_obj_id:
            ok = release_reference_nomark(env.cur_state, meta.ref_obj_id)
            if ok:
                rid = meta.ref_obj_id

                def fn_(frame, reg):
                    if reg.ref_obj_id == rid:
                        mark_reg_invalid(env, reg)
                        return True
                    return False
                for_each_reg(env.cur_state, fn_)
        elif meta.ref_obj_id:
            ok = release_reference(env, meta.ref_obj_id)
        elif register_is_null(regs[meta.release_regno]):
            ok = True
        if not ok:
            raise env.reject(f"func {func_id_name(func_id)}#{func_id} reference has not been "
                             f"acquired before", EINVAL)
    if func_id == F.tail_call:
        check_resource_leak(env, False, True, "tail_call")
    elif func_id == F.get_local_storage:
        if not register_is_null(regs[2]):
            raise env.reject("get_local_storage() doesn't support non-zero flags", EINVAL)
    elif func_id == F.for_each_map_elem:
        push_callback_call(env, insn, insn_idx, meta.subprogno, set_map_elem_callback_state)
    elif func_id == F.timer_set_callback:
        push_callback_call(env, insn, insn_idx, meta.subprogno, set_timer_callback_state)
    elif func_id == F.find_vma:
        push_callback_call(env, insn, insn_idx, meta.subprogno, set_find_vma_callback_state)
    elif func_id == F.snprintf:
        _check_bpf_snprintf_call(env, regs)
    elif func_id == F.loop:
        _update_loop_inline_state(env, meta.subprogno)
        mark_chain_precision(env, 1)
        cf = env.cur_func()
        if cf.callback_depth < regs[1].bounds.umax_value:
            push_callback_call(env, insn, insn_idx, meta.subprogno, set_loop_callback_state)
        else:
            cf.callback_depth = 0
            if env.log.level & 2:
                env.log(f"frame{env.cur_state.curframe} bpf_loop iteration limit reached\n")
    elif func_id == F.dynptr_from_mem:
        if regs[1].type != PTR_TO_MAP_VALUE:
            raise env.reject(f"Unsupported reg type {reg_type_str(regs[1].type)} for "
                             f"bpf_dynptr_from_mem data")
    elif func_id == F.user_ringbuf_drain:
        push_callback_call(env, insn, insn_idx, meta.subprogno, set_user_ringbuf_callback_state)
    regs = env.cur_regs()
    for r in range(6):
        regs[r].mark_not_init(not env.bpf_capable)
        env.check_reg_arg(r, DST_OP_NO_MARK)
    r0 = regs[0]
    rb, rflag = fn.ret, fn.ret_flags
    if rb == RET_INTEGER:
        env.mark_reg_unknown(regs, 0)
    elif rb == RET_VOID:
        r0.type = NOT_INIT
    elif rb == RET_PTR_TO_MAP_VALUE:
        r0.mark_known(0)
        if meta.map_ptr is None:
            raise env.bug("unexpected null map_ptr")
        m = meta.map_ptr
        if func_id == F.map_lookup_elem and _can_elide_value_nullness(m) and \
                0 <= meta.const_map_key < m.max_entries:
            rflag &= ~PTR_MAYBE_NULL
        r0.map = m
        r0.map_uid = meta.map_uid
        r0.type = PTR_TO_MAP_VALUE | rflag
        if not rflag & PTR_MAYBE_NULL and reg_may_point_to_spin_lock(r0):
            r0.id = env.new_id()
    elif rb == RET_PTR_TO_SOCKET:
        r0.mark_known(0)
        r0.type = PTR_TO_SOCKET | rflag
    elif rb == RET_PTR_TO_SOCK_COMMON:
        r0.mark_known(0)
        r0.type = PTR_TO_SOCK_COMMON | rflag
    elif rb == RET_PTR_TO_TCP_SOCK:
        r0.mark_known(0)
        r0.type = PTR_TO_TCP_SOCK | rflag
    elif rb == RET_PTR_TO_MEM:
        r0.mark_known(0)
        r0.type = PTR_TO_MEM | rflag
        r0.mem_size = meta.mem_size
    elif rb in (RET_PTR_TO_BTF_ID, RET_PTR_TO_MEM_OR_BTF_ID):
        helper_ret_btf(env, fn, meta, r0, rb, rflag)
    else:
        raise env.reject(f"unknown return type {rb} of func {func_id_name(func_id)}#{func_id}",
                         EINVAL)
    if r0.type & PTR_MAYBE_NULL:
        r0.id = env.new_id()
    if func_id == F.dynptr_data:
        r0.dynptr = meta.dynptr_id
    if func_id in _PTR_CAST or func_id == F.dynptr_data:
        r0.ref_obj_id = meta.ref_obj_id
    elif func_id in _ACQUIRE or (func_id == F.map_lookup_elem and meta.map_ptr is not None and
                                 int(meta.map_ptr.type) in (U.MapType.SOCKMAP,
                                                            U.MapType.SOCKHASH)):
        id_ = acquire_reference(env, insn_idx)
        r0.id = id_
        r0.ref_obj_id = id_
    _do_refine_retval_range(env, r0, fn, func_id, meta)
    check_map_func_compatibility(env, meta.map_ptr, func_id)
    if func_id == F.get_func_ip:
        check_get_func_ip(env)
    if changes_data:
        clear_all_pkt_pointers(env)


def check_get_func_ip(env: Env) -> None:
    """Linux's check_get_func_ip: kprobes and trampoline programs know their function."""
    func_id = int(F.get_func_ip)
    if env.prog_type == U.ProgType.TRACING:
        if env.expected_attach_type not in (U.AttachType.TRACE_FENTRY, U.AttachType.TRACE_FEXIT,
                                            U.AttachType.MODIFY_RETURN):
            raise env.reject(f"func {func_id_name(func_id)}#{func_id} supported only for "
                             f"fentry/fexit/fmod_ret programs", ENOTSUPP)
        return
    if env.prog_type == U.ProgType.KPROBE:
        return
    raise env.reject(f"func {func_id_name(func_id)}#{func_id} not supported for program type "
                     f"{int(env.prog_type)}", ENOTSUPP)


def _nr_cpu_ids() -> int:
    try:
        text = open("/sys/devices/system/cpu/possible").read().strip()
        return int(text.split(",")[-1].split("-")[-1]) + 1
    except OSError:
        return os.cpu_count() or 1


def _do_refine_retval_range(env: Env, r0: RegState, fn: Proto, func_id: int,
                            meta: CallArgMeta) -> None:
    if fn.ret != RET_INTEGER:
        return
    if func_id in (F.get_stack, F.get_task_stack, F.probe_read_str, F.probe_read_kernel_str,
                   F.probe_read_user_str):
        b = r0.bounds.copy()
        b.smax_value = min(meta.msize_max_value, (1 << 63) - 1)
        b.s32_max_value = _s32(meta.msize_max_value)
        b.smin_value = -MAX_ERRNO
        b.s32_min_value = -MAX_ERRNO
        r0.bounds = b.sync()
    elif func_id == F.get_smp_processor_id:
        n = _nr_cpu_ids() - 1
        b = r0.bounds.copy()
        b.umax_value = b.u32_max_value = b.smax_value = b.s32_max_value = n
        b.umin_value = b.u32_min_value = b.smin_value = b.s32_min_value = 0
        r0.bounds = b.sync()
    v = r0.bounds.invariant_violation() if r0.type == SCALAR_VALUE else None
    if v:
        raise env.bug(f"REG INVARIANTS VIOLATION (retval): {v}")


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _record_func_map(env: Env, meta: CallArgMeta, func_id: int, insn_idx: int) -> None:
    if func_id not in (F.tail_call, F.map_lookup_elem, F.map_update_elem, F.map_delete_elem,
                       F.map_push_elem, F.map_pop_elem, F.map_peek_elem, F.for_each_map_elem,
                       F.redirect_map, F.map_lookup_percpu_elem):
        return
    m = meta.map_ptr
    if m is None:
        raise env.bug("expected map for helper call")
    if m.flags & U.BPF_F_RDONLY_PROG and \
            func_id in (F.map_delete_elem, F.map_update_elem, F.map_push_elem, F.map_pop_elem):
        raise env.reject("write into map forbidden")
    aux = env.aux[insn_idx]
    if aux.map_ptr is None:
        aux.map_ptr = m
    elif aux.map_ptr is not m:
        aux.map_ptr_poisoned = True


def check_tail_call_fixups(env: Env) -> None:
    """do_misc_fixups' tail call rewrite, after verification: for an unprivileged
    loader each bpf_tail_call is bounded by its map's max_entries and index_mask
    (Spectre v1), which needs one map per call site -- a call reached with
    different maps on different paths is refused."""
    if env.bypass_spec_v1:
        return
    for i, insn in enumerate(env.insns):
        if insn.code == (U.BPF_JMP | U.BPF_CALL) and insn.src == 0 and \
                insn.imm == F.tail_call and env.aux[i].map_ptr_poisoned:
            raise env.reject("tail_call abusing map_ptr", EINVAL)


def _update_loop_inline_state(env: Env, subprogno: int) -> None:
    """update_loop_inline_state: bpf_loop with constant zero flags may be inlined,
    so a zero R4 is precise (loop_flag_is_zero)."""
    aux = env.aux[env.insn_idx]
    st = getattr(aux, "loop_inline", None)
    if st is not None and not st[0]:
        return
    r4 = env.cur_regs()[4]
    zero = r4.type == SCALAR_VALUE and r4.is_const() and r4.bounds.var_off.value == 0
    if zero:
        mark_chain_precision(env, 4)
    aux.loop_inline = (zero if st is None else zero and st[1] == subprogno, subprogno)


def _record_func_key(env: Env, meta: CallArgMeta, func_id: int, insn_idx: int) -> None:
    """record_func_key: a constant in-range tail-call index is precise and remembered."""
    if func_id != F.tail_call:
        return
    aux = env.aux[insn_idx]
    m = meta.map_ptr
    if m is None or m.type != U.MapType.PROG_ARRAY:
        raise env.reject("expected prog array map for tail call", EINVAL, newline=False)
    r3 = env.cur_regs()[3]
    v = r3.bounds.var_off.value
    if not (r3.is_const() and v < m.max_entries):
        aux.map_key_poisoned = True
        return
    mark_chain_precision(env, 3)
    if aux.map_key is None:
        aux.map_key = v
    elif aux.map_key != v:
        aux.map_key_poisoned = True


def _check_bpf_snprintf_call(env: Env, regs: list[RegState]) -> None:
    """check_bpf_snprintf_call: the format string must be a constant the helper can parse."""
    fmt = regs[3]
    data_len = regs[5]
    if fmt.type != PTR_TO_MAP_VALUE or fmt.bounds.var_off.mask:
        return
    m = fmt.map
    try:
        raw = bytes(m.lookup(b"\0\0\0\0"))
    except Exception:
        raise env.reject("Unable to read snprintf format string", EINVAL) from None
    off = fmt.off + fmt.bounds.var_off.value
    s = raw[off:].split(b"\0", 1)[0]
    nargs = data_len.bounds.var_off.value // 8 if data_len.is_const() else 0
    err = check_format(s, nargs)
    if err:
        raise env.reject(f"Invalid format string", EINVAL)


_MAP_ALLOWED = {
    U.MapType.PROG_ARRAY: {F.tail_call},
    U.MapType.PERF_EVENT_ARRAY: {F.perf_event_read, F.perf_event_output, F.skb_output,
                                 F.perf_event_read_value, F.xdp_output},
    U.MapType.RINGBUF: {F.ringbuf_output, F.ringbuf_reserve, F.ringbuf_query,
                        F.ringbuf_reserve_dynptr, F.ringbuf_submit_dynptr,
                        F.ringbuf_discard_dynptr},
    U.MapType.USER_RINGBUF: {F.user_ringbuf_drain},
    U.MapType.STACK_TRACE: {F.get_stackid},
    U.MapType.CGROUP_ARRAY: {F.skb_under_cgroup, F.current_task_under_cgroup},
    U.MapType.CGROUP_STORAGE: {F.get_local_storage},
    U.MapType.PERCPU_CGROUP_STORAGE: {F.get_local_storage},
    U.MapType.DEVMAP: {F.redirect_map, F.map_lookup_elem},
    U.MapType.DEVMAP_HASH: {F.redirect_map, F.map_lookup_elem},
    U.MapType.CPUMAP: {F.redirect_map},
    U.MapType.XSKMAP: {F.redirect_map, F.map_lookup_elem},
    U.MapType.ARRAY_OF_MAPS: {F.map_lookup_elem},
    U.MapType.HASH_OF_MAPS: {F.map_lookup_elem},
    U.MapType.SOCKMAP: {F.sk_redirect_map, F.sock_map_update, F.msg_redirect_map,
                        F.sk_select_reuseport, F.map_lookup_elem},
    U.MapType.SOCKHASH: {F.sk_redirect_hash, F.sock_hash_update, F.msg_redirect_hash,
                         F.sk_select_reuseport, F.map_lookup_elem},
    U.MapType.REUSEPORT_SOCKARRAY: {F.sk_select_reuseport},
    U.MapType.QUEUE: {F.map_peek_elem, F.map_pop_elem, F.map_push_elem},
    U.MapType.STACK: {F.map_peek_elem, F.map_pop_elem, F.map_push_elem},
    U.MapType.SK_STORAGE: {F.sk_storage_get, F.sk_storage_delete, F.kptr_xchg},
    U.MapType.INODE_STORAGE: {F.inode_storage_get, F.inode_storage_delete, F.kptr_xchg},
    U.MapType.TASK_STORAGE: {F.task_storage_get, F.task_storage_delete, F.kptr_xchg},
    U.MapType.CGRP_STORAGE: {F.cgrp_storage_get, F.cgrp_storage_delete, F.kptr_xchg},
    U.MapType.BLOOM_FILTER: {F.map_peek_elem, F.map_push_elem},
}
_FUNC_MAPS = {
    F.tail_call: {U.MapType.PROG_ARRAY},
    F.perf_event_read: {U.MapType.PERF_EVENT_ARRAY}, F.perf_event_output: {U.MapType.PERF_EVENT_ARRAY},
    F.perf_event_read_value: {U.MapType.PERF_EVENT_ARRAY}, F.skb_output: {U.MapType.PERF_EVENT_ARRAY},
    F.xdp_output: {U.MapType.PERF_EVENT_ARRAY},
    F.ringbuf_output: {U.MapType.RINGBUF}, F.ringbuf_reserve: {U.MapType.RINGBUF},
    F.ringbuf_query: {U.MapType.RINGBUF}, F.ringbuf_reserve_dynptr: {U.MapType.RINGBUF},
    F.ringbuf_submit_dynptr: {U.MapType.RINGBUF}, F.ringbuf_discard_dynptr: {U.MapType.RINGBUF},
    F.user_ringbuf_drain: {U.MapType.USER_RINGBUF},
    F.get_stackid: {U.MapType.STACK_TRACE},
    F.current_task_under_cgroup: {U.MapType.CGROUP_ARRAY},
    F.skb_under_cgroup: {U.MapType.CGROUP_ARRAY},
    F.redirect_map: {U.MapType.DEVMAP, U.MapType.DEVMAP_HASH, U.MapType.CPUMAP, U.MapType.XSKMAP},
    F.sk_redirect_map: {U.MapType.SOCKMAP}, F.msg_redirect_map: {U.MapType.SOCKMAP},
    F.sock_map_update: {U.MapType.SOCKMAP},
    F.sk_redirect_hash: {U.MapType.SOCKHASH}, F.msg_redirect_hash: {U.MapType.SOCKHASH},
    F.sock_hash_update: {U.MapType.SOCKHASH},
    F.get_local_storage: {U.MapType.CGROUP_STORAGE, U.MapType.PERCPU_CGROUP_STORAGE},
    F.sk_select_reuseport: {U.MapType.REUSEPORT_SOCKARRAY, U.MapType.SOCKMAP, U.MapType.SOCKHASH},
    F.map_pop_elem: {U.MapType.QUEUE, U.MapType.STACK},
    F.map_peek_elem: {U.MapType.QUEUE, U.MapType.STACK, U.MapType.BLOOM_FILTER},
    F.map_push_elem: {U.MapType.QUEUE, U.MapType.STACK, U.MapType.BLOOM_FILTER},
    F.map_lookup_percpu_elem: {U.MapType.PERCPU_ARRAY, U.MapType.PERCPU_HASH,
                               U.MapType.LRU_PERCPU_HASH},
    F.sk_storage_get: {U.MapType.SK_STORAGE}, F.sk_storage_delete: {U.MapType.SK_STORAGE},
    F.inode_storage_get: {U.MapType.INODE_STORAGE}, F.inode_storage_delete: {U.MapType.INODE_STORAGE},
    F.task_storage_get: {U.MapType.TASK_STORAGE}, F.task_storage_delete: {U.MapType.TASK_STORAGE},
    F.cgrp_storage_get: {U.MapType.CGRP_STORAGE}, F.cgrp_storage_delete: {U.MapType.CGRP_STORAGE},
}


def _may_update_sockmap(env: Env, func_id: int) -> bool:
    if func_id not in (F.map_update_elem, F.map_delete_elem):
        return False
    P = U.ProgType
    pt = env.prog_type
    if pt == P.TRACING and env.expected_attach_type == U.AttachType.TRACE_ITER:
        return True
    if pt == P.SOCK_OPS and func_id == F.map_delete_elem:
        return True
    if pt in (P.SOCKET_FILTER, P.SCHED_CLS, P.SCHED_ACT, P.XDP, P.SK_REUSEPORT,
              P.FLOW_DISSECTOR, P.SK_LOOKUP):
        return True
    env.verbose("cannot update sockmap in this context\n")
    return False


def check_map_func_compatibility(env: Env, m, func_id: int) -> None:
    if m is None:
        return
    mt = int(m.type)
    ok = True
    allowed = _MAP_ALLOWED.get(mt)
    if allowed is not None and func_id not in allowed:
        if not (mt in (U.MapType.SOCKMAP, U.MapType.SOCKHASH) and
                _may_update_sockmap(env, func_id)):
            ok = False
    if ok:
        need = _FUNC_MAPS.get(func_id)
        if need is not None and mt not in need:
            ok = False
        elif func_id == F.tail_call and len(env.subprogs) > 1 and \
                not _allow_tail_call_in_subprogs(env):
            raise env.reject("mixing of tail_calls and bpf-to-bpf calls is not supported",
                             EINVAL)
    if not ok:
        raise env.reject(f"cannot pass map_type {mt} into func {func_id_name(func_id)}#{func_id}",
                         EINVAL)


def _allow_tail_call_in_subprogs(env: Env) -> bool:
    return True   # x86-64 JIT supports tail calls in subprograms (bpf_jit_supports_subprog_tailcalls)


# ---------------------------------------------------------------------------
# bpf-to-bpf calls and callbacks


def setup_func_entry(env: Env, subprog: int, callsite: int, set_callee, state: VerifierState):
    if state.curframe + 1 >= MAX_CALL_FRAMES:
        raise env.reject(f"the call stack of {state.curframe + 2} frames is too deep", E2BIG)
    caller = state.frames[state.curframe]
    callee = FuncState()
    init_func_state(env, callee, callsite, state.curframe + 1, subprog)
    del state.frames[state.curframe + 1:]
    state.frames.append(callee)
    set_callee(env, caller, callee, callsite)
    state.curframe += 1
    return callee


def set_callee_state(env: Env, caller: FuncState, callee: FuncState, insn_idx: int) -> None:
    for i in range(1, 6):
        callee.regs[i] = caller.regs[i].copy()


def clear_caller_saved_regs(env: Env, regs: list[RegState]) -> None:
    for r in range(6):
        regs[r].mark_not_init(not env.bpf_capable)
        env.mark_reg_scratched(r)


def _check_mem_reg(env: Env, reg: RegState, regno: int, size: int) -> None:
    """check_mem_reg: ``size`` bytes behind the register are readable and writable
    (a maybe-NULL pointer checked as if it were not NULL)."""
    if register_is_null(reg):
        return
    saved = None
    if reg.type & PTR_MAYBE_NULL:
        saved = reg.copy()
        reg.type &= ~PTR_MAYBE_NULL
    try:
        check_helper_mem_access(env, regno, size, BPF_READ, True, None)
        check_helper_mem_access(env, regno, size, BPF_WRITE, True, None)
    finally:
        if saved is not None:
            reg.assign(saved)


def btf_check_subprog_call(env: Env, subprog: int, regs: list[RegState]) -> bool:
    """btf_check_func_arg_match: do the caller's registers match what the global
    function's prototype promises its body?  True = they do not (the reason logged)."""
    args = prepare_subprog_args(env, subprog)
    if args is None:
        return True
    try:
        for i, arg in enumerate(args):
            regno = i + 1
            reg = regs[regno]
            if arg.kind == SUB_ANYTHING:
                if reg.type != SCALAR_VALUE:
                    env.verbose(f"R{regno} is not a scalar\n")
                    return True
            elif arg.flags & PTR_UNTRUSTED:
                # read only, through probe reads: anything may be passed
                continue
            elif arg.kind == SUB_CTX:
                check_func_arg_reg_off(env, reg, regno, ARG_DONTCARE, 0)
                if reg.type != PTR_TO_CTX:
                    env.verbose(f"arg#{i} expects pointer to ctx\n")
                    return True
            elif arg.kind == SUB_MEM:
                check_func_arg_reg_off(env, reg, regno, ARG_DONTCARE, 0)
                _check_mem_reg(env, reg, regno, arg.mem_size)
                if not arg.flags & PTR_MAYBE_NULL and reg.type & PTR_MAYBE_NULL:
                    env.verbose(f"arg#{i} is expected to be non-NULL\n")
                    return True
            elif arg.kind == SUB_ARENA:
                if reg.type not in (PTR_TO_ARENA, SCALAR_VALUE):
                    env.verbose(f"R{regno} is not a pointer to arena or scalar.\n")
                    return True
            elif arg.kind == SUB_DYNPTR:
                check_func_arg_reg_off(env, reg, regno, ARG_PTR_TO_DYNPTR, 0)
                process_dynptr_func(env, regno, -1, arg.flags, 0)
            elif arg.kind == SUB_BTF_ID:
                if register_is_null(reg) and arg.flags & PTR_MAYBE_NULL:
                    continue
                _check_btf_id_reg(env, reg, regno, arg)
                check_func_arg_reg_off(env, reg, regno, ARG_PTR_TO_BTF_ID, 0)
            else:
                raise env.bug(f"unrecognized arg#{i} type {arg.kind}")
    except VerifierReject as e:
        if e.errno == EFAULT:
            raise
        return True
    return False


_BTF_PTR_TYPES = (PTR_TO_BTF_ID, PTR_TO_BTF_ID | PTR_TRUSTED, PTR_TO_BTF_ID | MEM_RCU)


def _check_btf_id_reg(env: Env, reg: RegState, regno: int, arg) -> None:
    """check_reg_type for a global function's ARG_PTR_TO_BTF_ID argument: a kernel
    pointer (trusted, RCU or plain) to the struct the prototype names, or to a
    struct that holds it at the pointer's offset."""
    t = reg.type & ~PTR_MAYBE_NULL if arg.flags & PTR_MAYBE_NULL else reg.type
    if t not in _BTF_PTR_TYPES:
        raise env.reject(f"R{regno} type={reg_type_str(reg.type)} expected=" +
                         ", ".join(reg_type_str(x) for x in _BTF_PTR_TYPES))
    vml = BTF.load_vmlinux()
    if reg.btf is not vml or not btf_struct_ids_match(vml, reg.btf_id, reg.off, arg.btf_id,
                                                      False):
        have = reg.btf[reg.btf_id].name if reg.btf is not None else ""
        raise env.reject(f"R{regno} is of type {have} but {vml[arg.btf_id].name} is expected")


def check_func_call(env: Env, insn: Insn) -> None:
    s = env.cur_state
    target = env.insn_idx + insn.imm + 1
    subprog = env.subprog_by_start(target)
    if subprog < 0:
        raise env.bug(f"target of func call at insn {target} is not a program")
    caller = s.frames[s.curframe]
    sp = env.subprogs[subprog]
    if sp.is_global:
        err = btf_check_subprog_call(env, subprog, caller.regs)
        if s.active_locks:
            raise env.reject("global function calls are not allowed while holding a lock,\n"
                             "use static function instead", EINVAL)
        if err:
            raise env.reject(f"Caller passes invalid args into func#{subprog} ('{sp.name}')",
                             EINVAL)
        if env.log.level:
            env.log(f"Func#{subprog} ('{sp.name}') is global and assumed valid.\n")
        if sp.changes_pkt_data:
            clear_all_pkt_pointers(env)
        sp.visited = True
        clear_caller_saved_regs(env, caller.regs)
        env.mark_reg_unknown(caller.regs, 0)
        return
    setup_func_entry(env, subprog, env.insn_idx, set_callee_state, s)
    clear_caller_saved_regs(env, caller.regs)
    env.insn_idx = sp.start - 1
    if env.liveness is not None:
        env.liveness.reset_callchain(env)
    if env.log.level:
        env.log("caller:\n")
        env.print_verifier_state(s, caller.frameno, True)
        env.log("callee:\n")
        env.print_verifier_state(s, s.curframe, True)


def prepare_func_exit(env: Env) -> None:
    s = env.cur_state
    if env.liveness is not None:
        env.liveness.update(env)
    callee = s.frames[s.curframe]
    r0 = callee.regs[0]
    if r0.type == PTR_TO_STACK:
        raise env.reject("cannot return stack pointer to the caller", EINVAL)
    caller = s.frames[s.curframe - 1]
    if callee.in_callback_fn:
        if r0.type != SCALAR_VALUE:
            raise env.reject("R0 not a scalar value")
        mark_chain_precision(env, 0)
        lo, hi = callee.callback_ret_range
        if not (lo <= r0.bounds.smin_value and r0.bounds.smax_value <= hi):
            raise _invalid_scalar(env, r0, (lo, hi), "At callback return", "R0")
    else:
        caller.regs[0] = r0.copy()
    in_cb = callee.in_callback_fn
    env.insn_idx = callee.callsite if in_cb else callee.callsite + 1
    if env.log.level:
        env.log("returning from callee:\n")
        env.print_verifier_state(s, callee.frameno, True)
        env.log(f"to caller at {env.insn_idx}:\n")
        env.print_verifier_state(s, caller.frameno, True)
    s.frames.pop()
    s.curframe -= 1
    prev = find_prev_entry(env, s, env.insn_idx) if in_cb else None
    if prev is not None:
        widen_imprecise_scalars(env, prev, s)


def _invalid_scalar(env: Env, reg: RegState, rng: tuple[int, int], ctx: str, name: str):
    b = reg.bounds
    parts = []
    if b.smin_value > -(1 << 63):
        parts.append(f" smin={b.smin_value}")
    if b.smax_value < (1 << 63) - 1:
        parts.append(f" smax={b.smax_value}")
    if not parts:
        parts.append(" unknown scalar value")
    env.verbose(f"{ctx} the register {name} has" + "".join(parts) +
                f" should have been in [{rng[0]}, {rng[1]}]\n")
    last = f"{ctx} the register {name} has" + "".join(parts) + \
        f" should have been in [{rng[0]}, {rng[1]}]"
    return VerifierReject(last, EINVAL)


def push_callback_call(env: Env, insn: Insn, insn_idx: int, subprog: int, set_cb) -> None:
    s = env.cur_state
    caller = s.frames[s.curframe]
    env.subprogs[subprog].is_cb = True
    if is_async_callback_calling_insn(insn):
        env.subprogs[subprog].is_async_cb = True
        cb = push_async_cb(env, env.subprogs[subprog].start, insn_idx, subprog)
        callee = cb.frames[0]
        callee.async_entry_cnt = caller.async_entry_cnt + 1
        set_cb(env, caller, callee, insn_idx)
        return
    cbs = push_stack(env, env.subprogs[subprog].start, insn_idx, False)
    setup_func_entry(env, subprog, insn_idx, set_cb, cbs)
    cbs.callback_unroll_depth += 1
    cbs.frames[cbs.curframe - 1].callback_depth += 1
    caller.callback_depth = 0


def set_loop_callback_state(env: Env, caller: FuncState, callee: FuncState, idx: int) -> None:
    callee.regs[1].type = SCALAR_VALUE
    callee.regs[2] = caller.regs[3].copy()
    for r in (3, 4, 5):
        callee.regs[r].mark_not_init(not env.bpf_capable)
    callee.in_callback_fn = True
    callee.callback_ret_range = (0, 1)


def set_map_elem_callback_state(env: Env, caller: FuncState, callee: FuncState, idx: int) -> None:
    m = env.aux[idx].map_ptr
    mt = int(m.type)
    if mt not in (U.MapType.HASH, U.MapType.LRU_HASH, U.MapType.PERCPU_HASH,
                  U.MapType.LRU_PERCPU_HASH, U.MapType.ARRAY, U.MapType.PERCPU_ARRAY):
        raise env.reject("callback function not allowed for map", ENOTSUPP)
    callee.regs[1] = caller.regs[1].copy()
    for r, t in ((2, PTR_TO_MAP_KEY), (3, PTR_TO_MAP_VALUE)):
        reg = callee.regs[r]
        reg.type = t
        reg.mark_known(0)
        reg.map = m
    callee.regs[4] = caller.regs[3].copy()
    callee.regs[5].mark_not_init(not env.bpf_capable)
    callee.in_callback_fn = True
    callee.callback_ret_range = (0, 1)


def set_timer_callback_state(env: Env, caller: FuncState, callee: FuncState, idx: int) -> None:
    m = caller.regs[1].map
    callee.regs[1].type = CONST_PTR_TO_MAP
    callee.regs[1].mark_known(0)
    callee.regs[1].map = m
    callee.regs[2].type = PTR_TO_MAP_KEY
    callee.regs[2].mark_known(0)
    callee.regs[2].map = m
    callee.regs[3].type = PTR_TO_MAP_VALUE
    callee.regs[3].mark_known(0)
    callee.regs[3].map = m
    for r in (4, 5):
        callee.regs[r].mark_not_init(not env.bpf_capable)
    callee.in_async_callback_fn = True
    callee.callback_ret_range = (0, 0)


def set_find_vma_callback_state(env: Env, caller: FuncState, callee: FuncState, idx: int) -> None:
    callee.regs[1] = caller.regs[1].copy()
    callee.regs[2].type = PTR_TO_BTF_ID
    callee.regs[2].mark_known(0)
    callee.regs[3] = caller.regs[4].copy()
    for r in (4, 5):
        callee.regs[r].mark_not_init(not env.bpf_capable)
    callee.in_callback_fn = True
    callee.callback_ret_range = (0, 1)


def set_user_ringbuf_callback_state(env: Env, caller: FuncState, callee: FuncState,
                                    idx: int) -> None:
    callee.regs[1].type = CONST_PTR_TO_DYNPTR
    callee.regs[1].mark_known(0)
    callee.regs[1].dynptr = ("local", True)
    callee.regs[2] = caller.regs[3].copy()
    for r in (3, 4, 5):
        callee.regs[r].mark_not_init(not env.bpf_capable)
    callee.in_callback_fn = True
    callee.callback_ret_range = (0, 1)


# ---------------------------------------------------------------------------
# program exit


def check_return_code(env: Env, regno: int, name: str) -> None:
    s = env.cur_state
    frame = s.frames[0]
    reg = s.regs[regno]
    is_subprog = frame.subprogno != 0
    if not is_subprog and void_return(env):
        return          # a struct_ops member returning void: R0 is not looked at
    env.check_reg_arg(regno, SRC_OP)
    if env.is_pointer_value(reg):
        raise env.reject(f"R{regno} leaks addr as return value")
    exit_ctx = "At program exit"
    if frame.in_async_callback_fn:
        exit_ctx = "At async callback return"
        rng = frame.callback_ret_range
    elif is_subprog and not frame.in_exception_callback_fn:
        if reg.type != SCALAR_VALUE:
            raise env.reject(f"At subprogram exit the register R{regno} is not a scalar value "
                             f"({reg_type_str(reg.type)})", EINVAL)
        return
    else:
        info = env.ptinfo
        rr = info.ret_range if info is not None else None
        if rr is None:
            return
        rng = (rr.lo, rr.hi)
    if reg.type != SCALAR_VALUE:
        raise env.reject(f"{exit_ctx} the register R{regno} is not a known value "
                         f"({reg_type_str(reg.type)})", EINVAL)
    mark_chain_precision(env, regno)
    b = reg.bounds
    if not (rng[0] <= b.smin_value and b.smax_value <= rng[1]):
        raise _invalid_scalar(env, reg, rng, exit_ctx, name)
