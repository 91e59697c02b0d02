"""`make bench`: one table of the everyday paths, ebee next to a reference measured in the
same run, with the machine and its load average.

Rows (the everyday paths users wait for), each with its reference:

* verifier over a deterministic sample of ../shared/corpus (``--full``: all of it), and
  a program that hits the 1M processed-instruction limit (``--full``): the running
  kernel's own ``verification time`` (BPF_LOG_STATS) on the same programs;
* ``ebee.load()`` of CO-RE objects (examples/c/core_task.o; BCC libbpf-tools' execsnoop
  and biolatency, built from bench/libbpf-tools), cold (empty ebee cache) and warm, each
  in a fresh process: ``bpftool prog loadall`` of the same object (libbpf, including the
  kernel's verification);
* JIT compile of one program, cold and warm (disk cache), in a fresh process;
* ``prog.run(data=64-byte packet)`` per call (``Runner.run`` and ``Program.run``):
  BPF_PROG_TEST_RUN per call, wall time of the syscall;
* pcap replay, counts only and with an outcome per packet (the native batch path): the
  kernel's in-program time per packet;
* LPM trie memory per 1 M entries (100 k filled; ``--full``: 1 M): the kernel's memlock;
* the interpreter's throughput on three loops: the same loop in plain Python;
* ring buffer records read per second (bench/ringbuf.py): ebee's reader on ebee's ring
  and on the kernel's, next to libbpf's ring_buffer__poll on the kernel's.

    python bench/run.py [--quick] [--full]

No row is a test: nothing here asserts a speed.
"""
from __future__ import annotations

import argparse
import glob
import os
import platform
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(HERE))

import ebee  # noqa: E402
from ebee.engines import Machine  # noqa: E402
import ringbuf  # noqa: E402  (bench/ringbuf.py)

CORPUS = ROOT.parent / "shared" / "corpus" / "ebpf-samples"
CORE_OBJ = ROOT / "examples" / "c" / "core_task.o"
XDP_OBJ = ROOT / "examples" / "c" / "xdp_firewall.o"
FIB = ROOT / "examples" / "asm" / "fib.s"
M = (1 << 64) - 1


@dataclass
class Row:
    path: str
    ebee: str
    reference: str = "-"
    ratio: str = "-"
    target: str = "-"


ROWS: list[Row] = []


def add(path: str, ebee_v: str, ref: str = "-", ratio: float | str | None = None,
        target: str = "-") -> None:
    r = f"{ratio:.2f}x" if isinstance(ratio, float) else (ratio or "-")
    ROWS.append(Row(path, ebee_v, ref, r, target))
    print(f"  {path}: {ebee_v} | {ref} | {r}", file=sys.stderr, flush=True)


def kernel_ok() -> str | None:
    from ebee.kernel import bpf_available
    return bpf_available()


def ms(s: float) -> str:
    return f"{s * 1e3:,.1f} ms" if s < 10 else f"{s:,.1f} s"


# -- verifier ------------------------------------------------------------------------------

