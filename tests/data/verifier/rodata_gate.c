// SPDX-License-Identifier: GPL-2.0
/* Safe or not depending on .rodata: with `unsafe` left 0 the unchecked
 * dereference is dead code to the verifier (frozen .rodata reads as a
 * constant); set to 1 before load, the kernel rejects the program. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1);
         __type(key, __u32); __type(value, __u64); } arr SEC(".maps");
const volatile int unsafe = 0;
SEC("socket")
int rodata_gate(struct __sk_buff *skb)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&arr, &k);
	if (unsafe)
		return *v;	/* no null check: only safe while unsafe is 0 */
	return v ? 1 : 2;
}
char LICENSE[] SEC("license") = "GPL";
