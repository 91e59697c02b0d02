// SPDX-License-Identifier: GPL-2.0
/* sk_msg verdicts for tests/test_sockets.py: user space sets `mode` and `arg`, the
 * program logs each run (size, data_end - data, a helper's return) and decides. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum { PASS, DROP, REDIRECT, APPLY, CORK, PULL, REDIRECT_EGRESS };

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} socks SEC(".maps");

struct run {
	__u32 size;
	__u32 linear;
	__s32 ret;
	__u32 first;		/* the first byte in the window */
};

__u32 mode, arg, arg2, nruns;
struct run runs[16];

SEC("sk_msg")
int msg_modes(struct sk_msg_md *msg)
{
	__u32 n = nruns;
	long ret = 0;
	int verdict = SK_PASS;
	__u8 *d;

	switch (mode) {
	case DROP:
		verdict = SK_DROP;
		break;
	case REDIRECT:
		verdict = bpf_msg_redirect_map(msg, &socks, arg, BPF_F_INGRESS);
		break;
	case REDIRECT_EGRESS:
		verdict = bpf_msg_redirect_map(msg, &socks, arg, 0);
		break;
	case APPLY:
		ret = bpf_msg_apply_bytes(msg, arg);
		break;
	case CORK:
		if (msg->size < arg)
			ret = bpf_msg_cork_bytes(msg, arg);
		break;
	case PULL:
		ret = bpf_msg_pull_data(msg, arg, arg2, 0);
		break;
	}
	if (n < 16) {
		runs[n].size = msg->size;
		runs[n].linear = (long)msg->data_end - (long)msg->data;
		runs[n].ret = ret;
		d = msg->data;
		if (d + 1 <= (__u8 *)msg->data_end)
			runs[n].first = *d;
		nruns = n + 1;
	}
	return verdict;
}

char LICENSE[] SEC("license") = "GPL";