def verifier_rows(full: bool, sample: int) -> None:
    from ebee.verifier import verify
    from verifier_kernel import ebee_object, kernel_object
    warnings.simplefilter("ignore")
    files = sorted(glob.glob(str(CORPUS / "**" / "*.o"), recursive=True))
    if not files:
        add("verifier, corpus", "skipped (no ../shared/corpus)")
        return
    # a deterministic sample: every k-th object
    if not full:
        step = max(1, len(files) // sample)
        files = files[::step][:sample]
    use_kernel = kernel_ok() is None
    e_s, k_s = [], []
    for path in files:
        try:
            ctx = ebee_object(path)
            obj = ctx.__enter__()
        except Exception:
            continue
        try:
            kctx = kernel_object(obj) if use_kernel else None
            try:
                kload = kctx.__enter__() if kctx is not None else None
            except Exception:
                kctx = kload = None
            for prog in obj.programs.values():
                t = time.perf_counter()
                verify(prog, log_level=1, facts=False)
                dt = time.perf_counter() - t
                if kload is not None:
                    kv = kload(prog, 1)
                    if kv.insns_processed is None or kv.duration_ns is None:
                        continue
                    k_s.append(kv.duration_ns / 1e9)
                e_s.append(dt)
            if kctx is not None:
                kctx.__exit__(None, None, None)
        finally:
            ctx.__exit__(None, None, None)
    what = "all" if full else f"{len(files)}-object sample"
    if not e_s:
        add(f"verifier, corpus ({what})", "no programs")
        return
    ref = (f"kernel {ms(sum(k_s))}, median {statistics.median(k_s) * 1e3:.2f} ms"
           if k_s else "kernel: -")
    add(f"verifier, corpus ({what}, {len(e_s)} programs), total",
        f"{ms(sum(e_s))}", ref.split(",")[0], sum(e_s) / sum(k_s) if k_s else None,
        "<= 3x")
    if k_s:
        add(f"verifier, corpus ({what}), median per program",
            f"{statistics.median(e_s) * 1e3:.2f} ms",
            f"kernel {statistics.median(k_s) * 1e3:.2f} ms",
            statistics.median(e_s) / statistics.median(k_s), "<= 3x")


def limit_row(full: bool) -> None:
    path = "1M-insn limit (examples/asm/fib.s --type xdp)"
    if not full:
        add(path, "skipped (--full)", target="<= 10 s")
        return
    from ebee import Program
    from ebee.kernel import KernelProgram
    from ebee.uapi import ProgType as P
    insns = ebee.assemble(FIB.read_text(), "kernel")
    prog = Program.from_insns(insns, P.XDP, verify=True)
    t = time.perf_counter()
    r = prog.verify()
    dt = time.perf_counter() - t
    ref = "-"
    if kernel_ok() is None:
        t = time.perf_counter()
        try:
            KernelProgram(insns, P.XDP, log_level=4).close()
        except OSError:
            pass
        ref = f"kernel {ms(time.perf_counter() - t)} (BPF_PROG_LOAD)"
    add(path, f"{ms(dt)} ({'accepted' if r.accepted else 'rejected'})", ref, target="<= 10 s")


# -- load and compile, each in a fresh process -----------------------------------------------

CHILD_LOAD = """
import sys, time
sys.path.insert(0, {src!r})
t = time.perf_counter(); import ebee; imp = time.perf_counter() - t
t = time.perf_counter(); c = time.process_time()
obj = ebee.load({obj!r}, pin_root={pins!r})
dt = time.perf_counter() - t; cpu = time.process_time() - c
t = time.perf_counter()
for p in obj.programs.values():
    p.verdict()
print(dt, imp, time.perf_counter() - t, cpu)
"""

CHILD_JIT = """
import sys, time
sys.path.insert(0, {src!r})
import ebee
from ebee.engines.jit.runtime import JitImage
obj = ebee.load({obj!r}, pin_root={pins!r})
exe = obj.programs[{prog!r}].executable()
t0 = time.perf_counter(); c0 = time.thread_time()
img = JitImage(list(exe.insns), checked=False)
print(time.perf_counter() - t0, time.thread_time() - c0, img.from_cache)
"""


def child(code: str, cache_dir: str) -> list[str]:
    env = dict(os.environ, EBEE_CACHE_DIR=cache_dir)
    env.pop("EBEE_CACHE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr else "failed")
    return out.stdout.split()


def bpftool_loadall(obj: Path) -> float | None:
    if kernel_ok() is not None or shutil.which("bpftool") is None:
        return None
    pin = Path(f"/sys/fs/bpf/ebee-bench-loadall-{os.getpid()}")
    try:
        t = time.perf_counter()
        r = subprocess.run(["bpftool", "prog", "loadall", str(obj), str(pin)],
                           capture_output=True, timeout=120)
        dt = time.perf_counter() - t
        return dt if r.returncode == 0 else None
    finally:
        shutil.rmtree(pin, ignore_errors=True)


LIBBPF_TOOLS = HERE / "libbpf-tools"


def libbpf_tools_objects(tmp: str) -> tuple[list[Path], str | None]:
    """execsnoop.bpf.o and biolatency.bpf.o built from bench/libbpf-tools as that
    Makefile builds them, against this kernel's vmlinux.h; or why not."""
    clang, bpftool = shutil.which("clang-19") or shutil.which("clang"), shutil.which("bpftool")
    if clang is None or bpftool is None or not os.path.exists("/sys/kernel/btf/vmlinux"):
        return [], "needs clang, bpftool and /sys/kernel/btf/vmlinux"
    out = Path(tmp) / "libbpf-tools"
    out.mkdir(exist_ok=True)
    with open(out / "vmlinux.h", "w") as f:
        if subprocess.run([bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format",
                           "c"], stdout=f, stderr=subprocess.DEVNULL).returncode:
            return [], "bpftool btf dump failed"
    objs = []
    for tool in ("execsnoop", "biolatency"):
        o = out / f"{tool}.bpf.o"
        r = subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86",
                            f"-I{out}", f"-I{LIBBPF_TOOLS}", "-I/usr/include/x86_64-linux-gnu",
                            "-c", str(LIBBPF_TOOLS / f"{tool}.bpf.c"), "-o", str(o)],
                           capture_output=True, text=True)
        if r.returncode:
            return objs, f"{tool}: {r.stderr.strip().splitlines()[-1] if r.stderr else 'failed'}"
        objs.append(o)
    return objs, None


