// SPDX-License-Identifier: GPL-2.0
/* Global arrays sized at load time (libbpf's bpf_map__set_value_size on .data.* and
 * .bss.* sections whose last variable is an array), and a section whose last variable
 * is not an array. Built with: clang-19 -O2 -g -target bpf -c resize_globals.c */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX 64

const volatile __u32 nr = 4;		/* elements of arr in use */

__u32 scale SEC(".data.arr") = 2;
__u64 arr[4] SEC(".data.arr") = { 1, 2, 3, 4 };

char buf[16] SEC(".bss.buf");

__u64 total;				/* .bss: its last variable is no array */
__u32 last;

SEC("xdp")
int sum(struct xdp_md *ctx)
{
	__u64 s = 0;

	for (__u32 i = 0; i < nr && i < MAX; i++)
		s += arr[i];
	total = s * scale;
	last = nr;
	buf[0] = 'x';
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
