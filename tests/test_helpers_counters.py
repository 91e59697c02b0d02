"""bpf_perf_event_read[_value], bpf_get_local_storage and bpf_get_route_realm: ebee and
BPF_PROG_TEST_RUN give the same retval, data and (where the helper writes one) buffer;
the modelled counters and routes, which a test run cannot reach, against the kernel's
code."""
from __future__ import annotations

import errno

import pytest

import ebee
from ebee import Program, testrun
from ebee.engines import Machine
from ebee.helpers import counters
from ebee.pytest_plugin import udp_packet
from ebee.testrun import TestRunError
from ebee.uapi import BPF_F_CURRENT_CPU, MapType as T, ProgType as P

from maputil import MapPair, kernelize

UDP = udp_packet("10.0.0.1", "10.0.0.2", 1000, 53, b"hello world")
U32 = 0xFFFFFFFF


def _run(target, data, repeat):
    try:
        r = target.run(data, repeat=repeat)
    except TestRunError as e:
        return ("errno", e.errno)
    return (r.retval & U32, r.data_out)


def same(src: str, pt=P.SCHED_CLS, pairs=(), repeat=0, data=UDP):
    from ebee.kernel import KernelProgram
    insns = ebee.assemble(src)
    ours = _run(Program.from_insns(insns, pt), data, repeat)
    with KernelProgram(kernelize(insns, {p.id: p.kernel.fd for p in pairs}), pt) as kp:
        theirs = _run(kp, data, repeat)
    assert ours == theirs
    return ours[0]


@pytest.mark.kernel
@pytest.mark.parametrize("flags", [0, 1, 3, 4, 9, BPF_F_CURRENT_CPU, 1 << 32, 1 << 40 | 1])
def test_perf_event_read_of_empty_and_missing_slots(kernel, flags):
    arr = MapPair(T.PERF_EVENT_ARRAY, 4, 4, 4)
    try:
        r = same(f"r1 = map[id:{arr.id}] ll\nr2 = {flags} ll\ncall bpf_perf_event_read\n"
                 "exit", pairs=[arr])
        assert r in (-errno.ENOENT & U32, -errno.E2BIG & U32, -errno.EINVAL & U32)
    finally:
        arr.close()


@pytest.mark.kernel
@pytest.mark.parametrize("flags, size", [(0, 24), (7, 24), (1 << 33, 24), (0, 16), (0, 32),
                                         (BPF_F_CURRENT_CPU, 24)])
def test_perf_event_read_value_clears_the_buffer_on_error(kernel, flags, size):
    arr = MapPair(T.PERF_EVENT_ARRAY, 4, 4, 2)
    try:
        # the buffer starts non-zero; r0 folds the errno with what is left in it
        pre = "\n".join(f"r1 = -1\n*(u64 *)(r10 - {8 * k}) = r1" for k in range(1, 5))
        src = (f"{pre}\nr1 = map[id:{arr.id}] ll\nr2 = {flags} ll\nr3 = r10\nr3 += -32\n"
               f"r4 = {size}\ncall bpf_perf_event_read_value\nr6 = r0\n"
               "r1 = *(u64 *)(r10 - 32)\nr2 = *(u64 *)(r10 - 24)\nr3 = *(u64 *)(r10 - 8)\n"
               "r6 *= 31\nr6 += r1\nr6 *= 31\nr6 += r2\nr6 *= 31\nr6 += r3\nr0 = r6\nexit")
        same(src, pairs=[arr])
    finally:
        arr.close()


def test_perf_event_read_of_a_modelled_counter():
    arr = ebee.Map(T.PERF_EVENT_ARRAY, 4, 4, 3)
    counters.set_counter(arr, 0, counters.Counter(count=12345, enabled=10, running=7))
    counters.set_counter(arr, 1, counters.Counter(count=1, cpu=2))       # another CPU's
    counters.set_counter(arr, 2, counters.Counter(count=1, inherit=True))
    src = (f"r1 = map[id:{arr.id}] ll\nr2 = {{}}\nr3 = r10\nr3 += -24\nr4 = 24\n"
           "call bpf_perf_event_read_value\nr6 = r0\nr0 = *(u64 *)(r10 - {})\n"
           "if r6 == 0 goto out\nr0 = r6\nout:\nexit")
    with Machine() as m:
        def r0(idx, off):
            return m.run(ebee.assemble(src.format(idx, off)), 0).retval & U32
        assert [r0(0, o) for o in (24, 16, 8)] == [12345, 10, 7]
        assert r0(1, 24) == -errno.EINVAL & U32
        assert r0(2, 24) == -errno.EOPNOTSUPP & U32
        read = ebee.assemble(f"r1 = map[id:{arr.id}] ll\nr2 = 0\ncall bpf_perf_event_read\nexit")
        assert m.run(read, 0).retval == 12345


