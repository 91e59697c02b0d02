// An XDP program whose verdict comes from a global function: freplace/ programs
// (replace.c) can swap `classify` for their own while the program stays loaded.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} calls SEC(".maps");

__noinline int classify(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *n = bpf_map_lookup_elem(&calls, &k);

	if (n)
		*n += 1;
	return ctx->data_end - ctx->data > 100 ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int entry(struct xdp_md *ctx)
{
	int verdict = classify(ctx);
	__u32 k = 1;
	__u64 *n = bpf_map_lookup_elem(&calls, &k);

	if (n)
		*n += 1;
	return verdict;
}

char LICENSE[] SEC("license") = "GPL";
