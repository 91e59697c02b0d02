// SPDX-License-Identifier: GPL-2.0
/* A TCP/IP bypass for local connections, in the style of istio-tcpip-bypass:
 *
 * - sockops (attached to a cgroup) sees each connection of the cgroup's tasks
 *   become established and records the socket in a SOCKHASH under its 4-tuple;
 * - sk_msg (attached to the SOCKHASH) runs on every send of such a socket and
 *   redirects the message to the receive queue of the socket whose 4-tuple is
 *   the mirror image -- the peer, when both ends are local -- so the bytes
 *   skip the TCP/IP stack.  Messages with no local peer pass.
 *
 * Counters in .bss say what happened; `calls` counts sockops callbacks by op.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2

struct sock_key {
	__u32 sip;		/* network order */
	__u32 dip;
	__u32 sport;		/* host order */
	__u32 dport;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 1024);
	__type(key, struct sock_key);
	__type(value, __u64);
} sock_ops_map SEC(".maps");

struct stats {
	__u64 active_established;
	__u64 passive_established;
	__u64 inserted;
	__u64 insert_failed;
	__u64 state_changes;
	__u64 msgs;
	__u64 msg_bytes;
	__u64 redirected;
	__u64 redirected_bytes;
	__u64 passed;
	__u64 first_msg_linear;	/* data_end - data of the first message */
	__s64 last_insert_err;
};

struct stats stats;
__u32 calls[32];

SEC("sockops")
int bypass_sockops(struct bpf_sock_ops *skops)
{
	struct sock_key key = {};
	__u32 op = skops->op;
	long err;

	if (op < 32)
		__sync_fetch_and_add(&calls[op], 1);
	if (op == BPF_SOCK_OPS_STATE_CB) {
		__sync_fetch_and_add(&stats.state_changes, 1);
		return 1;
	}
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		__sync_fetch_and_add(&stats.active_established, 1);
	else
		__sync_fetch_and_add(&stats.passive_established, 1);
	/* see the connection's state changes from now on (close) */
	bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
	if (skops->family != AF_INET)
		return 1;
	key.sip = skops->local_ip4;
	key.dip = skops->remote_ip4;
	key.sport = skops->local_port;
	key.dport = bpf_ntohl(skops->remote_port);	/* be16 in the upper half */
	err = bpf_sock_hash_update(skops, &sock_ops_map, &key, BPF_NOEXIST);
	if (err) {
		__sync_fetch_and_add(&stats.insert_failed, 1);
		stats.last_insert_err = err;
	} else {
		__sync_fetch_and_add(&stats.inserted, 1);
	}
	return 1;
}

SEC("sk_msg")
int bypass_sk_msg(struct sk_msg_md *msg)
{
	struct sock_key peer = {};
	long verdict;

	if (__sync_fetch_and_add(&stats.msgs, 1) == 0)
		stats.first_msg_linear = (long)msg->data_end - (long)msg->data;
	__sync_fetch_and_add(&stats.msg_bytes, msg->size);
	if (msg->family != AF_INET)
		return SK_PASS;
	/* the peer's key: its local end is our remote end */
	peer.sip = msg->remote_ip4;
	peer.dip = msg->local_ip4;
	peer.sport = bpf_ntohl(msg->remote_port);
	peer.dport = msg->local_port;
	verdict = bpf_msg_redirect_hash(msg, &sock_ops_map, &peer, BPF_F_INGRESS);
	if (verdict == SK_PASS) {
		__sync_fetch_and_add(&stats.redirected, 1);
		__sync_fetch_and_add(&stats.redirected_bytes, msg->size);
	} else {
		__sync_fetch_and_add(&stats.passed, 1);
	}
	/* SK_DROP from the helper means "no peer": let the message go the usual way */
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
