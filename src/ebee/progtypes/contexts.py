"""The context structures other than ``__sk_buff``, with their rules and rewrites.

Structures whose runtime form is a kernel structure (``xdp_md`` -> ``xdp_buff``,
``bpf_sock`` -> ``sock``, ``bpf_sk_lookup`` -> ``bpf_sk_lookup_kern``,
``bpf_perf_event_data`` -> ``bpf_perf_event_data_kern``) carry converters that
reproduce net/core/filter.c and kernel/trace/bpf_trace.c.  The cgroup/sockmap
structures that Linux cannot test-run (``bpf_sock_addr``, ``bpf_sock_ops``,
``sk_msg_md``, ``sk_reuseport_md``, ``bpf_sysctl``, ``bpf_sockopt``) are kept by
the runtime in their uapi layout: their access rules are Linux's, their
rewrites are the identity (documented in docs/architecture.md).
"""
from __future__ import annotations

from dataclasses import replace

from ..isa import Instruction
from ..layouts.kernel import (BPF_PERF_EVENT_DATA_KERN, BPF_SK_LOOKUP_KERN, PERF_SAMPLE_DATA,
                              PT_REGS_SIZE, SOCK, XDP_BUFF, XDP_RXQ_INFO, XDP_TXQ_INFO, NET_DEVICE)
from . import emit as E
from .ctx import CtxRules, CtxStruct, Field, RegType, at, via
from .ctx import Access

AX = E.AX
S = RegType.SCALAR_VALUE


def _struct(name: str, size: int, *fields: Field) -> CtxStruct:
    return CtxStruct(name, size, tuple(sorted(fields, key=lambda f: f.off)))


# -- xdp_md ---------------------------------------------------------------------------------

def _xdp_dev(q_off: int, q_layout):
    def load(i: Instruction):
        return [E.ldx(8, i.dst, i.src, q_off), E.ldx(8, i.dst, i.dst, q_layout.off("dev")),
                E.ldx(4, i.dst, i.dst, NET_DEVICE.off("ifindex"))], 4
    return load


XDP_MD = _struct(
    "xdp_md", 24,
    Field("data", 0, 4, load=at(XDP_BUFF.off("data"), 8)[0], reg_type=RegType.PTR_TO_PACKET),
    Field("data_end", 4, 4, load=at(XDP_BUFF.off("data_end"), 8)[0],
          reg_type=RegType.PTR_TO_PACKET_END),
    Field("data_meta", 8, 4, load=at(XDP_BUFF.off("data_meta"), 8)[0],
          reg_type=RegType.PTR_TO_PACKET_META),
    Field("ingress_ifindex", 12, 4, load=_xdp_dev(XDP_BUFF.off("rxq"), XDP_RXQ_INFO)),
    Field("rx_queue_index", 16, 4, load=via(XDP_BUFF.off("rxq"), XDP_RXQ_INFO.off("queue_index"), 4)),
    Field("egress_ifindex", 20, 4, load=_xdp_dev(XDP_BUFF.off("txq"), XDP_TXQ_INFO)),
)


def xdp_rules(devmap: bool) -> CtxRules:
    read = frozenset({"data", "data_end", "data_meta", "ingress_ifindex", "rx_queue_index"})
    return CtxRules(XDP_MD, read | ({"egress_ifindex"} if devmap else set()))


# -- bpf_sock (cgroup/sock programs and sk pointers) -----------------------------------------

M = SOCK.off


def _rxq_mapping(i: Instruction):
    # NO_QUEUE_MAPPING reads as -1 in the u32 (BPF_MOV32_IMM); target size: the u32
    return [E.ldx(2, i.dst, i.src, M("skc_rx_queue_mapping")),
            E.jmp_imm("jne", i.dst, 0xFFFF, 1), E.mov32_imm(i.dst, -1)], 4


