"""Packet dynptrs against the running kernel: bpf_dynptr_from_skb/xdp and
bpf_dynptr_slice/slice_rdwr, global functions' arg:<tag> arguments, an
iter/task program's context (its task may be NULL) and the struct a helper's
BTF pointer argument must point to.

A slice of a packet dynptr is packet memory: a helper that changes packet data
must invalidate it as it invalidates packet pointers, or ebee would accept a
program that reads freed memory.  Each program is verified by ebee and by the
kernel; verdict and final error line must agree.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import ebee
from ebee import kernel_model

from verifier_kernel import kernel_object

SRC = r"""
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

extern int bpf_dynptr_from_skb(struct __sk_buff *s, __u64 flags, struct bpf_dynptr *p) __ksym;
extern int bpf_dynptr_from_xdp(struct xdp_md *x, __u64 flags, struct bpf_dynptr *p) __ksym;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *p, __u32 off, void *buf, __u32 sz) __ksym;
extern void *bpf_dynptr_slice_rdwr(const struct bpf_dynptr *p, __u32 off, void *buf,
                                   __u32 sz) __ksym;

#define __arg_nonnull __attribute__((btf_decl_tag("arg:nonnull")))
#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))

SEC("tc")
int slice_read(struct __sk_buff *skb)
{
    struct bpf_dynptr d;
    __u8 buf[4];
    __u8 *p;

    if (bpf_dynptr_from_skb(skb, 0, &d))
        return 0;
    p = bpf_dynptr_slice(&d, 0, buf, sizeof(buf));
    return p ? p[3] : 1;
}

SEC("tc")
int slice_read_past_end(struct __sk_buff *skb)
{
    struct bpf_dynptr d;
    __u8 buf[4];
    volatile __u8 *p;

    if (bpf_dynptr_from_skb(skb, 0, &d))
        return 0;
    p = bpf_dynptr_slice(&d, 0, buf, sizeof(buf));
    return p ? p[4] : 1;
}

SEC("tc")
int slice_write_rdonly(struct __sk_buff *skb)
{
    struct bpf_dynptr d;
    __u8 buf[4];
    volatile __u8 *p;

    if (bpf_dynptr_from_skb(skb, 0, &d))
        return 0;
    p = bpf_dynptr_slice(&d, 0, buf, sizeof(buf));
    if (p)
        p[0] = 1;
    return 0;
}

SEC("tc")
int slice_after_pull(struct __sk_buff *skb)
{
    struct bpf_dynptr d;
    __u8 buf[4];
    volatile __u8 *p;

    if (bpf_dynptr_from_skb(skb, 0, &d))
        return 0;
    p = bpf_dynptr_slice_rdwr(&d, 0, buf, sizeof(buf));
    if (!p)
        return 0;
    bpf_skb_pull_data(skb, 0);
    return p[0];
}

SEC("cgroup_skb/ingress")
int slice_rdwr_without_pkt_writes(struct __sk_buff *skb)
{
    struct bpf_dynptr d;
    __u8 buf[4];
    __u8 *p;

    if (bpf_dynptr_from_skb(skb, 0, &d))
        return 1;
    p = bpf_dynptr_slice_rdwr(&d, 0, buf, sizeof(buf));
    return p ? 1 : 0;
}

SEC("xdp")
int xdp_slice_after_adjust_head(struct xdp_md *ctx)
{
    struct bpf_dynptr d;
    __u8 buf[8];
    volatile __u8 *p;

    bpf_dynptr_from_xdp(ctx, 0, &d);
    p = bpf_dynptr_slice(&d, 0, buf, sizeof(buf));
    if (!p)
        return XDP_PASS;
    bpf_xdp_adjust_head(ctx, 0);
    return p[0];
}

SEC("xdp")
int xdp_dynptr_not_ctx(struct xdp_md *ctx)
{
    struct bpf_dynptr d;

    return bpf_dynptr_from_xdp((void *)(long)ctx->data, 0, &d);
}

__attribute__((noinline)) int nonnull_read(int *p __arg_nonnull)
{
    return *p;
}

SEC("tc")
int pass_null_to_nonnull(struct __sk_buff *skb)
{
    return nonnull_read((int *)(long)skb->mark);
}

SEC("tc")
int pass_stack_to_nonnull(struct __sk_buff *skb)
{
    int x = skb->len;

    return nonnull_read(&x);
}

__attribute__((noinline)) int ctx_len(void *ctx __arg_ctx)
{
    return ((struct __sk_buff *)ctx)->len;
}

SEC("tc")
int pass_moved_ctx(struct __sk_buff *skb)
{
    return ctx_len((char *)skb + 4);
}

struct task_struct { int pid; } __attribute__((preserve_access_index));
struct bpf_iter_meta { void *seq; } __attribute__((preserve_access_index));
struct bpf_iter__task {
    struct bpf_iter_meta *meta;
    struct task_struct *task;
} __attribute__((preserve_access_index));

SEC("iter/task")
int iter_task_unchecked(struct bpf_iter__task *ctx)
{
    return ctx->task->pid & 1;      /* NULL at the end of the iteration */
}

SEC("iter/task")
int iter_task_checked(struct bpf_iter__task *ctx)
{
    struct task_struct *t = ctx->task;

    return t ? t->pid & 1 : 0;
}

SEC("tp_btf/task_newtask")
int helper_wrong_btf_type(unsigned long long *ctx)
{
    /* a task_struct where bpf_sock_from_file takes a struct file */
    return bpf_sock_from_file((void *)ctx[0]) != 0;
}

char _license[] SEC("license") = "GPL";
"""

PROGS = ["slice_read", "slice_read_past_end", "slice_write_rdonly", "slice_after_pull",
         "slice_rdwr_without_pkt_writes", "xdp_slice_after_adjust_head", "xdp_dynptr_not_ctx",
         "pass_null_to_nonnull", "pass_stack_to_nonnull", "pass_moved_ctx",
         "iter_task_unchecked", "iter_task_checked", "helper_wrong_btf_type"]


@pytest.fixture(scope="module")
def obj_path(tmp_path_factory):
    clang = shutil.which("clang-19")
    if clang is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        pytest.skip("needs clang-19 and libbpf headers")
    d = tmp_path_factory.mktemp("dynptr")
    (d / "p.c").write_text(SRC)
    r = subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3",
                        "-I/usr/include/x86_64-linux-gnu", "-c", str(d / "p.c"), "-o",
                        str(d / "p.o")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return d / "p.o"


@pytest.mark.parametrize("name", PROGS)
def test_matches_kernel(obj_path, name):
    if os.geteuid() != 0 or not kernel_model.host_matches():
        pytest.skip(f"needs root on the emulated kernel ({kernel_model.describe()})")
    obj = ebee.load(obj_path)
    res = obj.programs[name].verify(log_level=1)
    with kernel_object(obj) as load:
        k = load(obj.programs[name])
    assert (res.accepted, res.error) == (k.accepted, k.error), k.log[-2000:]
