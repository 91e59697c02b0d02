"""Verifier benchmark over the kernel selftests kit, next to the kernel in the same run.

For every test program of ``kernel_results.json`` (the kit ../shared/selftests
prepares under ``~/.cache/ebee-selftests/kernels/$(uname -r)``) that the kernel
verified, ebee verifies it as the kit's loader did (log level, prog_flags), and
the kit's ``kload`` loads the same object again into the running kernel so both
columns come from one run on one machine load.  Printed: totals and medians,
their ratios, the slowest programs, the machine and its load average.

Every row also holds what must not change when the verifier is made faster:
the verdict, the error line, the processed-instruction count and a hash of the
log (map addresses and ids masked, as the differential tests compare logs).
``--compare BASE.json`` reports every program whose row differs from a run
saved with ``--json``, and exits 1 if any does.

Usage: ``python bench/verifier_kit.py [--only verifier_and,...] [--no-kernel]
[--json OUT] [--compare BASE]``.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
KIT = Path(os.environ.get("EBEE_SELFTESTS_DIR", Path.home() / ".cache" / "ebee-selftests"))
K = KIT / "kernels" / platform.release()
KLOAD = KIT / "build" / "kload"
_ADDR = re.compile(r"0x[0-9a-f]{10,}|map\[id:\d+\]|(?<=verification time )\d+")
_PAD = re.compile(r"ADDR +;")


def log_hash(log: str) -> str:
    if len(log.encode()) >= 16 << 20:
        # a rotated log is the last 16 MiB: how many digits the verification time has
        # moves where it starts, so its first (partial) line is left out
        log = log[log.find("\n") + 1:]
    norm = _PAD.sub("ADDR ;", _ADDR.sub("ADDR", log))
    return hashlib.sha1(norm.encode()).hexdigest()[:16]


def kernel_times(obj: str) -> dict[str, float]:
    """load_s of every test program of ``obj``, loaded again by the kit's kload."""
    try:
        p = subprocess.run([str(KLOAD), obj], capture_output=True, text=True,
                           errors="replace", timeout=600)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for line in p.stdout.splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r.get("test") and r.get("load_s") is not None:
            out[r["prog"]] = r["load_s"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated file names or globs (verifier_and,...)")
    ap.add_argument("--no-kernel", action="store_true", help="do not load into the kernel")
    ap.add_argument("--json", metavar="OUT", help="write every row as JSON")
    ap.add_argument("--compare", metavar="BASE", help="a --json file to compare rows against")
    ap.add_argument("--quiet", action="store_true", help="no line per program")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from ebee.verifier import verify
    from verifier_kernel import ebee_object

    results = K / "kernel_results.json"
    if not results.exists():
        print(f"no kit results at {results}: run selftests/prepare.sh first")
        return 2
    recs = [r for r in json.loads(results.read_text())["programs"]
            if r.get("test") and "excluded" not in r and "object_error" not in r]
    if args.only:
        pats = [p if p.startswith("verifier_") or "*" in p else "verifier_" + p
                for p in args.only.split(",")]
        recs = [r for r in recs if any(fnmatch.fnmatch(r["file"], p) for p in pats)]
    kernel = not args.no_kernel and KLOAD.exists() and os.geteuid() == 0
    by_obj: dict[str, list] = {}
    for r in recs:
        by_obj.setdefault(r["object"], []).append(r)
    rows = []
    for objpath, progs in by_obj.items():
        ktimes = kernel_times(objpath) if kernel else {}
        try:
            ctx = ebee_object(objpath)
            obj = ctx.__enter__()
        except Exception as e:
            print(f"skip {objpath}: {str(e).splitlines()[0][:100]}", file=sys.stderr)
            continue
        try:
            for r in progs:
                name = f"{r['file']}/{r['prog']}"
                prog = obj.programs.get(r["prog"])
                if prog is None:
                    print(f"skip {name}: not in ebee's object", file=sys.stderr)
                    continue
                t = time.perf_counter()
                c = time.process_time()
                try:
                    v = verify(prog, log_level=r["log_level"], prog_flags=r["prog_flags"],
                               facts=False)
                    dt = time.perf_counter() - t
                    row = {"prog": name, "ebee_s": dt, "ebee_cpu_s": time.process_time() - c,
                           "accepted": v.accepted, "error": v.error,
                           "insns": v.insns_processed, "log": log_hash(v.log)}
                except Exception as e:      # a crash is a row too: it must not change either
                    dt = time.perf_counter() - t
                    row = {"prog": name, "ebee_s": dt, "ebee_cpu_s": time.process_time() - c,
                           "accepted": None,
                           "error": f"{type(e).__name__}: {e}", "insns": None, "log": None}
                row["kernel_accepted"] = r["accepted"]
                row["kernel_insns"] = r["insns_processed"]
                row["kernel_s"] = ktimes.get(r["prog"], r["load_s"])
                row["kernel_same_run"] = r["prog"] in ktimes
                rows.append(row)
                if not args.quiet:
                    print(f"{dt:8.3f}s  {row['kernel_s']:8.4f}s  {row['insns'] or 0:>8}  {name}",
                          flush=True)
        finally:
            ctx.__exit__(None, None, None)
    report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.compare:
        return compare(json.loads(Path(args.compare).read_text()), rows)
    return 0


KEYS = ("accepted", "error", "insns", "log")


def compare(base: list[dict], rows: list[dict]) -> int:
    """Programs whose verdict, error line, processed count or log hash changed."""
    old = {r["prog"]: r for r in base}
    changed = 0
    for r in rows:
        o = old.get(r["prog"])
        if o is None:
            continue
        diff = [k for k in KEYS if o.get(k) != r.get(k)]
        if diff:
            changed += 1
            print(f"CHANGED {r['prog']}: " + ", ".join(f"{k} {o.get(k)!r} -> {r.get(k)!r}"
                                                      for k in diff))
    both = sum(r["prog"] in old for r in rows)
    print(f"\ncompared {both} programs with {len(base)} of the base run: {changed} changed")
    return 1 if changed else 0


def report(rows) -> None:
    if not rows:
        print("no programs")
        return
    e = [r["ebee_s"] for r in rows]
    k = [r["kernel_s"] for r in rows]
    same = sum(r["kernel_same_run"] for r in rows)
    print(f"\n{len(rows)} programs; {platform.node()}, {os.cpu_count()} cpus, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    c = [r["ebee_cpu_s"] for r in rows]
    print(f"ebee:   total {sum(e):8.2f} s   median {statistics.median(e) * 1e3:8.3f} ms   "
          f"(CPU time: total {sum(c):.2f} s, median {statistics.median(c) * 1e3:.3f} ms)")
    print(f"kernel: total {sum(k):8.2f} s   median {statistics.median(k) * 1e3:8.3f} ms   "
          f"(load_s of kload; {same} measured in this run, the rest from kernel_results.json)")
    print(f"ratio:  total {sum(e) / max(sum(k), 1e-9):6.1f}x   "
          f"median {statistics.median(e) / max(statistics.median(k), 1e-9):6.1f}x   (CPU time: "
          f"{sum(c) / max(sum(k), 1e-9):.1f}x, "
          f"{statistics.median(c) / max(statistics.median(k), 1e-9):.1f}x)")
    agree = sum(r["accepted"] == r["kernel_accepted"] for r in rows)
    print(f"verdicts agree with the kernel: {agree}/{len(rows)}")
    print("\nslowest ten (ebee s, kernel s, processed insns ebee/kernel, program):")
    for r in sorted(rows, key=lambda r: -r["ebee_s"])[:10]:
        print(f"  {r['ebee_s']:7.2f}  {r['kernel_s']:7.4f}  {r['insns'] or 0:>8}/"
              f"{r['kernel_insns'] or '-':<8} {r['prog']}")


if __name__ == "__main__":
    sys.exit(main())
