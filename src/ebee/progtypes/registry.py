"""The program-type registry: one :class:`ProgTypeInfo` per ``enum bpf_prog_type``.

Everything the loader, the verifier, the runtime and test runs need to know
about a program type is here and nowhere else: its context structure and the
access rules and rewrites for it (per expected attach type where Linux makes
them depend on it), the helpers it may call (``func_protos``, generated from
the kernel), the return values the verifier accepts, and whether and how it
can be test-run.
"""
from __future__ import annotations

from dataclasses import dataclass
from ..uapi import AttachType as A, FuncId, ProgType as P
from . import contexts as C
from . import skb as S
from . import tracing as T
from .ctx import Access, CtxRules, CtxStruct
from .func_protos import FUNC_PROTOS


@dataclass(frozen=True)
class RetRange:
    """The verifier's retval_range for a program type (check_return_code)."""
    lo: int
    hi: int

    def __contains__(self, v: int) -> bool:
        return self.lo <= v <= self.hi


@dataclass(frozen=True)
class ProgTypeInfo:
    """What Linux knows about one program type, for one expected attach type."""
    prog_type: P
    expected_attach_type: A | None
    rules: CtxRules | None           # None: no context struct (raw args, BTF args)
    helpers: frozenset[FuncId]
    ret_range: RetRange | None       # None: the verifier does not check r0 at exit
    test_run: str | None             # name of the test-run implementation, or None
    ctx_kind: str                    # "struct", "pt_regs", "tp_record", "u64_args", "btf_args", "none"

    @property
    def name(self) -> str:
        """bpftool's name for the type (``xdp``, ``sched_cls``, ...)."""
        return self.prog_type.name.lower()

    @property
    def ctx(self) -> CtxStruct | None:
        return self.rules.struct if self.rules else None

    def ctx_access(self, off: int, size: int, write: bool, *,
                   bpf_capable: bool = True) -> Access | None:
        """Linux's is_valid_access: the access, or None where the verifier rejects it
        (``bpf_capable``: the loader has CAP_BPF)."""
        if self.rules is None:
            return None
        return self.rules.access(off, size, write, bpf_capable=bpf_capable)

    def helper_allowed(self, fid: int) -> bool:
        return fid in self.helpers


# Which test_run implementation each type uses (net/bpf/test_run.c and friends).
TEST_RUNS: dict[P, str] = {
    P.SOCKET_FILTER: "skb", P.SCHED_CLS: "skb", P.SCHED_ACT: "skb", P.CGROUP_SKB: "skb",
    P.LWT_IN: "skb", P.LWT_OUT: "skb", P.LWT_XMIT: "skb", P.LWT_SEG6LOCAL: "skb",
    P.XDP: "xdp", P.FLOW_DISSECTOR: "flow_dissector", P.SK_LOOKUP: "sk_lookup",
    P.RAW_TRACEPOINT: "raw_tp", P.TRACING: "tracing", P.SYSCALL: "syscall",
    P.STRUCT_OPS: "struct_ops", P.NETFILTER: "nf",
}

# The attach type Linux assumes when a program is loaded with none (bpf_prog_load_fixup_attach_type
# and libbpf's defaults), used to pick rules and helper sets.
_DEFAULT_ATTACH: dict[P, A] = {
    P.CGROUP_SKB: A.CGROUP_INET_INGRESS, P.CGROUP_SOCK: A.CGROUP_INET_SOCK_CREATE,
    P.CGROUP_SOCK_ADDR: A.CGROUP_INET4_CONNECT, P.SK_SKB: A.SK_SKB_STREAM_VERDICT,
    P.CGROUP_DEVICE: A.CGROUP_DEVICE, P.SK_MSG: A.SK_MSG_VERDICT, P.LIRC_MODE2: A.LIRC_MODE2,
    P.SK_REUSEPORT: A.SK_REUSEPORT_SELECT, P.FLOW_DISSECTOR: A.FLOW_DISSECTOR,
    P.CGROUP_SYSCTL: A.CGROUP_SYSCTL, P.CGROUP_SOCKOPT: A.CGROUP_GETSOCKOPT,
    P.TRACING: A.TRACE_FENTRY, P.LSM: A.LSM_MAC, P.SK_LOOKUP: A.SK_LOOKUP,
    P.NETFILTER: A.NETFILTER,
}

_INET6_ADDR = {A.CGROUP_INET6_BIND, A.CGROUP_INET6_CONNECT, A.CGROUP_UDP6_SENDMSG,
               A.CGROUP_UDP6_RECVMSG, A.CGROUP_INET6_GETPEERNAME, A.CGROUP_INET6_GETSOCKNAME}
