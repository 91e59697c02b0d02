"""Every helper prototype ebee knows: Linux's ``bpf_func_proto`` as the verifier sees it.

One row per helper id: the return kind, the argument kinds (``Arg``: the
kernel's ``ARG_*`` names), whether only GPL programs may call it, the
``bpf_func_proto`` flags the verifier needs and, for helpers whose
prototype Linux varies by program type (``get_func_proto`` returning
another ``bpf_func_proto``), the variants.  Which program types may call a
helper is not here: that is the program-type registry's answer
(``ebee.progtypes.func_protos``, generated from the running kernel).

The table was transcribed once from the ``@helper(...)`` registrations that
used to sit beside the implementations in ``ebee.helpers`` (Linux 6.18's
prototypes, kernel/bpf/helpers.c, net/core/filter.c, kernel/trace/bpf_trace.c);
a later issue generates it from the kernel sources.  Implementations bind to
these rows by id (``ebee.helpers.implements``); a helper may have a prototype
and no implementation (the program verifies, running the call fails).  Where
Linux gives a helper several prototypes by program type and no variant is
listed, the networking one (context argument) is given.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..uapi import FuncId, ProgType, helper_name
from .vocab import Arg, Ret

F, P, A, R = FuncId, ProgType, Arg, Ret
CTX, MAP, ANY, KEY, VALUE = A.PTR_TO_CTX, A.CONST_MAP_PTR, A.ANYTHING, A.PTR_TO_MAP_KEY, \
    A.PTR_TO_MAP_VALUE
MEM, UMEM, SIZE, SIZE0 = A.PTR_TO_MEM, A.PTR_TO_UNINIT_MEM, A.CONST_SIZE, A.CONST_SIZE_OR_ZERO


@dataclass(frozen=True, slots=True)
class HelperProto:
    """One helper's prototype (struct bpf_func_proto, in ``Arg``/``Ret`` words)."""
    id: FuncId
    ret: Ret
    args: tuple[Arg, ...] = ()
    gpl_only: bool = False
    # packet pointers may be passed as memory arguments (bpf_func_proto.pkt_access)
    pkt_access: bool = False
    might_sleep: bool = False
    # the kernel struct a RET_PTR_TO_BTF_ID* return points to (bpf_func_proto.ret_btf_id)
    ret_btf: str | None = None
    # prototypes Linux gives the helper in some program types instead of ``args``:
    # ((program types, args), ...)
    variants: tuple[tuple[frozenset[ProgType], tuple[Arg, ...]], ...] = ()

    def args_for(self, prog_type) -> tuple[Arg, ...]:
        for types, args in self.variants:
            if prog_type in types:
                return args
        return self.args

    @property
    def name(self) -> str:
        return helper_name(self.id)


def _table(*protos: HelperProto) -> dict[FuncId, HelperProto]:
    table: dict[FuncId, HelperProto] = {}
    for p in protos:
        if p.id in table:
            raise ValueError(f"two prototypes for helper {p.name}")
        table[p.id] = p
    return table


_H = HelperProto

