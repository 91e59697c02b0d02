/* A tcp_congestion_ops with cong_control: a fixed window of 50 segments, reduced by
 * one eighth for every rate sample that reports losses (tests/test_tcp_cc_sim.py) */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

__u64 controls, lossy, acked;

SEC("struct_ops") __u32 BPF_PROG(fw_ssthresh, struct sock *sk)
{
	return ((struct tcp_sock *)sk)->snd_cwnd;
}
SEC("struct_ops") __u32 BPF_PROG(fw_undo, struct sock *sk)
{
	return ((struct tcp_sock *)sk)->snd_cwnd;
}
SEC("struct_ops") void BPF_PROG(fw_control, struct sock *sk, __u32 ack, int flag,
				const struct rate_sample *rs)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;

	controls++;
	acked += rs->acked_sacked;
	if (rs->losses > 0) {
		lossy++;
		tp->snd_cwnd = tp->snd_cwnd - (tp->snd_cwnd >> 3);
	} else if (tp->snd_cwnd < 50) {
		tp->snd_cwnd = 50;
	}
}
SEC(".struct_ops.link")
struct tcp_congestion_ops fixed_window = {
	.ssthresh = (void *)fw_ssthresh, .undo_cwnd = (void *)fw_undo,
	.cong_control = (void *)fw_control, .name = "ebee_fixed",
};
