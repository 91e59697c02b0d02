"""The verifier's rules for the socket and cgroup-storage maps, against the running kernel.

Programs calling the helpers these maps exist for -- ``bpf_get_local_storage`` on
CGROUP_STORAGE / PERCPU_CGROUP_STORAGE, ``bpf_map_update_elem`` of a socket into a
SOCKMAP / SOCKHASH (a socket is the value: ``resolve_map_arg_type``), the
``bpf_sk_select_reuseport`` / ``bpf_sock_hash_update`` / ``bpf_msg_redirect_*``
family -- and the socket helpers around them (``bpf_sk_fullsock``,
``bpf_tcp_sock``, ``bpf_get_listener_sock``, ``bpf_skc_to_*``, SK_STORAGE's
``bpf_sk_storage_get`` with the networking and cgroup/sock prototypes) are
verified by ebee and loaded into the kernel from the same object; verdicts and
final error lines must be the kernel's.
"""
from __future__ import annotations

import pytest

from test_loader_parity import _clang
from verifier_kernel import ebee_object, kernel_object

pytestmark = pytest.mark.usefixtures("kernel")

SRC = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct { __uint(type, BPF_MAP_TYPE_CGROUP_STORAGE); __type(key, struct bpf_cgroup_storage_key);
         __type(value, __u64[4]); } cgs SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE);
         __type(key, struct bpf_cgroup_storage_key); __type(value, __u64); } pcgs SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, int);
         __type(value, __u64); } arr SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_SOCKMAP); __uint(max_entries, 1); __type(key, int);
         __type(value, int); } sockmap SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_SOCKHASH); __uint(max_entries, 1); __type(key, int);
         __type(value, int); } sockhash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_SK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, int); __type(value, __u64); } sks SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY); __uint(max_entries, 1);
         __type(key, int); __type(value, int); } reuse SEC(".maps");

int zero = 0;
volatile long flags = 0;

SEC("cgroup_skb/ingress") int storage_ok(struct __sk_buff *skb)
{
    __u64 *v = bpf_get_local_storage(&cgs, 0);
    v[3] += skb->len;           /* never NULL: no check */
    return 1;
}
SEC("cgroup_skb/ingress") int percpu_storage_ok(struct __sk_buff *skb)
{
    __u64 *v = bpf_get_local_storage(&pcgs, 0);
    *v += 1;
    return 1;
}
SEC("cgroup_skb/ingress") int storage_past_value(struct __sk_buff *skb)
{
    __u64 *v = bpf_get_local_storage(&cgs, 0);
    return v[4] & 1;
}
SEC("cgroup_skb/ingress") int percpu_storage_past_value(struct __sk_buff *skb)
{
    __u32 *v = bpf_get_local_storage(&pcgs, 0);
    return v[2] & 1;
}
SEC("cgroup_skb/ingress") int storage_flags(struct __sk_buff *skb)
{
    __u64 *v = bpf_get_local_storage(&cgs, flags);
    return *v & 1;
}
SEC("cgroup_skb/ingress") int storage_of_array(struct __sk_buff *skb)
{
    __u64 *v = bpf_get_local_storage(&arr, 0);
    return *v & 1;
}
SEC("cgroup_skb/ingress") int array_of_storage(struct __sk_buff *skb)
{
    __u64 *v = bpf_map_lookup_elem(&cgs, &zero);
    return v ? 1 : 0;
}

