"""A program reached by a tail call runs as the kernel runs it: XDP, ebee vs Linux.

The dispatcher tail-calls, through a PROG_ARRAY filled from the object's ``values``,
into handlers that read the context (packet pointers: context rewrites), read and
rewrite the packet, move its head and pick a verdict.  Every frame goes through
both ebee and the kernel (BPF_PROG_TEST_RUN); retval and data_out must agree.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import ebee
from ebee.pytest_plugin import tcp_packet, udp_packet
from ebee.testrun import TestRunError
from kernel_helpers import bpffs_dir

SRC = r"""
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

static __always_inline int rewrite(void *data, void *data_end)
{
    struct ethhdr *eth = data;
    struct iphdr *ip = data + sizeof(*eth);
    unsigned char tmp[ETH_ALEN];
    if ((void *)(ip + 1) > data_end)
        return XDP_DROP;
    __builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
    __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
    if (ip->ttl <= 1)
        return XDP_DROP;
    ip->ttl--;
    ip->check += bpf_htons(0x0100);
    return XDP_TX;
}

SEC("xdp") int xdp_reflect(struct xdp_md *ctx)
{
    return rewrite((void *)(long)ctx->data, (void *)(long)ctx->data_end);
}

SEC("xdp") int xdp_strip(struct xdp_md *ctx)
{
    /* drop the Ethernet header and put a new one in front: the head moves twice */
    if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct ethhdr)))
        return XDP_ABORTED;
    if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ethhdr)))
        return XDP_ABORTED;
    void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return XDP_DROP;
    __builtin_memset(eth->h_dest, 0xaa, ETH_ALEN);
    __builtin_memset(eth->h_source, 0xbb, ETH_ALEN);
    eth->h_proto = bpf_htons(ETH_P_IP);
    return rewrite(data, data_end);
}

struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, 4);
    __uint(key_size, sizeof(__u32));
    __array(values, int (void *));
} jump SEC(".maps") = { .values = { [1] = (void *)&xdp_reflect, [2] = (void *)&xdp_strip } };

SEC("xdp") int xdp_dispatch(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = data + sizeof(*eth);
    if ((void *)(ip + 1) > data_end)
        return XDP_PASS;
    bpf_tail_call(ctx, &jump, ip->protocol == 17 ? 1 : ip->protocol == 6 ? 2 : 3);
    return XDP_PASS;       /* slot 3 is empty: the call falls through */
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def tail_obj(tmp_path_factory):
    clang = shutil.which("clang-19")
    if clang is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        pytest.skip("needs clang-19 and libbpf headers")
    d = tmp_path_factory.mktemp("tail")
    (d / "t.c").write_text(SRC)
    r = subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
                        "-c", str(d / "t.c"), "-o", str(d / "t.o")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return d / "t.o"


def _frames():
    out = []
    for ttl in (64, 2, 1):
        out.append(udp_packet("10.0.0.1", "10.0.0.2", 1000, 53, b"q" * 20, ttl=ttl))
        out.append(tcp_packet("10.0.0.3", "10.0.0.4", 1234, 80, b"GET /", ttl=ttl))
    out.append(udp_packet("10.0.0.1", "10.0.0.2", 1, 2, b"")[:34])
    out.append(bytes.fromhex("020000000002020000000001") + b"\x08\x00" + bytes(20))   # proto 0
    out.append(bytes(30))                                                             # runt
    return out


def _run(prog, frame, engine=None):
    try:
        r = prog.run(frame, engine=engine) if engine else prog.run(frame)
    except TestRunError as e:
        return ("error", e.errno)
    return (r.retval, bytes(r.data_out))


@pytest.mark.kernel
@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_tail_call_target_runs_as_in_the_kernel(kernel, tail_obj, engine):
    from ebee.engines.jit import available
    if engine == "jit" and not available():
        pytest.skip("the JIT needs llvmlite")
    obj = ebee.load(tail_obj)
    with bpffs_dir() as d, obj.load_kernel(pin_root=str(d)) as k:
        for frame in _frames():
            mine = _run(obj.programs["xdp_dispatch"], frame, engine)
            theirs = _run(k.programs["xdp_dispatch"], frame)
            assert mine == theirs, f"{frame.hex()}: ebee {mine} kernel {theirs}"
        # the targets run directly too, as the kernel runs them
        for name in ("xdp_reflect", "xdp_strip"):
            for frame in _frames():
                assert _run(obj.programs[name], frame, engine) == _run(k.programs[name], frame)
