"""kfuncs on kernel objects, verified by ebee and by the running kernel from one object.

``bpf_task_from_pid``/``bpf_task_acquire``/``bpf_task_release``, the cgroup and
cpumask families, ``bpf_cast_to_kern_ctx`` and ``bpf_rdonly_cast``
(``ebee.verifier.kfunc_btf``): references acquired and released, NULL checks,
trusted arguments, struct types matched at offset 0, program types whose hook
does not register the kfunc; the open-coded iterators ``bpf_iter_num_*`` and
``bpf_iter_bits_*`` (``ebee.verifier.iters``): loops that converge, iterators
used uninitialized, initialized twice, leaked.  Verdicts and final error lines
must be the kernel's, and a ``bpf_for`` loop returns what it returns in the kernel.
"""
from __future__ import annotations

import pytest

from ebee.protos.kfuncs import KFUNCS
from ebee.uapi import ProgType
from ebee.verifier.kfunc_btf import handles
from test_loader_parity import _clang
from verifier_kernel import ebee_object, kernel_object

pytestmark = pytest.mark.usefixtures("kernel")

SRC = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define __pai __attribute__((preserve_access_index))
struct task_struct { int pid; int tgid; } __pai;
struct cgroup { int level; } __pai;
struct cpumask { unsigned long bits[1]; } __pai;
struct bpf_cpumask { struct cpumask cpumask; } __pai;
struct sk_buff { unsigned int len; } __pai;

extern struct task_struct *bpf_task_from_pid(int pid) __ksym;
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern struct cgroup *bpf_cgroup_from_id(__u64 cgid) __ksym;
extern struct cgroup *bpf_cgroup_acquire(struct cgroup *cgrp) __ksym;
extern void bpf_cgroup_release(struct cgroup *cgrp) __ksym;
extern struct bpf_cpumask *bpf_cpumask_create(void) __ksym;
extern void bpf_cpumask_release(struct bpf_cpumask *cpumask) __ksym;
extern void bpf_cpumask_set_cpu(__u32 cpu, struct bpf_cpumask *cpumask) __ksym;
extern _Bool bpf_cpumask_test_cpu(__u32 cpu, const struct cpumask *cpumask) __ksym;
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
struct bpf_iter_num { __u64 __opaque[1]; } __attribute__((aligned(8)));
struct bpf_iter_bits { __u64 __opaque[2]; } __attribute__((aligned(8)));
extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;
extern int bpf_iter_bits_new(struct bpf_iter_bits *it, const __u64 *unsafe_ptr__ign,
                             __u32 nr_words) __ksym;
extern int *bpf_iter_bits_next(struct bpf_iter_bits *it) __ksym;
extern void bpf_iter_bits_destroy(struct bpf_iter_bits *it) __ksym;

