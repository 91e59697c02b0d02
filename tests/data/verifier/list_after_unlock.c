// SPDX-License-Identifier: GPL-2.0
/* list_push_pop writing through the pushed node after the unlock: the
 * reference stopped being valid when the lock was released. */
#include "list_common.h"

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
