// SPDX-License-Identifier: GPL-2.0
/* globals.c writing a `const volatile` setting (.rodata is read-only for programs). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 threshold = 10;
__u64 seen;

SEC("xdp")
int rodata_write(struct xdp_md *ctx)
{
	seen++;
	*(volatile __u32 *)&threshold = seen;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
