// SPDX-License-Identifier: MIT
/* A non-GPL program calling a GPL-only helper (bpf_trace_printk). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int nogpl_helper(struct xdp_md *ctx)
{
	bpf_printk("hello");
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "MIT";
