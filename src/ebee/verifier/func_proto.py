"""Helper prototypes in kernel words (struct bpf_func_proto) and what the verifier
knows of each helper id: which change packet data, which call back into the program.

``ebee.protos.helpers`` (generated from the kernel sources) gives each prototype in
the kernel's words, a base type and flags; :func:`helper_proto` picks the one the
program's type, attach type and sleepability get and turns it into the arg type +
flag numbers check_helper_call works on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..protos.helpers import ALLOWED_SETS, HELPERS
from ..protos.kfuncs import by_id as kfunc_by_id
from ..protos.vocab import BPF_BASE_TYPE_BITS, Arg, Ret
from ..uapi import AttachType as AT, FuncId as F, ProgType as PT
from .env import Env
from .insn import Insn
from .types import BASE_TYPE_BITS

BPF_FUNC_MAX_ID = max(int(f) for f in F) + 1      # __BPF_FUNC_MAX_ID

# enum bpf_arg_type / enum bpf_return_type base values (ebee.protos.vocab's)
ARG_DONTCARE = int(Arg.DONTCARE)
ARG_CONST_MAP_PTR = int(Arg.CONST_MAP_PTR)
ARG_PTR_TO_MAP_KEY = int(Arg.PTR_TO_MAP_KEY)
ARG_PTR_TO_MAP_VALUE = int(Arg.PTR_TO_MAP_VALUE)
ARG_PTR_TO_MEM = int(Arg.PTR_TO_MEM)
ARG_PTR_TO_ARENA = int(Arg.PTR_TO_ARENA)
ARG_CONST_SIZE = int(Arg.CONST_SIZE)
ARG_CONST_SIZE_OR_ZERO = int(Arg.CONST_SIZE_OR_ZERO)
ARG_PTR_TO_CTX = int(Arg.PTR_TO_CTX)
ARG_ANYTHING = int(Arg.ANYTHING)
ARG_PTR_TO_SPIN_LOCK = int(Arg.PTR_TO_SPIN_LOCK)
ARG_PTR_TO_SOCK_COMMON = int(Arg.PTR_TO_SOCK_COMMON)
ARG_PTR_TO_SOCKET = int(Arg.PTR_TO_SOCKET)
ARG_PTR_TO_BTF_ID = int(Arg.PTR_TO_BTF_ID)
ARG_PTR_TO_RINGBUF_MEM = int(Arg.PTR_TO_RINGBUF_MEM)
ARG_CONST_ALLOC_SIZE_OR_ZERO = int(Arg.CONST_ALLOC_SIZE_OR_ZERO)
ARG_PTR_TO_BTF_ID_SOCK_COMMON = int(Arg.PTR_TO_BTF_ID_SOCK_COMMON)
ARG_PTR_TO_PERCPU_BTF_ID = int(Arg.PTR_TO_PERCPU_BTF_ID)
ARG_PTR_TO_FUNC = int(Arg.PTR_TO_FUNC)
ARG_PTR_TO_STACK = int(Arg.PTR_TO_STACK)
ARG_PTR_TO_CONST_STR = int(Arg.PTR_TO_CONST_STR)
ARG_PTR_TO_TIMER = int(Arg.PTR_TO_TIMER)
ARG_KPTR_XCHG_DEST = int(Arg.KPTR_XCHG_DEST)
ARG_PTR_TO_DYNPTR = int(Arg.PTR_TO_DYNPTR)
RET_INTEGER = int(Ret.INTEGER)
RET_VOID = int(Ret.VOID)
RET_PTR_TO_MAP_VALUE = int(Ret.PTR_TO_MAP_VALUE)
RET_PTR_TO_SOCKET = int(Ret.PTR_TO_SOCKET)
RET_PTR_TO_TCP_SOCK = int(Ret.PTR_TO_TCP_SOCK)
RET_PTR_TO_SOCK_COMMON = int(Ret.PTR_TO_SOCK_COMMON)
RET_PTR_TO_MEM = int(Ret.PTR_TO_MEM)
RET_PTR_TO_MEM_OR_BTF_ID = int(Ret.PTR_TO_MEM_OR_BTF_ID)
RET_PTR_TO_BTF_ID = int(Ret.PTR_TO_BTF_ID)

_SYNC_CB = {F.for_each_map_elem, F.find_vma, F.loop, F.user_ringbuf_drain}
_ASYNC_CB = {F.timer_set_callback}
_CHANGES_PKT_DATA = {
    F.skb_store_bytes, F.skb_change_proto, F.skb_change_type, F.skb_change_tail,
    F.skb_change_head, F.skb_pull_data, F.skb_vlan_push, F.skb_vlan_pop, F.skb_adjust_room,
    F.l3_csum_replace, F.l4_csum_replace, F.xdp_adjust_head, F.xdp_adjust_meta,
    F.xdp_adjust_tail, F.clone_redirect, F.msg_pull_data, F.msg_push_data, F.msg_pop_data,
    F.lwt_push_encap, F.lwt_seg6_store_bytes, F.lwt_seg6_adjust_srh, F.lwt_seg6_action,
    F.store_hdr_opt, F.skb_ecn_set_ce, F.sock_ops_cb_flags_set,
    F.tail_call}                    # the tail-called program may call any of these


def helper_changes_pkt_data(func_id: int) -> bool:
    return func_id in _CHANGES_PKT_DATA


def is_sync_callback_calling_insn(insn: Insn) -> bool:
    if insn.is_kfunc_call():
        return _kfunc_name(insn.imm) == "bpf_rbtree_add_impl"
    return insn.is_helper_call() and insn.imm in _SYNC_CB


def _kfunc_name(imm: int) -> str | None:
    k = kfunc_by_id(imm)
    return k.name if k is not None else None


def is_async_callback_calling_insn(insn: Insn) -> bool:
    return insn.is_helper_call() and insn.imm in _ASYNC_CB


@dataclass
class Proto:
    """A helper prototype in kernel words (bpf_func_proto)."""
    func_id: int
    ret: int
    ret_flags: int
    args: list[tuple[int, int]]
    arg_size: list[int]
    gpl_only: bool = False
    pkt_access: bool = False
    might_sleep: bool = False
    ret_btf_id: object = None
    arg_btf_id: list = field(default_factory=list)
    allowed: str | None = None          # the kernel's .allowed callback (helper_allowed)


_proto_cache: dict[tuple, Proto | None] = {}

assert BASE_TYPE_BITS == BPF_BASE_TYPE_BITS


def _make_proto(fid: int, prog_type=None, attach_type=None, sleepable: bool = False) -> Proto | None:
    h = HELPERS.get(fid)
    if h is None:
        return None
    p = h.for_prog(prog_type, attach_type, sleepable)
    args = [(int(a.type), int(a.flags) << BASE_TYPE_BITS) for a in p.args]
    sizes = [a.size for a in p.args]
    return Proto(fid, int(p.ret), int(p.ret_flags) << BASE_TYPE_BITS, args, sizes, p.gpl_only,
                 p.pkt_access, p.might_sleep, p.ret_btf, [a.btf for a in p.args], p.allowed)


def _lsm_sleepable(target: str | None) -> bool:
    # bpf_lsm_is_sleepable_hook(): the hook's function is bpf_lsm_<hook>
    if not target:
        return False
    name = target if target.startswith("bpf_lsm_") else "bpf_lsm_" + target
    return name in ALLOWED_SETS["sleepable_lsm_hooks"]


def helper_allowed(env: Env, callback: str) -> bool:
    """The prototype's ``.allowed(prog)`` callback, by its kernel name."""
    pt, at, target = env.prog_type, env.expected_attach_type, env.attach_target
    if callback == "bpf_d_path_allowed":
        if pt == PT.TRACING and at == AT.TRACE_ITER:
            return True
        if pt == PT.LSM:
            return _lsm_sleepable(target)
        return target in ALLOWED_SETS["btf_allowlist_d_path"]
    if callback == "bpf_ima_inode_hash_allowed":
        return _lsm_sleepable(target)
    if callback == "bpf_sk_storage_tracing_allowed":
        if at in (AT.TRACE_ITER, AT.TRACE_RAW_TP):
            return True      # bpf_sk_storage has no tracepoint
        if at in (AT.TRACE_FENTRY, AT.TRACE_FEXIT):
            return bool(target) and not target.startswith("bpf_sk_storage")
        return False
    # a callback this verifier does not know: refuse, as no unsound accept is allowed
    return False


