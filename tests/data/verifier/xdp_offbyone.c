// SPDX-License-Identifier: GPL-2.0
/* xdp_firewall with an off-by-one packet bound: the IPv4 header check is one
 * byte short, so reading the source address may run past data_end. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} blocklist SEC(".maps");

SEC("xdp")
int xdp_offbyone(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u32 saddr;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)ip + sizeof(*ip) - 1 > data_end)	/* one byte short */
		return XDP_PASS;
	saddr = ip->daddr;
	if (bpf_map_lookup_elem(&blocklist, &saddr))
		return XDP_DROP;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
