// SPDX-License-Identifier: GPL-2.0
/* A bpf_rbtree of allocated objects in a global section, guarded by a global
 * bpf_spin_lock: add one node (ordered by the `less` callback), take the first
 * node, remove it, read and free it. */
#include "rb_common.h"

SEC("tc")
int rbtree_add_remove(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new_impl(bpf_core_type_id_local(struct node_data), NULL);
	struct bpf_rb_node *res;
	long ret;

	if (!n)
		return 1;
	n->key = 5;
	n->data = 42;
	bpf_spin_lock(&glock);
	bpf_rbtree_add_impl(&groot, &n->node, less, NULL, 0);
	res = bpf_rbtree_first(&groot);
	if (!res) {
		bpf_spin_unlock(&glock);
		return 2;
	}
	res = bpf_rbtree_remove(&groot, res);
	bpf_spin_unlock(&glock);
	if (!res)
		return 3;
	n = container_of(res, struct node_data, node);
	ret = n->data;
	bpf_obj_drop_impl(n, NULL);
	return ret;
}

char LICENSE[] SEC("license") = "GPL";
