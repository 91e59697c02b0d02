// SPDX-License-Identifier: GPL-2.0
/* bench/ringbuf.py's producer: each run of the XDP program writes one 16-byte record
 * to the ring buffer; BPF_PROG_TEST_RUN with repeat=N writes N. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);		/* resized by the bench */
} rb SEC(".maps");

__u64 seq;

SEC("xdp")
int produce(struct xdp_md *ctx)
{
	__u64 rec[2] = { __sync_fetch_and_add(&seq, 1), 0 };

	bpf_ringbuf_output(&rb, rec, sizeof(rec), BPF_RB_NO_WAKEUP);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
