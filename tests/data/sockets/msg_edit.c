// SPDX-License-Identifier: GPL-2.0
/* bpf_msg_push_data / bpf_msg_pop_data / bpf_msg_pull_data for tests/test_sockets_edit.py:
 * user space writes a script of edits (`ops`), the program applies them on its first run,
 * fills pushed bytes (which the kernel leaves uninitialized) with a pattern, logs what
 * each edit returned and how the message looks after it, then gives `verdict`. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum { PUSH = 1, POP, PULL };
enum { PASS, DROP, REDIRECT, APPLY };
#define NOPS 24

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} socks SEC(".maps");

struct op {
	__u32 kind, start, len, flags, fill;
};

struct seen {
	__s32 ret;
	__u32 size;
	__u32 linear;		/* data_end - data */
	__u32 first;		/* the first byte of the window (after the fill), 0xffff if none */
};

__u32 nops, verdict, arg, nruns;
struct op ops[NOPS];
struct seen after[NOPS];
struct seen runs[8];

static __always_inline void look(struct sk_msg_md *msg, struct seen *s)
{
	__u8 *d = msg->data;

	s->size = msg->size;
	s->linear = (long)msg->data_end - (long)msg->data;
	s->first = 0xffff;
	if (d + 1 <= (__u8 *)msg->data_end)
		s->first = *d;
}

SEC("sk_msg")
int msg_edit(struct sk_msg_md *msg)
{
	__u32 n = nruns, k, j;

	if (n < 8)
		look(msg, &runs[n]);
	nruns = n + 1;
	for (k = 0; k < NOPS && n == 0; k++) {
		struct op *o = &ops[k];
		long ret;

		if (k >= nops)
			break;
		if (o->kind == PUSH)
			ret = bpf_msg_push_data(msg, o->start, o->len, o->flags);
		else if (o->kind == POP)
			ret = bpf_msg_pop_data(msg, o->start, o->len, o->flags);
		else
			ret = bpf_msg_pull_data(msg, o->start, o->start + o->len, o->flags);
		after[k].ret = ret;
		look(msg, &after[k]);
		if (ret == 0 && o->fill) {
			__u8 *d, *e;

			bpf_msg_pull_data(msg, o->start, o->start + o->len, 0);
			d = msg->data;
			e = msg->data_end;
			for (j = 0; j < 64; j++) {
				if (d + j + 1 > e)
					break;
				d[j] = o->fill + j;
			}
			d = msg->data;
			if (d + 1 <= (__u8 *)msg->data_end)
				after[k].first = *d;
		}
	}
	switch (verdict) {
	case DROP:
		return SK_DROP;
	case REDIRECT:
		return bpf_msg_redirect_map(msg, &socks, arg, BPF_F_INGRESS);
	case APPLY:
		bpf_msg_apply_bytes(msg, arg);
		return SK_PASS;
	}
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
