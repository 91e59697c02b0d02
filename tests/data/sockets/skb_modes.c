// SPDX-License-Identifier: GPL-2.0
/* sk_skb verdict for tests/test_sockets.py: user space sets `mode` and `arg`; each run
 * logs the skb's length, its first payload byte and the ports the socket has. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum { PASS, DROP, REDIRECT, REDIRECT_EGRESS };

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} socks SEC(".maps");

struct run {
	__u32 len;
	__u32 first;
	__u32 local_port;
	__u32 remote_port;
	__s32 verdict;
};

__u32 mode, arg, only_port, nruns;
struct run runs[16];

SEC("sk_skb/verdict")
int skb_modes(struct __sk_buff *skb)
{
	__u8 *d = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	__u32 n = nruns;
	int verdict = SK_PASS;

	if (skb->local_port != only_port)	/* the other end's receives pass */
		return SK_PASS;
	if (mode == DROP)
		verdict = SK_DROP;
	else if (mode == REDIRECT)
		verdict = bpf_sk_redirect_map(skb, &socks, arg, BPF_F_INGRESS);
	else if (mode == REDIRECT_EGRESS)
		verdict = bpf_sk_redirect_map(skb, &socks, arg, 0);
	if (n < 16) {
		runs[n].len = skb->len;
		runs[n].first = d + 1 <= end ? *d : 0xffff;
		runs[n].local_port = skb->local_port;
		runs[n].remote_port = skb->remote_port >> 16;
		runs[n].verdict = verdict;
		nruns = n + 1;
	}
	return verdict;
}

char LICENSE[] SEC("license") = "GPL";