def _ip6(member: str, uapi_off: int):
    def load(i: Instruction):
        return [E.ldx(4, i.dst, i.src, M(member) + i.off - uapi_off)], 4
    return load


BPF_SOCK = _struct(
    "bpf_sock", 80,
    Field("bound_dev_if", 0, 4, load=at(M("skc_bound_dev_if"), 4)[0],
          store=at(M("skc_bound_dev_if"), 4)[1]),
    Field("family", 4, 4, narrow=True, narrow_at_start=True, load=at(M("skc_family"), 2)[0]),
    Field("type", 8, 4, narrow=True, narrow_at_start=True, load=at(M("sk_type"), 2)[0]),
    Field("protocol", 12, 4, narrow=True, narrow_at_start=True, load=at(M("sk_protocol"), 2)[0]),
    Field("mark", 16, 4, load=at(M("sk_mark"), 4)[0], store=at(M("sk_mark"), 4)[1]),
    Field("priority", 20, 4, load=at(M("sk_priority"), 4)[0], store=at(M("sk_priority"), 4)[1]),
    Field("src_ip4", 24, 4, narrow=True, load=at(M("skc_rcv_saddr"), 4)[0]),
    Field("src_ip6", 28, 16, elem=4, narrow=True, load=_ip6("skc_v6_rcv_saddr", 28)),
    Field("src_port", 44, 4, narrow=True, load=at(M("skc_num"), 2)[0]),
    Field("dst_port", 48, 4, narrow=True, load=at(M("skc_dport"), 2)[0]),
    Field("dst_ip4", 52, 4, narrow=True, load=at(M("skc_daddr"), 4)[0]),
    Field("dst_ip6", 56, 16, elem=4, narrow=True, load=_ip6("skc_v6_daddr", 56)),
    Field("state", 72, 4, narrow=True, narrow_at_start=True, load=at(M("skc_state"), 1)[0]),
    Field("rx_queue_mapping", 76, 4, narrow=True, narrow_at_start=True, load=_rxq_mapping),
)


def _sock_check(post_bind: bool):
    def check(f: Field, off: int, size: int, write: bool) -> str | None:
        if f.name in ("src_ip4", "src_ip6", "src_port") and not post_bind:
            return "post_bind only"
        if f.name == "dst_port":
            # __be16 dst_port followed by 2 bytes of zero padding: loads of the port only
            return None if (off - f.off) + size <= 2 or (off == f.off and size == 4) else "bad"
        return None
    return check


def sock_rules(post_bind: bool) -> CtxRules:
    return CtxRules(BPF_SOCK, None, frozenset({"bound_dev_if", "mark", "priority"}),
                    _sock_check(post_bind))


# -- bpf_sk_lookup ---------------------------------------------------------------------------

L = BPF_SK_LOOKUP_KERN.off


def _sk_lookup_ip6(ptr: str, uapi_off: int):
    def load(i: Instruction):
        return [E.ldx(8, i.dst, i.src, L(ptr)), E.jmp_imm("jeq", i.dst, 0, 1),
                E.ldx(4, i.dst, i.dst, i.off - uapi_off)], 4
    return load


BPF_SK_LOOKUP = _struct(
    "bpf_sk_lookup", 72,
    Field("sk", 0, 8, sizes=(8,), load=at(L("selected_sk"), 8)[0],
          reg_type=RegType.PTR_TO_SOCKET_OR_NULL),
    Field("family", 8, 4, narrow=True, load=at(L("family"), 2)[0]),
    Field("protocol", 12, 4, narrow=True, load=at(L("protocol"), 2)[0]),
    Field("remote_ip4", 16, 4, narrow=True, load=at(L("v4_saddr"), 4)[0]),
    Field("remote_ip6", 20, 16, elem=4, narrow=True, load=_sk_lookup_ip6("v6_saddr", 20)),
    Field("remote_port", 36, 4, narrow=True, load=at(L("sport"), 2)[0]),
    # __be16 remote_port is followed by two bytes of padding that read as zero
    Field("remote_port_pad", 38, 2, sizes=(2,), narrow=True, ctx_field_size=2,
          load=lambda i: ([E.mov32_imm(i.dst, 0)], 2)),
    Field("local_ip4", 40, 4, narrow=True, load=at(L("v4_daddr"), 4)[0]),
    Field("local_ip6", 44, 16, elem=4, narrow=True, load=_sk_lookup_ip6("v6_daddr", 44)),
    Field("local_port", 60, 4, narrow=True, load=at(L("dport"), 2)[0]),
    Field("ingress_ifindex", 64, 4, narrow=True, load=at(L("ingress_ifindex"), 4)[0]),
)