def load_row(tmp: str, obj: Path, with_verify: bool) -> None:
    """``ebee.load()`` of one object in fresh processes: cold (an empty cache), then warm
    (best of two), next to ``bpftool prog loadall``."""
    cache_dir = os.path.join(tmp, f"cache-{obj.stem}")
    src = str(ROOT / "src")
    code = CHILD_LOAD.format(src=src, obj=str(obj), pins=os.path.join(tmp, f"pins-{obj.stem}"))
    cold, imp, vcold, ccold = map(float, child(code, cache_dir))
    warm, _, vwarm, cwarm = map(float, child(code, cache_dir))
    again = child(code, cache_dir)
    warm, vwarm = min(warm, float(again[0])), min(vwarm, float(again[2]))
    cwarm = min(cwarm, float(again[3]))
    ref = bpftool_loadall(obj)
    rs = f"bpftool prog loadall {ms(ref)}" if ref else "-"
    name = obj.name
    add(f"ebee.load() CO-RE ({name}), cold cache", f"{ms(cold)} (cpu {ms(ccold)})", rs,
        cold / ref if ref else None, "<= 300 ms")
    add(f"ebee.load() CO-RE ({name}), warm cache", f"{ms(warm)} (cpu {ms(cwarm)})", rs,
        warm / ref if ref else None, "<= 50 ms")
    if with_verify:
        add("  (import ebee, not in the rows above)", ms(imp))
        add(f"first verification of {name}'s programs, cold cache", ms(vcold))
        add(f"first verification of {name}'s programs, warm cache", ms(vwarm))


def load_rows(tmp: str) -> None:
    load_row(tmp, CORE_OBJ, True)
    objs, why = libbpf_tools_objects(tmp)
    for obj in objs:
        load_row(tmp, obj, False)
    if why:
        add("ebee.load() CO-RE (BCC libbpf-tools)", f"skipped ({why})")
    src = str(ROOT / "src")
    code = CHILD_JIT.format(src=src, obj=str(XDP_OBJ), pins=os.path.join(tmp, "pins2"),
                            prog="xdp_firewall")
    jcold = child(code, os.path.join(tmp, "jitcache"))
    jwarm = child(code, os.path.join(tmp, "jitcache"))
    add("JIT compile (xdp_firewall), cold", f"{ms(float(jcold[0]))} (cpu {ms(float(jcold[1]))})")
    add("JIT compile (xdp_firewall), warm", f"{ms(float(jwarm[0]))} (cpu {ms(float(jwarm[1]))})"
        + ("" if jwarm[2] == "True" else " NOT FROM CACHE"), target="<= 5 ms")


# -- per-call runs and captures ----------------------------------------------------------------

