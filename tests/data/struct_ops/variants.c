/* struct_ops programs the kernel accepts and refuses: each member checked against its
 * kernel struct (tcp_congestion_ops, bpf_dummy_ops) */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

static __always_inline struct tcp_sock *tcp_sk(const struct sock *sk) { return (void *)sk; }

/* writes the kernel allows: the congestion-control fields, icsk_ca_priv, sk_pacing_rate */
SEC("struct_ops") void BPF_PROG(ok_writes, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = tcp_sk(sk);
	__u64 *priv = (void *)((struct inet_connection_sock *)sk)->icsk_ca_priv;

	tp->snd_cwnd = acked;
	tp->snd_ssthresh = ack;
	tp->snd_cwnd_cnt = 0;
	priv[3] = ack;
	sk->sk_pacing_rate = 1000;
}
/* rcv_nxt is not a congestion-control field */
SEC("struct_ops") void BPF_PROG(bad_write_field, struct sock *sk, __u8 state)
{
	tcp_sk(sk)->rcv_nxt = 1;
}
/* 8 bytes at snd_cwnd, a u32 */
SEC("struct_ops") void BPF_PROG(bad_write_wide, struct sock *sk, enum tcp_ca_event ev)
{
	*(volatile __u64 *)&tcp_sk(sk)->snd_cwnd = 1;
}
/* 4 bytes at ecn_flags, a u8 */
SEC("struct_ops") void BPF_PROG(bad_write_beyond, struct sock *sk, __u32 ev)
{
	*(volatile __u32 *)&tcp_sk(sk)->ecn_flags = 1;
}
SEC("struct_ops") void BPF_PROG(ack_pending_write, struct sock *sk, const struct ack_sample *s)
{
	((struct inet_connection_sock *)sk)->icsk_ack.pending = 1;
}
/* a struct reached through a pointer member is read-only */
SEC("struct_ops") void BPF_PROG(bad_write_nested, struct sock *sk)
{
	struct sock *lsk = (void *)tcp_sk(sk)->inet_conn.icsk_inet.sk.sk_socket;

	if (lsk)
		lsk->sk_mark = 1;
}
/* the context is read-only */
SEC("struct_ops") __attribute__((naked)) void bad_ctx_write(void)
{
	asm volatile("r2 = 0; *(u64 *)(r1 + 0) = r2; exit;" ::: "memory");
}
/* cong_avoid has 3 arguments */
SEC("struct_ops") __attribute__((naked)) void bad_ctx_arg(void)
{
	asm volatile("r2 = *(u64 *)(r1 + 24); exit;" ::: "memory");
}
/* returning the socket pointer: allowed to the privileged (allow_ptr_leaks) */
SEC("struct_ops") __attribute__((naked)) __u32 ok_ret_ptr(void)
{
	asm volatile("r0 = *(u64 *)(r1 + 0); exit;" ::: "memory");
}
/* a u32 member must set R0 */
SEC("struct_ops") __attribute__((naked)) __u32 bad_ret_uninit(void)
{
	asm volatile("exit;" ::: "memory");
}
/* a void member need not */
SEC("struct_ops") __attribute__((naked)) void ok_void_uninit(void)
{
	asm volatile("exit;" ::: "memory");
}
/* get_info has no BPF implementation in Linux */
SEC("struct_ops") __u64 BPF_PROG(bad_get_info, struct sock *sk, __u32 ext, int *attr, void *info)
{
	return 0;
}
SEC("struct_ops") __u32 BPF_PROG(ok_read_walk, struct sock *sk)
{
	return tcp_sk(sk)->srtt_us >> 3;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops cc_a = {
	.cong_avoid = (void *)ok_writes, .set_state = (void *)bad_write_field,
	.cwnd_event = (void *)bad_write_wide, .pkts_acked = (void *)ack_pending_write,
	.init = (void *)bad_write_nested, .undo_cwnd = (void *)ok_ret_ptr,
	.ssthresh = (void *)bad_ret_uninit, .release = (void *)ok_void_uninit,
	.min_tso_segs = (void *)ok_read_walk, .name = "ebee_v_a",
};
SEC(".struct_ops.link")
struct tcp_congestion_ops cc_b = {
	.cong_avoid = (void *)bad_ctx_arg, .set_state = (void *)bad_ctx_write,
	.in_ack_event = (void *)bad_write_beyond,
	.get_info = (void *)bad_get_info, .name = "ebee_v_b",
};

/* bpf_dummy_ops: test_1's state may be NULL; only bpf_dummy_ops_state is writable */
SEC("struct_ops") int BPF_PROG(dummy_null_deref, struct bpf_dummy_ops_state *st)
{
	return st->val;
}
SEC("struct_ops") int BPF_PROG(dummy_ok, struct bpf_dummy_ops_state *st)
{
	if (!st)
		return 0;
	st->val = 7;
	return st->val;
}
SEC("struct_ops") int BPF_PROG(dummy_bad_write, struct bpf_dummy_ops_state *st, int a1,
			       unsigned short a2, char a3, unsigned long a4)
{
	*(volatile __u64 *)st = a4;
	return 0;
}
/* test_2's state is not __nullable: it may be used directly */
SEC("struct_ops") int BPF_PROG(dummy_test_2_ok, struct bpf_dummy_ops_state *st, int a1,
			       unsigned short a2, char a3, unsigned long a4)
{
	st->val = a1 + a2 + a3 + (int)a4;
	return a1 * 2;
}
SEC("struct_ops.s") int BPF_PROG(dummy_sleepable_ok, struct bpf_dummy_ops_state *st)
{
	return 0;
}
SEC("struct_ops.s") int BPF_PROG(dummy_sleepable_bad, struct bpf_dummy_ops_state *st)
{
	return 0;
}
SEC(".struct_ops")
struct bpf_dummy_ops dummy_a = { .test_1 = (void *)dummy_null_deref,
	.test_2 = (void *)dummy_bad_write, .test_sleepable = (void *)dummy_sleepable_ok };
SEC(".struct_ops")
struct bpf_dummy_ops dummy_b = { .test_1 = (void *)dummy_ok, .test_2 = (void *)dummy_test_2_ok };
SEC(".struct_ops")
struct bpf_dummy_ops dummy_c = { .test_1 = (void *)dummy_sleepable_bad };