def _sk_lookup_check(f: Field, off: int, size: int, write: bool) -> str | None:
    if f.name == "sk":
        return None if size == 8 and off == f.off else "bad"
    return None


SK_LOOKUP_RULES = CtxRules(BPF_SK_LOOKUP, None, frozenset(), _sk_lookup_check)


# -- bpf_perf_event_data -------------------------------------------------------------------

def _perf_sample(member: str):
    def load(i: Instruction):
        return [E.ldx(8, i.dst, i.src, BPF_PERF_EVENT_DATA_KERN.off("data")),
                E.ldx(8, i.dst, i.dst, PERF_SAMPLE_DATA.off(member))], 8
    return load


def _perf_regs(i: Instruction):
    return [E.ldx(8, i.dst, i.src, BPF_PERF_EVENT_DATA_KERN.off("regs")),
            E.ldx(i.spec.size, i.dst, i.dst, i.off)], i.spec.size


BPF_PERF_EVENT_DATA = _struct(
    "bpf_perf_event_data", 184,
    Field("regs", 0, PT_REGS_SIZE, sizes=(8,), any_size=False, load=_perf_regs),
    Field("sample_period", 168, 8, sizes=(8,), narrow=True, load=_perf_sample("period")),
    Field("addr", 176, 8, sizes=(8,), narrow=True, load=_perf_sample("addr")),
)


def _perf_check(f: Field, off: int, size: int, write: bool) -> str | None:
    return None


class _PerfRules(CtxRules):
    def access(self, off: int, size: int, write: bool, *, bpf_capable: bool = True):
        # pt_regs: any 8-byte-aligned u64 (pe_prog_is_valid_access)
        if not write and 0 <= off < PT_REGS_SIZE and size == 8 and off % 8 == 0:
            f = self.struct["regs"]
            return Access(f, off, size, False, RegType.SCALAR_VALUE, 8)
        if 0 <= off < PT_REGS_SIZE:
            return None
        return super().access(off, size, write, bpf_capable=bpf_capable)


PERF_EVENT_RULES = _PerfRules(BPF_PERF_EVENT_DATA, None, frozenset())


# -- structures kept in their uapi layout --------------------------------------------------

def _u32s(*names_offs, narrow: bool = False, size: int = 4) -> list[Field]:
    return [Field(n, o, size, narrow=narrow) for n, o in names_offs]


BPF_CGROUP_DEV_CTX = _struct(
    "bpf_cgroup_dev_ctx", 12,
    Field("access_type", 0, 4, narrow=True), Field("major", 4, 4), Field("minor", 8, 4))
CGROUP_DEVICE_RULES = CtxRules(BPF_CGROUP_DEV_CTX)

BPF_SYSCTL = _struct("bpf_sysctl", 8, Field("write", 0, 4, narrow=True),
                     Field("file_pos", 4, 4, narrow=True))
SYSCTL_RULES = CtxRules(BPF_SYSCTL, None, frozenset({"file_pos"}))

