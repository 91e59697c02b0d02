"""Verifier benchmark: ebee's verification time per program over the corpus, next to Linux's.

For every program of every object in ../shared/corpus/ebpf-samples (or the
files given), ebee verifies it (log level 1, no per-instruction facts, as
``bpf(BPF_PROG_LOAD)`` would) and, where bpf() works, the running kernel
loads it with BPF_LOG_STATS so its own ``verification time N usec`` is read
from the log.  Printed: the total and median time for each, the slowest ten
programs with their processed-instruction counts, the largest program, and
how many verdicts agree.

Each row also holds the verdict, error line, processed count and log hash that
a faster verifier must not change; ``--compare BASE.json`` lists the programs
whose row differs from a saved ``--json`` run (as bench/verifier_kit.py does).

Usage: ``python bench/verifier.py [FILES...] [--no-kernel] [--json OUT] [--compare BASE]``.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
CORPUS = ROOT.parent / "shared" / "corpus" / "ebpf-samples"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help="objects (default: the whole corpus)")
    ap.add_argument("--no-kernel", action="store_true", help="do not load into the kernel")
    ap.add_argument("--json", metavar="OUT", help="write every row as JSON")
    ap.add_argument("--compare", metavar="BASE", help="a --json file to compare rows against")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from ebee.verifier import verify
    from verifier_kernel import ebee_object, kernel_object
    from verifier_kit import compare, log_hash

    kernel = not args.no_kernel
    if kernel:
        from ebee.kernel import bpf_available
        why = bpf_available()
        if why:
            print(f"kernel column skipped: {why}")
            kernel = False
    files = args.files or sorted(glob.glob(str(CORPUS / "**" / "*.o"), recursive=True))
    rows = []
    for path in files:
        try:
            ctx = ebee_object(path)
            obj = ctx.__enter__()
        except Exception as e:
            print(f"skip {path}: {str(e).splitlines()[0][:100]}", file=sys.stderr)
            continue
        try:
            kctx = kernel_object(obj) if kernel else None
            try:
                kload = kctx.__enter__() if kctx is not None else None
            except Exception:
                kctx = kload = None
            for name, prog in obj.programs.items():
                t = time.perf_counter()
                c = time.process_time()
                r = verify(prog, log_level=1, facts=False)
                dt = time.perf_counter() - t
                row = {"prog": f"{os.path.relpath(path, CORPUS)}:{name}", "ebee_s": dt,
                       "ebee_cpu_s": time.process_time() - c, "accepted": r.accepted,
                       "error": r.error, "log": log_hash(r.log),
                       "insns": r.insns_processed, "size": len(prog.insns)}
                if kload is not None:
                    kv = kload(prog, 1)
                    if kv.insns_processed is not None:
                        row.update(kernel_s=(kv.duration_ns or 0) / 1e9,
                                   kernel_accepted=kv.accepted, kernel_insns=kv.insns_processed)
                rows.append(row)
                print(f"{dt:8.3f}s  {row.get('kernel_s', float('nan')):8.4f}s  "
                      f"{r.insns_processed:>8}  {row['prog']}", flush=True)
            if kctx is not None:
                kctx.__exit__(None, None, None)
        finally:
            ctx.__exit__(None, None, None)
    report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.compare:
        return compare(json.loads(Path(args.compare).read_text()), rows)
    return 0


def report(rows) -> None:
    if not rows:
        print("no programs")
        return
    e = [r["ebee_s"] for r in rows]
    c = [r["ebee_cpu_s"] for r in rows]
    print(f"\n{len(rows)} programs; {os.cpu_count()} cpus, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"ebee:   total {sum(e):8.1f} s   median {statistics.median(e) * 1e3:8.2f} ms   "
          f"(CPU time: total {sum(c):.1f} s, median {statistics.median(c) * 1e3:.2f} ms)")
    kr = [r for r in rows if "kernel_s" in r]
    if kr:
        k = [r["kernel_s"] for r in kr]
        ek = [r["ebee_s"] for r in kr]
        print(f"kernel: total {sum(k):8.2f} s   median {statistics.median(k) * 1e3:8.2f} ms  "
              f"({len(kr)} programs the kernel verified; ebee on those: total {sum(ek):.1f} s, "
              f"median {statistics.median(ek) * 1e3:.2f} ms)")
        print(f"ratio:  total {sum(ek) / max(sum(k), 1e-9):6.1f}x   median "
              f"{statistics.median(ek) / max(statistics.median(k), 1e-9):6.1f}x   (CPU time: "
              f"{sum(r['ebee_cpu_s'] for r in kr) / max(sum(k), 1e-9):.1f}x, "
              f"{statistics.median(r['ebee_cpu_s'] for r in kr) / max(statistics.median(k), 1e-9):.1f}x)")
        agree = sum(r["accepted"] == r["kernel_accepted"] for r in kr)
        print(f"verdicts agree: {agree}/{len(kr)}")
    print("\nslowest ten (ebee s, kernel s, processed insns ebee/kernel, program):")
    for r in sorted(rows, key=lambda r: -r["ebee_s"])[:10]:
        ks = f"{r['kernel_s']:.3f}" if "kernel_s" in r else "-"
        print(f"  {r['ebee_s']:7.2f}  {ks:>7}  {r['insns']:>8}/{r.get('kernel_insns', '-'):<8} "
              f"{r['prog']}")
    big = max(rows, key=lambda r: r["size"])
    print(f"\nlargest program: {big['prog']} ({big['size']} insns): ebee {big['ebee_s']:.2f} s"
          + (f", kernel {big['kernel_s']:.3f} s" if "kernel_s" in big else ""))


if __name__ == "__main__":
    sys.exit(main())
