// SPDX-License-Identifier: GPL-2.0
/* XDP packet rewriting: strip one 802.1Q tag (bpf_xdp_adjust_head), answer UDP
 * echo (port 7) by swapping the addresses and sending the frame back out
 * (XDP_TX), drop IPv4 packets whose TTL has run out and decrement it otherwise,
 * keeping the header checksum right (RFC 1624). Counts verdicts per action. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);		/* XDP action */
	__type(value, __u64);		/* packets */
} actions SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

static __always_inline int done(int action)
{
	__u32 key = action;
	__u64 *n = bpf_map_lookup_elem(&actions, &key);

	if (n)
		__sync_fetch_and_add(n, 1);
	return action;
}

static __always_inline void swap_bytes(void *a, void *b, int n)
{
	__u8 *x = a, *y = b;

	for (int i = 0; i < n; i++) {
		__u8 t = x[i];
		x[i] = y[i];
		y[i] = t;
	}
}

SEC("xdp")
int xdp_reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	__u32 sum;

	if ((void *)(eth + 1) > data_end)
		return done(XDP_ABORTED);
	if (eth->h_proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr *vh = (void *)(eth + 1);
		struct ethhdr copy;

		if ((void *)(vh + 1) > data_end)
			return done(XDP_DROP);
		__builtin_memcpy(&copy, eth, 12);
		copy.h_proto = vh->proto;
		if (bpf_xdp_adjust_head(ctx, (int)sizeof(*vh)))
			return done(XDP_ABORTED);
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		eth = data;
		if ((void *)(eth + 1) > data_end)
			return done(XDP_ABORTED);
		__builtin_memcpy(eth, &copy, sizeof(copy));
	}
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return done(XDP_PASS);
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5)
		return done(XDP_PASS);
	if (ip->ttl <= 1)
		return done(XDP_DROP);
	/* ttl is the high byte of its 16-bit word: the sum grows by 0x0100 */
	ip->ttl--;
	sum = (__u32)ip->check + bpf_htons(0x0100);
	ip->check = (__u16)(sum + (sum >> 16));
	if (ip->protocol != IPPROTO_UDP)
		return done(XDP_PASS);
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end || udp->dest != bpf_htons(7))
		return done(XDP_PASS);
	swap_bytes(eth->h_dest, eth->h_source, ETH_ALEN);
	swap_bytes(&ip->saddr, &ip->daddr, 4);
	swap_bytes(&udp->source, &udp->dest, 2);
	return done(XDP_TX);
}

char LICENSE[] SEC("license") = "GPL";
