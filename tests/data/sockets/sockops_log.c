// SPDX-License-Identifier: GPL-2.0
/* sockops for tests/test_sockets.py: logs every callback in order (op, args, state,
 * is_fullsock, ports, cb flags) and what bpf_sock_map_update returns where it is
 * called.  (bpf_map_update_elem on a SOCKMAP is refused to sockops by the verifier.) */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} socks SEC(".maps");

struct ev {
	__u32 op;
	__u32 args0;
	__u32 args1;
	__u32 state;
	__u32 is_fullsock;
	__u32 local_port;
	__u32 remote_port;
	__u32 cb_flags;
	__s32 sock_map_ret;
	__u32 snd_cwnd;
	__u32 has_sk;
};

__u32 nevents, server_port;
struct ev events[48];

SEC("sockops")
int sockops_log(struct bpf_sock_ops *skops)
{
	__u32 n = nevents, key;
	struct bpf_sock *sk;
	struct ev *e;

	if (skops->local_port != server_port &&
	    bpf_ntohl(skops->remote_port) != server_port)
		return 1;
	if (n >= 48)
		return 1;
	nevents = n + 1;
	e = &events[n];
	e->op = skops->op;
	e->args0 = skops->args[0];
	e->args1 = skops->args[1];
	e->state = skops->state;
	e->is_fullsock = skops->is_fullsock;
	e->local_port = skops->local_port;
	e->remote_port = bpf_ntohl(skops->remote_port);
	e->snd_cwnd = skops->snd_cwnd;
	sk = skops->sk;
	e->has_sk = sk != 0;
	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ||
	    skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB ||
	    skops->op == BPF_SOCK_OPS_TCP_LISTEN_CB) {
		key = skops->op & 7;
		e->sock_map_ret = bpf_sock_map_update(skops, &socks, &key, BPF_ANY);
		bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
	} else if (skops->op == BPF_SOCK_OPS_TIMEOUT_INIT) {
		key = 7;
		e->sock_map_ret = bpf_sock_map_update(skops, &socks, &key, BPF_ANY);
	}
	e->cb_flags = skops->bpf_sock_ops_cb_flags;
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
