"""Helpers with a meaning outside the kernel, against modelled state: the checksum state of
a packet, cgroups, the task's pid namespace, signals, user memory and the traced call.

Where the program type is test-runnable here the result is compared with
BPF_PROG_TEST_RUN (retval, packet and ctx out); the rest follow the kernel's code (the
verifier's inlined sequences for the tracing helpers) and are checked against it in
Python.
"""
from __future__ import annotations

import errno
import os
import struct

import pytest

import ebee
from ebee import Program, testrun
from ebee.engines import Machine
from ebee.helpers import cgroups, task as tasks
from ebee.helpers.tracing import FuncEvent
from ebee.memory import Region
from ebee.pytest_plugin import udp_packet
from ebee.testrun import TestRunError
from ebee.uapi import BPF_F_SLEEPABLE, ENOTSUPP, MapType as T, ProgType as P

from maputil import MapPair, kernelize

UDP = udp_packet("10.0.0.1", "10.0.0.2", 1000, 53, b"hello world")
U32 = 0xFFFFFFFF


def _ebee(insns, pt, data, ctx, flags):
    try:
        r = testrun.run(Program.from_insns(insns, pt, prog_flags=flags), data, ctx=ctx)
    except TestRunError as e:
        return ("errno", e.errno)
    return (r.retval & U32, r.data_out, r.ctx_out)


def _kernel(insns, pt, data, ctx, flags):
    from ebee.kernel import KernelProgram
    with KernelProgram(insns, pt, prog_flags=flags) as kp:
        try:
            r = kp.run(data, ctx=ctx)
        except TestRunError as e:
            return ("errno", e.errno)
        return (r.retval & U32, r.data_out, r.ctx_out)


def same(src: str, pt=P.SCHED_CLS, data=UDP, ctx=None, flags=0, pairs=()):
    insns = ebee.assemble(src)
    ours = _ebee(insns, pt, data, ctx, flags)
    theirs = _kernel(kernelize(insns, {p.id: p.kernel.fd for p in pairs}), pt, data, ctx, flags)
    assert ours == theirs
    return ours[0]


def calls(*steps: tuple[str, str]) -> str:
    """A program calling each (helper, argument setup) with r1 = ctx and folding every
    result into r0: r7 = r7 * 31 + r0, so any difference shows."""
    out = ["r6 = r1", "r7 = 0"]
    for helper, setup in steps:
        out += ["r1 = r6", setup, f"call {helper}", "r7 *= 31", "r7 += r0"]
    out += ["r0 = r7", "exit"]
    return "\n".join(x for x in out if x)


# ------------------------------------------------------------------------------ checksums

@pytest.mark.kernel
def test_csum_level_walks_the_checksum_state_as_linux(kernel):
    steps = [("bpf_csum_level", f"r2 = {lv}") for lv in (0, 1, 0, 1, 1, 1, 1, 0, 2, 0, 2, 2, 0,
                                                           1, 3, 0, 9, 0xFFFFFFFF)]
    same(calls(*steps))


@pytest.mark.kernel
def test_csum_update_needs_a_complete_checksum(kernel):
    # a test run's packet is CHECKSUM_NONE: -ENOTSUPP whatever the difference
    assert same(calls(("bpf_csum_update", "r2 = 0x1234"))) == -ENOTSUPP & U32
    same(calls(("bpf_csum_level", "r2 = 1"), ("bpf_csum_update", "r2 = 7")))


def test_csum_update_folds_into_a_complete_checksum():
    from ebee.packet.skbuff import SkBuff
    from ebee.helpers.skb import CHECKSUM_COMPLETE, csum_update
    from ebee.packet.net import Network
    skb = SkBuff(UDP, dev=Network().loopback)
    skb.ip_summed, skb.csum = CHECKSUM_COMPLETE, 0xFFFFFFF0
    with Machine() as m:
        assert csum_update(m, skb.addr, 0x20) == 0x11      # end-around carry
    assert skb.csum == 0x11 and skb.ip_summed == CHECKSUM_COMPLETE


# ------------------------------------------------------------------------------ cgroups

@pytest.mark.kernel
def test_cgroup_ids_of_a_test_run_are_the_running_tasks(kernel):
    # the test run's packet has a socket of the running task, in its (root) cgroup
    lv = (0, 1, 2, 0x7FFFFFFF, 0xFFFFFFFF)
    same(calls(("bpf_skb_cgroup_id", ""),
               *[("bpf_skb_ancestor_cgroup_id", f"r2 = {x}") for x in lv],
               ("bpf_get_current_cgroup_id", ""),
               *[("bpf_get_current_ancestor_cgroup_id", f"r1 = {x}") for x in lv],
               ("bpf_get_cgroup_classid", "")))


@pytest.mark.kernel
def test_under_cgroup_errnos_match(kernel):
    arr = MapPair(T.CGROUP_ARRAY, 4, 4, 2)
    try:
        for helper, setup in (("bpf_skb_under_cgroup", "r2 = map[id:{}] ll\nr3 = {}"),):
            for idx in (0, 1, 2, 0xFFFFFFFF):
                same(calls((helper, setup.format(arr.id, idx))), pairs=[arr])
        for idx in (0, 2, 7):
            same(calls(("bpf_current_task_under_cgroup",
                        f"r1 = map[id:{arr.id}] ll\nr2 = {idx}")), pairs=[arr])
    finally:
        arr.close()


