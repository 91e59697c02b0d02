"""Attaching programs in the real kernel, with traffic and events, and cleaning up after.

Every attach type this machine offers is exercised end to end: the program
is attached, the event it hooks is caused, its map is read back, and the
attachment is gone afterwards.  Types the running kernel cannot offer skip
with the reason (here: kprobes need CONFIG_KPROBES; fentry/fexit/lsm need
BPF trampolines the kernel refuses; hardware counters need a CPU PMU).
"""
from __future__ import annotations

import errno
import gc
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest

import ebee
from ebee.kernel import attach as A
from ebee.kernel import netns
from ebee.kernel.attach import netlink
from ebee.kernel.links import Link, live_attachments
from ebee.kernel.maps import KernelMap
from ebee.kernel.prog import KernelLoadError, KernelProgram
from ebee.uapi import AttachType, MapType, ProgType
from kernel_helpers import (EXAMPLES, SRC_MAC, Sniffer, bpffs_dir, send_frames, udp_frame,
                            veth_netns)

pytestmark = pytest.mark.kernel


@pytest.fixture
def counter(kernel):
    """An array map of 4 u64 counters and assembler for 'count into slot K, return R'."""
    m = KernelMap(MapType.ARRAY, 4, 8, 4)

    def prog(slot: int = 0, ret: int = 0) -> list:
        return ebee.assemble(f"""
            r1 = {slot}
            *(u32 *)(r10 - 4) = r1
            r2 = r10
            r2 += -4
            r1 = map[fd:{m.fd}] ll
            call 1
            if r0 == 0 goto +2
            r1 = 1
            lock *(u64 *)(r0 + 0) += r1
            r0 = {ret}
            exit
        """)

    def get(slot: int = 0) -> int:
        return int.from_bytes(m.lookup(struct.pack("I", slot)), "little")
    prog.get = get
    prog.map = m
    yield prog
    m.close()


@pytest.fixture(autouse=True)
def nothing_left(kernel):
    yield
    gc.collect()
    assert live_attachments() == []


def busy_child(comm: str = "ebee-attach-t", n: int = 200) -> None:
    code = (f"open('/proc/self/comm','w').write({comm!r}); import os\n"
            f"for _ in range({n}): os.getppid()")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- tracing ------------------------------------------------------------------------------

def test_tracepoint_counts_sys_enter_per_comm(kernel):
    """syscall_counter.o (tracepoint/raw_syscalls/sys_enter, a hash keyed by comm)."""
    with ebee.load(EXAMPLES / "syscall_counter.o") as obj, obj.load_kernel() as k:
        prog = k.programs["count_syscalls"]
        with prog.attach() as a:
            assert a.target == "tracepoint/raw_syscalls/sys_enter"
            assert a.link is not None and a.link.info().prog_id == prog.id
            busy_child("ebee-tp-count", 500)
        counts = {bytes(key).rstrip(b"\0").decode(): int.from_bytes(v, "little")
                  for key, v in k.maps["syscalls"].items()}
        assert counts.get("ebee-tp-count", 0) >= 500
        # nothing more is counted once detached
        before = dict(k.maps["syscalls"].items())
        busy_child("ebee-tp-count", 50)
        assert dict(k.maps["syscalls"].items()) == before


def test_raw_tracepoint(counter):
    with KernelProgram(counter(), ProgType.RAW_TRACEPOINT, name="rawtp") as p:
        with A.raw_tracepoint(p, "sys_enter") as link:
            assert isinstance(link, Link)
            assert link.info().details["tp_name"] == "sys_enter"
            busy_child()
        assert counter.get() >= 200
    with pytest.raises(OSError, match="no raw tracepoint"):
        with KernelProgram(counter(), ProgType.RAW_TRACEPOINT) as p:
            A.raw_tracepoint(p, "no_such_tracepoint_ebee")


def test_tp_btf_core_object(kernel):
    """core_task.o: tp_btf/sched_process_fork with CO-RE reads and __kconfig externs."""
    with ebee.load(EXAMPLES / "core_task.o") as obj, obj.load_kernel() as k:
        with k.programs["on_fork"].attach():
            child = subprocess.Popen(["sleep", "0"])
            child.wait()
        tasks = k.maps["tasks"]
        raw = tasks.get(struct.pack("I", child.pid))
        assert raw is not None, "the fork of our child was not seen"
        pid, tgid, ppid = struct.unpack_from("III", raw)
        assert (pid, tgid, ppid) == (child.pid, child.pid, os.getpid())
        release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:3])
        kver = struct.unpack_from("I", raw, 28)[0]
        assert kver >> 8 == (release[0] << 8) | release[1]


