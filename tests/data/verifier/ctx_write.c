// SPDX-License-Identifier: GPL-2.0
/* Writes a read-only context field (xdp_md->data). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int ctx_write(struct xdp_md *ctx)
{
	ctx->data += 14;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
