// SPDX-License-Identifier: GPL-2.0
/* tc for tests/test_sockets.py: find a TCP socket by the 4-tuple user space sets and
 * store it in a SOCKMAP with bpf_map_update_elem (a socket pointer as the value). */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} socks SEC(".maps");

__u32 saddr, daddr;		/* network order */
__u16 sport, dport;		/* network order */
__u32 slot, flags;
__s32 found, update_ret;

SEC("tc")
int tc_sockmap(struct __sk_buff *skb)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	__u32 key = slot;

	t.ipv4.saddr = saddr;
	t.ipv4.daddr = daddr;
	t.ipv4.sport = sport;
	t.ipv4.dport = dport;
	sk = bpf_sk_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	found = sk != 0;
	if (!sk)
		return TC_ACT_OK;
	update_ret = bpf_map_update_elem(&socks, &key, sk, flags);
	bpf_sk_release(sk);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