def test_uprobe_and_uretprobe_on_libc(counter):
    code = "import os\nfor _ in range(100): os.getpid()"
    for legacy in (False, True):
        for ret in (False, True):
            counter.map.update(b"\0" * 4, b"\0" * 8)
            with KernelProgram(counter(), ProgType.KPROBE, name="up") as p:
                with A.uprobe(p, "libc.so.6", symbol="getpid", retprobe=ret, legacy=legacy):
                    subprocess.run([sys.executable, "-c", code], check=True)
            assert counter.get() >= 100, (legacy, ret)
    with open("/sys/kernel/tracing/uprobe_events") as f:
        assert "ebee_" not in f.read()        # the legacy probes were removed again


def test_uprobe_symbol_offset_matches_nm(kernel):
    from ebee.kernel.attach.elfsym import find_binary, symbol_offset
    libc = find_binary("libc.so.6")
    off = symbol_offset(libc, "getpid")
    with open(libc, "rb") as f:
        f.seek(off)
        code = f.read(16)
    assert code and code != b"\0" * 16
    with pytest.raises(OSError, match="no function symbol"):
        symbol_offset(libc, "no_such_function_ebee")


def test_kprobe(counter):
    from ebee.kernel.attach.perf_event import _probe_events_file, pmu_type
    if pmu_type("kprobe") is None and _probe_events_file(False) is None:
        pytest.skip("kprobes are not available in this kernel (CONFIG_KPROBES is off)")
    with KernelProgram(counter(), ProgType.KPROBE, name="kp") as p:
        with A.kprobe(p, "do_sys_openat2"):
            for _ in range(20):
                open("/dev/null").close()
    assert counter.get() >= 20


def test_kprobe_unavailable_message(counter):
    from ebee.kernel.attach.perf_event import _probe_events_file, pmu_type
    if pmu_type("kprobe") is not None or _probe_events_file(False) is not None:
        pytest.skip("this kernel has kprobes")
    with KernelProgram(counter(), ProgType.KPROBE, name="kp") as p:
        with pytest.raises(OSError, match="kprobes are not available in this kernel"):
            A.kprobe(p, "do_sys_openat2")


@pytest.mark.parametrize("kind,attach_type,func", [
    ("fentry", AttachType.TRACE_FENTRY, "do_unlinkat"),
    ("fexit", AttachType.TRACE_FEXIT, "do_unlinkat"),
    ("lsm", AttachType.LSM_MAC, "bpf_lsm_path_unlink"),
])
def test_trampoline_programs(counter, tmp_path, kind, attach_type, func):
    from ebee.kernel.btf import find_kernel_type
    ptype = ProgType.LSM if kind == "lsm" else ProgType.TRACING
    try:
        p = KernelProgram(counter(), ptype, expected_attach_type=attach_type,
                          attach_btf_id=find_kernel_type(func).type_id, name=kind)
    except KernelLoadError as e:
        if e.errno == errno.EPERM and not e.log:
            pytest.skip(f"this kernel refuses {kind} programs before verifying them "
                        f"(EPERM: BPF trampolines unavailable)")
        raise
    with p, A.tracing(p):
        for i in range(5):
            f = tmp_path / f"x{i}"
            f.write_bytes(b"")
            f.unlink()
    assert counter.get() >= 5


def test_perf_event_software_clock(counter):
    with KernelProgram(counter(), ProgType.PERF_EVENT, name="clk") as p:
        from ebee.uapi import PerfSwId, PerfType
        with A.perf_event(p, PerfType.SOFTWARE, PerfSwId.CPU_CLOCK, sample_freq=1000) as a:
            assert len(a.fds) == len(A.perf_event.__globals__["online_cpus"]())
            time.sleep(0.2)
    assert counter.get() > 0


def test_perf_event_hardware(counter):
    from ebee.uapi import PerfHwId, PerfType
    with KernelProgram(counter(), ProgType.PERF_EVENT, name="hw") as p:
        try:
            a = A.perf_event(p, PerfType.HARDWARE, PerfHwId.CPU_CYCLES, sample_period=100000)
        except OSError as e:
            if e.errno == errno.ENOENT:
                pytest.skip(str(e.strerror))
            raise
        with a:
            sum(range(10 ** 6))
    assert counter.get() > 0


