// SPDX-License-Identifier: GPL-2.0
/* Two tracing programs that hand user space strings through a ring buffer, in the
 * style of libbpf-tools' opensnoop and bashreadline: the file name each openat()
 * is given (a tracepoint reading a user pointer), and each line bash's readline()
 * returns (a uretprobe reading its return value). */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define TASK_COMM_LEN 16
#define MAX_STR 64

enum kind { OPEN = 1, READLINE = 2 };

struct event {
	__u32 kind;
	__u32 pid;
	__u32 uid;
	__s32 flags;
	char comm[TASK_COMM_LEN];
	char str[MAX_STR];
};

/* keeps struct event in the object's BTF, for readers that decode it */
const struct event *unused_event __attribute__((unused));

/* the record of tracepoint syscalls/sys_enter_openat (its format file) */
struct sys_enter_openat {
	__u64 common;
	__s32 syscall_nr;
	__u32 pad;
	__u64 dfd;
	const char *filename;
	__u64 flags;
	__u64 mode;
};

const volatile __u32 target_uid = (__u32)-1;	/* -1: every user */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

static __always_inline struct event *start(enum kind kind)
{
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	struct event *e;

	if (target_uid != (__u32)-1 && uid != target_uid)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->kind = kind;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = uid;
	e->flags = 0;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	return e;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int on_openat(struct sys_enter_openat *ctx)
{
	struct event *e = start(OPEN);

	if (!e)
		return 0;
	e->flags = (__s32)ctx->flags;
	bpf_probe_read_user_str(&e->str, sizeof(e->str), ctx->filename);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("uretprobe//bin/bash:readline")
int BPF_KRETPROBE(on_readline, const char *line)
{
	struct event *e;

	if (!line)
		return 0;
	e = start(READLINE);
	if (!e)
		return 0;
	bpf_probe_read_user_str(&e->str, sizeof(e->str), line);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
