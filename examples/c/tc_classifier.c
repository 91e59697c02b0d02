// SPDX-License-Identifier: GPL-2.0
/* tc classifier: set skb->mark and skb->priority from the IP protocol and
 * the TCP/UDP destination port, so that qdiscs and routing can act on them. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MARK_BULK 0x10
#define MARK_INTERACTIVE 0x20

SEC("tc")
int tc_classify(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp;
	__u16 dport;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	tcp = (void *)ip + ip->ihl * 4;		/* dest is at the same offset for UDP */
	if ((void *)(tcp + 1) > data_end)
		return TC_ACT_OK;
	dport = bpf_ntohs(tcp->dest);
	if (dport == 22 || dport == 53) {
		skb->mark = MARK_INTERACTIVE;
		skb->priority = 6;
	} else if (dport == 80 || dport == 443) {
		skb->mark = MARK_BULK;
		skb->priority = 1;
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
