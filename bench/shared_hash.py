"""Shared (pinned) hash tables against private ones and the kernel's, measured in one run.

A HASH map of 1024 entries (4-byte keys, 8-byte values), filled, then ``update`` and
``lookup`` of existing keys from Python, for:

* a private ebee map (no pin);
* the same map pinned, so its table is shared between processes (every operation
  takes the file's ``flock`` and, for writers, the busy word; see docs/pins.md);
* a second process's view of that pin (opened from the store), to show it costs the same;
* the kernel's map through ctypes ``bpf()`` (``BPF_MAP_UPDATE_ELEM`` / ``LOOKUP_ELEM``),
  the reference every ratio is against.

    python bench/shared_hash.py            # 20 000 operations each
    python bench/shared_hash.py -n 100000
"""
from __future__ import annotations

import argparse
import os
import platform
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from ebee.fs import PinStore  # noqa: E402
from ebee.kernel import bpf_available  # noqa: E402
from ebee.kernel.maps import KernelMap  # noqa: E402
from ebee.maps import Map  # noqa: E402
from ebee.uapi import MapType as T  # noqa: E402

ENTRIES = 1024
VALUE = struct.pack("<Q", 12345)
KEYS = [struct.pack("<I", i) for i in range(ENTRIES)]


def rate(fn, n: int) -> float:
    keys = [KEYS[i % ENTRIES] for i in range(n)]
    t0 = time.perf_counter()
    fn(keys)
    return n / (time.perf_counter() - t0)


def measure(m, n: int) -> tuple[float, float]:
    for k in KEYS:
        m.update(k, VALUE)

    def upd(keys):
        u = m.update
        for k in keys:
            u(k, VALUE)

    def look(keys):
        lk = m.lookup
        for k in keys:
            lk(k)
    return rate(upd, n), rate(look, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20_000, help="operations per measurement")
    n = ap.parse_args().n
    print(f"# {platform.node()}: {os.cpu_count()} CPUs (shared with other jobs: noisy), "
          f"Python {platform.python_version()}, HASH {ENTRIES} entries, {n} ops each")
    rows = {}
    why = bpf_available()
    if why:
        print(f"# no kernel reference: {why}")
    else:
        k = KernelMap(T.HASH, 4, 8, ENTRIES)
        rows["kernel bpf()"] = measure(k, n)
        k.close()
    rows["ebee private"] = measure(Map(T.HASH, 4, 8, ENTRIES), n)
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, "pins.sqlite3")
        pinner, opener = PinStore(db), PinStore(db)
        m = Map(T.HASH, 4, 8, ENTRIES)
        pinner.pin_map("/sys/fs/bpf/bench", m)
        rows["ebee shared (pinner)"] = measure(m, n)
        rows["ebee shared (opener)"] = measure(opener.get("/sys/fs/bpf/bench"), n)
        pinner.close()
        opener.close()
    ref = rows.get("kernel bpf()")
    print(f"{'':24} {'update/s':>12} {'lookup/s':>12}" +
          (f" {'upd vs kernel':>14} {'look vs kernel':>15}" if ref else ""))
    for name, (u, lk) in rows.items():
        line = f"{name:24} {u:12,.0f} {lk:12,.0f}"
        if ref:
            line += f" {u / ref[0]:13.2f}x {lk / ref[1]:14.2f}x"
        print(line)
    p = rows["ebee private"]
    s = rows["ebee shared (pinner)"]
    print(f"# shared / private: update {s[0] / p[0]:.2f}x, lookup {s[1] / p[1]:.2f}x")


if __name__ == "__main__":
    main()
