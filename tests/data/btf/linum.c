// SPDX-License-Identifier: GPL-2.0
/* Source lines for `prog dump xlated linum`: three functions (static,
 * global, entry), a loop and no helpers or maps, so that the kernel keeps
 * every instruction where clang put it.  Build: see Makefile. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static __attribute__((noinline)) int scale(int v, const int *restrict k)
{
	return v * 3 + (k ? 1 : 0);
}

__attribute__((noinline)) int sum_to(int n)
{
	int s = 0;

	for (int i = 0; i < (n & 15); i++)
		s += i;
	return s;
}

SEC("xdp")
int linum_prog(struct xdp_md *ctx)
{
	int len = ctx->data_end - ctx->data;

	if (len > 100)
		return XDP_PASS;
	return scale(sum_to(len), 0) > 7 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
