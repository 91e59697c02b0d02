"""AOT benchmark: ns per run of ``ebee aot`` output against ebee's JIT and Linux's JIT.

bench/jit.py's workloads (XDP programs on the same 64-byte packet: (a) an ALU loop,
(b) the example firewall with a 100-entry block list, (c) a hash-map counter, (d) a
helper-heavy program), each measured as:

* **AOT .so**: ``ebee aot OBJ -o X.so --runtime`` (the generated C compiled by clang -O2);
* **AOT C (gcc)**: the same C compiled with ``gcc -O2`` into a shared library;
* **ebee JIT**: ``Program.run(repeat=...)`` (native loop, no Python per run);
* **kernel JIT**: BPF_PROG_TEST_RUN with ``repeat`` (the kernel's own average).

The AOT runs loop in C through ``ebee_run_xdp_repeat`` (the same buffer run after run,
as the kernel's repeat does).  Best of three for every column.  Also printed: the size
of each program's machine code (its functions' symbols in the .so).

Usage: ``python bench/aot.py [--repeat N] [--quick] [--json]``.  Needs clang and gcc;
the kernel column needs bpf() (root).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

import ebee  # noqa: E402
from ebee.aot import build, native, object_units  # noqa: E402
from ebee.aot.cgen import ident  # noqa: E402
import jit as jitbench  # noqa: E402  (bench/jit.py: workloads, packet, kernel/JIT timing)

PKT = jitbench.PKT


def code_size(so: Path, prefix: str) -> int:
    """Bytes of machine code of the object's program functions (nm -S)."""
    out = subprocess.run(["nm", "-S", "--defined-only", str(so)], capture_output=True,
                         text=True).stdout
    total = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT" and parts[3].startswith(prefix):
            total += int(parts[1], 16)
    return total


def aot_ns(so: Path, name: str, prog: str, setup, repeat: int) -> float:
    with native.NativeObject(so, name) as n:
        for m, k, v in setup:
            n.map(m).update(k, v)
        n.time_xdp(prog, PKT, 1000)              # warm up
        return min(n.time_xdp(prog, PKT, repeat) for _ in range(3))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=100_000, help="runs per measurement")
    ap.add_argument("--quick", action="store_true", help="fewer runs (not for reporting)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    repeat = 10_000 if args.quick else max(args.repeat, 100_000)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        objpath, _native = jitbench.build(tmp)
        obj = ebee.load(str(objpath))
        fw = ebee.load(str(ROOT / "examples/c/xdp_firewall.o"), pin_root=str(tmp / "pins"))
        block = [("blocklist", struct.pack("!I", 0xC0A80000 + k), bytes(8)) for k in range(100)]
        for _m, k, v in block:
            fw.maps["blocklist"][k] = v
        kernel_why = None
        kobj = kfw = kpins = None
        try:
            from ebee.kernel import bpf_available
            kernel_why = bpf_available()
            if kernel_why is None:
                kobj = obj.load_kernel()
                kpins = Path(f"/sys/fs/bpf/ebee-bench-aot-{os.getpid()}")
                kpins.mkdir(exist_ok=True)
                kfw = fw.load_kernel(pin_root=str(kpins))
                for _m, k, v in block:
                    kfw.maps["blocklist"][k] = v
        except Exception as e:           # report, keep the other columns
            kernel_why = f"kernel load failed: {e}"
            kobj = kfw = None
        libs = {}
        for label, o in (("jit_progs", obj), ("xdp_firewall", fw)):
            units, maps = object_units(o)
            so = build.build_native(units, maps, tmp / f"{label}.so", object_name=label,
                                    runtime=True)[0]
            gso = build.build_native(units, maps, tmp / f"{label}_gcc.so", object_name=label,
                                     runtime=True, cc="gcc")[0]
            libs[label] = (so, gso, units)
        work = [("a", "ALU loop (1000 iterations)", obj, kobj, "alu_loop", "jit_progs", []),
                ("b", "XDP firewall, 64-byte packet", fw, kfw, "xdp_firewall", "xdp_firewall",
                 block),
                ("c", "hash-map counter (16 keys)", obj, kobj, "hash_count", "jit_progs", []),
                ("d", "helper-heavy (8 rounds)", obj, kobj, "helpers", "jit_progs", [])]
        rows = []
        for tag, what, o, ko, name, label, setup in work:
            so, gso, units = libs[label]
            k = next(i for i, u in enumerate(units) if u.name == name)
            prefix = f"{ident(label)}_p{k}_"
            a = aot_ns(so, label, name, setup, repeat)
            g = aot_ns(gso, label, name, setup, repeat)
            j = jitbench.ebee_ns(o.programs[name], "jit", repeat)
            kn = jitbench.kernel_ns(ko, name, repeat)
            rows.append(dict(workload=tag, what=what, program=name, aot_so_ns=a, aot_gcc_ns=g,
                             jit_ns=j, kernel_ns=kn, ratio_so=(a / kn) if kn else None,
                             ratio_gcc=(g / kn) if kn else None,
                             code_bytes_clang=code_size(so, prefix),
                             code_bytes_gcc=code_size(gso, prefix)))
        for ko in (kobj, kfw):
            if ko is not None:
                ko.close()
        if kpins is not None:
            for pin in kpins.iterdir():
                pin.unlink()
            kpins.rmdir()
        fw.close()
        obj.close()
    load = os.getloadavg()
    machine = f"{platform.node()}: {platform.processor() or platform.machine()}, " \
              f"{os.cpu_count()} CPUs, Linux {platform.release()}"
    if args.json:
        print(json.dumps(dict(machine=machine, repeat=repeat, rows=rows, loadavg=load,
                              kernel=kernel_why or "measured"), indent=2))
        return 0
    print(f"machine: {machine}; load average {load[0]:.2f} (shared, loaded: ratios are noisy)")
    print(f"repeat: {repeat} runs per measurement (best of 3); kernel: "
          f"{kernel_why or 'measured in this run'}\n")
    print(f"{'':3} {'workload':30} {'AOT .so':>9} {'AOT gcc':>9} {'ebee JIT':>9} "
          f"{'kernel':>9} {'so/kern':>8} {'gcc/kern':>8} {'code':>11}")
    for r in rows:
        kn = f"{r['kernel_ns']:.1f}n" if r["kernel_ns"] else "-"
        rs = f"{r['ratio_so']:.2f}" if r["ratio_so"] else "-"
        rg = f"{r['ratio_gcc']:.2f}" if r["ratio_gcc"] else "-"
        print(f"({r['workload']}) {r['what']:30} {r['aot_so_ns']:8.1f}n {r['aot_gcc_ns']:8.1f}n "
              f"{r['jit_ns']:8.1f}n {kn:>9} {rs:>8} {rg:>8} "
              f"{r['code_bytes_clang']:>5}/{r['code_bytes_gcc']:<5}")
    print("\ncode: bytes of the program's functions, clang/gcc.  target: AOT <= 1.0x the kernel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
