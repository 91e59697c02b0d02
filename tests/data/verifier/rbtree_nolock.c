// SPDX-License-Identifier: GPL-2.0
/* rbtree_add_remove without the lock: adding to the tree needs its
 * bpf_spin_lock held. */
#include "rb_common.h"

SEC("tc")
int rbtree_nolock(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new_impl(bpf_core_type_id_local(struct node_data), NULL);

	if (!n)
		return 1;
	n->key = 5;
	bpf_rbtree_add_impl(&groot, &n->node, less, NULL, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
