/* SPDX-License-Identifier: GPL-2.0 */
/* What the rbtree_*.c programs share: a global bpf_rb_root of `struct node_data`
 * ordered by key, guarded by a global bpf_spin_lock, and its kfuncs. */
#ifndef RB_COMMON_H
#define RB_COMMON_H
#include "graph_common.h"

extern int bpf_rbtree_add_impl(struct bpf_rb_root *root, struct bpf_rb_node *node,
			       _Bool (less)(struct bpf_rb_node *a, const struct bpf_rb_node *b),
			       void *meta, __u64 off) __ksym;
extern struct bpf_rb_node *bpf_rbtree_first(struct bpf_rb_root *root) __ksym;
extern struct bpf_rb_node *bpf_rbtree_remove(struct bpf_rb_root *root,
					     struct bpf_rb_node *node) __ksym;

struct node_data {
	long key;
	long data;
	struct bpf_rb_node node;
};

private(A) struct bpf_spin_lock glock;
private(A) struct bpf_rb_root groot __contains(node_data, node);

static __attribute__((unused)) _Bool less(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
	struct node_data *node_a = container_of(a, struct node_data, node);
	struct node_data *node_b = container_of(b, struct node_data, node);

	return node_a->key < node_b->key;
}

#endif
