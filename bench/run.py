"""Interpreter throughput: instructions per second on three workloads.

Each workload is an eBPF program and, as the stated baseline measured in the
same run, the same computation written by hand in plain Python (registers as
locals, the stack as a bytearray): the speed a translation to Python could at
best reach.  Run with `make bench` or `python bench/run.py [--quick]`.
"""
from __future__ import annotations

import argparse
import platform
import struct
import sys
import time

import ebee
from ebee.engines import Machine

M = (1 << 64) - 1

ALU = """
    r0 = 0
    r1 = {n}
loop:
    r0 += r1
    r0 ^= 0x55
    r2 = r0
    r2 <<= 3
    r0 += r2
    w3 = w0
    r1 -= 1
    if r1 != 0 goto loop
    exit
"""


def alu_py(n):
    r0 = 0
    r1 = n
    while True:
        r0 = (r0 + r1) & M
        r0 ^= 0x55
        r2 = r0
        r2 = (r2 << 3) & M
        r0 = (r0 + r2) & M
        r3 = r0 & 0xFFFFFFFF
        r1 = (r1 - 1) & M
        if r1 == 0:
            break
    return r0


STACK = """
    r1 = {n}
loop:
    *(u64 *)(r10 - 8) = r1
    r2 = *(u64 *)(r10 - 8)
    *(u32 *)(r10 - 16) = w2
    r3 = *(u32 *)(r10 - 16)
    r4 = r10
    r4 += -24
    *(u64 *)(r4 + 0) = r3
    r0 = *(u64 *)(r4 + 0)
    r1 -= 1
    if r1 != 0 goto loop
    exit
"""

_Q = struct.Struct("<Q")
_I = struct.Struct("<I")


def stack_py(n):
    stk = bytearray(512)
    r1 = n
    r0 = 0
    while True:
        _Q.pack_into(stk, 504, r1)
        r2 = _Q.unpack_from(stk, 504)[0]
        _I.pack_into(stk, 496, r2 & 0xFFFFFFFF)
        r3 = _I.unpack_from(stk, 496)[0]
        _Q.pack_into(stk, 488, r3)
        r0 = _Q.unpack_from(stk, 488)[0]
        r1 = (r1 - 1) & M
        if r1 == 0:
            break
    return r0


CALLS = """
    r6 = {n}
    r7 = 0
loop:
    r1 = r6
    r2 = r7
    call mix
    r7 = r0
    r6 -= 1
    if r6 != 0 goto loop
    r0 = r7
    exit
mix:
    r0 = r1
    r0 *= 31
    r0 ^= r2
    exit
"""


def calls_py(n):
    def mix(r1, r2):
        r0 = r1
        r0 = (r0 * 31) & M
        r0 ^= r2
        return r0
    r6, r7 = n, 0
    while True:
        r7 = mix(r6, r7)
        r6 = (r6 - 1) & M
        if r6 == 0:
            break
    return r7


WORKLOADS = [
    ("(a) ALU-heavy loop", ALU, alu_py, 1_000_000),
    ("(b) stack load/store", STACK, stack_py, 300_000),
    ("(c) bpf-to-bpf calls", CALLS, calls_py, 300_000),
]


def best_of(fn, repeat):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller runs (for CI smoke checks)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"ebee {ebee.__version__} interpreter on {platform.machine()}, Python {platform.python_version()}, "
          f"{platform.processor() or platform.machine()}")
    print(f"{'workload':24} {'insns':>10} {'ebee s':>8} {'M insn/s':>9} {'python s':>9} {'ebee/python':>11}")
    for name, src, py, n in WORKLOADS:
        if args.quick:
            n //= 20
        insns = ebee.assemble(src.format(n=n), "kernel")
        m = Machine(budget=1 << 40)
        bound = m.bind(insns)
        t_ebee, res = best_of(bound.run, args.repeat)
        t_py, ref = best_of(lambda: py(n), args.repeat)
        assert res.retval == ref, (name, res.retval, ref)
        print(f"{name:24} {res.insns:>10} {t_ebee:>8.3f} {res.insns / t_ebee / 1e6:>9.1f} "
              f"{t_py:>9.3f} {t_py / t_ebee:>10.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
