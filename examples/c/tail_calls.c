// SPDX-License-Identifier: GPL-2.0
/* Tail-call dispatcher: an XDP program jumps to a handler per IP protocol
 * through a program array whose slots the object itself fills (`values`). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} handled SEC(".maps");

static __always_inline int seen(__u32 proto, int verdict)
{
	__u64 *n = bpf_map_lookup_elem(&handled, &proto);

	if (n)
		__sync_fetch_and_add(n, 1);
	return verdict;
}

SEC("xdp")
int handle_tcp(struct xdp_md *ctx)
{
	return seen(IPPROTO_TCP, XDP_PASS);
}

SEC("xdp")
int handle_udp(struct xdp_md *ctx)
{
	return seen(IPPROTO_UDP, XDP_PASS);
}

SEC("xdp")
int handle_icmp(struct xdp_md *ctx)
{
	return seen(IPPROTO_ICMP, XDP_DROP);
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__array(values, int (void *));
} dispatch SEC(".maps") = {
	.values = {
		[IPPROTO_ICMP] = (void *)&handle_icmp,
		[IPPROTO_TCP] = (void *)&handle_tcp,
		[IPPROTO_UDP] = (void *)&handle_udp,
	},
};

SEC("xdp")
int dispatcher(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	bpf_tail_call(ctx, &dispatch, ip->protocol);
	return XDP_PASS;	/* no handler for this protocol */
}

char LICENSE[] SEC("license") = "GPL";
