// SPDX-License-Identifier: GPL-2.0
/* A bpf_list of allocated objects in a global section, guarded by a global
 * bpf_spin_lock: push one element, pop it back, read and free it. */
#include "list_common.h"

SEC("tc")
int list_push_pop(struct __sk_buff *skb)
{
	struct elem *e = bpf_obj_new_impl(bpf_core_type_id_local(struct elem), NULL);
	struct bpf_list_node *n;
	int v;

	if (!e)
		return 1;
	e->v = 42;
	bpf_spin_lock(&glock);
	bpf_list_push_back_impl(&ghead, &e->node, NULL, 0);
	n = bpf_list_pop_front(&ghead);
	bpf_spin_unlock(&glock);
	if (!n)
		return 2;
	e = container_of(n, struct elem, node);
	v = e->v;
	bpf_obj_drop_impl(e, NULL);
	return v;
}

char LICENSE[] SEC("license") = "GPL";
