// SPDX-License-Identifier: GPL-2.0
/* A map value indexed with a packet byte that is bounded one too loosely. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct counters { __u64 slot[8]; };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} table SEC(".maps");

SEC("xdp")
int array_oob(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0, i;
	struct counters *c;
	volatile __u32 *p = data;

	if (data + 4 > data_end)
		return XDP_PASS;
	c = bpf_map_lookup_elem(&table, &zero);
	if (!c)
		return XDP_PASS;
	i = *p;
	if (i > 8)				/* should be i >= 8 */
		return XDP_PASS;
	c->slot[i]++;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