_SENDMSG = {A.CGROUP_UDP4_SENDMSG, A.CGROUP_UDP6_SENDMSG, A.CGROUP_UNIX_SENDMSG}


def _rules(pt: P, at: A) -> tuple[CtxRules | None, str]:
    if pt is P.SOCKET_FILTER:
        return S.SOCKET_FILTER_RULES, "struct"
    if pt in (P.SCHED_CLS, P.SCHED_ACT):
        return S.TC_RULES, "struct"
    if pt is P.CGROUP_SKB:
        return S.CGROUP_SKB_RULES, "struct"
    if pt in (P.LWT_IN, P.LWT_OUT, P.LWT_XMIT, P.LWT_SEG6LOCAL):
        return S.LWT_RULES, "struct"
    if pt is P.SK_SKB:
        return S.SK_SKB_RULES, "struct"
    if pt is P.FLOW_DISSECTOR:
        return S.FLOW_DISSECTOR_RULES, "struct"
    if pt is P.XDP:
        return C.xdp_rules(at is A.XDP_DEVMAP), "struct"
    if pt is P.CGROUP_SOCK:
        return C.sock_rules(at in (A.CGROUP_INET4_POST_BIND, A.CGROUP_INET6_POST_BIND)), "struct"
    if pt is P.CGROUP_SOCK_ADDR:
        return C.sock_addr_rules(at in _INET6_ADDR, at in _SENDMSG), "struct"
    if pt is P.SOCK_OPS:
        return C.SOCK_OPS_RULES, "struct"
    if pt is P.SK_MSG:
        return C.SK_MSG_RULES, "struct"
    if pt is P.SK_REUSEPORT:
        return C.SK_REUSEPORT_RULES, "struct"
    if pt is P.SK_LOOKUP:
        return C.SK_LOOKUP_RULES, "struct"
    if pt is P.CGROUP_SYSCTL:
        return C.SYSCTL_RULES, "struct"
    if pt is P.CGROUP_SOCKOPT:
        return C.sockopt_rules(at is A.CGROUP_GETSOCKOPT), "struct"
    if pt is P.CGROUP_DEVICE:
        return C.CGROUP_DEVICE_RULES, "struct"
    if pt is P.PERF_EVENT:
        return C.PERF_EVENT_RULES, "struct"
    if pt is P.KPROBE:
        return T.PT_REGS_RULES, "pt_regs"
    if pt is P.TRACEPOINT:
        return T.TRACEPOINT_RULES, "tp_record"
    if pt is P.RAW_TRACEPOINT:
        return T.RAW_TP_RULES, "u64_args"
    if pt is P.RAW_TRACEPOINT_WRITABLE:
        return T.RAW_TP_WRITABLE_RULES, "u64_args"
    if pt in (P.TRACING, P.LSM, P.STRUCT_OPS, P.EXT):
        return T.RAW_TP_RULES, "btf_args"
    if pt is P.SYSCALL:
        return None, "syscall_ctx"
    if pt is P.NETFILTER:
        return None, "nf_ctx"
    if pt is P.LIRC_MODE2:
        return C.LIRC_RULES, "struct"
    return None, "none"


# lirc_mode2_func_proto() (drivers/media/rc/bpf-lirc.c): no bpf_base_func_proto fallback.
# Not in the generated table: this host's kernel is built without CONFIG_BPF_LIRC_MODE2,
# so the generator could not probe the type.  trace_printk needs CAP_PERFMON.
_LIRC_MODE2_HELPERS = frozenset({
    FuncId.rc_repeat, FuncId.rc_keydown, FuncId.rc_pointer_rel, FuncId.map_lookup_elem,
    FuncId.map_update_elem, FuncId.map_delete_elem, FuncId.map_push_elem, FuncId.map_pop_elem,
    FuncId.map_peek_elem, FuncId.ktime_get_ns, FuncId.ktime_get_boot_ns, FuncId.tail_call,
    FuncId.get_prandom_u32, FuncId.trace_printk})


def _helpers(pt: P, at: A | None) -> frozenset[FuncId]:
    if pt is P.LIRC_MODE2:
        return _LIRC_MODE2_HELPERS
    if (pt, at) in FUNC_PROTOS:
        return FUNC_PROTOS[(pt, at)]
    if (pt, None) in FUNC_PROTOS:
        return FUNC_PROTOS[(pt, None)]
    # the same type under another attach type the generator probed
    for (p, a), fids in FUNC_PROTOS.items():
        if p is pt:
            if pt is P.TRACING and at in (A.TRACE_FENTRY, A.TRACE_FEXIT, A.MODIFY_RETURN):
                return fids | _TRACING_FUNC_EXTRA.get(at, frozenset())
            return fids
    if pt is P.LSM:
        # lsm_func_proto() starts from tracing_prog_func_proto(), as fentry does
        return _helpers(P.TRACING, A.TRACE_FENTRY)
    return frozenset()


