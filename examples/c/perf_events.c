// SPDX-License-Identifier: GPL-2.0
/* A perf-buffer producer and a histogram, as BCC's opensnoop and its kin write
 * them: each openat() sends {pid, comm, filename} through a perf event array
 * (bpf_perf_event_output on the current CPU), and the length of each file name
 * is counted in a log2 histogram (an array of slots, BCC's bpf_log2l()). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TASK_COMM_LEN 16
#define NAME_MAX 64
#define SLOTS 32

struct event {
	__u32 pid;
	__u32 len;		/* bytes of the file name, NUL included */
	char comm[TASK_COMM_LEN];
	char filename[NAME_MAX];
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

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} name_len SEC(".maps");

/* BCC's bpf_log2l(): 1 + floor(log2(v)), and 1 for v == 0 */
static __always_inline __u32 log2l(__u32 v)
{
	__u32 r, shift;

	r = (v > 0xFFFF) << 4; v >>= r;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r + 1;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int on_openat(struct sys_enter_openat *ctx)
{
	struct event e = {};
	__u32 slot;
	__u64 *n;
	long len;

	e.pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&e.comm, sizeof(e.comm));
	len = bpf_probe_read_user_str(&e.filename, sizeof(e.filename), ctx->filename);
	if (len < 0)
		return 0;
	e.len = len;
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	slot = log2l(e.len) & (SLOTS - 1);	/* e.len < 64: slot <= 7 */
	n = bpf_map_lookup_elem(&name_len, &slot);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
