// Drains a USER_RINGBUF user space fills; what the callback saw goes to `out`.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 4096);
} urb SEC(".maps");

// cfg[0]: the callback stops (returns 1) after this many samples (0: never)
// cfg[1]: the drain's flags
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} cfg SEC(".maps");

enum { SEEN, SUM_A, SUM_B, SHORT, RET, NESTED, BYTES, NOUT };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NOUT);
	__type(key, __u32);
	__type(value, __u64);
} out SEC(".maps");

static void add(__u32 k, __u64 v)
{
	__u64 *p = bpf_map_lookup_elem(&out, &k);

	if (p)
		*p += v;
}

static __u64 cfg_of(__u32 k)
{
	__u64 *p = bpf_map_lookup_elem(&cfg, &k);

	return p ? *p : 0;
}

static long sample_cb(struct bpf_dynptr *d, void *ctx)
{
	__u64 a = 0;
	const __u64 *b;
	__u32 k = SEEN;
	__u64 *seen = bpf_map_lookup_elem(&out, &k);

	if (!seen)
		return 1;
	*seen += 1;
	// a sample shorter than 8 bytes: bpf_dynptr_read answers -E2BIG
	if (bpf_dynptr_read(&a, sizeof(a), d, 0, 0))
		add(SHORT, 1);
	else
		add(SUM_A, a);
	b = bpf_dynptr_data(d, 8, sizeof(*b));
	if (b)
		add(SUM_B, *b);
	else
		add(BYTES, 1);
	return cfg_of(0) && *seen >= cfg_of(0);
}

static long nested_cb(struct bpf_dynptr *d, void *ctx)
{
	// the ring is being drained by our caller: -EBUSY
	add(NESTED, bpf_user_ringbuf_drain(&urb, sample_cb, NULL, 0));
	return 1;
}

SEC("xdp")
int drain(struct xdp_md *ctx)
{
	long ret = bpf_user_ringbuf_drain(&urb, sample_cb, NULL, cfg_of(1));
	__u32 k = RET;

	bpf_map_update_elem(&out, &k, &ret, BPF_ANY);
	return XDP_PASS;
}

SEC("xdp")
int drain_nested(struct xdp_md *ctx)
{
	long ret = bpf_user_ringbuf_drain(&urb, nested_cb, NULL, 0);
	__u32 k = RET;

	bpf_map_update_elem(&out, &k, &ret, BPF_ANY);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
