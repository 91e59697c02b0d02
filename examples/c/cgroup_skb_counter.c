// SPDX-License-Identifier: GPL-2.0
/* cgroup_skb ingress: count packets and bytes per IP protocol, remember the
 * last packet's mark in cb[0], and refuse TCP to port 23 (telnet). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct counts {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);		/* IP protocol number */
	__type(value, struct counts);
} per_proto SEC(".maps");

SEC("cgroup_skb/ingress")
int count_ingress(struct __sk_buff *skb)
{
	struct iphdr ip;
	struct counts *c, init = {};
	__u32 proto;
	__be16 dport;

	skb->cb[0] = skb->mark;
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 1;
	/* cgroup_skb programs see the packet from the network header */
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
		return 1;
	proto = ip.protocol;
	c = bpf_map_lookup_elem(&per_proto, &proto);
	if (!c) {
		bpf_map_update_elem(&per_proto, &proto, &init, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&per_proto, &proto);
		if (!c)
			return 1;
	}
	__sync_fetch_and_add(&c->packets, 1);
	__sync_fetch_and_add(&c->bytes, skb->len);
	if (proto == IPPROTO_TCP &&
	    bpf_skb_load_bytes(skb, ip.ihl * 4 + offsetof(struct tcphdr, dest), &dport, 2) == 0 &&
	    dport == bpf_htons(23))
		return 0;
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
