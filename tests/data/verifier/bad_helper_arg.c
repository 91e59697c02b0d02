// SPDX-License-Identifier: GPL-2.0
/* Passes a scalar where a helper wants stack memory, and a size bigger than the buffer. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("tracepoint/syscalls/sys_enter_openat")
int bad_helper_arg(void *ctx)
{
	char comm[8];

	bpf_get_current_comm(comm, 16);		/* comm has only 8 bytes */
	return comm[0];
}

char LICENSE[] SEC("license") = "GPL";
