"""``struct __sk_buff``: the context of socket filters, tc, cgroup_skb, lwt, sk_skb and
flow dissector programs, and how each access becomes an ``sk_buff`` access.

The conversions are those of net/core/filter.c (bpf_convert_ctx_access and the
tc/sk_skb/flow-dissector variants) onto the layouts in :mod:`ebee.layouts.kernel`; the
per-type read/write rules are those of the ``*_is_valid_access`` functions.
"""
from __future__ import annotations

from dataclasses import replace

from ..isa import Instruction
from ..layouts.kernel import (BPF_FLOW_DISSECTOR, BPF_SKB_DATA_END, NET_DEVICE, PKT_TYPE_MAX,
                              QDISC_SKB_CB, SK_BUFF, SKB_SHARED_INFO, SOCK_COMMON, TSTAMP_TYPE_MASK)
from . import emit as E
from .ctx import CtxRules, CtxStruct, Field, RegType, at, via

AX = E.AX
K = SK_BUFF.off
CB = SK_BUFF.off("cb")
NR_CPUS = 256                 # CONFIG_NR_CPUS of the reference kernel: MIN_NAPI_ID = NR_CPUS + 1
MIN_NAPI_ID = NR_CPUS + 1
SKB_TSTAMP_DELIVERY = 1       # tstamp_type value for a delivery-time timestamp
SKB_CLOCK_TAI = 2
NO_QUEUE_MAPPING = 0xFFFF


def _simple(koff: int, ksize: int):
    return at(koff, ksize)


def _pkt_type(i: Instruction):
    return [E.ldx(1, i.dst, i.src, K("__pkt_type_offset")),
            E.alu32_imm("and", i.dst, PKT_TYPE_MAX)], 1


def _vlan_present(i: Instruction):
    return [E.ldx(4, i.dst, i.src, K("vlan_all")), E.jmp_imm("jeq", i.dst, 0, 1),
            E.mov32_imm(i.dst, 1)], 4


def _queue_mapping_store(i: Instruction):
    # a value of NO_QUEUE_MAPPING or above is ignored (bpf_convert_ctx_access)
    return [E.jmp_imm("jge", i.src, NO_QUEUE_MAPPING, 1),
            E.stx(2, i.dst, i.src, K("queue_mapping"))], 2


def _napi_id(i: Instruction):
    return [E.ldx(4, i.dst, i.src, K("napi_id")), E.jmp_imm("jge", i.dst, MIN_NAPI_ID, 1),
            E.mov64_imm(i.dst, 0)], 4


def _shinfo(member: str, size: int):
    def load(i: Instruction):
        return [E.ldx(4, AX, i.src, K("end")), E.ldx(8, i.dst, i.src, K("head")),
                E.alu64_reg("add", i.dst, AX),
                E.ldx(size, i.dst, i.dst, SKB_SHARED_INFO.off(member))], size
    return load


def _tstamp_load(i: Instruction):
    # bpf_convert_tstamp_read(): a delivery-time stamp reads as 0 unless the program
    # was loaded knowing about tstamp_type (tc); this is the tc/cgroup form.
    d, s = i.dst, i.src
    return [E.ldx(1, AX, s, K("__mono_tc_offset")),
            E.jmp32_imm("jset", AX, 4, 1),          # TC_AT_INGRESS_MASK
            E.ja(4),
            E.jmp32_imm("jset", AX, TSTAMP_TYPE_MASK, 1),
            E.ja(2),
            E.mov64_imm(d, 0),
            E.ja(1),
            E.ldx(8, d, s, K("tstamp"))], 8


def _tstamp_store(i: Instruction):
    # bpf_convert_tstamp_write(): at ingress, writing tstamp clears tstamp_type
    d, s = i.dst, i.src
    return [E.ldx(1, AX, d, K("__mono_tc_offset")),
            E.jmp32_imm("jset", AX, 4, 1),
            E.ja(2),
            E.alu32_imm("and", AX, ~TSTAMP_TYPE_MASK),
            E.stx(1, d, AX, K("__mono_tc_offset")),
            E.stx(8, d, s, K("tstamp"))], 8


def _tstamp_type(i: Instruction):
    return [E.ldx(1, i.dst, i.src, K("__mono_tc_offset")),
            E.alu32_imm("and", i.dst, TSTAMP_TYPE_MASK)], 1


