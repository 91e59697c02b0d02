// SPDX-License-Identifier: GPL-2.0
/* XDP firewall: drop IPv4 packets whose source address is in a block list.
 * User space fills `blocklist` (key: source address, network byte order),
 * pinned by name so that every loaded copy shares one list;
 * `stats` counts packets passed and dropped. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);		/* IPv4 source address */
	__type(value, __u64);		/* packets dropped from it */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} blocklist SEC(".maps");

enum { STAT_PASS, STAT_DROP, STAT_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 what)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &what);

	if (n)
		__sync_fetch_and_add(n, 1);
}

SEC("xdp")
int xdp_firewall(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u64 *hits;
	__u32 saddr;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		goto pass;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		goto pass;
	saddr = ip->saddr;
	hits = bpf_map_lookup_elem(&blocklist, &saddr);
	if (hits) {
		__sync_fetch_and_add(hits, 1);
		count(STAT_DROP);
		return XDP_DROP;
	}
pass:
	count(STAT_PASS);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
