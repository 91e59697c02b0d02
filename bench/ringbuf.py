"""Records per second through a ring-buffer reader: ebee's ring buffer filled with N
small records (16 bytes, as `bpf_ringbuf_output` writes them), then read back with
``reader.drain()`` -- the consumer side alone, Record objects included.

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
    rb = Map(U.MapType.RINGBUF, 0, 0, ring)
    reader = rb.reader()
    rec = bytes(args.size)
    for _ in range(args.n):
        rb.output(rec, U.BPF_RB_NO_WAKEUP)
    t = time.perf_counter()
    got = reader.drain()
    dt = time.perf_counter() - t
    assert len(got) == args.n and reader.lost == 0
    print(f"{args.n:,} records of {args.size} bytes: {dt:.3f} s, {args.n / dt:,.0f} records/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