def test_the_modelled_cgroup_tree():
    tree = cgroups.tree()
    leaf = tree.add("/h19/a/b")
    mid = tree.by_path("/sys/fs/cgroup/h19/a")
    assert leaf.level == 3 and leaf.parent is mid and mid.level == 2
    assert leaf.ancestor(0) is tree.root and leaf.ancestor(3) is leaf
    assert leaf.ancestor(4) is None and leaf.ancestor(-1) is None
    arr = ebee.Map(T.CGROUP_ARRAY, 4, 4, 3)
    arr[0] = "/h19/a"
    arr[1] = leaf.id
    prog = lambda helper, setup: ebee.assemble(calls((helper, setup)))    # noqa: E731
    with Machine() as m:
        m.task = tasks.Task(pid=4242, tgid=4242, cgroup_id=leaf.id)

        def r0(helper, setup):
            return m.run(prog(helper, setup), 0).retval
        assert r0("bpf_get_current_cgroup_id", "") == leaf.id
        assert r0("bpf_get_current_ancestor_cgroup_id", "r1 = 2") == mid.id
        assert r0("bpf_get_current_ancestor_cgroup_id", "r1 = 4") == 0
        assert r0("bpf_current_task_under_cgroup", f"r1 = map[id:{arr.id}] ll\nr2 = 0") == 1
        assert r0("bpf_current_task_under_cgroup", f"r1 = map[id:{arr.id}] ll\nr2 = 1") == 1
        assert r0("bpf_current_task_under_cgroup", f"r1 = map[id:{arr.id}] ll\nr2 = 2") == \
            -errno.EAGAIN & (2**64 - 1)
        assert r0("bpf_current_task_under_cgroup", f"r1 = map[id:{arr.id}] ll\nr2 = 3") == \
            -errno.E2BIG & (2**64 - 1)
        m.task = tasks.Task(pid=4243, tgid=4243, cgroup_id=mid.id)
        assert r0("bpf_current_task_under_cgroup", f"r1 = map[id:{arr.id}] ll\nr2 = 1") == 0
    arr.close()


# ------------------------------------------------------------------------------ the task

def _nsfs() -> tuple[int, int]:
    st = os.stat("/proc/self/ns/pid")
    return (os.major(st.st_dev) << 20) | os.minor(st.st_dev), st.st_ino


