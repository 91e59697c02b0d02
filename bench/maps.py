"""Map benchmark: ebee next to the kernel, measured in the same run.

For HASH, ARRAY, LRU_HASH and LPM_TRIE maps of 1 K and 1 M entries (4-byte keys,
8-byte values; LPM: 8-byte keys) it reports

* operations per second from Python: ``ebee.Map`` lookup/update/delete against
  the same syscalls on a kernel map (ctypes bpf(), as any Python tool would);
* operations per second from a program: an XDP program doing one
  ``bpf_map_lookup_elem`` + one ``bpf_map_update_elem`` per run, run by ebee's
  interpreter and by BPF_PROG_TEST_RUN (kernel, JIT on, ``repeat``);
* memory per million entries: ebee's regions (bytes held by the map) against
  the kernel's ``memlock`` figure from /proc/self/fdinfo.

    python bench/maps.py            # 1 K and 1 M entries (about two minutes)
    python bench/maps.py --quick    # 1 K entries only
"""
from __future__ import annotations

import argparse
import os
import platform
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import ebee  # noqa: E402
from ebee.kernel import KernelProgram, bpf_available  # noqa: E402
from ebee.kernel.maps import KernelMap  # noqa: E402
from ebee.maps import LpmTrie, Map  # noqa: E402
from ebee.uapi import BPF_F_NO_PREALLOC, MapType as T, ProgType  # noqa: E402
from ebee.engines import Machine  # noqa: E402
from ebee.memory import Region  # noqa: E402

TYPES = [("hash", T.HASH, 4, 0), ("array", T.ARRAY, 4, 0), ("lru_hash", T.LRU_HASH, 4, 0),
         ("lpm_trie", T.LPM_TRIE, 8, BPF_F_NO_PREALLOC)]
VALUE = struct.pack("<Q", 12345)


def key_of(kind: str, i: int) -> bytes:
    if kind == "lpm_trie":
        return struct.pack("<I", 32) + struct.pack(">I", (10 << 24) + i)
    return struct.pack("<I", i)


def rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t0)


def fill(m, kind: str, n: int, kernel: bool) -> None:
    if kernel and kind != "lpm_trie":
        step = 10_000
        for s in range(0, n, step):
            ks = [key_of(kind, i) for i in range(s, min(n, s + step))]
            m.update_batch(ks, [VALUE] * len(ks))
        return
    upd = m.update if kernel else m.update
    for i in range(n):
        upd(key_of(kind, i), VALUE)


