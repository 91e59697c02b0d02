// SPDX-License-Identifier: GPL-2.0
/* Indexes a stack array with a packet-derived value that is not bounded. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("socket")
int stack_oob(struct __sk_buff *skb)
{
	volatile char buf[64];
	__u32 i = bpf_get_prandom_u32() & 127;		/* up to 127, buf has 64 */

	buf[0] = 0;
	buf[i] = 1;
	return buf[0];
}

char LICENSE[] SEC("license") = "GPL";