HELPERS: dict[FuncId, HelperProto] = _table(
    _H(F.map_lookup_elem, R.PTR_TO_MAP_VALUE_OR_NULL, (MAP, KEY), pkt_access=True),
    _H(F.map_update_elem, R.INTEGER, (MAP, KEY, VALUE, ANY), pkt_access=True),
    _H(F.map_delete_elem, R.INTEGER, (MAP, KEY), pkt_access=True),
    _H(F.probe_read, R.INTEGER, (UMEM, SIZE0, ANY), gpl_only=True),
    _H(F.ktime_get_ns, R.INTEGER, ()),
    _H(F.trace_printk, R.INTEGER, (MEM, SIZE), gpl_only=True),
    _H(F.get_prandom_u32, R.INTEGER, ()),
    _H(F.get_smp_processor_id, R.INTEGER, ()),
    _H(F.skb_store_bytes, R.INTEGER, (CTX, ANY, MEM, SIZE, ANY)),
    _H(F.l3_csum_replace, R.INTEGER, (CTX, ANY, ANY, ANY, ANY)),
    _H(F.l4_csum_replace, R.INTEGER, (CTX, ANY, ANY, ANY, ANY)),
    _H(F.tail_call, R.VOID, (CTX, MAP, ANY)),
    _H(F.clone_redirect, R.INTEGER, (CTX, ANY, ANY)),
    _H(F.get_current_pid_tgid, R.INTEGER, ()),
    _H(F.get_current_uid_gid, R.INTEGER, ()),
    _H(F.get_current_comm, R.INTEGER, (UMEM, SIZE)),
    _H(F.skb_vlan_push, R.INTEGER, (CTX, ANY, ANY)),
    _H(F.skb_vlan_pop, R.INTEGER, (CTX,)),
    _H(F.skb_get_tunnel_key, R.INTEGER, (CTX, UMEM, SIZE, ANY)),
    _H(F.skb_set_tunnel_key, R.INTEGER, (CTX, MEM, SIZE, ANY)),
    _H(F.perf_event_read, R.INTEGER, (MAP, ANY), gpl_only=True),
    _H(F.redirect, R.INTEGER, (ANY, ANY)),
    _H(F.perf_event_output, R.INTEGER, (CTX, MAP, ANY, MEM, SIZE0), gpl_only=True),
    _H(F.skb_load_bytes, R.INTEGER, (CTX, ANY, UMEM, SIZE)),
    _H(F.get_stackid, R.INTEGER, (CTX, MAP, ANY), gpl_only=True),
    _H(F.csum_diff, R.INTEGER, (A.PTR_TO_MEM_OR_NULL, SIZE0, A.PTR_TO_MEM_OR_NULL, SIZE0, ANY),
       pkt_access=True),
    _H(F.skb_get_tunnel_opt, R.INTEGER, (CTX, UMEM, SIZE)),
    _H(F.skb_set_tunnel_opt, R.INTEGER, (CTX, MEM, SIZE)),
    _H(F.skb_change_proto, R.INTEGER, (CTX, ANY, ANY)),
    _H(F.skb_change_type, R.INTEGER, (CTX, ANY)),
    _H(F.skb_under_cgroup, R.INTEGER, (CTX, MAP, ANY)),
    _H(F.get_hash_recalc, R.INTEGER, (CTX,)),
    _H(F.get_current_task, R.INTEGER, (), gpl_only=True),
    _H(F.probe_write_user, R.INTEGER, (ANY, MEM, SIZE), gpl_only=True),
    _H(F.current_task_under_cgroup, R.INTEGER, (MAP, ANY)),
    _H(F.skb_change_tail, R.INTEGER, (CTX, ANY, ANY)),
    _H(F.skb_pull_data, R.INTEGER, (CTX, ANY)),
    _H(F.csum_update, R.INTEGER, (CTX, ANY)),
    _H(F.set_hash_invalid, R.VOID, (CTX,)),
    _H(F.get_numa_node_id, R.INTEGER, ()),
    _H(F.skb_change_head, R.INTEGER, (CTX, ANY, ANY)),
    _H(F.xdp_adjust_head, R.INTEGER, (CTX, ANY)),
    _H(F.probe_read_str, R.INTEGER, (UMEM, SIZE0, ANY), gpl_only=True),
    _H(F.get_socket_cookie, R.INTEGER, (CTX,)),
    _H(F.set_hash, R.INTEGER, (CTX, ANY)),
    _H(F.setsockopt, R.INTEGER, (CTX, ANY, ANY, MEM, SIZE)),
    _H(F.skb_adjust_room, R.INTEGER, (CTX, ANY, ANY, ANY)),
    _H(F.redirect_map, R.INTEGER, (MAP, ANY, ANY)),
    _H(F.sk_redirect_map, R.INTEGER, (CTX, MAP, ANY, ANY)),
    _H(F.sock_map_update, R.INTEGER, (CTX, MAP, KEY, ANY), pkt_access=True),
    _H(F.xdp_adjust_meta, R.INTEGER, (CTX, ANY)),
    _H(F.perf_event_read_value, R.INTEGER, (MAP, ANY, UMEM, SIZE), gpl_only=True),
    _H(F.perf_prog_read_value, R.INTEGER, (CTX, UMEM, SIZE), gpl_only=True),
    _H(F.getsockopt, R.INTEGER, (CTX, ANY, ANY, UMEM, SIZE)),
    _H(F.override_return, R.INTEGER, (CTX, ANY), gpl_only=True),
    _H(F.sock_ops_cb_flags_set, R.INTEGER, (CTX, ANY)),
    _H(F.msg_redirect_map, R.INTEGER, (CTX, MAP, ANY, ANY)),
    _H(F.xdp_adjust_tail, R.INTEGER, (CTX, ANY)),
    _H(F.get_stack, R.INTEGER, (CTX, UMEM, SIZE0, ANY), gpl_only=True),
    _H(F.skb_load_bytes_relative, R.INTEGER, (CTX, ANY, UMEM, SIZE, ANY)),
    _H(F.fib_lookup, R.INTEGER, (CTX, MEM, SIZE, ANY)),
    _H(F.sock_hash_update, R.INTEGER, (CTX, MAP, KEY, ANY), pkt_access=True),
    _H(F.msg_redirect_hash, R.INTEGER, (CTX, MAP, KEY, ANY)),
    _H(F.sk_redirect_hash, R.INTEGER, (CTX, MAP, KEY, ANY)),
    _H(F.get_current_cgroup_id, R.INTEGER, ()),
    _H(F.get_local_storage, R.PTR_TO_MAP_VALUE, (MAP, ANY)),
    _H(F.sk_select_reuseport, R.INTEGER, (CTX, MAP, KEY, ANY)),
    _H(F.sk_lookup_tcp, R.PTR_TO_SOCKET_OR_NULL, (CTX, MEM, SIZE, ANY, ANY), pkt_access=True),
    _H(F.sk_lookup_udp, R.PTR_TO_SOCKET_OR_NULL, (CTX, MEM, SIZE, ANY, ANY), pkt_access=True),
    _H(F.sk_release, R.INTEGER, (A.PTR_TO_BTF_ID_SOCK_COMMON,)),
    _H(F.map_push_elem, R.INTEGER, (MAP, VALUE, ANY), pkt_access=True),
    _H(F.map_pop_elem, R.INTEGER, (MAP, A.PTR_TO_UNINIT_MAP_VALUE), pkt_access=True),
    _H(F.map_peek_elem, R.INTEGER, (MAP, A.PTR_TO_UNINIT_MAP_VALUE), pkt_access=True),
    _H(F.spin_lock, R.VOID, (A.PTR_TO_SPIN_LOCK,)),
    _H(F.spin_unlock, R.VOID, (A.PTR_TO_SPIN_LOCK,)),
    _H(F.sk_fullsock, R.PTR_TO_SOCKET_OR_NULL, (A.PTR_TO_SOCK_COMMON,)),
    _H(F.tcp_sock, R.PTR_TO_TCP_SOCK_OR_NULL, (A.PTR_TO_SOCK_COMMON,)),
    _H(F.get_listener_sock, R.PTR_TO_SOCKET_OR_NULL, (A.PTR_TO_SOCK_COMMON,)),
    _H(F.skc_lookup_tcp, R.PTR_TO_SOCK_COMMON_OR_NULL, (CTX, MEM, SIZE, ANY, ANY),
       pkt_access=True),
    _H(F.strtol, R.INTEGER, (MEM, SIZE, ANY, A.PTR_TO_LONG)),
    _H(F.strtoul, R.INTEGER, (MEM, SIZE, ANY, A.PTR_TO_LONG)),
    _H(F.sk_storage_get, R.PTR_TO_MAP_VALUE_OR_NULL,
       (MAP, A.PTR_TO_BTF_ID_SOCK_COMMON, A.PTR_TO_MAP_VALUE_OR_NULL, ANY),
       variants=(
           # bpf_sk_storage_get_tracing_proto, bpf_sk_storage_get_cg_sock_proto
           (frozenset({P.TRACING}), (MAP, A.PTR_TO_BTF_ID_OR_NULL, A.PTR_TO_MAP_VALUE_OR_NULL,
                                     ANY)),
           (frozenset({P.CGROUP_SOCK}), (MAP, CTX, A.PTR_TO_MAP_VALUE_OR_NULL, ANY)))),
    _H(F.sk_storage_delete, R.INTEGER, (MAP, A.PTR_TO_BTF_ID_SOCK_COMMON),
       variants=((frozenset({P.TRACING}), (MAP, A.PTR_TO_BTF_ID_OR_NULL)),)),
    _H(F.probe_read_user, R.INTEGER, (UMEM, SIZE0, ANY), gpl_only=True),
    _H(F.probe_read_kernel, R.INTEGER, (UMEM, SIZE0, ANY), gpl_only=True),
    _H(F.probe_read_user_str, R.INTEGER, (UMEM, SIZE0, ANY), gpl_only=True),
    _H(F.probe_read_kernel_str, R.INTEGER, (UMEM, SIZE0, ANY), gpl_only=True),
    _H(F.jiffies64, R.INTEGER, ()),
    _H(F.get_netns_cookie, R.INTEGER, (A.PTR_TO_CTX_OR_NULL,)),
    _H(F.sk_assign, R.INTEGER, (CTX, A.PTR_TO_SOCKET_OR_NULL, ANY),
       variants=(
           # tc's bpf_sk_assign_proto
           (frozenset({P.SCHED_CLS, P.SCHED_ACT}), (CTX, A.PTR_TO_BTF_ID_SOCK_COMMON, ANY)),)),
    _H(F.ktime_get_boot_ns, R.INTEGER, ()),
    _H(F.ringbuf_output, R.INTEGER, (MAP, MEM, SIZE0, ANY)),
    _H(F.ringbuf_reserve, R.PTR_TO_RINGBUF_MEM_OR_NULL, (MAP, A.CONST_ALLOC_SIZE_OR_ZERO, ANY)),
    _H(F.ringbuf_submit, R.VOID, (A.PTR_TO_ALLOC_MEM, ANY)),
    _H(F.ringbuf_discard, R.VOID, (A.PTR_TO_ALLOC_MEM, ANY)),
    _H(F.ringbuf_query, R.INTEGER, (MAP, ANY)),
    _H(F.csum_level, R.INTEGER, (CTX, ANY)),
    _H(F.skc_to_tcp6_sock, R.PTR_TO_BTF_ID_OR_NULL, (A.PTR_TO_BTF_ID_SOCK_COMMON,),
       ret_btf='tcp6_sock'),
    _H(F.skc_to_tcp_sock, R.PTR_TO_BTF_ID_OR_NULL, (A.PTR_TO_BTF_ID_SOCK_COMMON,),
       ret_btf='tcp_sock'),
    _H(F.skc_to_tcp_timewait_sock, R.PTR_TO_BTF_ID_OR_NULL, (A.PTR_TO_BTF_ID_SOCK_COMMON,),
       ret_btf='tcp_timewait_sock'),
    _H(F.skc_to_tcp_request_sock, R.PTR_TO_BTF_ID_OR_NULL, (A.PTR_TO_BTF_ID_SOCK_COMMON,),
       ret_btf='tcp_request_sock'),
    _H(F.skc_to_udp6_sock, R.PTR_TO_BTF_ID_OR_NULL, (A.PTR_TO_BTF_ID_SOCK_COMMON,),
       ret_btf='udp6_sock'),
    _H(F.inode_storage_get, R.PTR_TO_MAP_VALUE_OR_NULL,
       (MAP, A.PTR_TO_BTF_ID_OR_NULL, A.PTR_TO_MAP_VALUE_OR_NULL, ANY),
       gpl_only=True),
    _H(F.inode_storage_delete, R.INTEGER, (MAP, A.PTR_TO_BTF_ID), gpl_only=True),
    _H(F.redirect_neigh, R.INTEGER, (ANY, A.PTR_TO_MEM_OR_NULL, SIZE0, ANY)),
    _H(F.redirect_peer, R.INTEGER, (ANY, ANY)),
    _H(F.task_storage_get, R.PTR_TO_MAP_VALUE_OR_NULL,
       (MAP, A.PTR_TO_BTF_ID_OR_NULL, A.PTR_TO_MAP_VALUE_OR_NULL, ANY),
       gpl_only=True),
    _H(F.task_storage_delete, R.INTEGER, (MAP, A.PTR_TO_BTF_ID), gpl_only=True),
    _H(F.get_current_task_btf, R.PTR_TO_BTF_ID_TRUSTED, (), gpl_only=True, ret_btf='task_struct'),
    _H(F.ktime_get_coarse_ns, R.INTEGER, ()),
    # the MTU pointer: the 6.18 builds take it uninitialized (verifier_mtu's tc_uninit_mtu)
    _H(F.check_mtu, R.INTEGER, (CTX, ANY, A.PTR_TO_INT, ANY, ANY), gpl_only=True),
    _H(F.for_each_map_elem, R.INTEGER, (MAP, A.PTR_TO_FUNC, A.PTR_TO_STACK_OR_NULL, ANY)),
    _H(F.snprintf, R.INTEGER,
       (A.PTR_TO_MEM_OR_NULL, SIZE0, A.PTR_TO_CONST_STR, A.PTR_TO_MEM_OR_NULL, SIZE0)),
    _H(F.timer_init, R.INTEGER, (A.PTR_TO_TIMER, MAP, ANY), gpl_only=True),
    _H(F.timer_set_callback, R.INTEGER, (A.PTR_TO_TIMER, A.PTR_TO_FUNC), gpl_only=True),
    _H(F.timer_start, R.INTEGER, (A.PTR_TO_TIMER, ANY, ANY), gpl_only=True),
    _H(F.timer_cancel, R.INTEGER, (A.PTR_TO_TIMER,), gpl_only=True),
    _H(F.get_func_ip, R.INTEGER, (CTX,), gpl_only=True),
    _H(F.trace_vprintk, R.INTEGER, (MEM, SIZE, A.PTR_TO_MEM_OR_NULL, SIZE0), gpl_only=True),
    _H(F.skc_to_unix_sock, R.PTR_TO_BTF_ID_OR_NULL, (A.PTR_TO_BTF_ID_SOCK_COMMON,),
       ret_btf='unix_sock'),
    _H(F.loop, R.INTEGER, (ANY, A.PTR_TO_FUNC, A.PTR_TO_STACK_OR_NULL, ANY)),
    _H(F.strncmp, R.INTEGER, (MEM, SIZE, A.PTR_TO_CONST_STR)),
    _H(F.xdp_get_buff_len, R.INTEGER, (CTX,)),
    _H(F.xdp_load_bytes, R.INTEGER, (CTX, ANY, UMEM, SIZE)),
    _H(F.xdp_store_bytes, R.INTEGER, (CTX, ANY, UMEM, SIZE)),
    _H(F.kptr_xchg, R.PTR_TO_BTF_ID_OR_NULL, (A.PTR_TO_KPTR, A.PTR_TO_BTF_ID_OR_NULL)),
    _H(F.map_lookup_percpu_elem, R.PTR_TO_MAP_VALUE_OR_NULL, (MAP, KEY, ANY), pkt_access=True),
    _H(F.skc_to_mptcp_sock, R.PTR_TO_BTF_ID_OR_NULL, (A.PTR_TO_SOCK_COMMON,),
       ret_btf='mptcp_sock'),
    _H(F.dynptr_from_mem, R.INTEGER, (UMEM, SIZE0, ANY, A.PTR_TO_DYNPTR)),
    _H(F.ringbuf_reserve_dynptr, R.INTEGER, (MAP, ANY, ANY, A.PTR_TO_DYNPTR)),
    _H(F.ringbuf_submit_dynptr, R.VOID, (A.PTR_TO_DYNPTR, ANY)),
    _H(F.ringbuf_discard_dynptr, R.VOID, (A.PTR_TO_DYNPTR, ANY)),
    _H(F.dynptr_read, R.INTEGER, (UMEM, SIZE0, A.PTR_TO_DYNPTR, ANY, ANY)),
    _H(F.dynptr_write, R.INTEGER, (A.PTR_TO_DYNPTR, ANY, MEM, SIZE0, ANY)),
    _H(F.dynptr_data, R.PTR_TO_DYNPTR_MEM_OR_NULL,
       (A.PTR_TO_DYNPTR, ANY, A.CONST_ALLOC_SIZE_OR_ZERO)),
    _H(F.ktime_get_tai_ns, R.INTEGER, ()),
    _H(F.user_ringbuf_drain, R.INTEGER, (MAP, A.PTR_TO_FUNC, A.PTR_TO_STACK_OR_NULL, ANY)),
    _H(F.cgrp_storage_get, R.PTR_TO_MAP_VALUE_OR_NULL,
       (MAP, A.PTR_TO_BTF_ID_OR_NULL, A.PTR_TO_MAP_VALUE_OR_NULL, ANY),
       gpl_only=True),
    _H(F.cgrp_storage_delete, R.INTEGER, (MAP, A.PTR_TO_BTF_ID), gpl_only=True),
)