# --- networking ---------------------------------------------------------------------------

BLOCKED, ALLOWED = "10.9.0.66", "10.9.0.7"


@pytest.mark.parametrize("mode,link", [("skb", True), ("drv", True), ("skb", False),
                                       ("drv", False)])
def test_xdp_firewall_on_veth_in_netns(kernel, mode, link):
    """xdp_firewall.o on v1 of a veth pair in a fresh netns; traffic sent into v0."""
    with veth_netns() as ns, bpffs_dir() as pins, \
            ebee.load(EXAMPLES / "xdp_firewall.o") as obj, \
            obj.load_kernel(pin_root=str(pins)) as k:
        assert "blocklist" in k.pinned     # LIBBPF_PIN_BY_NAME, under our pin root
        k.maps["blocklist"][socket.inet_aton(BLOCKED)] = 0
        prog = k.programs["xdp_firewall"]
        with netns.enter(ns):
            a = prog.attach("v1", mode=mode, link=link)
            state = netlink.xdp_query("v1")
            assert prog.id in ((state.skb_prog_id,) if mode == "skb" else (state.drv_prog_id,))
        sniff = Sniffer(ns, "v1")
        try:
            send_frames(ns, "v0", [udp_frame(src=BLOCKED)] * 5 + [udp_frame(src=ALLOWED)] * 3)
            got = sniff.frames()
        finally:
            sniff.close()
        a.detach()
        with netns.enter(ns):
            assert netlink.xdp_query("v1").prog_id == 0
        srcs = sorted(socket.inet_ntoa(f[26:30]) for f in got)
        assert srcs == [ALLOWED] * 3
        assert k.maps["stats"][1] == (5).to_bytes(8, "little")          # STAT_DROP
        assert int.from_bytes(k.maps["stats"][0], "little") >= 3       # STAT_PASS
        assert k.maps["blocklist"][socket.inet_aton(BLOCKED)] == (5).to_bytes(8, "little")


@pytest.mark.parametrize("tcx", [True, False])
@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_tc_on_veth(counter, tcx, direction):
    with veth_netns() as ns, KernelProgram(counter(0, 2), ProgType.SCHED_CLS, name="tcdrop") as p:
        iface = "v1" if direction == "ingress" else "v0"
        from ebee.uapi import TC_H_CLSACT, TC_H_MIN_EGRESS, TC_H_MIN_INGRESS
        parent = netlink.tc_handle(TC_H_CLSACT >> 16, TC_H_MIN_INGRESS if direction == "ingress"
                                   else TC_H_MIN_EGRESS)
        with netns.enter(ns):
            a = A.tc(p, iface, direction, tcx=tcx)
        with a:
            assert isinstance(a, Link) == tcx
            if not tcx:
                with netns.enter(ns):
                    assert [pid for _, pid in netlink.tc_filters(iface, parent)] == [p.id]
            sniff = Sniffer(ns, "v1")
            try:
                send_frames(ns, "v0", [udp_frame()] * 4)
                got = sniff.frames()
            finally:
                sniff.close()
        assert got == []                 # TC_ACT_SHOT on every frame
        assert counter.get() >= 4
        with netns.enter(ns):
            assert not netlink.qdisc_clsact(iface, create=False)   # ours was removed
        sniff = Sniffer(ns, "v1")
        try:
            send_frames(ns, "v0", [udp_frame()] * 2)
            assert len(sniff.frames()) == 2
        finally:
            sniff.close()


def test_socket_filter_example_on_packet_socket(kernel):
    """socket_bytes.o (like the kernel's sockex1) on an AF_PACKET socket: bytes per IP
    protocol of the frames arriving on v1, every frame kept."""
    with veth_netns() as ns, ebee.load(EXAMPLES / "socket_bytes.o") as obj, \
            obj.load_kernel() as k:
        sniff = Sniffer(ns, "v1")
        try:
            with k.programs["socket_bytes"].attach(sniff.sock):
                frames = [udp_frame(payload=b"u" * n) for n in (10, 20)] + \
                    [udp_frame(payload=b"t" * 30, proto=socket.IPPROTO_TCP)]
                send_frames(ns, "v0", frames)
                got = sniff.frames()
        finally:
            sniff.close()
        assert sorted(got) == sorted(frames)
        by_proto = k.maps["proto_bytes"]
        assert int.from_bytes(by_proto[socket.IPPROTO_UDP], "little") == len(frames[0]) + \
            len(frames[1])
        assert int.from_bytes(by_proto[socket.IPPROTO_TCP], "little") == len(frames[2])


