// SPDX-License-Identifier: GPL-2.0
/* CO-RE: read task_struct fields whose offsets differ between kernels; the
 * loader relocates them against the running kernel's BTF. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

extern u32 LINUX_KERNEL_VERSION __kconfig;
extern bool CONFIG_BPF_JIT __kconfig __weak;

struct task_info {
	__u32 pid;
	__u32 tgid;
	__u32 ppid;
	__u32 flags;
	__u64 start_time;
	int has_loginuid;
	__u32 kernel_version;
	__u8 jit;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct task_info);
} tasks SEC(".maps");

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	struct task_info info = {};

	info.pid = BPF_CORE_READ(child, pid);
	info.tgid = BPF_CORE_READ(child, tgid);
	info.ppid = BPF_CORE_READ(child, real_parent, tgid);
	info.flags = BPF_CORE_READ(child, flags);
	info.start_time = BPF_CORE_READ(child, start_time);
	info.has_loginuid = bpf_core_field_exists(child->loginuid);
	info.kernel_version = LINUX_KERNEL_VERSION;
	info.jit = CONFIG_BPF_JIT;
	BPF_CORE_READ_STR_INTO(&info.comm, child, comm);
	bpf_map_update_elem(&tasks, &info.pid, &info, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