def per_call(fn, n: int) -> tuple[float, float]:
    """(wall, thread CPU) seconds per call, best of three rounds of ``n`` calls.  CPU time
    (user + system, so a syscall's kernel work counts) is what a loaded machine does not
    inflate."""
    best = (float("inf"), float("inf"))
    for _ in range(3):
        t, c = time.perf_counter(), time.thread_time()
        for _ in range(n):
            fn()
        best = min(best, ((time.perf_counter() - t) / n, (time.thread_time() - c) / n))
    return best


def us(t: tuple[float, float]) -> str:
    return f"{t[0] * 1e6:,.2f} us (cpu {t[1] * 1e6:,.2f})"


def run_rows(tmp: str, packets: int) -> None:
    from ebee.packet import pcap
    from ebee.testrun import Runner
    from ebee.testrun.replay import native_batch_unavailable, replay
    import make_pcaps
    pkt = bytes.fromhex("ffffffffffff0000000000010800") + bytes(50)       # 64 bytes
    obj = ebee.load(str(XDP_OBJ), pin_root=os.path.join(tmp, "runpins"))
    obj.maps["blocklist"].update(socket.inet_aton("10.0.0.1"), bytes(8))
    prog = obj.programs["xdp_firewall"]
    n = 2_000
    with Runner(prog) as r:
        r.run(pkt)
        runner_s = per_call(lambda: r.run(pkt), n)
        cap = os.path.join(tmp, "bench.pcap")
        make_pcaps.write(cap, packets, seed=7)
        frames = [pcap.Frame(k, 0.0, f.data, len(f.data)) for k, f in enumerate(pcap.read(cap))]
        why = native_batch_unavailable(r)
        if why is None:
            replay(r, frames[:10], native=True)
            counts = replay(r, frames, native=True).seconds
            outcomes = replay(r, frames, native=True, on_packet=lambda o: None).seconds
    prog.run(pkt)
    prog_s = per_call(lambda: prog.run(pkt), n)
    # from a blocked source: the program counts the drop in its pinned blocklist, so the
    # run ends with a write to the pin store (a SQLite transaction)
    from ebee.packet import udp_packet
    blocked = udp_packet("10.0.0.1", "10.0.0.2", 1000, 53, bytes(22))
    assert len(blocked) == 64 and prog.run(blocked).retval == 1
    prog_w = per_call(lambda: prog.run(blocked), 200)
    k_wall = k_in = kpp = None
    if kernel_ok() is None:
        pin_dir = Path("/sys/fs/bpf") / f"ebee-bench-{os.getpid()}"
        pin_dir.mkdir(exist_ok=True)
        try:
            kobj = obj.load_kernel(pin_root=str(pin_dir))
            kobj.maps["blocklist"].update(socket.inet_aton("10.0.0.1"), bytes(8))
            kp = kobj.programs["xdp_firewall"]
            kp.run(pkt, repeat=1)
            k_wall = per_call(lambda: kp.run(pkt, repeat=1), n)
            k_in = kp.run(pkt, repeat=100_000).duration_ns / 1e9
            tot = 0
            for f in frames:
                tot += kp.run(f.data, repeat=1).duration_ns
            kpp = tot / len(frames) / 1e9
            kobj.close()
        finally:
            shutil.rmtree(pin_dir, ignore_errors=True)
    obj.close()
    ref = (f"BPF_PROG_TEST_RUN syscall {us(k_wall)}, {k_in * 1e9:.0f} ns in program"
           if k_wall else "-")

    def ratio(t):
        return f"{t[0] / k_wall[0]:.2f}x (cpu {t[1] / k_wall[1]:.2f}x)" if k_wall else None
    add("Runner.run(64-byte packet) per call", us(runner_s), ref, ratio(runner_s), "<= 10 us")
    add("prog.run(data=64-byte packet) per call", us(prog_s), ref, ratio(prog_s), "<= 10 us")
    add("  the same, a run that writes a pinned map", us(prog_w), ref, ratio(prog_w))
    if why is not None:
        add("pcap replay", f"skipped ({why})")
        return
    kref = f"kernel {1 / kpp:,.0f} pkt/s in program ({kpp * 1e9:.0f} ns)" if kpp else "-"
    for what, s, target in (("counts only", counts, ">= 5 M pkt/s"),
                            ("an outcome per packet", outcomes, ">= 1 M pkt/s")):
        rate = len(frames) / s
        add(f"pcap replay, native batch, {what} ({len(frames):,} pkts)", f"{rate:,.0f} pkt/s",
            kref, (1 / rate) / kpp if kpp else None, target)