# bpf_base_func_proto: helpers only a loader with CAP_BPF gets, and those that also
# need CAP_PERFMON (they read kernel memory or pointers).  Unprivileged loads are
# socket filters and cgroup_skb programs, whose helpers all come through it.
_CAP_BPF_HELPERS = frozenset({
    F.spin_lock, F.spin_unlock, F.jiffies64, F.per_cpu_ptr, F.this_cpu_ptr, F.timer_init,
    F.timer_set_callback, F.timer_start, F.timer_cancel, F.kptr_xchg, F.for_each_map_elem,
    F.loop, F.user_ringbuf_drain, F.ringbuf_reserve_dynptr, F.ringbuf_submit_dynptr,
    F.ringbuf_discard_dynptr, F.dynptr_from_mem, F.dynptr_read, F.dynptr_write, F.dynptr_data,
    F.cgrp_storage_get, F.cgrp_storage_delete, F.get_current_cgroup_id,
    F.get_current_ancestor_cgroup_id})
_CAP_PERFMON_HELPERS = frozenset({
    F.trace_printk, F.get_current_task, F.get_current_task_btf, F.probe_read_user,
    F.probe_read_kernel, F.probe_read_user_str, F.probe_read_kernel_str, F.snprintf_btf,
    F.snprintf, F.task_pt_regs, F.trace_vprintk,
    # bpf_sk_base_func_proto
    F.skc_to_tcp6_sock, F.skc_to_tcp_sock, F.skc_to_tcp_timewait_sock,
    F.skc_to_tcp_request_sock, F.skc_to_udp6_sock, F.skc_to_unix_sock, F.skc_to_mptcp_sock})