BPF_SOCKOPT = _struct(
    "bpf_sockopt", 40,
    Field("sk", 0, 8, sizes=(8,), reg_type=RegType.PTR_TO_SOCKET),
    Field("optval", 8, 8, sizes=(8,), reg_type=RegType.PTR_TO_PACKET),
    Field("optval_end", 16, 8, sizes=(8,), reg_type=RegType.PTR_TO_PACKET_END),
    Field("level", 24, 4), Field("optname", 28, 4), Field("optlen", 32, 4), Field("retval", 36, 4))


def sockopt_rules(getsockopt: bool) -> CtxRules:
    if getsockopt:
        return CtxRules(BPF_SOCKOPT, frozenset({"sk", "optval", "optval_end", "level", "optname",
                                                "optlen", "retval"}),
                        frozenset({"optlen", "retval"}))
    return CtxRules(BPF_SOCKOPT, frozenset({"sk", "optval", "optval_end", "level", "optname",
                                            "optlen"}),
                    frozenset({"level", "optname", "optlen"}))


BPF_SOCK_ADDR = _struct(
    "bpf_sock_addr", 72,
    Field("user_family", 0, 4), Field("user_ip4", 4, 4, narrow=True),
    Field("user_ip6", 8, 16, any_size=True), Field("user_port", 24, 4, narrow=True),
    Field("family", 28, 4), Field("type", 32, 4), Field("protocol", 36, 4),
    Field("msg_src_ip4", 40, 4, narrow=True), Field("msg_src_ip6", 44, 16, any_size=True),
    Field("sk", 64, 8, sizes=(8,), reg_type=RegType.PTR_TO_SOCKET))


def sock_addr_rules(inet6: bool, sendmsg: bool) -> CtxRules:
    read = {"user_family", "user_port", "family", "type", "protocol", "sk",
            "user_ip6" if inet6 else "user_ip4"}
    write = {"user_port", "user_ip6" if inet6 else "user_ip4"}
    if sendmsg:
        read.add("msg_src_ip6" if inet6 else "msg_src_ip4")
        write.add("msg_src_ip6" if inet6 else "msg_src_ip4")

    def check(f: Field, off: int, size: int, write_: bool) -> str | None:
        if f.name in ("user_ip6", "msg_src_ip6"):
            if write_:
                return None if size == 4 and (off - f.off) % 4 == 0 else "bad"
            return None if size in (1, 2, 4) and ((off - f.off) % 4) + size <= 4 else "bad"
        if write_ and size != 4:
            return "bad"
        return None
    return CtxRules(BPF_SOCK_ADDR, frozenset(read), frozenset(write), check)


# bpf_sock_ops: 4-byte fields up to skb_data, then 8-byte pointers (uapi order)
_SOCK_OPS_U32 = ["op", "args0", "args1", "args2", "args3", "family", "remote_ip4", "local_ip4",
                 "remote_ip6", None, None, None, "local_ip6", None, None, None, "remote_port",
                 "local_port", "is_fullsock", "snd_cwnd", "srtt_us", "bpf_sock_ops_cb_flags",
                 "state", "rtt_min", "snd_ssthresh", "rcv_nxt", "snd_nxt", "snd_una",
                 "mss_cache", "ecn_flags", "rate_delivered", "rate_interval_us", "packets_out",
                 "retrans_out", "total_retrans", "segs_in", "data_segs_in", "segs_out",
                 "data_segs_out", "lost_out", "sacked_out", "sk_txhash"]


