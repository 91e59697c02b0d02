// SPDX-License-Identifier: GPL-2.0
/* sk_skb stream parser + stream verdict for tests/test_sockets_strp.py: user space sets
 * `mode` and `arg`; the parser decides message lengths, logging what it saw (skb->len,
 * the byte at offset 0 read with bpf_skb_load_bytes), the verdict logs each message. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum { ALL, PREFIX, FIXED, NEED, ERROR };
enum { V_PASS, V_DROP, V_REDIRECT };

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} socks SEC(".maps");

struct seen {
	__u32 len;
	__u32 first;		/* bpf_skb_load_bytes(skb, 0, 1), 0xffff if it failed */
	__u32 last;		/* the byte at len - 1 */
	__s32 ret;
};

__u32 mode, arg, vmode, varg, only_port, nparse, nverdict;
struct seen parses[32], verdicts[32];

static __always_inline void look(struct __sk_buff *skb, struct seen *s)
{
	__u8 b = 0;

	s->len = skb->len;
	s->first = bpf_skb_load_bytes(skb, 0, &b, 1) ? 0xffff : b;
	s->last = (skb->len && !bpf_skb_load_bytes(skb, skb->len - 1, &b, 1)) ? b : 0xffff;
}

SEC("sk_skb/stream_parser")
int strp_parse(struct __sk_buff *skb)
{
	__u32 n = nparse;
	__u8 b = 0;
	int ret;

	if (skb->local_port != only_port)
		return skb->len;
	switch (mode) {
	case PREFIX:		/* byte 0 is the length of the message, itself included */
		ret = bpf_skb_load_bytes(skb, 0, &b, 1) ? 0 : b;
		break;
	case FIXED:
		ret = arg;
		break;
	case NEED:		/* nothing decided until arg bytes are there */
		ret = skb->len < arg ? 0 : arg;
		break;
	case ERROR:
		ret = -(int)arg;
		break;
	default:
		ret = skb->len;
	}
	if (n < 32) {
		look(skb, &parses[n]);
		parses[n].ret = ret;
		nparse = n + 1;
	}
	return ret;
}

SEC("sk_skb/stream_verdict")
int strp_verdict(struct __sk_buff *skb)
{
	__u32 n = nverdict;
	int ret = SK_PASS;

	if (skb->local_port != only_port)
		return SK_PASS;
	if (vmode == V_DROP)
		ret = SK_DROP;
	else if (vmode == V_REDIRECT)
		ret = bpf_sk_redirect_map(skb, &socks, varg, BPF_F_INGRESS);
	if (n < 32) {
		look(skb, &verdicts[n]);
		verdicts[n].ret = ret;
		nverdict = n + 1;
	}
	return ret;
}

char LICENSE[] SEC("license") = "GPL";
