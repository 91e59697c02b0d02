// SPDX-License-Identifier: GPL-2.0
/* A bpf-to-bpf callee that returns a pointer to its own stack. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static __attribute__((noinline)) long *leak(long v)
{
	volatile long local = v;

	return (long *)&local;
}

SEC("xdp")
int callee_stack_ptr(struct xdp_md *ctx)
{
	return *leak(ctx->ingress_ifindex) ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