def python_ops(m, kind: str, size: int, n: int, kernel: bool) -> dict[str, float]:
    keys = [key_of(kind, (i * 7919) % size) for i in range(n)]

    def lookups(k):
        f = m.lookup
        for key in keys[:k]:
            try:
                f(key)
            except OSError:       # an LRU map may have evicted it
                pass

    def updates(k):
        f = m.update
        for key in keys[:k]:
            f(key, VALUE)

    out = {"lookup": rate(lookups, n), "update": rate(updates, n)}
    if kind != "array":
        def delete_insert(k):
            f, g = m.delete, m.update
            for key in keys[:k]:
                try:
                    f(key)
                except OSError:   # evicted from an LRU map
                    pass
                g(key, VALUE)
        out["delete+insert"] = 2 * rate(delete_insert, n // 2)
    return out


def prog_src(map_ref: str, kind: str) -> str:
    key = key_of(kind, 7)
    lines = []
    for k in range(0, len(key), 4):
        lines += [f"r1 = {int.from_bytes(key[k:k + 4], 'little')}", f"*(u32 *)(r10 - {16 - k}) = r1"]
    return "\n".join(lines + [
        "r1 = 1", "*(u64 *)(r10 - 24) = r1",
        f"r1 = {map_ref} ll", "r2 = r10", "r2 += -16", "call bpf_map_lookup_elem",
        f"r1 = {map_ref} ll", "r2 = r10", "r2 += -16", "r3 = r10", "r3 += -24", "r4 = 0",
        "call bpf_map_update_elem", "r0 = 2", "exit"])


def prog_ops(em: Map, km: KernelMap | None, kind: str, n: int) -> tuple[float, float | None]:
    insns = ebee.assemble(prog_src(f"map[id:{em.id}]", kind))
    pkt = bytes(64)
    with Machine() as m:
        r = m.memory.add(Region(pkt, "pkt"))
        it = m.bind(insns)
        t0 = time.perf_counter()
        for _ in range(n):
            it.run(r.start)
        ours = n / (time.perf_counter() - t0)
        m.memory.remove(r)
    theirs = None
    if km is not None:
        import dataclasses
        kin = [dataclasses.replace(i, imm=km.fd) if i.kind.name == "LD_IMM64" and i.src == 1 else i
               for i in insns]
        with KernelProgram(kin, ProgType.XDP) as kp:
            res = kp.test_run(pkt, repeat=max(n, 100_000))
            theirs = 1e9 / max(res.duration_ns, 1)
    return ours, theirs


def ebee_bytes(m: Map) -> int:
    total = m.handle.size + sum(r.size for r in m._regions)
    if hasattr(m, "lru_lists"):
        # the LRU lists' link arrays: Python ints in lists, ~8 bytes a slot plus objects
        total += sys.getsizeof(m.lru_lists.prev) + sys.getsizeof(m.lru_lists.next) + \
            sys.getsizeof(m.lru_lists.type) + sys.getsizeof(m.lru_lists.cpu)
    if isinstance(m, LpmTrie):     # the node pool: typed arrays beside the values region
        total += m.node_memory()
    return total


def kernel_memlock(fd: int) -> int | None:
    try:
        for line in open(f"/proc/self/fdinfo/{fd}"):
            if line.startswith("memlock:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 K entries only")
    ap.add_argument("--ops", type=int, default=20_000, help="operations per measurement")
    ap.add_argument("--types", default=",".join(t[0] for t in TYPES),
                    help="comma-separated map kinds to measure (default: all)")
    args = ap.parse_args()
    kinds = set(args.types.split(","))
    kernel_ok = bpf_available() is None
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"Linux {platform.release()}; kernel maps: {'yes' if kernel_ok else 'no (' + bpf_available() + ')'}")
    sizes = [1_000] if args.quick else [1_000, 1_000_000]
    print(f"{'map':10} {'entries':>9} {'op':14} {'ebee ops/s':>12} {'kernel ops/s':>13} {'ratio':>7}")
    mem_rows = []
    for kind, mt, ks, flags in TYPES:
        if kind not in kinds:
            continue
        for size in sizes:
            em = Map(mt, ks, 8, size, flags)
            km = KernelMap(mt, ks, 8, size, flags) if kernel_ok else None
            fill(em, kind, size, False)
            if km is not None:
                fill(km, kind, size, True)
            n = min(args.ops, size * 4)
            ours = python_ops(em, kind, size, n, False)
            theirs = python_ops(km, kind, size, n, True) if km is not None else {}
            for op, v in ours.items():
                t = theirs.get(op)
                print(f"{kind:10} {size:>9,} {'py ' + op:14} {v:>12,.0f} "
                      f"{(f'{t:,.0f}' if t else '-'):>13} {(f'{v / t:.3f}' if t else '-'):>7}")
            po, pt = prog_ops(em, km, kind, min(args.ops, 20_000))
            print(f"{kind:10} {size:>9,} {'prog lkp+upd':14} {po:>12,.0f} "
                  f"{(f'{pt:,.0f}' if pt else '-'):>13} {(f'{po / pt:.4f}' if pt else '-'):>7}")
            if size == sizes[-1]:
                mem_rows.append((kind, size, ebee_bytes(em), kernel_memlock(km.fd) if km else None))
            em.close()
            if km is not None:
                km.close()
    print("\nmemory per 1 M entries (filled):")
    for kind, size, ours, theirs in mem_rows:
        scale = 1_000_000 / size
        t = f"{theirs * scale / 2**20:,.1f} MiB" if theirs else "-"
        print(f"  {kind:10} ebee {ours * scale / 2**20:8,.1f} MiB   kernel memlock {t}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
