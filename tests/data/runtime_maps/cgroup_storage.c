// Counts packets and bytes per (cgroup, attach type) in CGROUP_STORAGE and packets
// per CPU in PERCPU_CGROUP_STORAGE; `last` gets what the storage held after the run.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct counts {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
	__type(key, struct bpf_cgroup_storage_key);
	__type(value, struct counts);
} cg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE);
	__type(key, struct bpf_cgroup_storage_key);
	__type(value, __u64);
} pcg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} last SEC(".maps");

static int count(struct __sk_buff *skb)
{
	struct counts *c = bpf_get_local_storage(&cg, 0);
	__u64 *p = bpf_get_local_storage(&pcg, 0);
	__u32 k;

	__sync_fetch_and_add(&c->packets, 1);
	__sync_fetch_and_add(&c->bytes, skb->len);
	*p += 1;
	k = 0;
	bpf_map_update_elem(&last, &k, &c->packets, BPF_ANY);
	k = 1;
	bpf_map_update_elem(&last, &k, &c->bytes, BPF_ANY);
	k = 2;
	bpf_map_update_elem(&last, &k, p, BPF_ANY);
	return 1;
}

SEC("cgroup_skb/egress")
int count_egress(struct __sk_buff *skb)
{
	return count(skb);
}

SEC("cgroup_skb/ingress")
int count_ingress(struct __sk_buff *skb)
{
	return count(skb);
}

// keyed by the cgroup id alone: one element the cgroup's attach types share
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
	__type(key, __u64);
	__type(value, struct counts);
} shared SEC(".maps");

static int count_shared(struct __sk_buff *skb)
{
	struct counts *c = bpf_get_local_storage(&shared, 0);

	__sync_fetch_and_add(&c->packets, 1);
	__sync_fetch_and_add(&c->bytes, skb->len);
	return 1;
}

SEC("cgroup_skb/egress")
int shared_egress(struct __sk_buff *skb)
{
	return count_shared(skb);
}

SEC("cgroup_skb/ingress")
int shared_ingress(struct __sk_buff *skb)
{
	return count_shared(skb);
}

char LICENSE[] SEC("license") = "GPL";