def test_socket_filter_drops(counter):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(0.2)
    try:
        with KernelProgram(counter(0, 0), ProgType.SOCKET_FILTER, name="drop") as p:
            with A.socket_filter(p, rx):
                tx.sendto(b"dropped", rx.getsockname())
                with pytest.raises(socket.timeout):
                    rx.recv(100)
            tx.sendto(b"kept", rx.getsockname())
            assert rx.recv(100) == b"kept"
            assert counter.get() == 1
    finally:
        rx.close()
        tx.close()


@pytest.mark.parametrize("link", [True, False])
def test_cgroup_skb_egress(counter, tmp_path, link):
    from ebee.kernel.attach.cgroup import cgroup2_root
    root = cgroup2_root()
    if root is None:
        pytest.skip("no cgroup v2 hierarchy mounted")
    cg = os.path.join(root, f"ebee-test-{os.getpid()}-{int(link)}")
    os.makedirs(cg, exist_ok=True)
    try:
        with KernelProgram(counter(0, 1), ProgType.CGROUP_SKB, name="cgegress",
                           expected_attach_type=AttachType.CGROUP_INET_EGRESS) as p:
            with A.cgroup(p, cg, link=link) as a:
                assert isinstance(a, Link) == link
                code = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                        "for _ in range(7): s.sendto(b'x', ('127.0.0.1', 9))")
                subprocess.run(["sh", "-c", f"echo $$ > {cg}/cgroup.procs && "
                                            f"exec {sys.executable} -c \"{code}\""], check=True)
        assert counter.get() == 7
    finally:
        os.rmdir(cg)


# --- cleanup ----------------------------------------------------------------------------------

def test_link_update_and_detach(counter):
    with KernelProgram(counter(0), ProgType.RAW_TRACEPOINT, name="a") as p1, \
            KernelProgram(counter(1), ProgType.RAW_TRACEPOINT, name="b") as p2, \
            veth_netns() as ns, \
            KernelProgram(ebee.assemble("r0 = 2\nexit"), ProgType.XDP, name="x1") as x1, \
            KernelProgram(ebee.assemble("r0 = 1\nexit"), ProgType.XDP, name="x2") as x2:
        with netns.enter(ns):
            link = A.xdp(x1, "v1", mode="skb")
            link.update(x2, old_program=x1)
            assert link.info().prog_id == x2.id
            assert netlink.xdp_query("v1").prog_id == x2.id
            link.detach()
            assert netlink.xdp_query("v1").prog_id == 0
        del p1, p2


def test_garbage_collection_detaches(counter):
    with veth_netns() as ns, \
            KernelProgram(ebee.assemble("r0 = 2\nexit"), ProgType.XDP, name="gc") as p:
        with netns.enter(ns):
            a = A.xdp(p, "v1", mode="skb", link=False)     # netlink: not tied to an fd
            assert netlink.xdp_query("v1").prog_id == p.id
        del a
        gc.collect()
        with netns.enter(ns):
            assert netlink.xdp_query("v1").prog_id == 0


@pytest.mark.parametrize("how", ["exit", "sigint", "sigterm"])
def test_exit_detaches_netlink_xdp(kernel, how):
    """A process that attaches XDP through netlink and ends -- normally, by Ctrl-C or
    SIGTERM -- leaves nothing attached."""
    script = textwrap.dedent(f"""
        import sys, time, ebee
        from ebee.kernel import netns, attach
        from ebee.kernel.prog import KernelProgram
        from ebee.uapi import ProgType
        p = KernelProgram(ebee.assemble("r0 = 2\\nexit"), ProgType.XDP, name="exitt")
        from ebee.kernel.attach import netlink
        with netns.enter(sys.argv[1]):
            keep = attach.xdp(p, "v1", mode="skb", link=False)
            print("attached", netlink.xdp_query("v1").prog_id, flush=True)
        if {how!r} != "exit":
            time.sleep(30)
    """)
    with veth_netns() as ns:
        proc = subprocess.Popen([sys.executable, "-c", script, ns], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        word, prog_id = proc.stdout.readline().split()
        assert word == "attached" and int(prog_id) != 0
        if how != "exit":
            proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGTERM)
        proc.wait(timeout=20)
        with netns.enter(ns):
            assert netlink.xdp_query("v1").prog_id == 0, proc.stderr.read()
