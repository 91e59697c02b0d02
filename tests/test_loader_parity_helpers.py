"""Packet helpers whose prototypes the selftests needed, against the running kernel.

``bpf_csum_update``, ``bpf_csum_level`` and ``bpf_check_mtu`` (tc and XDP; the
MTU argument is written by the helper and, on this kernel, may be passed
uninitialized) are verified by ebee and loaded into the kernel from one object;
verdicts and final error lines must be the kernel's.
"""
from __future__ import annotations

import pytest

from test_loader_parity import _clang
from verifier_kernel import ebee_object, kernel_object

pytestmark = pytest.mark.usefixtures("kernel")

SRC = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 ro_mtu = 1500;

SEC("tc") int csum(struct __sk_buff *skb)
{
    return bpf_csum_update(skb, 1) + bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY);
}
SEC("tc") int csum_not_ctx(struct __sk_buff *skb)
{
    long v = 0;
    return bpf_csum_update((void *)&v, 1);
}
SEC("tc") int mtu_tc(struct __sk_buff *skb)
{
    __u32 mtu = 0;
    return bpf_check_mtu(skb, 0, &mtu, 0, 0) ? mtu & 1 : 0;
}
SEC("tc") int mtu_tc_uninit(struct __sk_buff *skb)
{
    __u32 mtu;
    bpf_check_mtu(skb, 0, &mtu, 0, 0);
    return mtu & 1;
}
SEC("xdp") int mtu_xdp(struct xdp_md *ctx)
{
    __u32 mtu = 0;
    return bpf_check_mtu(ctx, 0, &mtu, 0, 0) ? XDP_DROP : XDP_PASS;
}
SEC("tc") int mtu_into_rodata(struct __sk_buff *skb)
{
    return bpf_check_mtu(skb, 0, (__u32 *)&ro_mtu, 0, 0);
}
SEC("tc") int mtu_misaligned(struct __sk_buff *skb)
{
    __u32 mtu[2] = {};
    return bpf_check_mtu(skb, 0, (__u32 *)((char *)mtu + 2), 0, 0);
}
char LICENSE[] SEC("license") = "GPL";
"""

PROGS = ["csum", "csum_not_ctx", "mtu_tc", "mtu_tc_uninit", "mtu_xdp", "mtu_into_rodata",
         "mtu_misaligned"]


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    path = _clang(tmp_path_factory.mktemp("helpers"), SRC)
    out = {}
    with ebee_object(str(path)) as obj, kernel_object(obj) as kload:
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