static __always_inline void update(void *sk)
{
    if (sk) {
        bpf_map_update_elem(&sockmap, &zero, sk, BPF_ANY);
        bpf_map_update_elem(&sockhash, &zero, sk, BPF_ANY);
    }
}
SEC("tc") int tc_update(struct __sk_buff *skb) { update(skb->sk); return 0; }
SEC("socket") int socket_update(struct __sk_buff *skb) { update(skb->sk); return 0; }
SEC("sk_reuseport") int reuseport_update(struct sk_reuseport_md *md) { update(md->sk); return 0; }
SEC("sk_lookup") int sk_lookup_update(struct bpf_sk_lookup *ctx) { update(ctx->sk); return 0; }
SEC("sockops") int sockops_update(struct bpf_sock_ops *ops) { update(ops->sk); return 0; }
SEC("sockops") int sockops_delete(struct bpf_sock_ops *ops)
{
    return bpf_map_delete_elem(&sockmap, &zero);
}
SEC("sockops") int sockops_hash_update(struct bpf_sock_ops *ops)
{
    return bpf_sock_hash_update(ops, &sockhash, &zero, BPF_ANY);
}
SEC("sockops") int sockops_map_update(struct bpf_sock_ops *ops)
{
    return bpf_sock_map_update(ops, &sockmap, &zero, BPF_ANY);
}
SEC("sockops") int sockops_map_update_hash(struct bpf_sock_ops *ops)
{
    return bpf_sock_map_update(ops, &sockhash, &zero, BPF_ANY);
}
SEC("tc") int tc_update_scalar(struct __sk_buff *skb)
{
    __u64 v = 1;
    return bpf_map_update_elem(&sockmap, &zero, &v, BPF_ANY);
}
SEC("sk_reuseport") int select_sockmap(struct sk_reuseport_md *md)
{
    return bpf_sk_select_reuseport(md, &sockmap, &zero, 0) == 0;
}
SEC("sk_reuseport") int select_sockhash(struct sk_reuseport_md *md)
{
    return bpf_sk_select_reuseport(md, &sockhash, &zero, 0) == 0;
}
SEC("sk_reuseport") int select_reuseport_array(struct sk_reuseport_md *md)
{
    return bpf_sk_select_reuseport(md, &reuse, &zero, 0) == 0;
}
SEC("sk_reuseport") int select_array(struct sk_reuseport_md *md)
{
    return bpf_sk_select_reuseport(md, &arr, &zero, 0) == 0;
}
SEC("sk_msg") int msg_redirect(struct sk_msg_md *msg)
{
    return bpf_msg_redirect_map(msg, &sockmap, 0, 0) + bpf_msg_redirect_hash(msg, &sockhash, &zero, 0);
}
SEC("sk_skb/stream_verdict") int skb_redirect(struct __sk_buff *skb)
{
    return bpf_sk_redirect_map(skb, &sockmap, 0, 0) + bpf_sk_redirect_hash(skb, &sockhash, &zero, 0);
}
SEC("sk_skb/stream_verdict") int skb_redirect_wrong_map(struct __sk_buff *skb)
{
    return bpf_sk_redirect_map(skb, &sockhash, 0, 0);
}
SEC("cgroup_skb/egress") int fullsock_ok(struct __sk_buff *skb)
{
    struct bpf_sock *sk = skb->sk, *full;
    struct bpf_tcp_sock *tp;
    if (!sk)
        return 1;
    full = bpf_sk_fullsock(sk);
    if (!full)
        return 1;
    if (full->type != 1)
        return 1;
    tp = bpf_tcp_sock(full);
    if (!tp)
        return 1;
    return tp->snd_cwnd & 1;
}
SEC("cgroup_skb/egress") int dst_port_bytes(struct __sk_buff *skb)
{
    struct bpf_sock *sk = skb->sk;
    if (!sk)
        return 1;
    sk = bpf_sk_fullsock(sk);
    if (!sk)
        return 1;
    return (((volatile __u8 *)&sk->dst_port)[0] + ((volatile __u8 *)&sk->dst_port)[1]) & 1;
}
SEC("cgroup_skb/egress") int dst_port_padding(struct __sk_buff *skb)
{
    struct bpf_sock *sk = skb->sk;
    if (!sk)
        return 1;
    sk = bpf_sk_fullsock(sk);
    if (!sk)
        return 1;
    return ((volatile __u16 *)&sk->dst_port)[1] & 1;
}
SEC("cgroup_skb/egress") int fullsock_no_null_check(struct __sk_buff *skb)
{
    struct bpf_sock *sk = skb->sk;
    if (!sk)
        return 1;
    return bpf_sk_fullsock(sk)->type & 1;
}
SEC("cgroup_skb/egress") int fullsock_of_maybe_null(struct __sk_buff *skb)
{
    struct bpf_sock *full = bpf_sk_fullsock(skb->sk);
    return full ? full->type & 1 : 1;
}
SEC("cgroup_skb/egress") int tcp_sock_past_end(struct __sk_buff *skb)
{
    struct bpf_sock *sk = skb->sk;
    struct bpf_tcp_sock *tp;
    if (!sk)
        return 1;
    tp = bpf_tcp_sock(sk);
    return tp ? *(__u64 *)((char *)tp + 200) & 1 : 1;
}
SEC("tc") int listener_release(struct __sk_buff *skb)
{
    struct bpf_sock *sk = skb->sk, *l;
    if (!sk)
        return 0;
    l = bpf_get_listener_sock(sk);
    if (l)
        bpf_sk_release(l);     /* not a reference */
    return 0;
}
SEC("tc") int skc_to_tcp6(struct __sk_buff *skb)
{
    struct bpf_sock *sk = skb->sk;
    struct tcp6_sock *t;
    if (!sk)
        return 0;
    t = bpf_skc_to_tcp6_sock(sk);
    return t ? 1 : 0;
}
SEC("tc") int sk_storage_ok(struct __sk_buff *skb)
{
    struct bpf_sock *sk = skb->sk;
    __u64 *v;
    if (!sk)
        return 0;
    sk = bpf_sk_fullsock(sk);
    if (!sk)
        return 0;
    v = bpf_sk_storage_get(&sks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
    return v ? *v & 1 : 0;
}
SEC("tc") int sk_storage_null_sock(struct __sk_buff *skb)
{
    __u64 *v = bpf_sk_storage_get(&sks, 0, 0, 0);
    return v ? *v & 1 : 0;
}
SEC("cgroup/sock_create") int sk_storage_cg_sock(struct bpf_sock *ctx)
{
    __u64 *v = bpf_sk_storage_get(&sks, ctx, 0, BPF_SK_STORAGE_GET_F_CREATE);
    if (v)
        *v = 1;
    return 1;
}
char LICENSE[] SEC("license") = "GPL";
"""

PROGS = ["storage_ok", "percpu_storage_ok", "storage_past_value", "percpu_storage_past_value",
         "storage_flags", "storage_of_array", "array_of_storage", "tc_update", "socket_update",
         "reuseport_update", "sk_lookup_update", "sockops_update", "sockops_delete",
         "sockops_hash_update", "sockops_map_update", "sockops_map_update_hash",
         "tc_update_scalar", "select_sockmap", "select_sockhash", "select_reuseport_array",
         "select_array", "msg_redirect", "skb_redirect", "skb_redirect_wrong_map",
         "fullsock_ok", "dst_port_bytes", "dst_port_padding", "fullsock_no_null_check", "fullsock_of_maybe_null", "tcp_sock_past_end",
         "listener_release", "skc_to_tcp6", "sk_storage_ok", "sk_storage_null_sock",
         "sk_storage_cg_sock"]


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    path = _clang(tmp_path_factory.mktemp("maps"), SRC)
    out = {}
    with ebee_object(str(path)) as obj, kernel_object(obj) as kload:
        for name in PROGS:
            prog = obj.programs[name]
            r = prog.verify(log_level=1)
            out[name] = (kload(prog), r)
    return out


@pytest.mark.parametrize("name", PROGS)
def test_verdict_and_error_are_the_kernels(verdicts, name):
    k, r = verdicts[name]
    assert r.accepted == k.accepted, f"kernel: {k.error!r}; ebee: {r.error!r}"
    if not k.accepted:
        assert r.error == k.error


def test_both_outcomes_are_covered(verdicts):
    """The set exercises acceptance and rejection, so agreement means something."""
    kinds = {k.accepted for k, _ in verdicts.values()}
    assert kinds == {True, False}