# tracing_prog_func_proto() offers these only to trampoline programs (not raw_tp/iter)
_TRACING_FUNC_EXTRA = {
    A.TRACE_FENTRY: frozenset({FuncId.get_func_arg, FuncId.get_func_arg_cnt, FuncId.get_func_ip}),
    A.TRACE_FEXIT: frozenset({FuncId.get_func_arg, FuncId.get_func_arg_cnt, FuncId.get_func_ip,
                              FuncId.get_func_ret}),
    A.MODIFY_RETURN: frozenset({FuncId.get_func_arg, FuncId.get_func_arg_cnt,
                                FuncId.get_func_ip, FuncId.get_func_ret}),
}


def _ret_range(pt: P, at: A | None) -> RetRange | None:
    """check_return_code() of kernel/bpf/verifier.c."""
    if pt is P.CGROUP_SOCK_ADDR:
        if at in (A.CGROUP_INET4_BIND, A.CGROUP_INET6_BIND):
            return RetRange(0, 3)
        if at in (A.CGROUP_UDP4_RECVMSG, A.CGROUP_UDP6_RECVMSG, A.CGROUP_UNIX_RECVMSG,
                  A.CGROUP_INET4_GETPEERNAME, A.CGROUP_INET6_GETPEERNAME,
                  A.CGROUP_UNIX_GETPEERNAME, A.CGROUP_INET4_GETSOCKNAME,
                  A.CGROUP_INET6_GETSOCKNAME, A.CGROUP_UNIX_GETSOCKNAME):
            return RetRange(1, 1)
        return RetRange(0, 1)
    if pt is P.CGROUP_SKB:
        return RetRange(0, 3) if at is A.CGROUP_INET_EGRESS else RetRange(0, 1)
    if pt in (P.CGROUP_SOCK, P.SOCK_OPS, P.CGROUP_DEVICE, P.CGROUP_SYSCTL, P.CGROUP_SOCKOPT):
        return RetRange(0, 1)
    if pt is P.TRACING:
        if at in (A.TRACE_FENTRY, A.TRACE_FEXIT):
            return RetRange(0, 0)
        if at is A.TRACE_ITER:
            return RetRange(0, 1)
        return None
    if pt is P.SK_LOOKUP:
        return RetRange(0, 1)        # SK_DROP, SK_PASS
    if pt is P.LSM:
        return RetRange(-4095, 0)     # -MAX_ERRNO..0 for int hooks
    if pt is P.NETFILTER:
        return RetRange(0, 1)        # NF_DROP, NF_ACCEPT
    return None


_cache: dict[tuple[P, A | None], ProgTypeInfo] = {}


def get(prog_type: P | int, expected_attach_type: A | int | None = None) -> ProgTypeInfo:
    """The :class:`ProgTypeInfo` of a program type (and attach type, where it matters)."""
    pt = P(int(prog_type))
    at = A(int(expected_attach_type)) if expected_attach_type is not None else None
    key = (pt, at)
    info = _cache.get(key)
    if info is None:
        # attach type 0 means "none" except where it is a real hook (cgroup ingress)
        eff = at if at is not None and (at != 0 or pt is P.CGROUP_SKB) else \
            _DEFAULT_ATTACH.get(pt)
        rules, kind = _rules(pt, eff if eff is not None else A(0))
        info = ProgTypeInfo(pt, at, rules, _helpers(pt, eff), _ret_range(pt, eff),
                            TEST_RUNS.get(pt), kind)
        _cache[key] = info
    return info


def all_types() -> list[ProgTypeInfo]:
    """Every program type Linux defines (with its default attach type)."""
    return [get(p) for p in P if p is not P.UNSPEC]


def by_name(name: str) -> P:
    """A program type from bpftool's name (``xdp``), the enum name, or its number."""
    key = name.strip().lower().removeprefix("bpf_prog_type_")
    if key.isdigit():
        return P(int(key))
    aliases = {"tc": "sched_cls", "classifier": "sched_cls", "action": "sched_act",
               "socket": "socket_filter", "raw_tp": "raw_tracepoint", "tp": "tracepoint",
               "cgroup_sock_addr": "cgroup_sock_addr", "sk_skb": "sk_skb", "fentry": "tracing",
               "fexit": "tracing", "tp_btf": "tracing", "iter": "tracing", "lsm": "lsm"}
    key = aliases.get(key, key)
    try:
        return P[key.upper()]
    except KeyError:
        raise ValueError(f"unknown program type {name!r}") from None

