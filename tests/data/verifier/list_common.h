/* SPDX-License-Identifier: GPL-2.0 */
/* What the list_*.c programs share: a global bpf_list of `struct elem`
 * guarded by a global bpf_spin_lock, and the kfuncs that work on it. */
#ifndef LIST_COMMON_H
#define LIST_COMMON_H
#include "graph_common.h"

extern int bpf_list_push_back_impl(struct bpf_list_head *head, struct bpf_list_node *node,
				   void *meta, __u64 off) __ksym;
extern struct bpf_list_node *bpf_list_pop_front(struct bpf_list_head *head) __ksym;

struct elem {
	int v;
	struct bpf_list_node node;
};

private(A) struct bpf_spin_lock glock;
private(A) struct bpf_list_head ghead __contains(elem, node);

#endif
