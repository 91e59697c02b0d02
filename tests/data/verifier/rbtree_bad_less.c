// SPDX-License-Identifier: GPL-2.0
/* A `less` callback that calls a helper: it runs under the tree's
 * bpf_spin_lock, where function calls are not allowed. */
#include "rb_common.h"

static long less_any(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
	return bpf_get_prandom_u32();
}

SEC("tc")
int rbtree_bad_less(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new_impl(bpf_core_type_id_local(struct node_data), NULL);

	if (!n)
		return 1;
	bpf_spin_lock(&glock);
	bpf_rbtree_add_impl(&groot, &n->node, (void *)less_any, NULL, 0);
	bpf_spin_unlock(&glock);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
