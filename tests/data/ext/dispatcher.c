// Three XDP programs for a libxdp-style dispatcher (tests/test_freplace.py).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

SEC("xdp")
int count_all(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *n = bpf_map_lookup_elem(&seen, &k);

	if (n)
		__sync_fetch_and_add(n, 1);
	return XDP_PASS;
}

SEC("xdp")
int drop_big(struct xdp_md *ctx)
{
	return ctx->data_end - ctx->data > 100 ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int tx_udp(struct xdp_md *ctx)
{
	unsigned char *p = (void *)(long)ctx->data;

	if (p + 24 > (unsigned char *)(long)ctx->data_end)
		return XDP_ABORTED;
	return p[23] == 17 ? XDP_TX : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