SEC("syscall") int task_ok(void *ctx)
{
    struct task_struct *t = bpf_task_from_pid(1);
    int pid;
    if (!t)
        return 0;
    pid = t->pid;
    bpf_task_release(t);
    return pid;
}
SEC("syscall") int task_no_null_check(void *ctx)
{
    struct task_struct *t = bpf_task_from_pid(1);
    bpf_task_release(t);
    return 0;
}
SEC("syscall") int task_leak(void *ctx)
{
    struct task_struct *t = bpf_task_from_pid(1);
    return t ? t->pid : 0;
}
SEC("syscall") int task_use_after_release(void *ctx)
{
    struct task_struct *t = bpf_task_from_pid(1);
    if (!t)
        return 0;
    bpf_task_release(t);
    return t->pid;
}
SEC("tp_btf/task_newtask") int release_current(void *ctx)
{
    struct task_struct *t = bpf_get_current_task_btf();
    bpf_task_release(t);
    return 0;
}
SEC("tp_btf/task_newtask") int acquire_current(void *ctx)
{
    struct task_struct *t = bpf_task_acquire(bpf_get_current_task_btf());
    if (t)
        bpf_task_release(t);
    return 0;
}
SEC("syscall") int acquire_wrong_type(void *ctx)
{
    struct task_struct *t = bpf_task_from_pid(1);
    struct cgroup *c;
    if (!t)
        return 0;
    c = bpf_cgroup_acquire((struct cgroup *)t);
    if (c)
        bpf_cgroup_release(c);
    bpf_task_release(t);
    return 0;
}
SEC("syscall") int release_wrong_type(void *ctx)
{
    struct bpf_cpumask *m = bpf_cpumask_create();
    if (!m)
        return 0;
    bpf_task_release((struct task_struct *)m);
    return 0;
}
SEC("tracepoint") int cgroup_ok(void *ctx)
{
    struct cgroup *c = bpf_cgroup_from_id(1), *r;
    if (!c)
        return 0;
    r = bpf_cgroup_acquire(c);
    if (r)
        bpf_cgroup_release(r);
    bpf_cgroup_release(c);
    return 0;
}
SEC("perf_event") int cpumask_ok(void *ctx)
{
    struct bpf_cpumask *m = bpf_cpumask_create();
    int v;
    if (!m)
        return 0;
    bpf_cpumask_set_cpu(0, m);
    v = bpf_cpumask_test_cpu(0, (const struct cpumask *)m);   /* its member at 0 */
    bpf_cpumask_release(m);
    return v;
}
SEC("socket") int task_in_socket_filter(void *ctx)
{
    struct task_struct *t = bpf_task_from_pid(1);
    if (t)
        bpf_task_release(t);
    return 0;
}
SEC("raw_tp") int task_in_raw_tp(void *ctx)
{
    struct task_struct *t = bpf_task_from_pid(1);
    if (t)
        bpf_task_release(t);
    return 0;
}
SEC("tc") int kern_ctx_ok(struct __sk_buff *skb)
{
    struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
    return kskb->len & 1;
}
SEC("tc") int kern_ctx_of_stack(struct __sk_buff *skb)
{
    long v = 0;
    struct sk_buff *kskb = bpf_cast_to_kern_ctx(&v);
    return kskb->len & 1;
}
SEC("tc") int rdonly_cast_ok(struct __sk_buff *skb)
{
    struct sk_buff *kskb = bpf_rdonly_cast(skb, bpf_core_type_id_kernel(struct sk_buff));
    return kskb->len & 1;
}
SEC("tc") int rdonly_cast_write(struct __sk_buff *skb)
{
    struct sk_buff *kskb = bpf_rdonly_cast(skb, bpf_core_type_id_kernel(struct sk_buff));
    kskb->len = 0;
    return 0;
}
SEC("socket") int num_sum(void *ctx)
{
    struct bpf_iter_num it;
    int *v, sum = 0;
    bpf_iter_num_new(&it, 3, 12);
    while ((v = bpf_iter_num_next(&it)))
        sum += *v;
    bpf_iter_num_destroy(&it);
    return sum;
}
SEC("socket") int num_index_array(void *ctx)
{
    struct bpf_iter_num it;
    int *v, arr[8] = {}, sum = 0;
    bpf_iter_num_new(&it, 0, 8);
    while ((v = bpf_iter_num_next(&it)))
        sum += arr[*v];           /* *v is any int: the index is unchecked */
    bpf_iter_num_destroy(&it);
    return sum;
}
SEC("socket") int num_leak(void *ctx)
{
    struct bpf_iter_num it;
    bpf_iter_num_new(&it, 0, 8);
    return 0;
}
SEC("socket") int num_next_uninit(void *ctx)
{
    struct bpf_iter_num it;
    int *v = bpf_iter_num_next(&it);
    return v ? *v : 0;
}
SEC("socket") int num_new_twice(void *ctx)
{
    struct bpf_iter_num it;
    bpf_iter_num_new(&it, 0, 8);
    bpf_iter_num_new(&it, 0, 8);
    bpf_iter_num_destroy(&it);
    return 0;
}
SEC("socket") int num_use_after_destroy(void *ctx)
{
    struct bpf_iter_num it;
    int *v;
    bpf_iter_num_new(&it, 0, 8);
    bpf_iter_num_destroy(&it);
    v = bpf_iter_num_next(&it);
    return v ? *v : 0;
}
SEC("socket") int num_write_result(void *ctx)
{
    struct bpf_iter_num it;
    int *v;
    bpf_iter_num_new(&it, 0, 2);
    v = bpf_iter_num_next(&it);
    if (v)
        *v = 1;                   /* read-only memory */
    bpf_iter_num_destroy(&it);
    return 0;
}
SEC("socket") int bits_count(void *ctx)
{
    __u64 words[2] = {0xf0f0, 3};
    struct bpf_iter_bits it;
    int *bit, n = 0;
    bpf_iter_bits_new(&it, words, 2);
    while ((bit = bpf_iter_bits_next(&it)))
        n++;
    bpf_iter_bits_destroy(&it);
    return n;
}
char LICENSE[] SEC("license") = "GPL";
"""

PROGS = ["task_ok", "task_no_null_check", "task_leak", "task_use_after_release",
         "release_current", "acquire_current", "acquire_wrong_type", "release_wrong_type",
         "cgroup_ok", "cpumask_ok", "task_in_socket_filter", "task_in_raw_tp", "kern_ctx_ok",
         "kern_ctx_of_stack", "rdonly_cast_ok", "rdonly_cast_write", "num_sum",
         "num_index_array", "num_leak", "num_next_uninit", "num_new_twice",
         "num_use_after_destroy", "num_write_result", "bits_count"]


@pytest.fixture(scope="module")
def obj_path(tmp_path_factory):
    return _clang(tmp_path_factory.mktemp("kfuncs"), SRC)


@pytest.fixture(scope="module")
def verdicts(obj_path):
    out = {}
    with ebee_object(str(obj_path)) as obj, kernel_object(obj) as kload:
        for name in PROGS:
            prog = obj.programs[name]
            out[name] = (kload(prog), prog.verify(log_level=1))
    return out


@pytest.mark.parametrize("name", PROGS)
def test_verdict_and_error_are_the_kernels(verdicts, name):
    k, r = verdicts[name]
    assert r.accepted == k.accepted, f"kernel: {k.error!r}; ebee: {r.error!r}"
    if not k.accepted:
        assert r.error == k.error


def test_both_outcomes_are_covered(verdicts):
    assert {k.accepted for k, _ in verdicts.values()} == {True, False}


def test_bpf_for_loop_runs_as_in_the_kernel(obj_path):
    """bpf_iter_num in the runtime: 3 + 4 + ... + 11, as BPF_PROG_TEST_RUN returns it."""
    with ebee_object(str(obj_path)) as obj, obj.load_kernel(programs=["num_sum"]) as k:
        want = k.programs["num_sum"].run(bytes(64)).retval
        assert obj.programs["num_sum"].run(bytes(64)).retval == want == sum(range(3, 12))


def test_kfuncs_with_verifier_treatment_of_their_own_stay_refused():
    """RCU/preemption sections, exceptions, dynptr slices: their prototype alone says too
    little, so the generic check does not take them (Linux's special_kfunc_list)."""
    for name in ("bpf_rcu_read_lock", "bpf_rcu_read_unlock", "bpf_preempt_disable",
                 "bpf_throw", "bpf_dynptr_from_skb", "bpf_dynptr_slice"):
        if name in KFUNCS:
            assert not handles(KFUNCS[name], ProgType.SYSCALL), name
    assert handles(KFUNCS["bpf_task_from_pid"], ProgType.SYSCALL)