def helper_proto(env: Env, func_id: int) -> Proto | None:
    """get_helper_proto: the prototype if this program type may call the helper."""
    if not env.bpf_capable and func_id in _CAP_BPF_HELPERS:
        return None
    if not env.allow_ptr_leaks and func_id in _CAP_PERFMON_HELPERS:
        return None
    if func_id < 0 or func_id >= BPF_FUNC_MAX_ID:
        return None
    key = (func_id, env.prog_type, env.expected_attach_type, env.sleepable)
    p = _proto_cache.get(key, False)
    if p is False:
        p = _proto_cache[key] = _make_proto(func_id, env.prog_type, env.expected_attach_type,
                                            env.sleepable)
    if p is None:
        return None
    info = env.ptinfo
    if info is not None and not info.helper_allowed(func_id):
        return None
    return p


def func_id_name(fid: int) -> str:
    try:
        return "bpf_" + F(fid).name
    except ValueError:
        return "unknown"


@dataclass
class CallArgMeta:
    map_ptr: object = None
    map_uid: int = 0
    raw_mode: bool = False
    pkt_access: bool = False
    release_regno: int = 0
    regno: int = 0
    access_size: int = 0
    mem_size: int = 0
    msize_max_value: int = 0
    ref_obj_id: int = 0
    dynptr_id: int = 0
    func_id: int = 0
    btf: object = None
    btf_id: int = 0
    ret_btf: object = None
    ret_btf_id: int = 0
    subprogno: int = 0
    kptr_field: object = None
    const_map_key: int = -1
