// Counts every packet three ways: a per-CPU array slot, a per-CPU hash value
// and one shared counter updated atomically.  With every thread on its own
// virtual CPU the per-CPU sums and the atomic total must all equal the packet
// count (tests/test_safety_percpu.py).  The maps are pinned by name, so a
// test (or `ebee map dump`) can read them after `ebee run`.
// Built (the .o is committed): clang-19 -O2 -g -target bpf -Wall -Werror \
//   -I/usr/include/x86_64-linux-gnu -c percpu_count.c -o percpu_count.o
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pcpu_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pcpu_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} total SEC(".maps");

SEC("xdp")
int count(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 one = 1, *v;

	v = bpf_map_lookup_elem(&pcpu_array, &k);
	if (v)
		*v += 1;
	v = bpf_map_lookup_elem(&pcpu_hash, &k);
	if (v)
		*v += 1;
	else if (bpf_map_update_elem(&pcpu_hash, &k, &one, BPF_NOEXIST)) {
		/* another CPU created the element first: this CPU's slot is still 0 */
		v = bpf_map_lookup_elem(&pcpu_hash, &k);
		if (v)
			*v += 1;
	}
	v = bpf_map_lookup_elem(&total, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