@pytest.mark.kernel
@pytest.mark.parametrize("word", [0, 4])
@pytest.mark.parametrize("bad", [None, "dev", "ino", "size"])
def test_get_ns_current_pid_tgid_matches(kernel, word, bad):
    dev, ino = _nsfs()
    dev = dev + 1 if bad == "dev" else dev
    ino = ino + 1 if bad == "ino" else ino
    size = 12 if bad == "size" else 8
    src = f"""
        r1 = {dev} ll
        r2 = {ino} ll
        r3 = r10
        r3 += -16
        r4 = {size}
        *(u64 *)(r10 - 16) = r4
        *(u64 *)(r10 - 8) = r4
        call bpf_get_ns_current_pid_tgid
        r6 = r0
        r0 = *(u32 *)(r10 - {16 - word})
        r0 ^= r6
        exit
    """
    got = same(src, P.SOCKET_FILTER)
    want = threading_ids()[word // 4] if bad is None else (-errno.EINVAL & U32)
    assert got == want


def threading_ids() -> tuple[int, int]:
    import threading
    return threading.get_native_id(), os.getpid()


@pytest.mark.kernel
def test_send_signal_permission_and_validity_match(kernel):
    # 0 checks permission only; 65 is no signal; SIGURG (ignored by default) is delivered
    got = same(calls(("bpf_send_signal", "r1 = 0"), ("bpf_send_signal_thread", "r1 = 0"),
                     ("bpf_send_signal", "r1 = 65"), ("bpf_send_signal_thread", "r1 = 0x100000041")),
               P.SOCKET_FILTER)
    assert got != 0


def test_send_signal_is_recorded_not_delivered():
    t = tasks.Task(pid=777, tgid=770)
    init = tasks.Task(pid=1, tgid=1)
    with Machine() as m:
        m.task = t
        assert m.run(ebee.assemble("r1 = 10\ncall bpf_send_signal\nexit"), 0).retval == 0
        assert m.run(ebee.assemble("r1 = 12\ncall bpf_send_signal_thread\nexit"), 0).retval == 0
        assert t.signals == [(10, "process"), (12, "thread")]
        m.task = init
        assert m.run(ebee.assemble("r1 = 10\ncall bpf_send_signal\nexit"), 0).retval == \
            -errno.EPERM & (2**64 - 1)
    assert init.signals == []


@pytest.mark.kernel
@pytest.mark.parametrize("ptr", [0, 1, 0xFFFF_FFFF_FFFF_F000])
def test_copy_from_user_faults_as_linux(kernel, ptr):
    # a sleepable syscall program; addresses no process maps: -EFAULT, destination zeroed
    src = f"""
        r1 = -1
        *(u64 *)(r10 - 8) = r1
        r1 = r10
        r1 += -8
        r2 = 8
        r3 = {ptr} ll
        call bpf_copy_from_user
        r6 = *(u64 *)(r10 - 8)
        r0 += r6
        exit
    """
    assert same(src, P.SYSCALL, data=b"", flags=BPF_F_SLEEPABLE) == \
        -errno.EFAULT & U32


def test_copy_from_user_reads_modelled_user_memory():
    user = Region(b"user data!", "user page")
    with Machine() as m:
        m.memory.add(user)
        try:
            src = f"""
                r1 = r10
                r1 += -8
                r2 = 8
                r3 = {user.start} ll
                call bpf_copy_from_user
                r0 = *(u64 *)(r10 - 8)
                exit
            """
            assert m.run(ebee.assemble(src), 0).retval == int.from_bytes(b"user dat", "little")
        finally:
            m.memory.remove(user)


# ------------------------------------------------------------------------------ tracing

def _trace(ev: FuncEvent, body: str) -> int:
    with Machine() as m:
        ctx = Region(ev.ctx or bytes(8), "fentry ctx")
        m.memory.add(ctx)
        m.func_event = ev
        try:
            return m.run(ebee.assemble(body), ctx.start).retval
        finally:
            m.memory.remove(ctx)


GET_ARG = """
    r6 = r1
    r2 = {n}
    r3 = r10
    r3 += -8
    r4 = 99
    *(u64 *)(r10 - 8) = r4
    call bpf_get_func_arg
    r1 = *(u64 *)(r10 - 8)
    r0 <<= 32
    r0 |= r1
    exit
"""


def test_get_func_arg_reads_the_saved_arguments():
    ev = FuncEvent.of("bpf_fentry_test3", 4, 5, 6, ip=0xffffffff81000000, cookie=42)
    assert ev.nr_args == 3 and not ev.has_ret
    for n, want in ((0, 4), (2, 6)):
        assert _trace(ev, GET_ARG.format(n=n)) == want
    # past the last argument (the compare is 32-bit): -EINVAL, the value untouched
    for n in (3, 0x100000000 + 3):
        assert _trace(ev, GET_ARG.format(n=n)) == ((-errno.EINVAL & U32) << 32) | 99
    assert _trace(ev, "call bpf_get_func_arg_cnt\nexit") == 3
    assert _trace(ev, "call bpf_get_func_ip\nexit") == 0xffffffff81000000
    assert _trace(ev, "call bpf_get_attach_cookie\nexit") == 42


def test_get_func_ret_only_after_the_call():
    ret = """
        r2 = r10
        r2 += -8
        r3 = 7
        *(u64 *)(r10 - 8) = r3
        call bpf_get_func_ret
        r1 = *(u64 *)(r10 - 8)
        r0 <<= 32
        r0 |= r1
        exit
    """
    fexit = FuncEvent.of("bpf_fentry_test2", 2, 3, ret=5)
    assert fexit.nr_args == 2 and fexit.has_ret
    assert _trace(fexit, ret) == 5
    fentry = FuncEvent.of("bpf_fentry_test2", 2, 3)
    assert _trace(fentry, ret) == ((-errno.EOPNOTSUPP & U32) << 32) | 7


# ------------------------------------------------------------------------------ packets

def _ip_tos(pkt: bytes, tos: int) -> bytes:
    """``pkt`` (Ethernet + IPv4) with the TOS byte set and the header checksum redone."""
    from ebee.packet.csum import csum_fold, csum_partial
    hdr = bytearray(pkt[14:34])
    hdr[1] = tos
    hdr[10:12] = b"\0\0"
    hdr[10:12] = struct.pack("<H", csum_fold(csum_partial(bytes(hdr))))
    return pkt[:14] + bytes(hdr) + pkt[34:]


UDP6 = udp_packet("fd00::1", "fd00::2", 5353, 5353, b"six")


def _tclass(pkt: bytes, ecn: int) -> bytes:
    first = int.from_bytes(pkt[14:18], "big") | (ecn << 20)
    return pkt[:14] + first.to_bytes(4, "big") + pkt[18:]


@pytest.mark.kernel
@pytest.mark.parametrize("ecn", [0, 1, 2, 3])
@pytest.mark.parametrize("v6", [False, True])
def test_skb_ecn_set_ce_matches(kernel, ecn, v6):
    pkt = _tclass(UDP6, ecn) if v6 else _ip_tos(UDP, 0xB8 | ecn)
    same("call bpf_skb_ecn_set_ce\nexit", data=pkt)
    same("call bpf_skb_ecn_set_ce\nr0 &= 1\nexit", P.CGROUP_SKB, data=pkt[14:])


@pytest.mark.kernel
@pytest.mark.parametrize("tstamp,kind", [(0, 0), (123, 0), (0, 1), (5, 1), (0, 2), (9, 2),
                                         (7, 3), (7, 0x100000001)])
def test_skb_set_tstamp_matches(kernel, tstamp, kind):
    same(f"r6 = r1\nr2 = {tstamp} ll\nr3 = {kind} ll\ncall bpf_skb_set_tstamp\n"
         f"r7 = r0\nr0 = *(u64 *)(r6 +152)\nr0 += r7\nexit")
    arp = UDP[:12] + b"\x08\x06" + UDP[14:]
    same(f"r2 = {tstamp} ll\nr3 = {kind} ll\ncall bpf_skb_set_tstamp\nexit", data=arp)


@pytest.mark.kernel
@pytest.mark.parametrize("size,flags", [(0, 0), (24, 0), (240, 0), (24, 1)])
def test_get_branch_snapshot_without_branch_records(kernel, size, flags):
    # no LBR here (nor in ebee's machine): -ENOENT, or -EINVAL for flags
    src = f"""
        r1 = r10
        r1 += -240
        r2 = {size}
        r3 = {flags}
        call bpf_get_branch_snapshot
        exit
    """
    same(src, P.SOCKET_FILTER)


def test_override_return_sets_ax_and_records_it():
    from ebee.progtypes import pt_regs
    with Machine() as m:
        regs = Region(pt_regs(1, 2), "pt_regs")
        m.memory.add(regs)
        try:
            m.func_event = FuncEvent(ip=0x1000)
            r = m.run(ebee.assemble("r2 = -12\ncall bpf_override_return\nexit"), regs.start)
            assert r.retval == 0 and m.func_event.override == -12 & (2**64 - 1)
            ax = 8 * ebee.progtypes.tracing.PT_REGS_X86_64.index("ax")
            assert struct.unpack_from("<q", regs.buf, ax)[0] == -12
        finally:
            m.memory.remove(regs)


def test_probe_write_user_writes_writable_user_memory_only():
    user = Region(bytes(8), "user page")
    ro = Region(bytes(8), "read-only page", writable=False)
    prog = """
        r1 = 0x2a2a2a2a ll
        *(u64 *)(r10 - 8) = r1
        r1 = {dst} ll
        r2 = r10
        r2 += -8
        r3 = 4
        call bpf_probe_write_user
        exit
    """
    with Machine() as m:
        m.memory.add(user)
        m.memory.add(ro)
        try:
            assert m.run(ebee.assemble(prog.format(dst=user.start)), 0).retval == 0
            assert bytes(user.buf[:4]) == b"****"
            for dst in (ro.start, 0, 8):
                assert m.run(ebee.assemble(prog.format(dst=dst)), 0).retval == \
                    -errno.EFAULT & (2**64 - 1)
            m.task = tasks.Task(pid=2, tgid=2, kthread=True)
            assert m.run(ebee.assemble(prog.format(dst=user.start)), 0).retval == \
                -errno.EPERM & (2**64 - 1)
        finally:
            m.memory.remove(user)
            m.memory.remove(ro)


def test_get_task_stack_unwinds_the_given_task():
    other = tasks.Task(pid=900, tgid=900, kernel_stack=[0xffffffff81000010, 0xffffffff81000020],
                       user_stack=[0x401000])
    kt = tasks.Task(pid=3, tgid=3, kthread=True, kernel_stack=[0xffffffff81000030])
    prog = """
        r1 = {task} ll
        r2 = r10
        r2 += -16
        r3 = 16
        r4 = {flags}
        call bpf_get_task_stack
        r1 = *(u64 *)(r10 - 16)
        r0 <<= 32
        r0 ^= r1
        exit
    """
    with Machine() as m:
        def r0(t, flags):
            return m.run(ebee.assemble(prog.format(task=t.addr, flags=flags)), 0).retval
        assert r0(other, 0) == (16 << 32) ^ 0xffffffff81000010
        assert r0(other, 1) == (8 << 32) ^ 0xffffffff81000020           # skip 1
        assert r0(other, 256) == (8 << 32) ^ 0x401000                     # BPF_F_USER_STACK
        assert r0(kt, 256) == ((-errno.EFAULT & U32) << 32)
        assert r0(kt, 0) == (8 << 32) ^ 0xffffffff81000030


# ------------------------------------------------------------------------------ sockets

@pytest.mark.kernel
@pytest.mark.parametrize("pt", [P.SCHED_CLS, P.SOCKET_FILTER])
def test_socket_owner_netns_and_classid_match(kernel, pt):
    steps = [("bpf_get_netns_cookie", ""), ("bpf_get_netns_cookie", "r1 = 0"),
             ("bpf_get_socket_uid", "")]
    if pt is P.SCHED_CLS:
        steps.append(("bpf_skb_cgroup_classid", ""))
    same(calls(*steps), pt)


@pytest.mark.kernel
def test_socket_cookie_is_made_once_and_kept(kernel):
    # the numbers are the kernel's own counter's; both give one nonzero cookie per socket
    src = """
        r6 = r1
        call bpf_get_socket_cookie
        r7 = r0
        r1 = r6
        call bpf_get_socket_cookie
        r0 -= r7
        if r7 == 0 goto bad
        exit
    bad:
        r0 = 99
        exit
    """
    assert same(src) == 0


def test_socket_casts_follow_the_socket():
    from ebee.layouts.kernel import SOCK
    from ebee.helpers import socks

    def sock(family, state, proto, type_):
        r = Region(SOCK.size, "sock")
        struct.pack_into("<H", r.buf, SOCK.off("skc_family"), family)
        r.buf[SOCK.off("skc_state")] = state
        struct.pack_into("<HH", r.buf, SOCK.off("sk_protocol"), proto, type_)
        return r
    tcp6 = sock(10, 1, 6, 1)
    udp6 = sock(10, 7, 17, 2)
    tw = sock(2, 6, 0, 0)
    unix = sock(1, 7, 0, 1)
    with Machine() as m:
        for r in (tcp6, udp6, tw, unix):
            m.memory.add(r)
        try:
            a = lambda r: r.start                                   # noqa: E731
            assert socks.tcp_sock(m, a(tcp6)) == a(tcp6) and socks.tcp_sock(m, a(udp6)) == 0
            assert socks.skc_to_tcp6_sock(m, a(tcp6)) == a(tcp6)
            assert socks.skc_to_udp6_sock(m, a(udp6)) == a(udp6)
            assert socks.skc_to_udp6_sock(m, a(tcp6)) == 0
            assert socks.sk_fullsock(m, a(tw)) == 0 and socks.tcp_sock(m, a(tw)) == 0
            assert socks.skc_to_tcp_timewait_sock(m, a(tw)) == a(tw)
            assert socks.skc_to_unix_sock(m, a(unix)) == a(unix)
            tcp6.buf[SOCK.off("skc_state")] = 10            # TCP_LISTEN
            assert socks.get_listener_sock(m, a(tcp6)) == a(tcp6)
            assert socks.get_listener_sock(m, a(udp6)) == 0
            assert socks.get_socket_cookie(m, a(udp6)) == socks.get_socket_cookie(m, a(udp6)) != 0
            assert socks.get_socket_cookie(m, a(tcp6)) != socks.get_socket_cookie(m, a(udp6))
        finally:
            for r in (tcp6, udp6, tw, unix):
                m.memory.remove(r)


@pytest.mark.kernel
@pytest.mark.parametrize("pt", [P.SCHED_CLS, P.XDP])
@pytest.mark.parametrize("ifindex,want,diff,flags", [
    (0, 0, 0, 0), (1, 0, 0, 0), (0, 0, 65536, 0), (0, 0, 65500, 0), (0, 1500, 0, 0),
    (0, 65536, 1, 0), (0, 0, -100, 0), (0, 0, 0, 1), (0, 0, 5, 1), (0, 20, 0, 1),
    (0, 0, 0, 2), (4242, 0, 0, 0)])
def test_check_mtu_matches(kernel, pt, ifindex, want, diff, flags):
    src = f"""
        r6 = {want}
        *(u32 *)(r10 - 4) = r6
        r2 = {ifindex}
        r3 = r10
        r3 += -4
        r4 = {diff}
        r5 = {flags}
        call bpf_check_mtu
        r6 = *(u32 *)(r10 - 4)
        r0 <<= 24
        r0 ^= r6
        exit
    """
    same(src, pt)


@pytest.mark.kernel
@pytest.mark.parametrize("name,size,flags", [
    (b"bpf_fentry_test1\0", None, 0), (b"no_such_symbol_h19\0", None, 0),
    (b"bpf_fentry_test1\0", 1, 0), (b"bpf_fentry_test1\0", 5, 0), (b"jiffies\0", None, 0),
    (b"bpf_fentry_test1\0", None, 1)])
def test_kallsyms_lookup_name_matches(kernel, name, size, flags):
    name = name + bytes(-len(name) % 8)
    size = size if size is not None else name.index(b"\0") + 1
    stores = "\n".join(f"r1 = {int.from_bytes(name[k:k + 8], 'little'):#x} ll\n"
                       f"*(u64 *)(r10 - {64 - k}) = r1" for k in range(0, len(name), 8))
    src = f"""
        {stores}
        r1 = r10
        r1 += -64
        r2 = {size}
        r3 = {flags}
        r4 = r10
        r4 += -8
        call bpf_kallsyms_lookup_name
        r6 = *(u64 *)(r10 - 8)
        r0 ^= r6
        r6 >>= 32
        r0 ^= r6
        exit
    """
    same(src, P.SYSCALL, data=b"", flags=BPF_F_SLEEPABLE)


# ------------------------------------------------------------------------------ sysctl

GET = """
    r6 = r1
    r1 = r6
    r2 = r10
    r2 += -{n}
    r3 = {n}
    r4 = {flags}
    call bpf_sysctl_get_name
    r7 = r0
    r0 = *(u64 *)(r10 - {n})
    r0 ^= r7
    exit
"""


def test_sysctl_get_name_full_base_and_truncated():
    from ebee.helpers.sysctl import SysctlAccess
    acc = SysctlAccess("net/ipv4/tcp_mem", current=b"1 2 3\n")

    def run(n, flags):
        with Machine() as m:
            return m.run(ebee.assemble(GET.format(n=n, flags=flags)), acc.ctx.start).retval
    first8 = int.from_bytes(b"net/ipv4", "little")
    assert run(32, 0) == first8 ^ 16                       # "net/ipv4/tcp_mem"
    assert run(8, 1) == int.from_bytes(b"tcp_mem\0", "little") ^ 7
    # 8 bytes: "net/ipv" and a NUL, -E2BIG
    assert run(8, 0) == int.from_bytes(b"net/ipv\0", "little") ^ (-errno.E2BIG & (2**64 - 1))
    acc.close()


def test_sysctl_values_read_written_and_replaced():
    from ebee.helpers.sysctl import SysctlAccess
    prog = """
        r6 = r1
        r1 = r6
        r2 = r10
        r2 += -16
        r3 = 16
        call {helper}
        r7 = r0
        r0 = *(u64 *)(r10 - 16)
        r0 ^= r7
        exit
    """
    rd = SysctlAccess("kernel/pid_max", current=b"4194304\n")
    wr = SysctlAccess("kernel/pid_max", current=b"4194304\n", new=b"32768")
    with Machine() as m:
        run = lambda acc, h: m.run(ebee.assemble(prog.format(helper=h)), acc.ctx.start).retval  # noqa: E731
        assert run(rd, "bpf_sysctl_get_current_value") == int.from_bytes(b"4194304\n", "little") ^ 8
        assert run(rd, "bpf_sysctl_get_new_value") == -errno.EINVAL & (2**64 - 1)
        assert run(wr, "bpf_sysctl_get_new_value") == int.from_bytes(b"32768\0\0\0", "little") ^ 5
        setp = """
            r6 = r1
            r1 = 0x3030303031 ll
            *(u64 *)(r10 - 8) = r1
            r1 = r6
            r2 = r10
            r2 += -8
            r3 = 5
            call bpf_sysctl_set_new_value
            exit
        """
        assert m.run(ebee.assemble(setp), wr.ctx.start).retval == 0
        assert wr.new_value == b"10000" and wr.new_updated
        assert m.run(ebee.assemble(setp), rd.ctx.start).retval == -errno.EINVAL & (2**64 - 1)
    rd.close()
    wr.close()


def test_get_and_set_retval_share_the_cgroup_run_value():
    prog = "r1 = -1\ncall bpf_set_retval\ncall bpf_get_retval\nexit"
    with Machine() as m:
        m.cg_retval = -errno.EPERM
        assert m.run(ebee.assemble("call bpf_get_retval\nexit"), 0).retval == \
            -errno.EPERM & (2**64 - 1)
        assert m.run(ebee.assemble(prog), 0).retval == 2**64 - 1
        assert m.run(ebee.assemble("r1 = 0x1fffffffe ll\ncall bpf_set_retval\nexit"), 0).retval == 0
        assert m.cg_retval == -2                 # the argument is an int


# ------------------------------------------------------------------------------ find_vma

def _first_mapping() -> tuple[int, int]:
    with open("/proc/self/maps") as f:
        lo, hi = (int(x, 16) for x in f.readline().split()[0].split("-"))
    return lo, hi


@pytest.mark.kernel
@pytest.mark.parametrize("where,flags", [("inside", 0), ("start", 0), ("unmapped", 0),
                                         ("inside", 1)])
def test_find_vma_matches_the_current_tasks_address_space(kernel, where, flags):
    from test_helpers_kernel_diff import run_both
    lo, hi = _first_mapping()
    addr = {"inside": lo + 0x10, "start": lo, "unmapped": 0x1000}[where]
    src = f"""
        r6 = 0
        *(u64 *)(r10 - 8) = r6
        call bpf_get_current_task_btf
        r1 = r0
        r2 = {addr} ll
        r3 = subprog[cb] ll
        r4 = r10
        r4 += -8
        r5 = {flags}
        call bpf_find_vma
        r1 = *(u64 *)(r10 - 8)
        r0 ^= r1
        exit
    cb:
        r6 = *(u64 *)(r2 + 0)
        r7 = *(u64 *)(r2 + 8)
        r7 -= r6
        r6 ^= r7
        *(u64 *)(r3 + 0) = r6
        r0 = 0
        exit
    """
    ours, theirs = run_both(src, [])
    assert ours == theirs
    if where != "unmapped" and not flags:
        assert ours == (lo ^ (hi - lo)) & U32


def test_task_pt_regs_are_the_tasks_saved_registers():
    t = tasks.Task(pid=901, tgid=901, regs={"ip": 0x401234, "sp": 0x7ffd0000})
    src = f"r1 = {t.addr} ll\ncall bpf_task_pt_regs\nr1 = r0\nr0 = *(u64 *)(r1 + 128)\nexit"
    with Machine() as m:
        assert m.run(ebee.assemble(src), 0).retval == 0x401234
        again = f"r1 = {t.addr} ll\ncall bpf_task_pt_regs\nexit"
        assert m.run(ebee.assemble(again), 0).retval == m.run(ebee.assemble(again), 0).retval


@pytest.mark.kernel
@pytest.mark.parametrize("key,opt,get", [(True, 8, 16), (True, 8, 8), (True, 8, 4), (True, 6, 16),
                                         (False, 8, 16), (True, 0, 16)])
def test_tunnel_options_match(kernel, key, opt, get):
    setkey = """
        r1 = 0
        *(u64 *)(r10 - 48) = r1
        *(u64 *)(r10 - 40) = r1
        *(u64 *)(r10 - 32) = r1
        *(u64 *)(r10 - 24) = r1
        *(u64 *)(r10 - 16) = r1
        *(u64 *)(r10 - 8) = r1
        r1 = 0x0a000001
        *(u32 *)(r10 - 44) = r1
        r1 = r6
        r2 = r10
        r2 += -48
        r3 = 44
        r4 = 0
        call bpf_skb_set_tunnel_key
        r7 = r0
    """ if key else "r7 = 0"
    setopt = f"""
        r1 = 0x0102030405060708 ll
        *(u64 *)(r10 - 64) = r1
        r1 = r6
        r2 = r10
        r2 += -64
        r3 = {opt}
        call bpf_skb_set_tunnel_opt
        r7 *= 31
        r7 += r0
    """ if opt else ""
    src = f"""
        r6 = r1
        {setkey}
        {setopt}
        r1 = -1
        *(u64 *)(r10 - 80) = r1
        *(u64 *)(r10 - 72) = r1
        r1 = r6
        r2 = r10
        r2 += -80
        r3 = {get}
        call bpf_skb_get_tunnel_opt
        r7 *= 31
        r7 += r0
        r1 = *(u64 *)(r10 - 80)
        r7 ^= r1
        r1 = *(u64 *)(r10 - 72)
        r7 ^= r1
        r0 = r7
        exit
    """
    same(src)


def test_rc_reports_are_recorded():
    from ebee.helpers.lirc import RcDevice
    dev = RcDevice()
    prog = """
        r6 = r1
        r2 = 8
        r3 = 0x1234
        r4 = 2
        call bpf_rc_keydown
        r1 = r6
        call bpf_rc_repeat
        r1 = r6
        r2 = -3
        r3 = 5
        call bpf_rc_pointer_rel
        exit
    """
    with Machine() as m:
        assert m.run(ebee.assemble(prog), dev.sample(0x01000230).start).retval == 0
    assert dev.events == [("keydown", 8, 0x1234, 1), ("repeat",), ("pointer_rel", -3, 5)]
    dev.close()


def test_read_branch_records_of_a_sample():
    from ebee.helpers.task import layouts
    esize = layouts().size("perf_branch_entry", 24)
    stack = Region(struct.pack("<QQ", 2, 0) + bytes(range(2 * esize)), "perf_branch_stack")
    sample = Region(256, "perf_sample_data")
    ctx = Region(24, "bpf_perf_event_data_kern")
    prog = """
        r2 = r10
        r2 += -{n}
        r3 = {n}
        r4 = {flags}
        call bpf_read_branch_records
        exit
    """
    with Machine() as m:
        for r in (stack, sample, ctx):
            m.memory.add(r)
        try:
            struct.pack_into("<Q", ctx.buf, 8, sample.start)
            run = lambda n, flags: m.run(ebee.assemble(prog.format(n=n, flags=flags)),  # noqa: E731
                                         ctx.start).retval
            assert run(esize, 0) == -errno.ENOENT & (2**64 - 1)      # no branch stack sampled
            struct.pack_into("<Q", sample.buf, 0, 1 << 11)
            struct.pack_into("<Q", sample.buf, 88, stack.start)
            assert run(esize, 1) == 2 * esize                         # the size it would copy
            assert run(esize, 0) == esize
            assert run(2 * esize, 0) == 2 * esize
            assert run(esize + 8, 0) == -errno.EINVAL & (2**64 - 1)
            assert run(esize, 2) == -errno.EINVAL & (2**64 - 1)
        finally:
            for r in (stack, sample, ctx):
                m.memory.remove(r)


@pytest.mark.kernel
@pytest.mark.parametrize("pt", [P.SCHED_CLS, P.XDP])
@pytest.mark.parametrize("ctxlen,index", [(0, 0), (14, 0), (len(UDP), 0), (len(UDP) + 1, 0),
                                          (14, 0xFFFFFFFF), (14, 9), (14, 1 << 52)])
def test_packet_perf_output_checks_match(kernel, pt, ctxlen, index):
    # no ring opened on the slots: after the flag and length checks, -ENOENT (or -E2BIG)
    arr = MapPair(T.PERF_EVENT_ARRAY, 4, 4, 4)
    try:
        flags = (ctxlen << 32) | index if index < (1 << 32) else index
        src = f"""
            r2 = 0
            *(u64 *)(r10 - 8) = r2
            r2 = map[id:{arr.id}] ll
            r3 = {flags:#x} ll
            r4 = r10
            r4 += -8
            r5 = 8
            call bpf_perf_event_output
            exit
        """
        same(src, pt, pairs=[arr])
    finally:
        arr.close()


@pytest.mark.kernel
@pytest.mark.parametrize("name,kind,size,flags", [
    (b"task_struct\0", 4, None, 0), (b"task_struct\0", 1, None, 0), (b"pid_t\0", 8, None, 0),
    (b"bpf_fentry_test1\0", 12, None, 0), (b"no_such_type_h19\0", 4, None, 0),
    (b"task_struct\0", 4, 1, 0), (b"task_struct\0", 4, 5, 0), (b"task_struct\0", 4, None, 1),
    (b"task_struct\0", 99, None, 0)])
def test_btf_find_by_name_kind_matches(kernel, name, kind, size, flags):
    name = name + bytes(-len(name) % 8)
    size = size if size is not None else name.index(b"\0") + 1
    stores = "\n".join(f"r1 = {int.from_bytes(name[k:k + 8], 'little'):#x} ll\n"
                       f"*(u64 *)(r10 - {64 - k}) = r1" for k in range(0, len(name), 8))
    src = f"""
        {stores}
        r1 = r10
        r1 += -64
        r2 = {size}
        r3 = {kind}
        r4 = {flags}
        call bpf_btf_find_by_name_kind
        r1 = r0
        r1 >>= 32
        r0 ^= r1
        exit
    """
    same(src, P.SYSCALL, data=b"", flags=BPF_F_SLEEPABLE)


# ------------------------------------------------------------------------------ SYN cookies

def test_siphash_is_the_reference_siphash_2_4():
    from ebee.helpers.syncookies import siphash
    # the SipHash paper's vectors (key 00..0f; messages 00..0e and 00..07)
    assert siphash(bytes(range(15)), bytes(range(16))) == 0xa129ca6149be45e5
    assert siphash(bytes(range(8)), bytes(range(16))) == 0x93f5f5799a932462
    assert siphash(b"", bytes(range(16))) == 0x726fdb47dd0e0e31


def _stack_bytes(data: bytes, at: int) -> str:
    data = data + bytes(-len(data) % 8)
    return "\n".join(f"r1 = {int.from_bytes(data[k:k + 8], 'little'):#x} ll\n"
                     f"*(u64 *)(r10 - {at - k}) = r1" for k in range(0, len(data), 8))


def _syn(v6: bool, mss: int | None, seq: int = 0x11223344) -> tuple[bytes, bytes]:
    if v6:
        ip = bytes.fromhex("6000000000140640") + bytes(range(1, 17)) + bytes(range(17, 33))
    else:
        ip = bytes.fromhex("4500003c00004000400600000a0000010a000002")
    opts = struct.pack(">BBH", 2, 4, mss) if mss is not None else b""
    doff = (20 + len(opts)) // 4
    th = struct.pack(">HHIIBBHHH", 40000, 80, seq, 0, doff << 4, 0x02, 65535, 0, 0) + opts
    return ip, th


@pytest.mark.kernel
@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("mss,th_len,tamper", [(None, None, 0), (1460, None, 0), (1400, None, 0),
                                               (9000, None, 0), (100, None, 0), (1460, None, 1),
                                               (None, 16, 0), (1460, 20, 0)])
def test_syncookies_gen_then_check_as_linux(kernel, v6, mss, th_len, tamper):
    # the cookies are each side's own secret's; what must agree is the mss encoded, the
    # length checks, and that a cookie checks valid once echoed (+1) in an ACK and not
    # when tampered with
    ip, th = _syn(v6, mss)
    n = len(th) if th_len is None else th_len
    suffix = "ipv6" if v6 else "ipv4"
    seq1 = struct.unpack(">I", struct.pack("<I", 0x11223345))[0]
    src = f"""
        {_stack_bytes(ip, 128)}
        {_stack_bytes(th, 64)}
        r1 = r10
        r1 += -128
        r2 = r10
        r2 += -64
        r3 = {n}
        call bpf_tcp_raw_gen_syncookie_{suffix}
        r7 = r0
        r1 = r7
        r1 += {1 + tamper}
        r1 = be32 r1
        *(u32 *)(r10 - 56) = r1
        r1 = {seq1:#x}
        *(u32 *)(r10 - 60) = r1
        r1 = 0x10
        *(u8 *)(r10 - 51) = r1
        r1 = r10
        r1 += -128
        r2 = r10
        r2 += -64
        call bpf_tcp_raw_check_syncookie_{suffix}
        r8 = r0
        r8 <<= 16
        r0 = r7
        r0 >>= 32
        r0 ^= r8
        exit
    """
    same(src)


# ------------------------------------------------------------------------------ IPsec

XFRM = """
    r2 = {index}
    r3 = r10
    r3 += -32
    r4 = {size}
    r5 = {flags}
    call bpf_skb_get_xfrm_state
    r1 = *(u64 *)(r10 - 32)
    r0 ^= r1
    r1 = *(u64 *)(r10 - 24)
    r0 ^= r1
    r1 = *(u64 *)(r10 - 16)
    r0 ^= r1
    exit
"""


@pytest.mark.kernel
@pytest.mark.parametrize("index,size,flags", [(0, 28, 0), (1, 28, 0), (0, 24, 0), (0, 28, 1)])
def test_xfrm_state_of_a_packet_without_ipsec_matches(kernel, index, size, flags):
    pre = "r6 = -1\n" + "\n".join(f"*(u64 *)(r10 - {k}) = r6" for k in (32, 24, 16, 8))
    same(pre + XFRM.format(index=index, size=size, flags=flags))


def test_xfrm_state_from_the_modelled_sec_path():
    from ebee.helpers.xfrm import XfrmState, set_sec_path
    from ebee.packet.net import Network
    from ebee.packet.skbuff import SkBuff
    skb = SkBuff(UDP, dev=Network().loopback)
    set_sec_path(skb, [XfrmState(7, 0x1000, "192.0.2.1"), XfrmState(8, 0x2000, "2001:db8::1")])
    pre = "r6 = -1\n" + "\n".join(f"*(u64 *)(r10 - {k}) = r6" for k in (32, 24, 16, 8))

    def want(rec: bytes) -> int:
        rec = rec + b"\xff" * (32 - len(rec))       # the tail keeps the -1 fill
        w = struct.unpack("<4Q", rec)
        return w[0] ^ w[1] ^ w[2]                  # r0 = 0 on success
    v4 = struct.pack("<I", 7) + struct.pack(">I", 0x1000) + struct.pack("<HH", 2, 0) + \
        bytes([192, 0, 2, 1]) + bytes(12)
    v6 = struct.pack("<I", 8) + struct.pack(">I", 0x2000) + struct.pack("<HH", 10, 0) + \
        bytes.fromhex("20010db8000000000000000000000001")
    with Machine() as m:
        run = lambda i: m.run(ebee.assemble(pre + XFRM.format(index=i, size=28, flags=0)),  # noqa: E731
                              skb.addr).retval
        assert run(0) == want(v4)
        assert run(1) == want(v6)
        assert run(2) == ((-errno.EINVAL & (2**64 - 1)) ^ want(bytes(28)))
