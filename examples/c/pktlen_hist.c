// SPDX-License-Identifier: GPL-2.0
/* Packet sizes as histograms, the way BCC tools count: a log2 histogram per IP
 * protocol (struct key {bucket, slot}) and a linear one of 64-byte steps. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define LINEAR_SLOTS 32

struct hist_key {
	__u32 proto;		/* the bucket: IPPROTO_*, 0 for non-IP */
	__u32 slot;		/* log2 slot of the packet length */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct hist_key);
	__type(value, __u64);
} by_proto SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LINEAR_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} linear SEC(".maps");

/* BCC's bpf_log2l(): 1 + floor(log2(v)), and 1 for v == 0 */
static __always_inline __u32 log2l(__u32 v)
{
	__u32 r, shift;

	r = (v > 0xFFFF) << 4; v >>= r;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r + 1;
}

SEC("xdp")
int count_sizes(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = data_end - data;
	struct ethhdr *eth = data;
	struct hist_key key = {};
	__u64 one = 1, *v;
	__u32 idx;

	if ((void *)(eth + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) <= data_end)
			key.proto = ip->protocol;
	}
	key.slot = log2l(len);
	v = bpf_map_lookup_elem(&by_proto, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&by_proto, &key, &one, BPF_NOEXIST);

	idx = len / 64;
	if (idx >= LINEAR_SLOTS)
		idx = LINEAR_SLOTS - 1;
	v = bpf_map_lookup_elem(&linear, &idx);
	if (v)
		__sync_fetch_and_add(v, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