SKB_REPLAYS = (("TC", "tc_classifier.o"), ("socket filter", "socket_bytes.o"),
               ("cgroup_skb", "cgroup_skb_counter.o"))


def skb_replay_rows(tmp: str, packets: int) -> None:
    """TC, socket filter and cgroup_skb over the same capture: ``replay`` as `ebee run
    --pcap` does it (one test run per packet unless the native batch path takes them),
    next to the kernel's in-program time for the same packets."""
    from ebee.packet import pcap
    from ebee.testrun import Runner
    from ebee.testrun.replay import native_batch_unavailable, replay
    import make_pcaps
    cap = os.path.join(tmp, "skb.pcap")
    make_pcaps.write(cap, packets, seed=7)
    frames = [pcap.Frame(k, 0.0, f.data, len(f.data)) for k, f in enumerate(pcap.read(cap))]
    for what, name in SKB_REPLAYS:
        obj = ebee.load(str(ROOT / "examples" / "c" / name),
                        pin_root=os.path.join(tmp, f"pins-{name}"))
        prog = next(iter(obj.programs.values()))
        with Runner(prog) as r:
            why = native_batch_unavailable(r)
            replay(r, frames[:10])
            s = replay(r, frames).seconds
        kpp = None
        if kernel_ok() is None:
            pin_dir = Path("/sys/fs/bpf") / f"ebee-bench-skb-{os.getpid()}"
            pin_dir.mkdir(exist_ok=True)
            try:
                kobj = obj.load_kernel(pin_root=str(pin_dir))
                kp = next(iter(kobj.programs.values()))
                ns = []
                for f in frames:
                    try:
                        ns.append(kp.run(f.data, repeat=1).duration_ns)
                    except OSError:       # a frame the kernel's test run refuses
                        pass
                kpp = sum(ns) / len(ns) / 1e9 if ns else None
                kobj.close()
            except OSError as e:
                print(f"  {name} in the kernel: {e}", file=sys.stderr)
                kpp = None
            finally:
                shutil.rmtree(pin_dir, ignore_errors=True)
        obj.close()
        rate = len(frames) / s
        path = "native batch" if why is None else "one test run per packet"
        add(f"pcap replay, {what} ({name}, {path}, {len(frames):,} pkts)", f"{rate:,.0f} pkt/s",
            f"kernel {1 / kpp:,.0f} pkt/s in program ({kpp * 1e9:.0f} ns)" if kpp else "-",
            (1 / rate) / kpp if kpp else None, "native batch as XDP's")


# -- memory ------------------------------------------------------------------------------------

def lpm_row(entries: int) -> None:
    from maps import ebee_bytes, kernel_memlock, key_of
    from ebee.maps import Map
    from ebee.uapi import BPF_F_NO_PREALLOC, MapType
    value = bytes(8)
    em = Map(MapType.LPM_TRIE, 8, 8, entries, BPF_F_NO_PREALLOC)
    for i in range(entries):
        em.update(key_of("lpm_trie", i), value)
    ours = ebee_bytes(em) * 1_000_000 / entries
    em.close()
    theirs = None
    if kernel_ok() is None:
        from ebee.kernel.maps import KernelMap
        km = KernelMap(MapType.LPM_TRIE, 8, 8, entries, BPF_F_NO_PREALLOC)
        for i in range(entries):
            km.update(key_of("lpm_trie", i), value)
        mem = kernel_memlock(km.fd)
        km.close()
        theirs = mem * 1_000_000 / entries if mem else None
    add(f"LPM trie memory per 1 M entries ({entries:,} filled)", f"{ours / 2**20:,.1f} MiB",
        f"kernel memlock {theirs / 2**20:,.1f} MiB" if theirs else "-",
        ours / theirs if theirs else None, "<= 2x")


