"""libbpf's SEC() names: which program type, attach type and target a section means.

This is libbpf's ``section_defs`` table (libbpf 1.x), matched the way libbpf
matches it:

* ``"name"``  matches the section name exactly;
* ``"name+"`` matches ``name`` exactly or ``name/extras`` (a '/' separator);
* ``"name/"`` matches any name starting with ``name/``.

The first matching row wins, so specific rows come before general ones
(``tc/ingress`` before ``tc``).  The part after the prefix's '/' is the attach
target (``kprobe/do_unlinkat`` -> ``do_unlinkat``).

libbpf 1.0 dropped the "sloppy" prefix matching of 0.x (``xdp_prog`` as
``xdp``, ``socket1`` as ``socket``) that old objects -- the kernel's samples,
Suricata, prototype-kernel -- rely on.  :func:`parse_section` falls back to it
(with ``legacy=True``) only after the strict table found nothing, so a name
libbpf 1.x knows always means what libbpf 1.x says.

Self-contained on purpose: the loader and ``ebee.progtypes`` both import it.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from ..uapi import AttachType as A
from ..uapi import ProgType as P
from ..uapi import BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS


class SecFlag(enum.IntFlag):
    """libbpf's ``SEC_*`` flags."""
    NONE = 0
    EXP_ATTACH_OPT = 1 << 0      # expected_attach_type is optional (older kernels)
    ATTACHABLE = 1 << 1          # attached with BPF_PROG_ATTACH/BPF_LINK_CREATE
    ATTACHABLE_OPT = ATTACHABLE | EXP_ATTACH_OPT
    ATTACH_BTF = 1 << 2          # target named by BTF (fentry/..., lsm/..., tp_btf/...)
    SLEEPABLE = 1 << 3           # BPF_F_SLEEPABLE
    XDP_FRAGS = 1 << 4           # BPF_F_XDP_HAS_FRAGS
    USDT = 1 << 5                # user statically defined tracepoints
    SLOPPY_PFX = 1 << 6          # libbpf 0.x: plain prefix match (legacy fallback only)


@dataclass(frozen=True, slots=True)
class SecDef:
    """One row of the table."""
    sec: str
    prog_type: P
    expected_attach_type: A | None
    flags: SecFlag = SecFlag.NONE

    def matches(self, name: str) -> bool:
        s = self.sec
        if s.endswith("/"):
            return name.startswith(s)
        if s.endswith("+"):
            base = s[:-1]
            return name == base or name.startswith(base + "/")
        return name == s

    @property
    def prefix(self) -> str:
        return self.sec.rstrip("+")


@dataclass(frozen=True, slots=True)
class SectionDef:
    """What a program's ELF section name says about it."""
    section: str
    prog_type: P
    expected_attach_type: A | None   # None: none (the kernel's 0 without meaning)
    attach_target: str | None        # "do_unlinkat", "syscalls/sys_enter_openat", "/bin/sh:main"
    flags: SecFlag
    sec_def: str | None              # the table row that matched ("kprobe+"), None if unknown
    legacy: bool = False             # matched only by libbpf 0.x's sloppy prefix rules
    autoload: bool = True            # False: SEC("?...") -- loaded only when asked for

    @property
    def known(self) -> bool:
        return self.sec_def is not None

    @property
    def sleepable(self) -> bool:
        return bool(self.flags & SecFlag.SLEEPABLE)

    @property
    def xdp_frags(self) -> bool:
        return bool(self.flags & SecFlag.XDP_FRAGS)

    @property
    def attachable(self) -> bool:
        return bool(self.flags & SecFlag.ATTACHABLE)

    @property
    def attach_btf(self) -> bool:
        return bool(self.flags & SecFlag.ATTACH_BTF)

    @property
    def is_retprobe(self) -> bool:
        """kretprobe/uretprobe/kretsyscall and their multi forms."""
        return self.sec_def is not None and self.sec_def.lstrip("k").lstrip("u").startswith(
            ("retprobe", "retsyscall"))

    @property
    def prog_flags(self) -> int:
        """The ``prog_flags`` of BPF_PROG_LOAD the section implies."""
        return (BPF_F_SLEEPABLE if self.sleepable else 0) | \
            (BPF_F_XDP_HAS_FRAGS if self.xdp_frags else 0)


