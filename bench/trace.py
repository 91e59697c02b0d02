"""``ebee trace`` next to bpftrace 0.17, measured in the same run.

* compile time of every parity script (tests/trace/cases.py): ebee's compiler in
  process (parse, type, generate; then ebee's verifier on top) against bpftrace's
  ``--emit-elf`` (parse, type, LLVM code generation, no loading), each timed as the
  best of three;
* instructions per probe: ebee's program against bpftrace's -- statically (the
  instruction count of bpftrace's ELF sections) and, for scripts that attach to the
  workload, as the kernel holds them (``xlated_prog_len`` of the loaded programs, what
  ``bpftool prog show`` reports);
* the printf output path: a uprobe firing ``printf`` on every call of the workload
  (N calls), stdout to a file; events received, lost, and events per second.

    python bench/trace.py            # needs root, bpftrace 0.17 and gcc
    python bench/trace.py --quick    # fewer scripts, 100k events
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "trace"))

from elftools.elf.elffile import ELFFile  # noqa: E402

from ebee.kernel import info as kinfo  # noqa: E402
from ebee.trace.compiler import compile_script  # noqa: E402
from ebee.trace.userspace import UserSpaceTrace  # noqa: E402
from cases import CASES  # noqa: E402
from harness import BPFTRACE, bpftrace_version, build_workload, script_text  # noqa: E402

EBEE = [sys.executable, "-m", "ebee", "trace"]


def best_of(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bpftrace_elf(text: str, params, tmp: Path, child: str) -> tuple[float, dict[str, int]]:
    """bpftrace's compile time (--emit-elf) and its instructions per program section."""
    out = tmp / "bt.o"
    cmd = [BPFTRACE, "--emit-elf", str(out)] + (["-c", child] if child else []) + \
        ["-e", text, *params]

    def run():
        subprocess.run(cmd, capture_output=True, timeout=60)
    t = best_of(run)
    counts: dict[str, int] = {}
    if out.exists():
        with open(out, "rb") as f:
            for sec in ELFFile(f).iter_sections():
                if sec.name.startswith("s_") and sec["sh_type"] == "SHT_PROGBITS":
                    counts[sec.name] = sec["sh_size"] // 8
        out.unlink()
    return t, counts


def ebee_compile(text: str, params, child: bool) -> tuple[float, float, dict[str, int]]:
    """ebee's compile time, compile + ebee's verifier, and instructions per program."""
    t_compile = best_of(lambda: compile_script(text, params=list(params), has_child=child,
                                               missing_probes_ok=True))
    s = compile_script(text, params=list(params), has_child=child, missing_probes_ok=True)

    def verify():
        UserSpaceTrace(s, quiet=True).close()
    t_verify = best_of(verify, 1)
    counts = {}
    for p in s.probes:
        counts[p.name] = len(p.emitter)
    return t_compile, t_verify, counts


