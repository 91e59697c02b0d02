"""Records per second through a ring-buffer reader: ebee's ring buffer filled with N
small records (16 bytes, as `bpf_ringbuf_output` writes them), then read back -- the
consumer side alone: ``reader.drain()`` (a Record per record), ``reader(raw=True)``
(the records' bytes, nothing else per record), and as a floor measured in the same run,
the time Python takes just to make that many 16-byte ``bytes`` objects (no consumer
written in Python can beat it; on an idle core it is ~20 M/s).

    python bench/ringbuf.py [-n N] [--size BYTES]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ebee import uapi as U  # noqa: E402
from ebee.maps import Map  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="records (default 1,000,000)")
    ap.add_argument("--size", type=int, default=16, help="bytes per record (default 16)")
    args = ap.parse_args()
    total = (args.size + 8 + 7) // 8 * 8 * args.n
    ring = 1 << max(12, (total - 1).bit_length())
    rec = bytes(args.size)

    def fill():
        rb = Map(U.MapType.RINGBUF, 0, 0, ring)
        for _ in range(args.n):
            rb.output(rec, U.BPF_RB_NO_WAKEUP)
        return rb

    results = {}
    for label, raw in (("drain(), Record objects", False), ("reader(raw=True), bytes", True)):
        rb = fill()
        reader = rb.reader(raw=raw)
        t = time.perf_counter()
        got = reader.drain()
        results[label] = time.perf_counter() - t
        assert len(got) == args.n and reader.lost == 0
        rb.close()
    t = time.perf_counter()
    src = bytearray(rec)
    floor = [bytes(src) for _ in range(args.n)]
    results["floor: making the bytes objects"] = time.perf_counter() - t
    del floor
    for label, dt in results.items():
        print(f"{label:34s} {args.n:,} x {args.size} B: {dt:.3f} s, {args.n / dt:>12,.0f} records/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
