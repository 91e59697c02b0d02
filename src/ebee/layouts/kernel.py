"""The runtime's own context structures: where a rewritten ctx access really goes.

A program sees uapi structures (``struct __sk_buff``, ``struct xdp_md``, ...);
Linux rewrites each access at load time into loads and stores on its internal
structures (``struct sk_buff``, ``struct xdp_buff``, ...).  ebee does the same.
The internal structures it keeps are real memory regions laid out like the
kernel's own -- the offsets below are those of Linux 6.18 on x86_64, read from
its BTF -- so that ``ebee prog dump xlated`` prints what ``bpftool prog dump
xlated`` prints on that kernel, instruction for instruction.  Only the members
the runtime models are listed; the rest of each structure is zero padding.

The numbers can be checked against /sys/kernel/btf/vmlinux (``pahole``,
``bpftool btf dump``) on a kernel with the same configuration.
"""
from __future__ import annotations

from .layout import Layout

SK_BUFF = Layout("sk_buff", 224, {
    "dev": (16, 8), "sk": (24, 8), "tstamp": (32, 8), "cb": (40, 48),
    "len": (112, 4), "data_len": (116, 4), "mac_len": (120, 2), "hdr_len": (122, 2),
    "queue_mapping": (124, 2),
    "__pkt_type_offset": (128, 1),      # pkt_type:3 ignore_df:1 ... ip_summed:2 (bits 5-6)
    "__mono_tc_offset": (129, 1),       # tstamp_type:2 tc_at_ingress:1 ...
    "__flags2_offset": (130, 1),        # inner_protocol_type:1 l4_hash:1 sw_hash:1 ...
    "tc_index": (132, 2), "csum": (136, 4), "csum_start": (136, 2), "csum_offset": (138, 2),
    "priority": (140, 4), "skb_iif": (144, 4), "hash": (148, 4),
    "vlan_all": (152, 4), "vlan_proto": (152, 2), "vlan_tci": (154, 2), "napi_id": (156, 4),
    "secmark": (160, 4), "mark": (164, 4), "inner_protocol": (168, 2),
    "inner_transport_header": (170, 2), "inner_network_header": (172, 2),
    "inner_mac_header": (174, 2), "protocol": (176, 2), "transport_header": (178, 2),
    "network_header": (180, 2), "mac_header": (182, 2),
    "tail": (184, 4), "end": (188, 4), "head": (192, 8), "data": (200, 8), "truesize": (208, 4),
})
PKT_TYPE_MAX = 7
TSTAMP_TYPE_MASK = 3            # SKB_TSTAMP_TYPE_MASK in __mono_tc_offset
TC_AT_INGRESS_MASK = 1 << 2
SKB_L4_HASH = 1 << 1            # in __flags2_offset
SKB_SW_HASH = 1 << 2

# qdisc_skb_cb lives in sk_buff.cb; bpf_skb_data_end extends it with the packet pointers
QDISC_SKB_CB = Layout("qdisc_skb_cb", 28, {
    "pkt_len": (0, 4), "slave_dev_queue_mapping": (4, 2), "tc_classid": (6, 2), "data": (8, 20),
})
BPF_SKB_DATA_END = Layout("bpf_skb_data_end", 48, {
    "qdisc_cb": (0, 28), "data_meta": (32, 8), "data_end": (40, 8),
})
QDISC_CB_PRIV_LEN = 20

SKB_SHARED_INFO = Layout("skb_shared_info", 320, {
    "flags": (0, 1), "meta_len": (1, 1), "nr_frags": (2, 1), "tx_flags": (3, 1),
    "gso_size": (4, 2), "gso_segs": (6, 2), "hwtstamps": (16, 8), "gso_type": (24, 4),
})

NET_DEVICE = Layout("net_device", 2496, {"mtu": (56, 4), "ifindex": (224, 4)})

SOCK_COMMON = Layout("sock_common", 136, {
    "skc_daddr": (0, 4), "skc_rcv_saddr": (4, 4), "skc_hash": (8, 4),
    "skc_dport": (12, 2), "skc_num": (14, 2),
    "skc_family": (16, 2), "skc_state": (18, 1), "skc_bound_dev_if": (20, 4),
    "skc_v6_daddr": (56, 16), "skc_v6_rcv_saddr": (72, 16), "skc_cookie": (88, 8),
    "skc_rx_queue_mapping": (122, 2),
})
SOCK = Layout("sock", 784, {
    **SOCK_COMMON.members,
    "sk_rcvbuf": (244, 4), "sk_priority": (520, 4), "sk_mark": (524, 4),
    "sk_protocol": (532, 2), "sk_type": (534, 2),
})

XDP_BUFF = Layout("xdp_buff", 56, {
    "data": (0, 8), "data_end": (8, 8), "data_meta": (16, 8), "data_hard_start": (24, 8),
    "rxq": (32, 8), "txq": (40, 8), "frame_sz": (48, 4), "flags": (52, 4),
})
XDP_RXQ_INFO = Layout("xdp_rxq_info", 64, {"dev": (0, 8), "queue_index": (8, 4), "frag_size": (24, 4)})
XDP_TXQ_INFO = Layout("xdp_txq_info", 8, {"dev": (0, 8)})

BPF_FLOW_DISSECTOR = Layout("bpf_flow_dissector", 32, {
    "flow_keys": (0, 8), "skb": (8, 8), "data": (16, 8), "data_end": (24, 8),
})

BPF_SK_LOOKUP_KERN = Layout("bpf_sk_lookup_kern", 48, {
    "family": (0, 2), "protocol": (2, 2), "sport": (4, 2), "dport": (6, 2),
    "v4_saddr": (8, 4), "v4_daddr": (12, 4), "v6_saddr": (16, 8), "v6_daddr": (24, 8),
    "selected_sk": (32, 8), "ingress_ifindex": (40, 4), "no_reuseport": (44, 1),
})

BPF_PERF_EVENT_DATA_KERN = Layout("bpf_perf_event_data_kern", 24, {
    "regs": (0, 8), "data": (8, 8), "event": (16, 8),
})
PERF_SAMPLE_DATA = Layout("perf_sample_data", 256, {"period": (8, 8), "addr": (184, 8)})

PT_REGS_SIZE = 168     # struct pt_regs on x86_64 (21 u64s)

#: struct bpf_map, the fields an iterator program reads of the map it is shown (iter/bpf_map,
#: iter/bpf_map_elem's ctx->map)
BPF_MAP = Layout("bpf_map", 296, {
    "map_type": (64, 4), "key_size": (68, 4), "value_size": (72, 4), "max_entries": (76, 4),
    "map_extra": (80, 8), "map_flags": (88, 4), "id": (92, 4), "name": (136, 16),
})

#: struct bpf_iter_meta: every iterator context's first member points at one
BPF_ITER_META = Layout("bpf_iter_meta", 24, {
    "seq": (0, 8), "session_id": (8, 8), "seq_num": (16, 8),
})
