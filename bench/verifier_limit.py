"""Verifier benchmark: a program that hits the 1M processed-instruction limit.

``ebee verify examples/asm/fib.s --type xdp`` (and the other files given) runs
until the kernel's ``BPF program is too large. Processed 1000001 insn``; the
same command with ``--kernel`` asks the running kernel's verifier in the same
run.  Printed: the wall time of each (whole command, interpreter start
included), their ratio, and whether both end with the same error line.

Usage: ``python bench/verifier_limit.py [FILES...] [--type xdp] [--no-kernel]``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", cwd=ROOT)
    dt = time.perf_counter() - t
    tail = [ln for ln in p.stdout.splitlines() if ln.strip()]
    return dt, tail[-1] if tail else p.stderr.strip()[-200:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", default=["examples/asm/fib.s"])
    ap.add_argument("--type", default="xdp")
    ap.add_argument("--no-kernel", action="store_true")
    args = ap.parse_args(argv)
    ebee = [sys.executable, "-m", "ebee", "verify"]
    print(f"{os.cpu_count()} cpus, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for f in args.files:
        e, etail = timed(ebee + [f, "--type", args.type])
        print(f"ebee   {e:8.2f} s  {f}: {etail}")
        if not args.no_kernel and os.geteuid() == 0:
            k, ktail = timed(ebee + ["--kernel", f, "--type", args.type])
            print(f"kernel {k:8.2f} s  {f}: {ktail}")
            print(f"ratio  {e / max(k, 1e-9):8.1f}x  same error line: "
                  f"{ktail.endswith(etail.split(': ', 1)[-1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
