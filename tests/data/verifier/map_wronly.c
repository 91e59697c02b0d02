// SPDX-License-Identifier: GPL-2.0
/* Reading a map its flags make write-only to programs (BPF_F_WRONLY_PROG). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __uint(map_flags, BPF_F_WRONLY_PROG);
         __type(key, __u32); __type(value, __u64); } wo SEC(".maps");
SEC("socket")
int map_wronly(struct __sk_buff *skb)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&wo, &k);
	return v ? *v : 0;
}
char LICENSE[] SEC("license") = "GPL";