def _sock_ops_struct() -> CtxStruct:
    fields = []
    for k, name in enumerate(_SOCK_OPS_U32):
        if name is None:
            continue
        off = k * 4
        if name == "op":
            fields.append(Field("op", 0, 4))
        elif name.startswith("args"):
            continue
        elif name in ("remote_ip6", "local_ip6"):
            fields.append(Field(name, off, 16, any_size=True))
        else:
            fields.append(Field(name, off, 4))
    fields.append(Field("args", 4, 16, any_size=True))
    fields += [Field("bytes_received", 168, 8, sizes=(8,)), Field("bytes_acked", 176, 8, sizes=(8,)),
               Field("sk", 184, 8, sizes=(8,), reg_type=RegType.PTR_TO_SOCKET_OR_NULL),
               Field("skb_data", 192, 8, sizes=(8,), reg_type=RegType.PTR_TO_PACKET),
               Field("skb_data_end", 200, 8, sizes=(8,), reg_type=RegType.PTR_TO_PACKET_END),
               Field("skb_len", 208, 4), Field("skb_tcp_flags", 212, 4, narrow=True),
               Field("skb_hwtstamp", 216, 8, sizes=(8,))]
    return _struct("bpf_sock_ops", 224, *fields)


BPF_SOCK_OPS = _sock_ops_struct()


def _sock_ops_check(f: Field, off: int, size: int, write: bool) -> str | None:
    if f.name == "skb_tcp_flags" and off != f.off:
        return "bad"
    if f.any_size:
        if write:   # only reply (the first word of the args/reply union) is writable
            return None if f.name == "args" and off == f.off and size == 4 else "bad"
        return None if size == 4 and (off - f.off) % 4 == 0 else "bad"
    return None


SOCK_OPS_RULES = CtxRules(BPF_SOCK_OPS, None, frozenset({"args", "sk_txhash"}), _sock_ops_check)

SK_MSG_MD = _struct(
    "sk_msg_md", 80,
    Field("data", 0, 8, sizes=(8,), reg_type=RegType.PTR_TO_PACKET),
    Field("data_end", 8, 8, sizes=(8,), reg_type=RegType.PTR_TO_PACKET_END),
    Field("family", 16, 4), Field("remote_ip4", 20, 4), Field("local_ip4", 24, 4),
    Field("remote_ip6", 28, 16, any_size=True), Field("local_ip6", 44, 16, any_size=True),
    Field("remote_port", 60, 4), Field("local_port", 64, 4), Field("size", 68, 4),
    Field("sk", 72, 8, sizes=(8,), reg_type=RegType.PTR_TO_SOCKET))


def _u32_elems(f: Field, off: int, size: int, write: bool) -> str | None:
    if f.any_size:
        return None if size == 4 and (off - f.off) % 4 == 0 else "bad"
    return None


SK_MSG_RULES = CtxRules(SK_MSG_MD, None, frozenset(), _u32_elems)

SK_REUSEPORT_MD = _struct(
    "sk_reuseport_md", 56,
    Field("data", 0, 8, sizes=(8,), reg_type=RegType.PTR_TO_PACKET),
    Field("data_end", 8, 8, sizes=(8,), reg_type=RegType.PTR_TO_PACKET_END),
    Field("len", 16, 4, narrow=True), Field("eth_protocol", 20, 4, any_size=True),
    Field("ip_protocol", 24, 4, narrow=True), Field("bind_inany", 28, 4, narrow=True),
    Field("hash", 32, 4),
    Field("sk", 40, 8, sizes=(8,), reg_type=RegType.PTR_TO_SOCKET),
    Field("migrating_sk", 48, 8, sizes=(8,), reg_type=RegType.PTR_TO_SOCK_COMMON_OR_NULL))


def _reuseport_check(f: Field, off: int, size: int, write: bool) -> str | None:
    if f.name == "eth_protocol":
        # __be16 in a u32 slot (sk_reuseport_is_valid_access): u16 loads, or the whole u32
        return None if size == 2 or (size == 4 and off == f.off) else "bad"
    return None


SK_REUSEPORT_RULES = CtxRules(SK_REUSEPORT_MD, None, frozenset(), _reuseport_check)

# lirc_mode2: the context is one u32 sample (lirc_mode2_is_valid_access)
LIRC_SAMPLE = _struct("lirc_mode2_sample", 4, Field("sample", 0, 4))
LIRC_RULES = CtxRules(LIRC_SAMPLE)
