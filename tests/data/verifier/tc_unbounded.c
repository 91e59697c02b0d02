// SPDX-License-Identifier: GPL-2.0
/* A classifier that scans with a loop whose bound the verifier cannot see:
 * the trip count comes from the packet length and is never limited. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int tc_unbounded(struct __sk_buff *skb)
{
	volatile __u32 sum = 0;
	__u32 n = skb->len;

	for (__u32 i = 0; i < n; i++)
		sum += i;
	return sum & 1 ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
