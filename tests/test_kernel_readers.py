"""Reading what kernel programs produce: ring buffer, perf event array, trace pipe.

All three readers share ``ebee.events.EventReader`` with the user-space runtime:
the same ``poll``/``consume``/``read``/iteration API and the same records.
"""
from __future__ import annotations

import os
import struct
import subprocess
import time
import uuid

import pytest

import ebee
from ebee.events import EventReader, Record, TraceLine
from ebee.kernel.map_handle import KernelMapHandle
from ebee.kernel.maps import KernelMap
from ebee.kernel.prog import KernelProgram
from ebee.uapi import MapType, ProgType
from kernel_helpers import EXAMPLES

pytestmark = pytest.mark.kernel


def test_ring_buffer_producer_read_from_python(kernel):
    """ringbuf_events.o: one record per exec(), read with a callback and as an iterator."""
    with ebee.load(EXAMPLES / "ringbuf_events.o") as obj, obj.load_kernel() as k:
        events = k.maps["events"]
        with k.programs["on_exec"].attach(), events.reader() as r:
            assert isinstance(r, EventReader)
            child = subprocess.Popen(["true"])
            child.wait()
            mine = []
            deadline = time.monotonic() + 5
            while not mine and time.monotonic() < deadline:
                for rec in iter(lambda: r.read(0.5), None):
                    pid, uid, ts = struct.unpack_from("IIQ", rec.data)
                    if pid == child.pid:
                        mine.append(rec)
                    break
        assert len(mine) == 1
        rec = mine[0]
        assert rec.cpu == -1 and rec.lost == 0 and len(rec.data) == 32
        assert rec.data[16:].rstrip(b"\0") == b"true"


def test_ring_buffer_callback_and_discard(kernel):
    rb = KernelMapHandle(KernelMap(MapType.RINGBUF, 0, 0, 4096))
    # submit r6 records of 8 bytes; every other one discarded (bpf_ringbuf_discard)
    prog = ebee.assemble(f"""
        r7 = 0
    loop:
        r1 = map[fd:{rb.fd}] ll
        r2 = 8
        r3 = 0
        call 131
        if r0 == 0 goto out
        *(u64 *)(r0 + 0) = r7
        r1 = r0
        r2 = 0
        r3 = r7
        r3 &= 1
        if r3 != 0 goto discard
        call 132
        goto next
    discard:
        call 133
    next:
        r7 += 1
        if r7 < 6 goto loop
    out:
        r0 = 2
        exit
    """)
    got = []
    with KernelProgram(prog, ProgType.XDP, name="rbcb") as p, rb.reader(got.append) as r:
        assert r.poll(0) == 0
        p.run(b"\0" * 64)
        assert r.poll(1.0) == 3
    assert [int.from_bytes(x.data, "little") for x in got] == [0, 2, 4]
    rb.close()


def test_perf_event_array_samples_and_lost(kernel):
    pa = KernelMapHandle(KernelMap(MapType.PERF_EVENT_ARRAY, 4, 4, 64))
    prog = ebee.assemble(f"""
        r6 = r1
        r1 = 0x1122334455667788 ll
        *(u64 *)(r10 - 8) = r1
        r1 = r6
        r2 = map[fd:{pa.fd}] ll
        r3 = 0xffffffff ll
        r4 = r10
        r4 += -8
        r5 = 8
        call 25
        r0 = 2
        exit
    """)
    lost = []
    with KernelProgram(prog, ProgType.XDP, name="perfout") as p:
        with pa.reader(pages=1, lost_callback=lambda cpu, n: lost.append(n)) as r:
            p.run(b"\0" * 64, repeat=1)
            rec = r.read(1.0)
            assert isinstance(rec, Record) and rec.lost == 0 and rec.cpu >= 0
            # the kernel pads raw samples so that size + 4 is a multiple of 8
            assert rec.data[:8] == bytes.fromhex("8877665544332211") and len(rec.data) == 12
            p.run(b"\0" * 64, repeat=1000)      # far more than one page holds
            samples = r.drain()
            # the kernel reports the loss with the next sample that fits
            p.run(b"\0" * 64, repeat=1)
            samples += r.drain()
        assert sum(lost) > 0 and len(samples) > 1
        assert len(samples) + sum(lost) == 1001
    pa.close()


def test_trace_pipe_reads_bpf_printk(tracing):
    from ebee.kernel.trace_pipe import TracePipe, parse_line
    marker = "ebee" + uuid.uuid4().hex[:8]
    words = struct.unpack("<QQ", (marker + "\0").encode().ljust(16, b"\0"))
    prog = ebee.assemble(f"""
        r1 = {words[0]:#x} ll
        *(u64 *)(r10 - 16) = r1
        r1 = {words[1]:#x} ll
        *(u64 *)(r10 - 8) = r1
        r1 = r10
        r1 += -16
        r2 = 16
        call 6
        r0 = 2
        exit
    """)
    with KernelProgram(prog, ProgType.XDP, name="printk") as p, TracePipe() as tp:
        p.run(b"\0" * 64, repeat=3)
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            line = tp.read(1.0)
            if line is not None and line.message == marker:
                got.append(line)
    assert len(got) == 3
    assert all(isinstance(x, TraceLine) and x.function == "bpf_trace_printk" for x in got)
    again = parse_line(str(got[0]))
    assert (again.pid, again.cpu, again.message) == (got[0].pid, got[0].cpu, marker)


def test_trace_line_parsing():
    from ebee.kernel.trace_pipe import parse_line
    t = parse_line("   my task-name-1234    [001] d..31 12345.678901: bpf_trace_printk: hi: x")
    assert (t.task, t.pid, t.cpu, t.flags, t.timestamp, t.function, t.message) == \
        ("my task-name", 1234, 1, "d..31", 12345.678901, "bpf_trace_printk", "hi: x")
    t = parse_line("          <idle>-0       (-------) [000] ..s2. 7.1: bpf_trace_printk: y")
    assert (t.task, t.pid, t.cpu, t.message) == ("<idle>", 0, 0, "y")
    assert parse_line("garbage").message == "garbage"


def _exec_events(reader, expect_pid=None) -> list[tuple[int, bytes]]:
    """Consumer code written once for both backends: (pid, comm) of each exec event."""
    out = []
    for rec in iter(lambda: reader.read(1.0), None):
        pid = struct.unpack_from("I", rec.data)[0]
        out.append((pid, rec.data[16:].rstrip(b"\0")))
        if expect_pid is None or pid == expect_pid:
            break
    return out


@pytest.mark.parametrize("backend", ["user", "kernel"])
def test_one_consumer_for_both_backends(kernel, backend):
    """ringbuf_events.o's events read by the same code from ebee's runtime (a synthetic
    tracepoint event) and from the kernel (a real exec)."""
    from ebee.testrun import run_event
    with ebee.load(EXAMPLES / "ringbuf_events.o") as obj:
        if backend == "user":
            with obj.maps["events"].reader() as r:
                assert isinstance(r, EventReader)
                run_event(obj.programs["on_exec"], bytes(64))
                events = _exec_events(r)
            assert len(events) == 1 and events[0][0] == os.getpid()
            return
        with obj.load_kernel() as k, k.programs["on_exec"].attach(), \
                k.maps["events"].reader() as r:
            assert isinstance(r, EventReader)
            child = subprocess.Popen(["true"])
            child.wait()
            events = _exec_events(r, child.pid)
        assert (child.pid, b"true") in events
