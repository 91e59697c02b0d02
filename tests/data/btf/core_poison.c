// SPDX-License-Identifier: GPL-2.0
/* CO-RE relocations that cannot all be satisfied, and instruction forms the
 * verifier would not accept on this program type (stores to a kernel
 * struct): libbpf still relocates or poisons each one, which is what the
 * differential test compares.  Build: see Makefile. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct___p {
	int pid;
	int no_such_field;
	__u64 flags;            /* kernel: unsigned int -> load size shrinks */
	__s64 tgid;             /* kernel: int (signed) -> cannot shrink: poison */
} __attribute__((preserve_access_index));

enum bpf_map_type___p {
	BPF_MAP_TYPE_NOT_IN_KERNEL___p = 7,
};

__u64 results[16];

SEC("tp_btf/sched_switch")
int core_poison(__u64 *ctx)
{
	struct task_struct___p *t = (void *)ctx[1];

	if (bpf_core_field_exists(t->no_such_field))       /* 0: dead branch */
		results[0] = BPF_CORE_READ(t, no_such_field);
	results[1] = t->flags;                             /* LDX size adjusted */
	results[2] = t->tgid;                              /* LDX poisoned (memsz) */
	results[3] = t->no_such_field;                     /* LDX poisoned */
	results[4] = bpf_core_enum_value(enum bpf_map_type___p, BPF_MAP_TYPE_NOT_IN_KERNEL___p);
	t->pid = 7;                                        /* ST offset relocated */
	t->flags = results[5];                             /* STX offset + size relocated */
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
