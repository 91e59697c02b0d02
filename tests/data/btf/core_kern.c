// SPDX-License-Identifier: GPL-2.0
/* CO-RE relocations that the kernel's verifier accepts: every field, type and
 * enum relocation kind, against local "flavor" types whose layout deliberately
 * differs from the kernel's, so every relocation has to move something.
 * Build: see Makefile (clang-19 -O2 -g -target bpf). */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct___t;

struct list_head___t {
	struct list_head___t *next, *prev;
} __attribute__((preserve_access_index));

struct list_head___bad {
	int next;
} __attribute__((preserve_access_index));

struct task_struct___t {
	int pid;
	int tgid;
	char comm[16];
	struct task_struct___t *real_parent;
	unsigned int sched_reset_on_fork:1;
	unsigned int sched_migrated:1;
	unsigned int flags;
	struct list_head___t children;
} __attribute__((preserve_access_index));

/* sk_buff keeps pkt_type inside anonymous structs/unions: matched by name */
struct sk_buff___t {
	unsigned int len;
	__u8 pkt_type:3;
	__u16 protocol;
} __attribute__((preserve_access_index));

enum bpf_map_type___t {
	BPF_MAP_TYPE_HASH___t = 100,
	BPF_MAP_TYPE_RINGBUF___t = 101,
	BPF_MAP_TYPE_NOT_IN_KERNEL___t = 102,
};

/* results go to global data: no map lookup the verifier would inline, so the
 * kernel's xlated program keeps clang's instruction numbering */
__u64 out[32];

SEC("kprobe/do_nanosleep")
int core_reads(struct pt_regs *ctx)
{
	struct task_struct___t *t = (void *)bpf_get_current_task();
	__u64 *r = out;

	r[0] = BPF_CORE_READ(t, pid);                         /* byte_off (ALU add) */
	r[1] = BPF_CORE_READ(t, real_parent, tgid);           /* chained */
	r[2] = bpf_core_field_size(t->comm);                  /* byte_sz */
	r[3] = bpf_core_field_exists(t->flags);               /* field_exists */
	r[4] = __builtin_preserve_field_info(t->pid, BPF_FIELD_SIGNED);                 /* signed */
	r[5] = __builtin_preserve_field_info(t->flags, BPF_FIELD_SIGNED);
	r[6] = BPF_CORE_READ_BITFIELD_PROBED(t, sched_migrated);   /* lshift/rshift */
	r[7] = bpf_core_type_exists(struct task_struct___t);
	r[8] = bpf_core_type_size(struct task_struct___t);
	r[9] = bpf_core_type_id_kernel(struct task_struct___t);
	r[10] = bpf_core_type_id_local(struct task_struct___t);
	r[11] = bpf_core_type_matches(struct list_head___t);
	r[12] = bpf_core_type_matches(struct list_head___bad);
	r[13] = bpf_core_enum_value_exists(enum bpf_map_type___t, BPF_MAP_TYPE_RINGBUF___t);
	r[14] = bpf_core_enum_value(enum bpf_map_type___t, BPF_MAP_TYPE_RINGBUF___t);
	r[15] = bpf_core_enum_value_exists(enum bpf_map_type___t, BPF_MAP_TYPE_NOT_IN_KERNEL___t);
	r[16] = bpf_core_field_size(t->comm[3]);              /* array element */
	r[17] = __builtin_preserve_field_info(t->comm[5], BPF_FIELD_BYTE_OFFSET);
	r[18] = bpf_core_field_offset(t->children.prev);
	r[19] = BPF_CORE_READ(t, comm[2]);
	r[20] = bpf_core_type_exists(struct list_head___bad);
	r[21] = bpf_core_field_size(t->real_parent);
	return 0;
}

SEC("kprobe/do_nanosleep")
int core_skb(struct pt_regs *ctx)
{
	struct sk_buff___t *skb = (void *)bpf_get_current_task(); /* any address: probe reads */
	__u64 *r = out;

	r[0] = BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
	r[1] = bpf_core_field_offset(skb->pkt_type);
	r[2] = bpf_core_field_size(skb->pkt_type);
	r[3] = BPF_CORE_READ(skb, protocol);
	r[4] = BPF_CORE_READ(skb, len);
	return 0;
}

SEC("tp_btf/sched_switch")
int core_direct(__u64 *ctx)
{
	/* direct loads through a BTF pointer: LDX offsets are relocated */
	struct task_struct___t *prev = (void *)ctx[1];
	__u64 *r = out;

	r[0] = prev->pid;
	r[1] = prev->tgid;
	r[2] = prev->flags;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
