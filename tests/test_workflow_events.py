"""Tracing programs on synthetic events, and the user-space skeleton attach
(``obj.attach()`` onto ebee's event source), compared with the kernel where it can be."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

import ebee
from ebee.helpers.task import Task
from ebee.packet import udp_packet
from ebee.testrun.events import AttachPoint

C = Path(__file__).resolve().parents[1] / "examples" / "c"
TRACE = C / "trace_events.o"
SKEL = C / "skeleton.o"


def events(obj):
    return [r.value for r in obj.maps["events"].reader(type="struct event").drain()]


def test_tracepoint_pointer_field_and_task_are_python_values():
    with ebee.load(TRACE) as obj:
        cat = Task(pid=4242, tgid=4242, uid=1000, comm="cat")
        r = obj.programs["on_openat"].fire(filename=b"/etc/passwd", flags=0o2000000, task=cat)
        assert r.retval == 0
        [e] = events(obj)
        assert (e.kind, e.pid, e.uid, e.flags, e.comm, e.str) == \
            (1, 4242, 1000, 0o2000000, "cat", "/etc/passwd")
        # the next event's task is its own: nothing process-global was set
        obj.programs["on_openat"].fire(filename="/tmp/x", task=Task(pid=7, tgid=7, comm="sh"))
        [e] = events(obj)
        assert (e.pid, e.comm, e.str) == (7, "sh", "/tmp/x")


def test_uretprobe_return_value_as_a_string_and_rodata_filter():
    o = ebee.open_object(TRACE)
    o.rodata.target_uid = 0
    with o.load() as obj:
        p = obj.programs["on_readline"]
        p.fire(retval=b"ls -l", task=Task(pid=5, tgid=5, uid=0, comm="bash"))
        p.fire(retval=b"whoami", task=Task(pid=6, tgid=6, uid=1000, comm="bash"))  # filtered
        p.fire(retval=0, task=Task(pid=5, tgid=5, uid=0, comm="bash"))             # NULL line
        assert [(e.kind, e.pid, e.str) for e in events(obj)] == [(2, 5, "ls -l")]


def test_raw_tp_and_kprobe_arguments():
    with ebee.load(SKEL) as obj:
        obj.programs["on_sys_enter"].fire(0, 257)
        obj.programs["on_missing"].fire(1, "a string")
        assert obj.bss.hits == [0, 1, 1, 0]


def test_bad_events_say_why():
    with ebee.load(TRACE) as obj:
        with pytest.raises(KeyError, match="no field 'nosuch'"):
            obj.programs["on_openat"].fire(nosuch=1)
        with pytest.raises(TypeError, match="by name"):
            obj.programs["on_openat"].fire(1, 2)
        with pytest.raises(TypeError, match="int, str, bytes"):
            obj.programs["on_readline"].fire(retval=1.5)
    with ebee.load(SKEL) as obj, pytest.raises(ValueError, match="xdp program"):
        obj.programs["pass"].fire()


def test_attach_points_from_every_spelling():
    tp = AttachPoint("tracepoint", "syscalls/sys_enter_openat")
    assert AttachPoint.parse("tp/syscalls/sys_enter_openat") == tp
    assert AttachPoint.parse("tracepoint/syscalls/sys_enter_openat") == tp
    assert AttachPoint.parse("raw_tracepoint/sys_enter") == AttachPoint("raw_tp", "sys_enter")
    assert AttachPoint.parse("uretprobe//bin/bash:readline") == \
        AttachPoint("uretprobe", "/bin/bash:readline")
    assert AttachPoint.parse("kprobe.multi/tcp_*").matches(AttachPoint("kprobe", "tcp_connect"))
    assert AttachPoint.parse("xdp") is None and AttachPoint.parse("kprobe") is None


def test_user_space_attach_reports_as_the_kernel_does():
    with ebee.load(SKEL) as obj:
        report = obj.attach()
        assert list(report.attached) == ["on_openat", "on_sys_enter"]
        assert list(report.failed) == ["on_missing"] and not report.ok
        assert report.skipped == ["pass"]
        assert "on_close" not in str(report)                  # SEC("?..."): not loaded
        me = Task(pid=os.getpid(), tgid=os.getpid(), comm="pytest")
        [r] = obj.events.fire("tp/syscalls/sys_enter_openat", filename=b"/etc/hostname",
                              task=me)
        assert r.retval == 0
        assert obj.events.fire("tracepoint/sched/sched_process_exec") == []   # none there
        obj.events.fire("raw_tp/sys_enter", 0, 257, task=me)
        assert obj.bss.hits == [1, 1, 0, 0]
        assert obj.maps["per_tgid"][os.getpid()] == (1).to_bytes(8, "little")
        # detaching stops the runs
        report.attached["on_openat"].detach()
        assert obj.events.fire("tp/syscalls/sys_enter_openat", filename=b"x") == []
        with pytest.raises(TypeError):
            obj.attach(None, "eth0")


def test_xdp_and_tc_attach_to_a_virtual_device():
    with ebee.load(SKEL) as obj:
        a = obj.attach("pass", "eth0")
        assert obj.events.net.device("eth0").ifindex == 2
        [r] = obj.events.receive("eth0", udp_packet())
        assert r.verdict == "XDP_PASS" and a.runs == 1
        with pytest.raises(OSError, match="EBUSY"):
            obj.attach("pass", "eth0")
        assert obj.events.receive("lo", udp_packet()) == []
        a.detach()
        assert obj.events.receive("eth0", udp_packet()) == []
    with ebee.load(C / "tc_classifier.o") as obj:
        name = next(iter(obj.programs))
        obj.attach(name, "eth0")
        [r] = obj.events.receive("eth0", udp_packet())
        assert r.prog_type.name == "SCHED_CLS"


@pytest.mark.kernel
def test_same_report_and_records_as_the_kernel(kernel):
    with ebee.load(SKEL) as obj, obj.load_kernel() as k:
        kr = k.attach()
        ur = obj.attach()
        assert (list(ur.attached), list(ur.failed), ur.skipped) == \
            (list(kr.attached), list(kr.failed), kr.skipped)
    # the same tracepoint program, same event: the kernel's record and ebee's agree
    path = f"/tmp/ebee-open-{os.getpid()}"
    o = ebee.open_object(TRACE)
    o.rodata.target_uid = os.getuid()
    with o.load() as obj, obj.load_kernel() as k:
        with k.programs["on_openat"].attach(), k.maps["events"].reader(
                type="struct event") as rd:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.close(fd)
            os.unlink(path)
            mine = [r.value for r in rd.drain() if r.value.pid == os.getpid()
                    and r.value.str == path]
        assert mine, "the kernel saw no openat of the path"
        kev = mine[0]
        me = Task(pid=os.getpid(), tgid=os.getpid(), uid=os.getuid(), comm=kev.comm)
        obj.programs["on_openat"].fire(filename=path, flags=kev.flags, task=me)
        [uev] = events(obj)
        assert dataclasses.asdict(uev) == dataclasses.asdict(kev)   # two BTFs, two classes