# -- the interpreter -----------------------------------------------------------------------------

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
        r3 = r0 & 0xFFFFFFFF  # noqa: F841
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
    ("ALU-heavy loop", ALU, alu_py, 1_000_000),
    ("stack load/store", STACK, stack_py, 300_000),
    ("bpf-to-bpf calls", CALLS, calls_py, 300_000),
]


def best_of(fn, repeat):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def interp_rows(quick: bool, repeat: int) -> None:
    for name, src, py, n in WORKLOADS:
        if quick:
            n //= 20
        insns = ebee.assemble(src.format(n=n), "kernel")
        m = Machine(budget=1 << 40)
        bound = m.bind(insns)
        t_ebee, res = best_of(bound.run, repeat)
        t_py, ref = best_of(lambda: py(n), repeat)
        assert res.retval == ref, (name, res.retval, ref)
        add(f"interpreter, {name}", f"{res.insns / t_ebee / 1e6:,.1f} M insn/s",
            f"plain Python {res.insns / t_py / 1e6:,.1f} M insn/s", t_ebee / t_py)
        m.close()


def ringbuf_rows(tmp: str, n: int) -> None:
    d = Path(tmp) / "ringbuf"
    d.mkdir()
    obj, exe, no_exe = ringbuf.build(d)
    rows = ringbuf.ebee_rows(obj, n, 1, d)
    krows, why = ringbuf.kernel_rows(obj, exe, n, 1, d)
    rows.update(krows)
    ref = rows.get("kernel program -> kernel ring, libbpf ring_buffer__poll")
    ref_s = f"{n / ref:,.0f} rec/s (libbpf)" if ref else (why or no_exe or "-")
    for label in ("ebee program -> ebee ring, drain() Records",
                  "kernel program -> kernel ring, ebee drain()"):
        if label in rows:
            add(f"ring buffer read, {label.split(',')[0].split(' -> ')[1]}",
                f"{n / rows[label]:,.0f} rec/s", ref_s, rows[label] / ref if ref else None)


# -- report --------------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "-"


def section(name: str, fn, *args) -> None:
    print(f"{name} ...", file=sys.stderr, flush=True)
    try:
        fn(*args)
    except Exception as e:       # one broken row must not lose the table
        add(name, f"error: {type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small runs (a CI smoke check)")
    ap.add_argument("--full", action="store_true",
                    help="the whole corpus, the 1M-instruction program, 1 M LPM entries")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    load0 = load_avg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        section("verifier", verifier_rows, args.full, 4 if args.quick else 12)
        section("1M limit", limit_row, args.full)
        section("load and compile", load_rows, tmp)
        section("runs", run_rows, tmp, 2_000 if args.quick else (100_000 if args.full else 20_000))
        section("TC, socket filter, cgroup_skb replays", skb_replay_rows, tmp,
                2_000 if args.quick else 10_000)
        section("LPM memory", lpm_row, 1_000_000 if args.full else (2_000 if args.quick else 100_000))
        section("interpreter", interp_rows, args.quick, args.repeat)
        section("ring buffer", ringbuf_rows, tmp, 5_000 if args.quick else 200_000)
    why = kernel_ok()
    print(f"ebee {ebee.__version__} on {cpu_model()}, {os.cpu_count()} CPUs, "
          f"Linux {platform.release()}, Python {platform.python_version()}")
    print(f"load average (1, 5, 15 min): {load0} at start, {load_avg()} at end; "
          f"{time.perf_counter() - t0:.0f} s; reference: "
          f"{'the running kernel through bpf(), bpftool (libbpf)' if why is None else why}")
    heads = ("path", "ebee", "reference (same run)", "ebee/ref", "target")
    cols = [[h] + [getattr(r, f) for r in ROWS]
            for h, f in zip(heads, ("path", "ebee", "reference", "ratio", "target"))]
    widths = [max(map(len, c)) for c in cols]
    print(" | ".join(h.ljust(w) for h, w in zip(heads, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in ROWS:
        vals = (r.path, r.ebee, r.reference, r.ratio, r.target)
        print(" | ".join(v.ljust(w) for v, w in zip(vals, widths)))
    print("ebee/ref: ebee's time (or memory) over the reference's, per call or per packet; "
          "below 1, ebee is faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
