"""Records per second through a ring-buffer reader.

Producer and consumer: an XDP program (bench/ringbuf_prog.c) that writes one 16-byte
record per run with ``bpf_ringbuf_output``, run N times (``BPF_PROG_TEST_RUN``
``repeat=N``), then the N records read back --

* ebee's program into ebee's ring buffer, read with ebee's reader (``drain()``, a
  Record per record, and ``reader(raw=True)``, the bytes alone);
* the same object loaded into the kernel, its ring buffer read with ebee's reader
  (the kernel backend's mmap'd consumer);
* the reference, same run, same records: libbpf's ``ring_buffer__poll`` in a small C
  program (bench/ringbuf_libbpf.c, built with gcc against libbpf-dev) draining the
  kernel's ring buffer, pinned in bpffs.  Needs root and bpf(); skipped with the reason
  otherwise.

Consumer alone, as a floor measured in the same run: ebee's ring filled from Python
(``Map.output``) and read back, next to the time Python takes just to make N 16-byte
``bytes`` objects (no consumer written in Python can beat it).

    python bench/ringbuf.py [-n N]

Timings are the reading only (the producer's time is not counted), best of --repeat.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import ebee  # noqa: E402
from ebee import uapi as U  # noqa: E402
from ebee.fs import PinStore  # noqa: E402
from ebee.kernel import bpf_available  # noqa: E402
from ebee.maps import Map  # noqa: E402
from ebee.packet import udp_packet  # noqa: E402

REC = 16
SLOT = (REC + 8 + 7) // 8 * 8             # a record with its 8-byte header


def ring_size(n: int) -> int:
    return 1 << max(12, (SLOT * n - 1).bit_length())


def build(tmp: Path) -> tuple[Path, Path | None, str | None]:
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        sys.exit("bench/ringbuf.py needs clang to build bench/ringbuf_prog.c")
    multiarch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True,
                               text=True).stdout.strip() or "x86_64-linux-gnu"
    obj = tmp / "ringbuf_prog.o"
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-Wall", f"-I/usr/include/{multiarch}",
                    "-c", str(HERE / "ringbuf_prog.c"), "-o", str(obj)], check=True)
    exe = tmp / "ringbuf_libbpf"
    r = subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "ringbuf_libbpf.c"), "-lbpf"],
                       capture_output=True, text=True)
    if r.returncode:
        return obj, None, f"cannot build the libbpf reader: {r.stderr.strip().splitlines()[-1:]}"
    return obj, exe, None


def open_obj(path: Path, n: int, tmp: Path):
    skel = ebee.open_object(path)
    skel.maps["rb"].max_entries = ring_size(n)
    return skel.load(store=PinStore(str(tmp / "pins.sqlite3")))


def best(fn, repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def ebee_rows(obj_path: Path, n: int, repeat: int, tmp: Path) -> dict[str, float]:
    out = {}
    for label, raw in (("ebee program -> ebee ring, drain() Records", False),
                       ("ebee program -> ebee ring, reader(raw=True)", True)):
        def once() -> float:
            with open_obj(obj_path, n, tmp) as obj:
                obj.programs["produce"].run(udp_packet(), repeat=n)
                reader = obj.maps["rb"].reader(raw=raw)
                t = time.perf_counter()
                got = reader.drain()
                dt = time.perf_counter() - t
                assert len(got) == n and reader.lost == 0, (len(got), reader.lost)
                return dt
        out[label] = best(once, repeat)
    return out


def kernel_rows(obj_path: Path, exe: Path | None, n: int, repeat: int,
                tmp: Path) -> tuple[dict[str, float], str | None]:
    why = bpf_available()
    if why:
        return {}, why
    if not os.path.ismount("/sys/fs/bpf"):
        return {}, "bpffs is not mounted at /sys/fs/bpf"
    out: dict[str, float] = {}
    pin = f"/sys/fs/bpf/ebee-bench-rb-{os.getpid()}"
    with open_obj(obj_path, n, tmp) as obj, obj.load_kernel() as k:
        prog, rb = k.programs["produce"], k.maps["rb"]
        rb.pin(pin)
        try:
            def ebee_reader() -> float:
                prog.run(udp_packet(), repeat=n)
                reader = rb.reader()
                t = time.perf_counter()
                got = reader.drain()
                dt = time.perf_counter() - t
                reader.close()
                assert len(got) == n, len(got)
                return dt
            out["kernel program -> kernel ring, ebee drain()"] = best(ebee_reader, repeat)
            if exe is not None:
                def libbpf() -> float:
                    prog.run(udp_packet(), repeat=n)
                    r = subprocess.run([str(exe), pin, str(n)], capture_output=True, text=True,
                                       check=True)
                    got, secs = r.stdout.split()
                    assert int(got) == n, r.stdout
                    return float(secs)
                out["kernel program -> kernel ring, libbpf ring_buffer__poll"] = \
                    best(libbpf, repeat)
        finally:
            os.unlink(pin)
    return out, None


def consumer_rows(n: int, repeat: int) -> dict[str, float]:
    out = {}
    rec = bytes(REC)

    def once() -> float:
        rb = Map(U.MapType.RINGBUF, 0, 0, ring_size(n))
        for _ in range(n):
            rb.output(rec, U.BPF_RB_NO_WAKEUP)
        reader = rb.reader()
        t = time.perf_counter()
        got = reader.drain()
        dt = time.perf_counter() - t
        assert len(got) == n
        rb.close()
        return dt
    out["Python Map.output -> ebee ring, drain()"] = best(once, repeat)

    def floor() -> float:
        src = bytearray(rec)
        t = time.perf_counter()
        made = [bytes(src) for _ in range(n)]
        dt = time.perf_counter() - t
        del made
        return dt
    out["floor: making N bytes objects"] = best(floor, repeat)
    return out


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200_000, help="records (default 200,000)")
    ap.add_argument("--repeat", type=int, default=3, help="best of (default 3)")
    args = ap.parse_args()
    n = args.n
    load0 = load_avg()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        obj, exe, no_exe = build(tmp)
        rows = ebee_rows(obj, n, args.repeat, tmp)
        krows, why = kernel_rows(obj, exe, n, args.repeat, tmp)
        rows.update(krows)
        rows.update(consumer_rows(n, args.repeat))
    print(f"ebee {ebee.__version__}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"Linux {platform.release()}, Python {platform.python_version()}; "
          f"load average {load0} at start, {load_avg()} at end (a shared machine)")
    print(f"{n:,} records of {REC} bytes, reading time only, best of {args.repeat}")
    if why:
        print(f"kernel rows skipped: {why}")
    elif no_exe:
        print(f"libbpf reference skipped: {no_exe}")
    ref = rows.get("kernel program -> kernel ring, libbpf ring_buffer__poll")
    width = max(map(len, rows))
    print(f"{'path':{width}s}  {'seconds':>9s}  {'records/s':>13s}  {'libbpf/this':>11s}")
    for label, dt in rows.items():
        ratio = f"{ref / dt:.3f}x" if ref else "-"
        print(f"{label:{width}s}  {dt:9.4f}  {n / dt:13,.0f}  {ratio:>11s}")
    if ref:
        print("libbpf/this: libbpf's reading time over this row's (1.0 = as fast as libbpf; "
              "0.1 = ten times slower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