# ------------------------------------------------------------------------- cgroup storage

STORAGE_COUNT = """
r1 = map[id:{id}] ll
r2 = 0
call bpf_get_local_storage
r1 = *(u64 *)(r0 + 0)
r1 += 1
*(u64 *)(r0 + 0) = r1
r2 = *(u64 *)(r0 + 8)
r2 += 3
*(u64 *)(r0 + 8) = r2
r1 *= 100
r1 += r2
*(u64 *)(r10 - 8) = r1
r1 = 0
*(u32 *)(r10 - 12) = r1
r1 = map[id:{out}] ll
r2 = r10
r2 += -12
r3 = r10
r3 += -8
r4 = 0
call bpf_map_update_elem
r0 = 1
exit
"""


@pytest.mark.kernel
@pytest.mark.parametrize("mt", [T.CGROUP_STORAGE, T.PERCPU_CGROUP_STORAGE])
@pytest.mark.parametrize("key_size", [16, 8])
@pytest.mark.parametrize("repeat", [0, 1, 5])
def test_local_storage_of_a_test_run_is_fresh_and_kept_across_repeats(kernel, mt, key_size,
                                                                       repeat):
    # cgroup_skb returns 0 or 1: the storage's value goes out through an array
    st, out = MapPair(mt, key_size, 16, 0), MapPair(T.ARRAY, 4, 8, 1)
    try:
        for _ in range(2):          # a second test run starts from zero again
            assert same(STORAGE_COUNT.format(id=st.id, out=out.id), P.CGROUP_SKB,
                        [st, out], repeat) == 1
            a, b = out.contents()
            assert a == b == {bytes(4): (max(repeat, 1) * 103).to_bytes(8, "little")}
        # the run's storage is not linked into the map
        assert list(st.ebee.keys()) == [] == list(st.kernel.keys())
    finally:
        st.close()
        out.close()


# ------------------------------------------------------------------------- route realm

@pytest.mark.kernel
@pytest.mark.parametrize("pt", [P.SCHED_CLS, P.LWT_XMIT, P.LWT_IN])
def test_route_realm_of_a_test_run_packet(kernel, pt):
    same("call bpf_get_route_realm\nr0 += 7\nexit", pt)


def test_route_realm_of_a_routed_packet():
    from ebee.packet.net import Network
    from ebee.packet.skbuff import SkBuff
    skb = SkBuff(UDP, dev=Network().loopback)
    counters.set_route_realm(skb, 0x10002)
    with Machine() as m:
        assert counters.get_route_realm(m, skb.addr) == 0x10002


# ------------------------------------------------------------------------- user ring buffers

DRAIN = """
    r6 = 0
    *(u64 *)(r10 - 8) = r6
    r1 = map[id:{id}] ll
    r2 = subprog[cb] ll
    r3 = r10
    r3 += -8
    r4 = {flags}
    call bpf_user_ringbuf_drain
    r1 = *(u64 *)(r10 - 8)
    r1 <<= 16
    r0 += r1
    exit
cb:
    r6 = r2
    *(u32 *)(r10 - 4) = 0
    r2 = r10
    r2 += -4
    r3 = r1
    r1 = r2
    r2 = 4
    r4 = 0
    r5 = 0
    call bpf_dynptr_read
    r1 = *(u32 *)(r10 - 4)
    r2 = *(u64 *)(r6 + 0)
    r2 += r1
    *(u64 *)(r6 + 0) = r2
    r0 = 0
    if r1 != 99 goto keep
    r0 = 1
keep:
    exit
"""


@pytest.mark.parametrize("samples, flags, want", [
    ([1, 2, 3], 0, (3, 6)), ([], 0, (0, 0)), ([5, 99, 7], 0, (2, 104)),
    ([4, 4], 1, (2, 8)), ([4, 4], 2, (2, 8)), ([4], 4, (-errno.EINVAL, 0)),
])
def test_user_ringbuf_drain_consumes_in_order(samples, flags, want):
    rb = ebee.Map(T.USER_RINGBUF, 0, 0, 4096)
    for v in samples:
        rb.submit(v.to_bytes(4, "little") + b"pad")
    rb.submit(b"\x07\x00\x00\x00", discard=True)        # skipped, not counted
    prog = ebee.assemble(DRAIN.format(id=rb.id, flags=flags))
    with Machine() as m:
        r0 = m.run(prog, 0).retval
    n, total = want
    assert r0 == ((total << 16) + n) & (1 << 64) - 1
    if n >= 0:      # what the callback stopped before stays for the next drain
        assert len(rb.drain()) == len(samples) - n
