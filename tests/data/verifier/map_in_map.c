// SPDX-License-Identifier: GPL-2.0
/* A lookup through an array of maps: the inner map is known to the verifier
 * only by its template (printed without a name). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct inner { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
               __type(key, __u32); __type(value, __u32); } inner_a SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = { .values = { [1] = &inner_a } };
SEC("xdp")
int map_in_map(struct xdp_md *ctx)
{
	__u32 k = 1, z = 0, *v;
	void *m = bpf_map_lookup_elem(&outer, &k);
	if (!m)
		return 10;
	v = bpf_map_lookup_elem(m, &z);
	if (!v)
		return 11;
	return *v;
}
char LICENSE[] SEC("license") = "GPL";
