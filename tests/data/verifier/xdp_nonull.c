// SPDX-License-Identifier: GPL-2.0
/* xdp_firewall without the null check on the map lookup's result. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} blocklist SEC(".maps");

SEC("xdp")
int xdp_nonull(struct xdp_md *ctx)
{
	__u32 key = ctx->ingress_ifindex;
	__u64 *hits = bpf_map_lookup_elem(&blocklist, &key);

	__sync_fetch_and_add(hits, 1);		/* hits may be NULL */
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