F = SecFlag
_NONE, _ATT, _ATT_OPT, _BTF, _SLP = F.NONE, F.ATTACHABLE, F.ATTACHABLE_OPT, F.ATTACH_BTF, F.SLEEPABLE

# libbpf's section_defs, in libbpf's order (first match wins).
SECTION_DEFS: tuple[SecDef, ...] = (
    SecDef("socket", P.SOCKET_FILTER, None),
    SecDef("sk_reuseport/migrate", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE, _ATT),
    SecDef("sk_reuseport", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT, _ATT),
    SecDef("kprobe+", P.KPROBE, None),
    SecDef("uprobe+", P.KPROBE, None),
    SecDef("uprobe.s+", P.KPROBE, None, _SLP),
    SecDef("kretprobe+", P.KPROBE, None),
    SecDef("uretprobe+", P.KPROBE, None),
    SecDef("uretprobe.s+", P.KPROBE, None, _SLP),
    SecDef("kprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI),
    SecDef("kretprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI),
    SecDef("kprobe.session+", P.KPROBE, A.TRACE_KPROBE_SESSION),
    SecDef("uprobe.multi+", P.KPROBE, A.TRACE_UPROBE_MULTI),
    SecDef("uretprobe.multi+", P.KPROBE, A.TRACE_UPROBE_MULTI),
    SecDef("uprobe.session+", P.KPROBE, A.TRACE_UPROBE_SESSION),
    SecDef("uprobe.multi.s+", P.KPROBE, A.TRACE_UPROBE_MULTI, _SLP),
    SecDef("uretprobe.multi.s+", P.KPROBE, A.TRACE_UPROBE_MULTI, _SLP),
    SecDef("uprobe.session.s+", P.KPROBE, A.TRACE_UPROBE_SESSION, _SLP),
    SecDef("ksyscall+", P.KPROBE, None),
    SecDef("kretsyscall+", P.KPROBE, None),
    SecDef("usdt+", P.KPROBE, None, F.USDT),
    SecDef("usdt.s+", P.KPROBE, None, F.USDT | _SLP),
    SecDef("tc/ingress", P.SCHED_CLS, A.TCX_INGRESS),    # alias of tcx/ingress
    SecDef("tc/egress", P.SCHED_CLS, A.TCX_EGRESS),      # alias of tcx/egress
    SecDef("tcx/ingress", P.SCHED_CLS, A.TCX_INGRESS),
    SecDef("tcx/egress", P.SCHED_CLS, A.TCX_EGRESS),
    SecDef("tc", P.SCHED_CLS, None),
    SecDef("classifier", P.SCHED_CLS, None),
    SecDef("action", P.SCHED_ACT, None),
    SecDef("netkit/primary", P.SCHED_CLS, A.NETKIT_PRIMARY),
    SecDef("netkit/peer", P.SCHED_CLS, A.NETKIT_PEER),
    SecDef("tracepoint+", P.TRACEPOINT, None),
    SecDef("tp+", P.TRACEPOINT, None),
    SecDef("raw_tracepoint+", P.RAW_TRACEPOINT, None),
    SecDef("raw_tp+", P.RAW_TRACEPOINT, None),
    SecDef("raw_tracepoint.w+", P.RAW_TRACEPOINT_WRITABLE, None),
    SecDef("raw_tp.w+", P.RAW_TRACEPOINT_WRITABLE, None),
    SecDef("tp_btf+", P.TRACING, A.TRACE_RAW_TP, _BTF),
    SecDef("fentry+", P.TRACING, A.TRACE_FENTRY, _BTF),
    SecDef("fmod_ret+", P.TRACING, A.MODIFY_RETURN, _BTF),
    SecDef("fexit+", P.TRACING, A.TRACE_FEXIT, _BTF),
    SecDef("fentry.s+", P.TRACING, A.TRACE_FENTRY, _BTF | _SLP),
    SecDef("fmod_ret.s+", P.TRACING, A.MODIFY_RETURN, _BTF | _SLP),
    SecDef("fexit.s+", P.TRACING, A.TRACE_FEXIT, _BTF | _SLP),
    SecDef("freplace+", P.EXT, None, _BTF),
    SecDef("lsm+", P.LSM, A.LSM_MAC, _BTF),
    SecDef("lsm.s+", P.LSM, A.LSM_MAC, _BTF | _SLP),
    SecDef("lsm_cgroup+", P.LSM, A.LSM_CGROUP, _BTF),
    SecDef("iter+", P.TRACING, A.TRACE_ITER, _BTF),
    SecDef("iter.s+", P.TRACING, A.TRACE_ITER, _BTF | _SLP),
    SecDef("syscall", P.SYSCALL, None, _SLP),
    SecDef("xdp.frags/devmap", P.XDP, A.XDP_DEVMAP, F.XDP_FRAGS),
    SecDef("xdp/devmap", P.XDP, A.XDP_DEVMAP, _ATT),
    SecDef("xdp.frags/cpumap", P.XDP, A.XDP_CPUMAP, F.XDP_FRAGS),
    SecDef("xdp/cpumap", P.XDP, A.XDP_CPUMAP, _ATT),
    SecDef("xdp.frags", P.XDP, A.XDP, F.XDP_FRAGS),
    SecDef("xdp", P.XDP, A.XDP, _ATT_OPT),
    SecDef("perf_event", P.PERF_EVENT, None),
    SecDef("lwt_in", P.LWT_IN, None),
    SecDef("lwt_out", P.LWT_OUT, None),
    SecDef("lwt_xmit", P.LWT_XMIT, None),
    SecDef("lwt_seg6local", P.LWT_SEG6LOCAL, None),
    SecDef("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS, _ATT_OPT),
    SecDef("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER, _ATT_OPT),
    SecDef("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT, _ATT_OPT),
    SecDef("sk_skb/verdict", P.SK_SKB, A.SK_SKB_VERDICT, _ATT_OPT),
    SecDef("sk_skb", P.SK_SKB, None),
    SecDef("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT, _ATT_OPT),
    SecDef("lirc_mode2", P.LIRC_MODE2, A.LIRC_MODE2, _ATT_OPT),
    SecDef("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, _ATT_OPT),
    SecDef("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS, _ATT_OPT),
    SecDef("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS, _ATT_OPT),
    SecDef("cgroup/skb", P.CGROUP_SKB, None),
    SecDef("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, _ATT),
    SecDef("cgroup/sock_release", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE, _ATT),
    SecDef("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, _ATT_OPT),
    SecDef("cgroup/post_bind4", P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND, _ATT),
    SecDef("cgroup/post_bind6", P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND, _ATT),
    SecDef("cgroup/bind4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND, _ATT),
    SecDef("cgroup/bind6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND, _ATT),
    SecDef("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, _ATT),
    SecDef("cgroup/connect6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_CONNECT, _ATT),
    SecDef("cgroup/connect_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_CONNECT, _ATT),
    SecDef("cgroup/sendmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG, _ATT),
    SecDef("cgroup/sendmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG, _ATT),
    SecDef("cgroup/sendmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_SENDMSG, _ATT),
    SecDef("cgroup/recvmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG, _ATT),
    SecDef("cgroup/recvmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_RECVMSG, _ATT),
    SecDef("cgroup/recvmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_RECVMSG, _ATT),
    SecDef("cgroup/getpeername4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME, _ATT),
    SecDef("cgroup/getpeername6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETPEERNAME, _ATT),
    SecDef("cgroup/getpeername_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETPEERNAME, _ATT),
    SecDef("cgroup/getsockname4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETSOCKNAME, _ATT),
    SecDef("cgroup/getsockname6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETSOCKNAME, _ATT),
    SecDef("cgroup/getsockname_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETSOCKNAME, _ATT),
    SecDef("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, _ATT),
    SecDef("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, _ATT),
    SecDef("cgroup/setsockopt", P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT, _ATT),
    SecDef("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE, _ATT_OPT),
    SecDef("struct_ops+", P.STRUCT_OPS, None),
    SecDef("struct_ops.s+", P.STRUCT_OPS, None, _SLP),
    SecDef("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP, _ATT),
    SecDef("netfilter", P.NETFILTER, A.NETFILTER),
)

# libbpf 0.x's sloppy rows: plain prefixes, tried only when nothing above matched.
# ("kprobe/" etc. were already prefixes; these are the rows that had SEC_SLOPPY_PFX.)
_LEGACY_PREFIXES: tuple[str, ...] = (
    "socket", "sk_reuseport", "classifier", "action", "xdp", "perf_event",
    "lwt_in", "lwt_out", "lwt_xmit", "lwt_seg6local", "sockops", "sk_skb", "sk_msg",
    "lirc_mode2", "flow_dissector", "cgroup_skb/ingress", "cgroup_skb/egress", "cgroup/skb",
    "cgroup/sock", "cgroup/post_bind4", "cgroup/post_bind6", "cgroup/dev", "cgroup/bind4",
    "cgroup/bind6", "cgroup/connect4", "cgroup/connect6", "cgroup/sendmsg4",
    "cgroup/sendmsg6", "cgroup/recvmsg4", "cgroup/recvmsg6", "cgroup/getpeername4",
    "cgroup/getpeername6", "cgroup/getsockname4", "cgroup/getsockname6", "cgroup/sysctl",
    "cgroup/getsockopt", "cgroup/setsockopt",
)
_LEGACY_EXTRA: tuple[SecDef, ...] = (
    # bpf_load.c (the kernel's samples) and old iproute2 spellings, libbpf 0.x accepted too
    SecDef("cgroup_skb", P.CGROUP_SKB, None),
    SecDef("socket_filter", P.SOCKET_FILTER, None),
)

_BY_SEC = {d.sec: d for d in SECTION_DEFS}


def find_sec_def(name: str) -> SecDef | None:
    """The first row of libbpf's table matching ``name`` (strict, libbpf 1.x rules)."""
    for d in SECTION_DEFS:
        if d.matches(name):
            return d
    return None


def _target(d: SecDef, name: str) -> str | None:
    base = d.sec.rstrip("+")
    if base.endswith("/"):
        rest = name[len(base):]
    elif name.startswith(base + "/"):
        rest = name[len(base) + 1:]
    else:
        rest = ""
    return rest or None


def parse_section(name: str) -> SectionDef:
    """Program type, expected attach type and attach target of a SEC() name.

    Unknown names give ``prog_type=ProgType.UNSPEC`` (libbpf opens such objects
    too and leaves the type for the user to set).  ``SEC("?name")`` is ``name`` with
    ``autoload`` False; from then on the '?' is forgotten, as libbpf forgets it.
    """
    if name.startswith("?"):
        return replace(parse_section(name[1:]), autoload=False)
    d = find_sec_def(name)
    if d is not None:
        return SectionDef(name, d.prog_type, d.expected_attach_type, _target(d, name), d.flags, d.sec)
    for e in _LEGACY_EXTRA:
        if e.matches(name):
            return SectionDef(name, e.prog_type, e.expected_attach_type, _target(e, name),
                              e.flags | F.SLOPPY_PFX, e.sec, legacy=True)
    for pfx in _LEGACY_PREFIXES:
        if name.startswith(pfx):
            row = _BY_SEC.get(pfx) or _BY_SEC[pfx + "+"]
            return SectionDef(name, row.prog_type, row.expected_attach_type, None,
                              row.flags | F.SLOPPY_PFX, row.sec, legacy=True)
    return SectionDef(name, P.UNSPEC, None, None, F.NONE, None)


__all__ = ["SECTION_DEFS", "SecDef", "SecFlag", "SectionDef", "find_sec_def", "parse_section"]
