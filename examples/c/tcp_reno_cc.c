// SPDX-License-Identifier: GPL-2.0
/* A TCP congestion control in BPF: NewReno (net/ipv4/tcp_cong.c) as a
 * struct_ops tcp_congestion_ops, with counters of every callback the stack
 * makes, so a test can tell from user space that (and how) TCP called it.
 *
 *   slow start:  cwnd += acked, up to ssthresh          (tcp_slow_start)
 *   avoidance:   cwnd += 1 per cwnd acked segments      (tcp_cong_avoid_ai)
 *   on loss:     ssthresh = max(cwnd / 2, 2)            (tcp_reno_ssthresh)
 *   undo:        cwnd = max(cwnd, prior_cwnd)           (tcp_reno_undo_cwnd)
 *
 * Register it (bpftool struct_ops register tcp_reno_cc.o, or ebee's
 * KernelObject.attach_struct_ops) and "ebee_reno" appears in
 * /proc/sys/net/ipv4/tcp_available_congestion_control; sockets choose it
 * with setsockopt(TCP_CONGESTION, "ebee_reno").
 *
 * Build: see Makefile (needs build/vmlinux.h from the running kernel).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define TCP_CA_Loss 4

/* what the stack did to us: one counter per callback, plus what we saw */
struct cc_stats {
	__u64 init;
	__u64 release;
	__u64 ssthresh;
	__u64 cong_avoid;
	__u64 set_state;
	__u64 cwnd_event;
	__u64 pkts_acked;
	__u64 undo_cwnd;
	__u64 loss_state;	/* set_state(TCP_CA_Loss): an RTO */
	__u64 acked_segs;	/* sum of cong_avoid's acked */
	__u32 max_cwnd;
	__u32 last_rtt_us;	/* from pkts_acked's ack_sample */
};

struct cc_stats stats = {};

static __always_inline struct tcp_sock *tcp_sk(const struct sock *sk)
{
	return (struct tcp_sock *)sk;
}

static __always_inline __u32 min_u32(__u32 a, __u32 b) { return a < b ? a : b; }
static __always_inline __u32 max_u32(__u32 a, __u32 b) { return a > b ? a : b; }

SEC("struct_ops")
void BPF_PROG(ebee_reno_init, struct sock *sk)
{
	__sync_fetch_and_add(&stats.init, 1);
}

SEC("struct_ops")
void BPF_PROG(ebee_reno_release, struct sock *sk)
{
	__sync_fetch_and_add(&stats.release, 1);
}

SEC("struct_ops")
__u32 BPF_PROG(ebee_reno_ssthresh, struct sock *sk)
{
	const struct tcp_sock *tp = tcp_sk(sk);

	__sync_fetch_and_add(&stats.ssthresh, 1);
	return max_u32(tp->snd_cwnd >> 1U, 2U);
}

SEC("struct_ops")
void BPF_PROG(ebee_reno_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = tcp_sk(sk);
	__u32 cwnd, w;

	__sync_fetch_and_add(&stats.cong_avoid, 1);
	__sync_fetch_and_add(&stats.acked_segs, acked);

	if (tp->snd_cwnd < tp->snd_ssthresh) {
		/* tcp_slow_start: grow by what was acked, but not past ssthresh */
		cwnd = min_u32(tp->snd_cwnd + acked, tp->snd_ssthresh);
		acked -= cwnd - tp->snd_cwnd;
		tp->snd_cwnd = min_u32(cwnd, tp->snd_cwnd_clamp);
		if (!acked)
			goto out;
	}
	/* tcp_cong_avoid_ai(tp, cwnd, acked): one segment per window acked */
	w = tp->snd_cwnd;
	if (tp->snd_cwnd_cnt >= w) {
		tp->snd_cwnd_cnt = 0;
		tp->snd_cwnd++;
	}
	tp->snd_cwnd_cnt += acked;
	if (w && tp->snd_cwnd_cnt >= w) {
		__u32 delta = tp->snd_cwnd_cnt / w;

		tp->snd_cwnd_cnt -= delta * w;
		tp->snd_cwnd += delta;
	}
	tp->snd_cwnd = min_u32(tp->snd_cwnd, tp->snd_cwnd_clamp);
out:
	if (tp->snd_cwnd > stats.max_cwnd)
		stats.max_cwnd = tp->snd_cwnd;
}

SEC("struct_ops")
void BPF_PROG(ebee_reno_set_state, struct sock *sk, __u8 new_state)
{
	__sync_fetch_and_add(&stats.set_state, 1);
	if (new_state == TCP_CA_Loss)
		__sync_fetch_and_add(&stats.loss_state, 1);
}

SEC("struct_ops")
void BPF_PROG(ebee_reno_cwnd_event, struct sock *sk, enum tcp_ca_event ev)
{
	__sync_fetch_and_add(&stats.cwnd_event, 1);
}

SEC("struct_ops")
void BPF_PROG(ebee_reno_pkts_acked, struct sock *sk, const struct ack_sample *sample)
{
	__sync_fetch_and_add(&stats.pkts_acked, 1);
	if (sample->rtt_us > 0)
		stats.last_rtt_us = sample->rtt_us;
}

SEC("struct_ops")
__u32 BPF_PROG(ebee_reno_undo_cwnd, struct sock *sk)
{
	const struct tcp_sock *tp = tcp_sk(sk);

	__sync_fetch_and_add(&stats.undo_cwnd, 1);
	return max_u32(tp->snd_cwnd, tp->prior_cwnd);
}

SEC(".struct_ops.link")
struct tcp_congestion_ops ebee_reno = {
	.init		= (void *)ebee_reno_init,
	.release	= (void *)ebee_reno_release,
	.ssthresh	= (void *)ebee_reno_ssthresh,
	.cong_avoid	= (void *)ebee_reno_cong_avoid,
	.set_state	= (void *)ebee_reno_set_state,
	.cwnd_event	= (void *)ebee_reno_cwnd_event,
	.pkts_acked	= (void *)ebee_reno_pkts_acked,
	.undo_cwnd	= (void *)ebee_reno_undo_cwnd,
	.name		= "ebee_reno",
};
