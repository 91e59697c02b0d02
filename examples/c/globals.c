// SPDX-License-Identifier: GPL-2.0
/* Global variables configured from user space, as with a libbpf skeleton:
 * `.rodata` (const volatile: set before load, constant to the verifier),
 * `.data` (initialised) and `.bss` (zeroed) counters the program updates. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 drop_port_min = 0;		/* .rodata: configure before load */
const volatile __u32 drop_port_max = 0;
const volatile char greeting[8] = "hello";

__u64 packets_seen = 0;				/* .bss */
__u64 last_len = 0;
__u32 verdict_pass = XDP_PASS;			/* .data */

SEC("xdp")
int globals(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;

	__sync_fetch_and_add(&packets_seen, 1);
	last_len = len;
	if (len >= drop_port_min && len <= drop_port_max && drop_port_max)
		return XDP_DROP;
	return greeting[0] == 'h' ? verdict_pass : XDP_ABORTED;
}

char LICENSE[] SEC("license") = "GPL";
