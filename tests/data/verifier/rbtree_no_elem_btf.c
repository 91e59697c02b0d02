// SPDX-License-Identifier: GPL-2.0
/* A tree whose element type never reaches the object's BTF (nothing here
 * needs struct node_data's layout): the kernel cannot resolve the root's
 * __contains tag and refuses every special field of the section, the
 * bpf_spin_lock included. */
#include "rb_common.h"

SEC("tc")
int rbtree_no_elem_btf(struct __sk_buff *skb)
{
	struct node_data *n;
	struct bpf_rb_node *res;

	bpf_spin_lock(&glock);
	res = bpf_rbtree_first(&groot);
	bpf_spin_unlock(&glock);
	if (!res)
		return 0;
	n = container_of(res, struct node_data, node);
	return n->data;
}

char LICENSE[] SEC("license") = "GPL";
