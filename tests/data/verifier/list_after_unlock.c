// SPDX-License-Identifier: GPL-2.0
/* list_push_pop writing through the pushed node after the unlock: the
 * reference stopped being valid when the lock was released. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* as Linux 6.4+'s uapi defines them (the installed headers may predate them) */
struct bpf_list_head { __u64 __opaque[2]; } __attribute__((aligned(8)));
struct bpf_list_node { __u64 __opaque[3]; } __attribute__((aligned(8)));

#define __contains(name, node) __attribute__((btf_decl_tag("contains:" #name ":" #node)))
#define private(name) SEC(".data." #name) __hidden __attribute__((aligned(8)))

extern void *bpf_obj_new_impl(__u64 local_type_id, void *meta) __ksym;
extern void bpf_obj_drop_impl(void *kptr, void *meta) __ksym;
extern int bpf_list_push_back_impl(struct bpf_list_head *head, struct bpf_list_node *node,
				   void *meta, __u64 off) __ksym;
extern struct bpf_list_node *bpf_list_pop_front(struct bpf_list_head *head) __ksym;

struct elem {
	int v;
	struct bpf_list_node node;
};

private(A) struct bpf_spin_lock glock;
private(A) struct bpf_list_head ghead __contains(elem, node);

SEC("tc")
int list_after_unlock(struct __sk_buff *skb)
{
	struct elem *e = bpf_obj_new_impl(bpf_core_type_id_local(struct elem), NULL);
	struct bpf_list_node *n;
	int v;

	if (!e)
		return 1;
	e->v = 42;
	bpf_spin_lock(&glock);
	bpf_list_push_back_impl(&ghead, &e->node, NULL, 0);
	n = 0;
	bpf_spin_unlock(&glock);
	e->v = 7;
	if (!n)
		return 2;
	e = container_of(n, struct elem, node);
	v = e->v;
	bpf_obj_drop_impl(e, NULL);
	return v;
}

char LICENSE[] SEC("license") = "GPL";
