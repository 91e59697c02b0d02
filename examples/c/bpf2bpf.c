// SPDX-License-Identifier: GPL-2.0
/* bpf-to-bpf calls: a static subprogram, a global (separately verified)
 * function, and a callback passed to bpf_loop. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} result SEC(".maps");

static __noinline __u64 square(__u64 x)
{
	return x * x;
}

__noinline int sum_squares(int n)
{
	__u64 s = 0;

	for (int i = 1; i <= n && i < 64; i++)
		s += square(i);
	return (int)s;
}

struct loop_ctx {
	__u64 acc;
};

static long add_step(__u64 i, void *data)
{
	struct loop_ctx *c = data;

	c->acc += square(i);
	return 0;
}

SEC("xdp")
int calls(struct xdp_md *ctx)
{
	struct loop_ctx c = {};
	__u32 zero = 0;
	__u64 *out;

	bpf_loop(10, add_step, &c, 0);
	out = bpf_map_lookup_elem(&result, &zero);
	if (out)
		*out = c.acc + sum_squares(4);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