def _sk(member: str, size: int, *, shift: int = 0):
    def load(i: Instruction):
        out = [E.ldx(8, i.dst, i.src, K("sk")), E.ldx(size, i.dst, i.dst, SOCK_COMMON.off(member))]
        if shift:
            # the port sits in the upper half of the u32: the value is 4 bytes wide, so
            # narrow loads are shifted and masked (6.18; 6.12 recorded 2 and masked less)
            out.append(E.alu32_imm("lsh", i.dst, shift))
            return out, 4
        return out, size
    return load


def _sk_array(member: str, uapi_off: int):
    def load(i: Instruction):
        return [E.ldx(8, i.dst, i.src, K("sk")),
                E.ldx(4, i.dst, i.dst, SOCK_COMMON.off(member) + i.off - uapi_off)], 4
    return load


def _ifindex(null_check: bool):
    return via(K("dev"), NET_DEVICE.off("ifindex"), 4, null_check=null_check)


def _cb(off_in_skb: int, uapi_off: int):
    return at(off_in_skb, 0, uapi_off, any_size=True)


def _build() -> CtxStruct:
    f: list[Field] = []

    def add(name, off, size=4, conv=None, **kw):
        load, store = conv if isinstance(conv, tuple) else (conv, None)
        f.append(Field(name, off, size, load=load, store=store, **kw))

    add("len", 0, conv=_simple(K("len"), 4), narrow=True)
    add("pkt_type", 4, conv=_pkt_type, narrow=True)
    add("mark", 8, conv=_simple(K("mark"), 4), narrow=True)
    add("queue_mapping", 12, conv=(_simple(K("queue_mapping"), 2)[0], _queue_mapping_store),
        narrow=True)
    add("protocol", 16, conv=_simple(K("protocol"), 2), narrow=True)
    add("vlan_present", 20, conv=_vlan_present, narrow=True)
    add("vlan_tci", 24, conv=_simple(K("vlan_tci"), 2), narrow=True)
    add("vlan_proto", 28, conv=_simple(K("vlan_proto"), 2), narrow=True)
    add("priority", 32, conv=_simple(K("priority"), 4), narrow=True)
    add("ingress_ifindex", 36, conv=_simple(K("skb_iif"), 4), narrow=True)
    add("ifindex", 40, conv=_ifindex(True), narrow=True)
    add("tc_index", 44, conv=_simple(K("tc_index"), 2), narrow=True)
    add("cb", 48, 20, conv=_cb(CB + QDISC_SKB_CB.off("data"), 48), any_size=True)
    add("hash", 68, conv=_simple(K("hash"), 4), narrow=True)
    add("tc_classid", 72, conv=_simple(CB + QDISC_SKB_CB.off("tc_classid"), 2), narrow=True)
    add("data", 76, conv=at(K("data"), 8)[0], reg_type=RegType.PTR_TO_PACKET)
    add("data_end", 80, conv=at(CB + BPF_SKB_DATA_END.off("data_end"), 8)[0],
        reg_type=RegType.PTR_TO_PACKET_END)
    add("napi_id", 84, conv=_napi_id, narrow=True)
    add("family", 88, conv=_sk("skc_family", 2), narrow=True)
    add("remote_ip4", 92, conv=_sk("skc_daddr", 4))
    add("local_ip4", 96, conv=_sk("skc_rcv_saddr", 4))
    add("remote_ip6", 100, 16, conv=_sk_array("skc_v6_daddr", 100), sizes=(4,), any_size=False)
    add("local_ip6", 116, 16, conv=_sk_array("skc_v6_rcv_saddr", 116), sizes=(4,))
    add("remote_port", 132, conv=_sk("skc_dport", 2, shift=16), narrow=True)
    add("local_port", 136, conv=_sk("skc_num", 2), narrow=True)
    add("data_meta", 140, conv=at(CB + BPF_SKB_DATA_END.off("data_meta"), 8)[0],
        reg_type=RegType.PTR_TO_PACKET_META)
    add("flow_keys", 144, 8, conv=at(K("cb"), 8)[0], sizes=(8,), reg_type=RegType.PTR_TO_FLOW_KEYS)
    add("tstamp", 152, 8, conv=(_tstamp_load, _tstamp_store), sizes=(8,))
    add("wire_len", 160, conv=_simple(CB + QDISC_SKB_CB.off("pkt_len"), 4), narrow=True)
    add("gso_segs", 164, conv=_shinfo("gso_segs", 2), narrow=True)
    add("sk", 168, 8, conv=at(K("sk"), 8)[0], sizes=(8,),
        reg_type=RegType.PTR_TO_SOCK_COMMON_OR_NULL)
    add("gso_size", 176, conv=_shinfo("gso_size", 2), narrow=True)
    add("tstamp_type", 180, 1, conv=_tstamp_type, sizes=(1,))
    add("hwtstamp", 184, 8, conv=_shinfo("hwtstamps", 8), sizes=(8,))
    return CtxStruct("__sk_buff", 192, tuple(f))


