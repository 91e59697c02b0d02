// SPDX-License-Identifier: GPL-2.0
/* XDP prefix filter: drop IPv4 packets whose destination falls in a blocked
 * prefix (longest-prefix-match trie; the value is the action to take). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct ipv4_lpm_key {
	__u32 prefixlen;
	__u32 addr;		/* network byte order */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 255);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ipv4_lpm_key);
	__type(value, __u32);	/* XDP action for the prefix */
} prefixes SEC(".maps");

SEC("xdp")
int lpm_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct ipv4_lpm_key key;
	__u32 *action;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	key.prefixlen = 32;
	key.addr = ip->daddr;
	action = bpf_map_lookup_elem(&prefixes, &key);
	return action ? *action : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
