"""Helper prototypes in kernel words (struct bpf_func_proto) and what the verifier
knows of each helper id: which change packet data, which call back into the program.

``ebee.protos.helpers`` gives each prototype in the ``Arg``/``Ret``
vocabulary; :func:`helper_proto` translates it into the kernel's arg type +
flag words (``enum bpf_arg_type`` / ``enum bpf_return_type`` of
include/linux/bpf.h) that check_helper_call works on, for one program type.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..protos.helpers import HELPERS
from ..protos.kfuncs import by_id as kfunc_by_id
from ..uapi import FuncId as F
from .env import Env
from .insn import Insn
from .types import (MEM_ALIGNED, MEM_FIXED_SIZE, MEM_RDONLY, MEM_RINGBUF, MEM_UNINIT, MEM_WRITE,
                    OBJ_RELEASE, PTR_MAYBE_NULL, PTR_TRUSTED)

BPF_FUNC_MAX_ID = max(int(f) for f in F) + 1      # __BPF_FUNC_MAX_ID

# enum bpf_arg_type (base values; flags are the register-type flag bits)
(ARG_DONTCARE, ARG_CONST_MAP_PTR, ARG_PTR_TO_MAP_KEY, ARG_PTR_TO_MAP_VALUE, ARG_PTR_TO_MEM,
 ARG_PTR_TO_ARENA, ARG_CONST_SIZE, ARG_CONST_SIZE_OR_ZERO, ARG_PTR_TO_CTX, ARG_ANYTHING,
 ARG_PTR_TO_SPIN_LOCK, ARG_PTR_TO_SOCK_COMMON, ARG_PTR_TO_SOCKET, ARG_PTR_TO_BTF_ID,
 ARG_PTR_TO_RINGBUF_MEM, ARG_CONST_ALLOC_SIZE_OR_ZERO, ARG_PTR_TO_BTF_ID_SOCK_COMMON,
 ARG_PTR_TO_PERCPU_BTF_ID, ARG_PTR_TO_FUNC, ARG_PTR_TO_STACK, ARG_PTR_TO_CONST_STR,
 ARG_PTR_TO_TIMER, ARG_KPTR_XCHG_DEST, ARG_PTR_TO_DYNPTR) = range(24)

# enum bpf_return_type (base values)
(RET_INTEGER, RET_VOID, RET_PTR_TO_MAP_VALUE, RET_PTR_TO_SOCKET, RET_PTR_TO_TCP_SOCK,
 RET_PTR_TO_SOCK_COMMON, RET_PTR_TO_MEM, RET_PTR_TO_MEM_OR_BTF_ID, RET_PTR_TO_BTF_ID) = range(9)

# The prototypes' Arg/Ret names are the kernel's enum names; these are their
# definitions in include/linux/bpf.h (base type | flags), plus the fixed
# sizes the kernel's prototypes give the legacy int/long pointer args.
_ARG_DEF = {
    "DONTCARE": (ARG_DONTCARE, 0), "ANYTHING": (ARG_ANYTHING, 0),
    "CONST_MAP_PTR": (ARG_CONST_MAP_PTR, 0), "PTR_TO_MAP_KEY": (ARG_PTR_TO_MAP_KEY, 0),
    "PTR_TO_MAP_VALUE": (ARG_PTR_TO_MAP_VALUE, 0),
    "PTR_TO_UNINIT_MAP_VALUE": (ARG_PTR_TO_MAP_VALUE, MEM_UNINIT | MEM_WRITE),
    "PTR_TO_MAP_VALUE_OR_NULL": (ARG_PTR_TO_MAP_VALUE, PTR_MAYBE_NULL),
    "PTR_TO_MEM": (ARG_PTR_TO_MEM, MEM_RDONLY),
    "PTR_TO_MEM_OR_NULL": (ARG_PTR_TO_MEM, PTR_MAYBE_NULL | MEM_RDONLY),
    "PTR_TO_UNINIT_MEM": (ARG_PTR_TO_MEM, MEM_UNINIT | MEM_WRITE),
    "PTR_TO_FIXED_SIZE_MEM": (ARG_PTR_TO_MEM, MEM_FIXED_SIZE),
    "CONST_SIZE": (ARG_CONST_SIZE, 0), "CONST_SIZE_OR_ZERO": (ARG_CONST_SIZE_OR_ZERO, 0),
    "CONST_ALLOC_SIZE_OR_ZERO": (ARG_CONST_ALLOC_SIZE_OR_ZERO, 0),
    "PTR_TO_CTX": (ARG_PTR_TO_CTX, 0), "PTR_TO_CTX_OR_NULL": (ARG_PTR_TO_CTX, PTR_MAYBE_NULL),
    "PTR_TO_SOCK_COMMON": (ARG_PTR_TO_SOCK_COMMON, 0), "PTR_TO_SOCKET": (ARG_PTR_TO_SOCKET, 0),
    "PTR_TO_SOCKET_OR_NULL": (ARG_PTR_TO_SOCKET, PTR_MAYBE_NULL),
    "PTR_TO_BTF_ID": (ARG_PTR_TO_BTF_ID, 0),
    "PTR_TO_BTF_ID_OR_NULL": (ARG_PTR_TO_BTF_ID, PTR_MAYBE_NULL),
    "PTR_TO_BTF_ID_SOCK_COMMON": (ARG_PTR_TO_BTF_ID_SOCK_COMMON, 0),
    "PTR_TO_SPIN_LOCK": (ARG_PTR_TO_SPIN_LOCK, 0),
    "PTR_TO_INT": (ARG_PTR_TO_MEM, MEM_FIXED_SIZE | MEM_UNINIT | MEM_WRITE | MEM_ALIGNED),
    "PTR_TO_LONG": (ARG_PTR_TO_MEM, MEM_FIXED_SIZE | MEM_UNINIT | MEM_WRITE | MEM_ALIGNED),
    "PTR_TO_ALLOC_MEM": (ARG_PTR_TO_RINGBUF_MEM, 0),
    "PTR_TO_FUNC": (ARG_PTR_TO_FUNC, 0), "PTR_TO_STACK": (ARG_PTR_TO_STACK, 0),
    "PTR_TO_STACK_OR_NULL": (ARG_PTR_TO_STACK, PTR_MAYBE_NULL),
    "PTR_TO_CONST_STR": (ARG_PTR_TO_CONST_STR, 0), "PTR_TO_TIMER": (ARG_PTR_TO_TIMER, 0),
    "PTR_TO_KPTR": (ARG_KPTR_XCHG_DEST, 0), "PTR_TO_DYNPTR": (ARG_PTR_TO_DYNPTR, 0),
    "PTR_TO_PERCPU_BTF_ID": (ARG_PTR_TO_PERCPU_BTF_ID, 0),
}
_ARG_SIZE = {"PTR_TO_INT": 4, "PTR_TO_LONG": 8}
_RET_DEF = {
    "INTEGER": (RET_INTEGER, 0), "VOID": (RET_VOID, 0),
    "PTR_TO_MAP_VALUE": (RET_PTR_TO_MAP_VALUE, 0),
    "PTR_TO_MAP_VALUE_OR_NULL": (RET_PTR_TO_MAP_VALUE, PTR_MAYBE_NULL),
    "PTR_TO_SOCKET_OR_NULL": (RET_PTR_TO_SOCKET, PTR_MAYBE_NULL),
    "PTR_TO_TCP_SOCK_OR_NULL": (RET_PTR_TO_TCP_SOCK, PTR_MAYBE_NULL),
    "PTR_TO_SOCK_COMMON_OR_NULL": (RET_PTR_TO_SOCK_COMMON, PTR_MAYBE_NULL),
    "PTR_TO_RINGBUF_MEM_OR_NULL": (RET_PTR_TO_MEM, PTR_MAYBE_NULL | MEM_RINGBUF),
    "PTR_TO_DYNPTR_MEM_OR_NULL": (RET_PTR_TO_MEM, PTR_MAYBE_NULL),
    "PTR_TO_BTF_ID_OR_NULL": (RET_PTR_TO_BTF_ID, PTR_MAYBE_NULL),
    "PTR_TO_BTF_ID": (RET_PTR_TO_BTF_ID, 0),
    "PTR_TO_BTF_ID_TRUSTED": (RET_PTR_TO_BTF_ID, PTR_TRUSTED),
    "PTR_TO_MEM_OR_BTF_ID": (RET_PTR_TO_MEM_OR_BTF_ID, 0),
}
# helpers whose argument is released by the call (OBJ_RELEASE in their prototypes)
_RELEASE_ARG = {F.sk_release: 0, F.ringbuf_submit: 0, F.ringbuf_discard: 0,
                F.ringbuf_submit_dynptr: 0, F.ringbuf_discard_dynptr: 0, F.kptr_xchg: 1}
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


_proto_cache: dict[tuple[int, int], Proto | None] = {}


def _make_proto(fid: int, prog_type=None) -> Proto | None:
    h = HELPERS.get(fid)
    if h is None:
        return None
    args = []
    sizes = []
    for a in h.args_for(prog_type):
        name = a.name
        if name == "DONTCARE":
            break
        args.append(_ARG_DEF[name])
        sizes.append(_ARG_SIZE.get(name, 0))
    if fid in _RELEASE_ARG:
        i = _RELEASE_ARG[fid]
        if i < len(args):
            args[i] = (args[i][0], args[i][1] | OBJ_RELEASE)
    rb, rf = _RET_DEF[h.ret.name]
    return Proto(fid, rb, rf, args, sizes, h.gpl_only, h.pkt_access, h.might_sleep, h.ret_btf)


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
    key = (func_id, env.prog_type)
    p = _proto_cache.get(key, False)
    if p is False:
        p = _proto_cache[key] = _make_proto(func_id, env.prog_type)
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
