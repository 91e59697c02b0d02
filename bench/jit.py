"""JIT benchmark: ns per run for ebee's JIT, ebee's interpreter and Linux's JIT, one run.

Workloads, all XDP programs run with BPF_PROG_TEST_RUN
semantics on the same 64-byte packet:

  (a) an ALU-heavy bounded loop (bench/jit_progs.c ``alu_loop``), plus the
      same loop in C compiled with ``gcc -O2`` (bench/alu_loop.c) as the
      physical limit;
  (b) the example XDP firewall (examples/c/xdp_firewall.o);
  (c) a hash-map-heavy counter (16 lookups + atomic adds per run);
  (d) a helper-heavy program (clock, random numbers, CPU id, per-CPU array).

The kernel is measured in the same run, from the same object, through
BPF_PROG_TEST_RUN with ``repeat`` (its own average ns per run); ebee's JIT
through ``Program.run(repeat=...)``, which loops natively (no Python call
per run).  Also printed: compile time per program (cold, in-process) and
thread scaling of the JIT (each thread its own virtual CPU).

Usage: ``python bench/jit.py [--repeat N] [--quick] [--json]``.  Needs
clang (to build the workloads) and, for the kernel column, bpf() (root).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

import ebee  # noqa: E402
from ebee.engines import Machine
from ebee.engines.jit import JitImage
from ebee.testrun import Runner

PKT = (bytes.fromhex("ffffffffffff020000000001" "0800")
       + bytes.fromhex("4500003200000000401100000a0000010a000002") + bytes(30))
assert len(PKT) == 64


def build(tmp: Path) -> tuple[Path, Path | None]:
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        sys.exit("bench/jit.py needs clang to build bench/jit_progs.c")
    multiarch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("gcc") else ""
    arch = {"x86_64": "x86", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    obj = tmp / "jit_progs.o"
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", f"-D__TARGET_ARCH_{arch}", "-Wall",
                    f"-I/usr/include/{multiarch or 'x86_64-linux-gnu'}", "-c",
                    str(HERE / "jit_progs.c"), "-o", str(obj)], check=True)
    native = None
    if shutil.which("gcc"):
        native = tmp / "alu_loop"
        subprocess.run(["gcc", "-O2", "-o", str(native), str(HERE / "alu_loop.c")], check=True)
    return obj, native


def kernel_ns(kobj, name: str, repeat: int) -> float | None:
    if kobj is None:
        return None
    kp = kobj.programs[name]
    best = None
    for _ in range(3):                       # best of three, like the ebee columns
        ns = kp.run(PKT, repeat=repeat).duration_ns
        best = ns if best is None else min(best, ns)
    return float(best)


def ebee_ns(prog, engine: str, repeat: int) -> float:
    best = None
    for _ in range(3):
        ns = prog.run(PKT, repeat=repeat, engine=engine).duration_ns
        best = ns if best is None else min(best, ns)
    return float(best)


def compile_ms(prog) -> float:
    """Cold compile of the program (its verified, ctx-rewritten form) in this process."""
    with Runner(prog, engine="jit") as r:
        insns = r.insns
    cached = os.environ.get("EBEE_CACHE")
    os.environ["EBEE_CACHE"] = "0"       # cold: past the disk cache of JIT images
    try:
        t0 = time.perf_counter()
        JitImage(insns, checked=False)
        return (time.perf_counter() - t0) * 1e3
    finally:
        if cached is None:
            del os.environ["EBEE_CACHE"]
        else:
            os.environ["EBEE_CACHE"] = cached


def threads_rate(prog, threads: int, repeat: int) -> float:
    """Runs per second of ``threads`` threads, each its own CPU, ``repeat`` runs each."""
    runners = [Runner(prog, engine="jit", machine=Machine(cpu=c)) for c in range(threads)]
    for r in runners:
        r.run(PKT, repeat=2)                 # compile and warm up outside the timing
    barrier = threading.Barrier(threads + 1)

    def work(r):
        barrier.wait()
        r.run(PKT, repeat=repeat)
    ts = [threading.Thread(target=work, args=(r,)) for r in runners]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    spent = time.perf_counter() - t0
    for r in runners:
        r.close()
    return threads * repeat / spent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=100_000, help="runs per measurement (>= 100000)")
    ap.add_argument("--quick", action="store_true", help="fewer runs (not for reporting)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    repeat = 10_000 if args.quick else max(args.repeat, 100_000)
    from ebee.engines import jit
    if not jit.available():
        sys.exit(f"the JIT is unavailable: {jit.unavailable_reason()}")
    from ebee.engines.jit.codegen import Codegen

    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        objpath, native = build(tmp)
        obj = ebee.load(str(objpath))
        fw = ebee.load(str(ROOT / "examples/c/xdp_firewall.o"), pin_root=str(tmp / "pins"))
        # a block list the packet's source (10.0.0.1) is not on: lookup misses, PASS path
        for k in range(100):
            fw.maps["blocklist"][struct.pack("!I", 0xC0A80000 + k)] = 0
        kernel_why = None
        kobj = kfw = None
        try:
            from ebee.kernel import bpf_available
            kernel_why = bpf_available()
            if kernel_why is None:
                kobj = obj.load_kernel()
                kpins = Path(f"/sys/fs/bpf/ebee-bench-{os.getpid()}")   # pins need a bpffs
                kpins.mkdir(exist_ok=True)
                kfw = fw.load_kernel(pin_root=str(kpins))
                for k in range(100):
                    kfw.maps["blocklist"][struct.pack("!I", 0xC0A80000 + k)] = 0
        except Exception as e:           # report, keep the ebee columns
            kernel_why = f"kernel load failed: {e}"
            kobj = kfw = None

        work = [("a", "ALU loop (1000 iterations)", obj, kobj, "alu_loop", 100),
                ("b", "XDP firewall, 64-byte packet", fw, kfw, "xdp_firewall", 2000),
                ("c", "hash-map counter (16 keys)", obj, kobj, "hash_count", 500),
                ("d", "helper-heavy (8 rounds)", obj, kobj, "helpers", 500)]
        rows = []
        for tag, what, o, ko, name, interp_repeat in work:
            prog = o.programs[name]
            verdict = prog.verify()
            cms = compile_ms(prog)
            j = ebee_ns(prog, "jit", repeat)
            i = ebee_ns(prog, "interp", interp_repeat)
            k = kernel_ns(ko, name, repeat)
            rows.append(dict(workload=tag, what=what, program=name, verified=verdict.accepted,
                             jit_ns=j, interp_ns=i, kernel_ns=k,
                             ratio=(j / k) if k else None, compile_ms=cms))
        gcc_ns = None
        if native is not None:
            out = subprocess.run([str(native), str(repeat)], capture_output=True, text=True, check=True)
            gcc_ns = float(out.stdout.strip())
        scaling = {}
        load = os.getloadavg()
        for tag, prog in (("a", obj.programs["alu_loop"]), ("b", fw.programs["xdp_firewall"])):
            n = repeat // 10 if tag == "a" else repeat * 5
            one = threads_rate(prog, 1, n)
            cpus = os.cpu_count() or 1
            many = threads_rate(prog, cpus, n)
            scaling[tag] = dict(threads=cpus, runs_per_s_1=one, runs_per_s_n=many,
                                speedup=many / one)
        for k in (kobj, kfw):
            if k is not None:
                k.close()
        if kfw is not None:
            for pin in kpins.iterdir():
                pin.unlink()
            kpins.rmdir()
        fw.close()
        obj.close()

    cg = Codegen.get()
    machine = f"{platform.node()}: {platform.processor() or platform.machine()}, " \
              f"{os.cpu_count()} CPUs, Linux {platform.release()}, LLVM " \
              f"{'.'.join(map(str, __import__('llvmlite.binding').binding.llvm_version_info))}, " \
              f"host {cg.host}"
    if args.json:
        print(json.dumps(dict(machine=machine, repeat=repeat, rows=rows, gcc_alu_ns=gcc_ns,
                              kernel=kernel_why or "measured", scaling=scaling,
                              loadavg=load), indent=2))
        return 0
    print(f"machine: {machine}")
    print(f"repeat: {repeat} runs per measurement (best of 3); kernel: {kernel_why or 'measured in this run'}")
    print()
    print(f"{'':3} {'workload':32} {'ebee JIT':>10} {'interp':>12} {'kernel JIT':>11} "
          f"{'JIT/kernel':>11} {'compile':>9}")
    for r in rows:
        k = f"{r['kernel_ns']:.1f}" if r["kernel_ns"] else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        print(f"({r['workload']}) {r['what']:32} {r['jit_ns']:9.1f}n {r['interp_ns']:11.0f}n "
              f"{k:>10}n {ratio:>11} {r['compile_ms']:7.1f}ms")
    if gcc_ns is not None:
        a = rows[0]
        print(f"\n(a) in C, gcc -O2: {gcc_ns:.1f} ns per run  (ebee JIT / gcc = {a['jit_ns'] / gcc_ns:.2f})")
    print("\nratios ebee-JIT/kernel: " + ", ".join(
        f"({r['workload']}) {r['ratio']:.2f}" if r["ratio"] else f"({r['workload']}) -" for r in rows))
    print("targets: (a), (b) <= 1.0; (c), (d) <= 2.0")
    print("\nthread scaling (JIT, each thread its own virtual CPU, GIL released while native; "
          f"load average before: {load[0]:.2f} -- other processes' load caps the speedup):")
    for tag, s in scaling.items():
        print(f"  ({tag}) 1 thread {s['runs_per_s_1'] / 1e6:.2f} M runs/s, {s['threads']} threads "
              f"{s['runs_per_s_n'] / 1e6:.2f} M runs/s: x{s['speedup']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