SK_BUFF_CTX = _build()

_ARRAY_FIELDS = {"remote_ip6", "local_ip6"}


_COMMON_READ = frozenset({
    "len", "pkt_type", "mark", "queue_mapping", "protocol", "vlan_present", "vlan_tci",
    "vlan_proto", "priority", "ingress_ifindex", "ifindex", "tc_index", "cb", "hash",
    "napi_id", "gso_segs", "sk", "gso_size"})
_SK_FIELDS = frozenset({"family", "remote_ip4", "local_ip4", "remote_ip6", "local_ip6",
                        "remote_port", "local_port"})
_PKT = frozenset({"data", "data_end"})


def _rules(struct: CtxStruct, read: frozenset[str], write: frozenset[str]) -> CtxRules:
    def check(f: Field, off: int, size: int, w: bool) -> str | None:
        if f.name in _ARRAY_FIELDS and (size != 4 or (off - f.off) % 4):
            return "bad ip6 access"
        return None
    return CtxRules(struct, read, write, check)


def _with_ifindex(null_check: bool) -> CtxStruct:
    from dataclasses import replace
    s = SK_BUFF_CTX
    return s.with_fields(replace(s["ifindex"], load=_ifindex(null_check)))


# remote_ip6[4]/local_ip6[4]: each u32 element is accessed on its own (checked in _rules).
def _ip6_ok(struct: CtxStruct) -> CtxStruct:
    from dataclasses import replace
    return struct.with_fields(*(replace(struct[n], any_size=True) for n in _ARRAY_FIELDS))


_SKB_NULL = _ip6_ok(_with_ifindex(True))
_SKB_TC = _ip6_ok(_with_ifindex(False))

SOCKET_FILTER_RULES = _rules(_SKB_NULL, _COMMON_READ, frozenset({"cb"}))
TC_RULES = _rules(_SKB_TC, _COMMON_READ | _PKT | {"data_meta", "tc_classid", "tstamp", "wire_len",
                                                  "tstamp_type", "hwtstamp"},
                  frozenset({"mark", "queue_mapping", "priority", "tc_index", "cb", "tc_classid",
                             "tstamp"}))
# cg_skb_is_valid_access: direct packet access and writing tstamp need CAP_BPF
CGROUP_SKB_RULES = replace(
    _rules(_SKB_NULL, _COMMON_READ | _PKT | _SK_FIELDS | {"tstamp", "hwtstamp"},
           frozenset({"mark", "priority", "cb", "tstamp"})),
    read_cap_bpf=_PKT, write_cap_bpf=frozenset({"tstamp"}))
LWT_RULES = _rules(_SKB_NULL, _COMMON_READ | _PKT, frozenset({"mark", "priority", "cb"}))
def _sk_skb_data_end(i: Instruction):
    # sk_skb_convert_ctx_access(): data_end = skb->data + skb_headlen(skb)
    d, s = i.dst, i.src
    return [E.ldx(8, d, s, K("data")), E.ldx(4, AX, s, K("len")), E.alu64_reg("add", d, AX),
            E.ldx(4, AX, s, K("data_len")), E.alu64_reg("sub", d, AX)], 8


def _sk_skb_struct() -> CtxStruct:
    from dataclasses import replace
    s = _SKB_NULL
    # struct sk_skb_cb keeps the program's cb[] at the start of skb->cb
    return s.with_fields(replace(s["cb"], load=_cb(CB, 48)[0], store=_cb(CB, 48)[1]),
                         replace(s["data_end"], load=_sk_skb_data_end))


SK_SKB_RULES = _rules(_sk_skb_struct(), (_COMMON_READ - {"mark"}) | _PKT | _SK_FIELDS,
                      frozenset({"priority", "tc_index"}))


def _flow_dissector_struct() -> CtxStruct:
    from dataclasses import replace
    s = SK_BUFF_CTX
    return s.with_fields(
        replace(s["data"], load=at(BPF_FLOW_DISSECTOR.off("data"), 8)[0]),
        replace(s["data_end"], load=at(BPF_FLOW_DISSECTOR.off("data_end"), 8)[0]),
        replace(s["flow_keys"], load=at(BPF_FLOW_DISSECTOR.off("flow_keys"), 8)[0]))


FLOW_DISSECTOR_RULES = CtxRules(_flow_dissector_struct(), frozenset({"data", "data_end",
                                                                     "flow_keys"}))
