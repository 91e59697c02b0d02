// SPDX-License-Identifier: GPL-2.0
/* The same scan with a bound the verifier can see: accepted. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int tc_bounded(struct __sk_buff *skb)
{
	volatile __u32 sum = 0;
	__u32 n = skb->len;

	for (__u32 i = 0; i < n && i < 64; i++)
		sum += i;
	return sum & 1 ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