def live_xlated(cmd: list[str], names: set[str], timeout: float = 30) -> dict[str, int]:
    """The script's programs as a tracer loads them while it runs ``-c`` (name -> xlated
    instructions; programs of other names -- other users of bpf() -- are left out)."""
    before = set(kinfo.ids(kinfo.Kind.PROG))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen: dict[int, tuple[str, int]] = {}
    deadline = time.monotonic() + timeout
    while p.poll() is None and time.monotonic() < deadline:
        for pid in set(kinfo.ids(kinfo.Kind.PROG)) - before:
            if pid in seen:
                continue
            try:
                fd = kinfo.fd_by_id(kinfo.Kind.PROG, pid)
            except OSError:
                continue
            try:
                pi = kinfo.prog_info(fd, map_ids=False)
                seen[pid] = (pi.name, pi.xlated_prog_len // 8)
            finally:
                os.close(fd)
        time.sleep(0.02)
    p.communicate(timeout=timeout)
    out: dict[str, int] = {}
    for name, n in seen.values():
        if name in names:
            out[name] = out.get(name, 0) + n
    return out


def throughput(tool: list[str], script: str, child: str, n: int,
               tmp: Path) -> tuple[int, float, float]:
    out = tmp / "out.txt"
    t0 = time.perf_counter()
    with open(out, "w") as f:
        subprocess.run(tool + ["-B", "full", "-e", script, "-c", child.format(n=n)], stdout=f,
                       stderr=subprocess.DEVNULL, timeout=600)
    wall = time.perf_counter() - t0
    got = sum(1 for ln in open(out) if ln.startswith("ev "))
    t1 = time.perf_counter()
    subprocess.run(tool + ["-e", script, "-c", child.format(n=0)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)
    startup = time.perf_counter() - t1
    return got, wall, max(wall - startup, 1e-9)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    v = bpftrace_version()
    if os.geteuid() != 0 or v is None:
        print("needs root and bpftrace", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="ebee-bench-trace-"))
    binary = build_workload(tmp)
    print(f"# ebee trace vs {v} -- {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, kernel {platform.release()}\n")
    compile_script("BEGIN { }")         # lark's grammar is built once per process

    cases = [c for c in CASES if c.mode != "attach_fail"]
    if args.quick:
        cases = cases[::4]
    print("## compile time (ms, best of 3) and instructions per script\n")
    print(f"{'script':28} {'ebee':>7} {'+verify':>8} {'bpftrace':>9}   {'insns ebee':>10} "
          f"{'bpftrace':>9} {'ratio':>6}")
    rows = []
    for c in cases:
        _, text = script_text(c, binary)
        child = c.cmd.replace("BIN", str(binary))
        te, tv, ce = ebee_compile(text, c.params, bool(child))
        tb, cb = bpftrace_elf(text, c.params, tmp, child)
        ne, nb = sum(ce.values()), sum(cb.values())
        ratio = ne / nb if nb else float("nan")
        rows.append((c.id, te, tv, tb, ne, nb, ratio))
        print(f"{c.id:28} {te * 1e3:7.1f} {tv * 1e3:8.0f} {tb * 1e3:9.0f}   {ne:10d} {nb:9d} "
              f"{ratio:6.2f}")
    ratios = [r[6] for r in rows if r[5]]
    print(f"\nmedian compile: ebee {statistics.median(r[1] for r in rows) * 1e3:.1f} ms "
          f"(+ verifier: {statistics.median(r[2] for r in rows) * 1e3:.0f} ms), bpftrace "
          f"{statistics.median(r[3] for r in rows) * 1e3:.0f} ms")
    print(f"instructions ebee/bpftrace: median {statistics.median(ratios):.2f}, "
          f"min {min(ratios):.2f}, max {max(ratios):.2f} over {len(ratios)} scripts\n")

    print("## instructions as the kernel holds them (xlated, per loaded program)\n")
    live = [c for c in CASES if c.cmd and c.mode == "exact"][:4 if args.quick else 10]
    for c in live:
        _, text = script_text(c, binary)
        cmd = ["-e", text, "-c", c.cmd.replace("BIN", str(binary))]
        s = compile_script(text, has_child=True)
        names = {p.kernel_name for p in s.probes}
        xe = live_xlated(EBEE + cmd, names)
        xb = live_xlated([BPFTRACE] + cmd, names)
        print(f"{c.id:28} ebee {sum(xe.values()):5d} {xe}\n{'':28} bpftrace {sum(xb.values()):5d} "
              f"{xb}")
    print()

    print("## the output path alone (records decoded, formatted and written in process)\n")
    for label, script in (("ints", 'BEGIN { printf("ev %d %d\\n", 1, 2); }'),
                          ("string", 'BEGIN { printf("ev %s %d\\n", comm, 2); }')):
        s = compile_script(script)
        devnull = open(os.devnull, "w")
        t = UserSpaceTrace(s, quiet=True, write=devnull.write)
        t.start()
        ev = s.resources.events[0]
        data = bytearray(ev.size)
        for off, ty in ev.args:
            if ty.kind == "int":
                data[off:off + 8] = (12345).to_bytes(8, "little")
            else:
                data[off:off + 4] = b"bash"
        data = bytes(data)
        n = 200_000
        t0 = time.perf_counter()
        for _ in range(n):
            t.handle(data)
        dt = time.perf_counter() - t0
        print(f"{label:7} {n / dt:9.0f} records/s ({dt / n * 1e6:.2f} us each)")
        t.text.clear()
        t.close()
    print()

    print("## printf output path (one printf per event, stdout to a file)\n")
    sources = [
        ("getpid", "tracepoint:syscalls:sys_enter_getpid /pid == cpid/ { "
                   'printf("ev %d %d\\n", tid, cpu); }', f"{binary} {{n}} sys"),
        ("uprobe", f'uprobe:{binary}:ebwl_target {{ printf("ev %d %d\\n", arg0, arg1); }}',
                   f"{binary} {{n}}")]
    for label, script, child in sources:
        for n in ((100_000,) if args.quick else (100_000, 300_000)):
            for name, tool in (("ebee", EBEE), ("bpftrace", [BPFTRACE])):
                got, wall, active = throughput(tool, script, child, n, tmp)
                print(f"{label:7} {name:9} {n:7d} events: {got:7d} received ({n - got} lost), "
                      f"{wall:5.2f} s wall, {got / active:9.0f} events/s while tracing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
