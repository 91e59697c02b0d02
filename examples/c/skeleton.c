// SPDX-License-Identifier: GPL-2.0
/* A libbpf-skeleton-style object: several programs attached from their SEC(), one
 * whose target does not exist, one off by default (SEC("?...")), a .rodata knob
 * set before load, and counters in .bss. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 target_tgid = 0;	/* 0: every process */
__u64 hits[4];				/* [0] openat tp, [1] raw_tp, [2] kprobe, [3] optional */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} per_tgid SEC(".maps");

static __always_inline int mine(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	return !target_tgid || tgid == target_tgid;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int on_openat(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 one = 1, *v;

	if (!mine())
		return 0;
	__sync_fetch_and_add(&hits[0], 1);
	v = bpf_map_lookup_elem(&per_tgid, &tgid);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&per_tgid, &tgid, &one, BPF_NOEXIST);
	return 0;
}

SEC("raw_tp/sys_enter")
int on_sys_enter(void *ctx)
{
	if (mine())
		__sync_fetch_and_add(&hits[1], 1);
	return 0;
}

SEC("kprobe/ebee_no_such_kernel_function")
int on_missing(void *ctx)
{
	__sync_fetch_and_add(&hits[2], 1);
	return 0;
}

SEC("?tracepoint/syscalls/sys_enter_close")
int on_close(void *ctx)
{
	__sync_fetch_and_add(&hits[3], 1);
	return 0;
}

SEC("xdp")
int pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
