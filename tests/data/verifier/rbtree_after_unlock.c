// SPDX-License-Identifier: GPL-2.0
/* Using the node bpf_rbtree_add left in the program's hands after the unlock:
 * the reference stopped being valid when the lock was released. */
#include "rb_common.h"

SEC("tc")
int rbtree_after_unlock(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new_impl(bpf_core_type_id_local(struct node_data), NULL);

	if (!n)
		return 1;
	bpf_spin_lock(&glock);
	bpf_rbtree_add_impl(&groot, &n->node, less, NULL, 0);
	bpf_spin_unlock(&glock);
	return n->data;
}

char LICENSE[] SEC("license") = "GPL";
