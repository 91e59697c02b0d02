#!/usr/bin/env python3
"""Packets per second for the example XDP firewall over a 100k-packet capture,
ebee against the kernel's BPF_PROG_TEST_RUN for the same program and packets.

    python bench/xdp.py [--count 100000] [--engine interp|jit|auto] [--threads 2]

The capture is generated here (examples/make_pcaps.py, same mix as the shipped
one), in a temporary directory.  ebee replays it four ways: one test run per
packet (``Runner.run``); ``replay`` packet by packet (what `ebee run --pcap`
did before the native batch path); ``replay`` through the JIT's native batch
driver (``ebee.jit.xdp_batch``: counts only, as `ebee run --pcap` without
--pcap-out), the same with an ``Outcome`` per packet (--pcap-out) and on
``--threads`` threads.  The kernel runs each packet with BPF_PROG_TEST_RUN
(repeat 1); its per-packet cost is the kernel's own ``duration`` (ns spent in
the program, averaged), measured in the same process run.  The report gives
each row's packets/s and its ratio to the kernel; wall-clock time of the kernel
syscalls (which includes copying packets in and out) is shown as well.
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "examples"))

import ebee  # noqa: E402
from ebee.packet import pcap  # noqa: E402
from ebee.testrun.parallel import replay_parallel
from ebee.testrun.replay import native_batch_unavailable, replay
from ebee.testrun import Runner
from ebee.uapi import XdpAction  # noqa: E402

OBJ = ROOT / "examples" / "c" / "xdp_firewall.o"
BLOCKED = ("10.0.0.1", "10.0.0.2")


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--engine", default=None, choices=("interp", "jit", "auto"))
    ap.add_argument("--threads", type=int, default=2, help="threads for the parallel row")
    args = ap.parse_args()
    import make_pcaps

    with tempfile.TemporaryDirectory() as tmp:
        cap = os.path.join(tmp, "bench.pcap")
        t0 = time.perf_counter()
        make_pcaps.write(cap, args.count, seed=7)
        frames = [f.data for f in pcap.read(cap)]
        print(f"capture: {len(frames):,} packets, {sum(map(len, frames)):,} bytes "
              f"(generated in {time.perf_counter() - t0:.1f} s)")

        obj = ebee.load(str(OBJ), pin_root=tmp)
        for a in BLOCKED:
            obj.maps["blocklist"].update(socket.inet_aton(a), bytes(8))
        prog = obj.programs["xdp_firewall"]
        rows: list[tuple[str, float]] = []      # (what, ns per packet)

        def row(what: str, seconds: float) -> None:
            ns = seconds * 1e9 / len(frames)
            rows.append((what, ns))
            print(f"ebee {what}: {1e9 / ns:,.0f} packets/s ({ns:,.0f} ns/packet)")

        verdicts: dict[int, int] = {}
        with Runner(prog, engine=args.engine) as r:
            r.run(frames[0])                       # translate/compile outside the timing
            t0 = time.perf_counter()
            for f in frames:
                res = r.run(f)
                verdicts[res.retval] = verdicts.get(res.retval, 0) + 1
            row(f"({args.engine or 'auto'}) Runner.run per packet", time.perf_counter() - t0)
            prog.run(frames[0], engine=args.engine)
            t0 = time.perf_counter()
            for f in frames:
                prog.run(f, engine=args.engine)
            row(f"({args.engine or 'auto'}) Program.run per packet", time.perf_counter() - t0)
            caught = [pcap.Frame(k, 0.0, f, len(f)) for k, f in enumerate(frames)]
            s = replay(r, caught, native=False)
            row("replay, one test run per packet", s.seconds)
            why = native_batch_unavailable(r)
            if why is None:
                replay(r, caught[:10], native=True)      # compile the driver outside the timing
                s = replay(r, caught, native=True)
                assert s.native == len(frames)
                row("replay, native batch (counts only)", s.seconds)
                drv = s.native_ns / len(frames)
                print(f"  of which in the native driver (frame setup + program): {drv:,.1f} ns/packet")
                s2 = replay(r, caught, native=True, on_packet=lambda o: None)
                row("replay, native batch + Outcome per packet", s2.seconds)
            else:
                print(f"ebee native batch: skipped ({why})")
        if why is None and args.threads > 1:
            s3 = replay_parallel(prog, caught, args.threads, engine=args.engine)
            row(f"replay, native batch, {args.threads} threads", s3.seconds)
        if why is None:
            names = {XdpAction(k).name: n for k, n in verdicts.items()}
            assert {k.removeprefix("XDP_"): n for k, n in s.verdicts.items()} == names, \
                "native batch and per-packet runs disagree on verdicts"
        print(f"verdicts {verdicts}")

        from ebee.kernel import bpf_available
        why = bpf_available()
        if why:
            print(f"kernel: skipped ({why})")
            obj.close()
            return 0
        pin_dir = Path("/sys/fs/bpf") / f"ebee-bench-{os.getpid()}"
        pin_dir.mkdir(exist_ok=True)
        try:
            kobj = obj.load_kernel(pin_root=str(pin_dir))
            for a in BLOCKED:
                kobj.maps["blocklist"].update(socket.inet_aton(a), bytes(8))
            kprog = kobj.programs["xdp_firewall"]
            kverdicts: dict[int, int] = {}
            total_ns = 0
            t0 = time.perf_counter()
            for f in frames:
                k = kprog.run(f, repeat=1)
                total_ns += k.duration_ns
                kverdicts[k.retval] = kverdicts.get(k.retval, 0) + 1
            wall = time.perf_counter() - t0
            kobj.close()
        finally:
            for f in pin_dir.iterdir():
                f.unlink()
            pin_dir.rmdir()
        obj.close()
        kern_ns = total_ns / len(frames)
        print(f"kernel BPF_PROG_TEST_RUN: {kern_ns:,.1f} ns/packet in the program "
              f"(duration), {wall * 1e9 / len(frames):,.0f} ns/packet per syscall "
              f"(wall)  verdicts {kverdicts}")
        assert kverdicts == verdicts, "ebee and the kernel disagree on verdicts"
        kwall = wall * 1e9 / len(frames)
        for what, ns in rows:
            print(f"ratio {what}: {ns / kern_ns:,.1f}x the kernel's in-program time, "
                  f"{ns / kwall:,.3f}x its per-syscall wall time")
        if why is None:
            print(f"ratio native driver alone: {drv / kern_ns:,.2f}x the kernel's in-program time")
        print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
              f"Python {platform.python_version()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
