"""Running one program on several threads, each its own virtual CPU.

Native code runs without the GIL, so threads that each own a
:class:`~ebee.engines.Machine` (``cpu`` = thread index: per-CPU map slots are the
thread's own, atomics are real atomics on shared memory) execute a program
in parallel.  :func:`replay_parallel` splits a capture across threads and
merges the verdict counts (``ebee run --pcap --threads N``).

Thread ``k`` runs as CPU ``k``, so ``N`` threads need ``N`` virtual CPUs in every
per-CPU map the program uses (other maps serve any CPU, see ``Map.cpu_slot``); a map keeps the CPU count it was created with
(:func:`ebee.maps.set_num_cpus` before loading).  ``replay_parallel`` refuses
(``ValueError``) rather than lose counts; ``ebee run --threads N`` raises the
count before it loads the object, so its totals are exact for any ``N``.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Sequence, TypeVar

from ..engines import Machine
from ..maps import num_cpus
from ..packet.pcap import Frame
from .common import TestTarget
from .replay import (MappedCapture, Summary, native_batch_unavailable, replay,
                     replay_mapped_chunks)
from .runner import Runner

T = TypeVar("T")


def run_threads(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Run each job on its own thread; their results in order (the first error re-raised)."""
    results: list = [None] * len(jobs)
    errors: list[BaseException | None] = [None] * len(jobs)

    def work(k: int) -> None:
        try:
            results[k] = jobs[k]()
        except BaseException as e:    # re-raised in the caller's thread
            errors[k] = e
    threads = [threading.Thread(target=work, args=(k,), name=f"ebee-cpu{k}") for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        if e is not None:
            raise e
    return results


def split(items: Sequence[T], n: int) -> list[Sequence[T]]:
    """``n`` contiguous chunks of nearly equal size (some may be empty)."""
    n = max(1, n)
    q, r = divmod(len(items), n)
    out, start = [], 0
    for k in range(n):
        end = start + q + (1 if k < r else 0)
        out.append(items[start:end])
        start = end
    return out


def check_cpus(prog: TestTarget, threads: int) -> None:
    """Refuse ``threads`` virtual CPUs where the program's maps (or the runtime) have
    fewer: the threads above would share no slot of their own."""
    short = [m for m in getattr(prog, "maps", ()) if m.percpu and m.ncpus < threads]
    if short or threads > num_cpus():
        what = (f"map {short[0].name or short[0].id} was created with {short[0].ncpus}"
                if short else f"the runtime has {num_cpus()}")
        raise ValueError(f"{threads} threads need {threads} virtual CPUs, but {what}: call "
                         f"ebee.maps.set_num_cpus({threads}) before loading the program "
                         f"(ebee run --threads does)")


def replay_parallel(prog: TestTarget, frames: Iterable, threads: int, *, engine: str | None = None,
                    link_layer: bool = False, on_packet: Callable | None = None,
                    native: bool | None = None, sanitize: bool = False):
    """Replay ``frames`` through ``prog`` on ``threads`` threads; one merged Summary.

    Each thread runs a contiguous share of the capture on its own machine
    (CPU = thread index).  Outcomes reach ``on_packet`` in capture order once
    every thread is done, so an output capture keeps the input's order.
    XDP programs on the JIT run through the native batch driver
    (:func:`ebee.testrun.replay.replay`'s ``native``), with no GIL between packets.
    """
    check_cpus(prog, threads)
    frames = list(frames)
    chunks = split(frames, threads)
    runners = [Runner(prog, engine=engine, link_layer=link_layer, machine=Machine(cpu=k),
                      sanitize=sanitize)
               for k in range(len(chunks))]
    outcomes: list[list] = [[] for _ in chunks]
    try:
        t0 = time.perf_counter()
        parts = run_threads([
            (lambda k=k: replay(runners[k], chunks[k], native=native,
                                on_packet=outcomes[k].append if on_packet is not None else None))
            for k in range(len(chunks))])
        seconds = time.perf_counter() - t0
    finally:
        for r in runners:
            r.close()
            r.machine.close()
    total = merge(parts)
    total.seconds = seconds
    if on_packet is not None:
        for part in outcomes:
            for out in part:
                on_packet(out)
    return total


def merge(parts: Sequence[Summary]) -> Summary:
    """One Summary of the threads' (in capture order)."""
    total = Summary(parts[0].program, parts[0].prog_type)
    for s in parts:
        total.packets += s.packets
        total.verdicts.update(s.verdicts)
        total.redirects.update(s.redirects)
        total.errors.update(s.errors)
        total.written += s.written
        total.bytes_in += s.bytes_in
        total.bytes_out += s.bytes_out
        total.native += s.native
        total.native_ns += s.native_ns
        for key, n in s.error_reasons.items():
            total.error_reasons[key] += n
        for key, first in s.first_error.items():
            total.first_error.setdefault(key, first)
    return total


def replay_capture_parallel(prog: TestTarget, cap: MappedCapture, threads: int, *,
                            engine: str | None = None, link_layer: bool = False,
                            sanitize: bool = False) -> Summary:
    """Counts of a mapped capture replayed on ``threads`` threads (no output capture).

    The capture is scanned once natively; its chunks are dealt out in contiguous
    runs of nearly equal packet counts, each thread running its share on its own
    machine through the native driver with no Python per packet.  Where the
    native driver cannot run the program, or the scan stopped at a record the
    Python reader must read, the frames go to :func:`replay_parallel` instead.
    """
    check_cpus(prog, threads)
    chunks = list(cap.chunks())
    if cap.stopped:
        return replay_parallel(prog, [f for ch in chunks for f in _frames(cap, ch)]
                               + list(cap.rest()), threads, engine=engine,
                               link_layer=link_layer, sanitize=sanitize)
    runners = [Runner(prog, engine=engine, link_layer=link_layer, machine=Machine(cpu=k),
                      sanitize=sanitize) for k in range(threads)]
    try:
        if native_batch_unavailable(runners[0]) is not None:
            frames = [f for ch in chunks for f in _frames(cap, ch)]
            for r in runners:
                r.close()
                r.machine.close()
            runners = []
            return replay_parallel(prog, frames, threads, engine=engine, link_layer=link_layer,
                                   sanitize=sanitize)
        shares = _deal(chunks, threads)
        t0 = time.perf_counter()
        parts = run_threads([(lambda k=k: replay_mapped_chunks(runners[k], cap, shares[k]))
                             for k in range(threads)])
        seconds = time.perf_counter() - t0
    finally:
        for r in runners:
            r.close()
            r.machine.close()
    total = merge(parts)
    total.seconds = seconds
    return total


def _frames(cap: MappedCapture, ch):
    for k in range(ch.count):
        d = ch.data(k)
        yield Frame(ch.index + k, ch.ts[k] / 1e9, d, len(d), cap.layout.linktype, ch.ts[k])


def _deal(chunks: list, n: int) -> list[list]:
    """Contiguous runs of chunks, one per thread, of nearly equal packet counts."""
    total = sum(ch.count for ch in chunks)
    out: list[list] = [[] for _ in range(n)]
    done = 0
    for ch in chunks:
        k = min(n - 1, done * n // max(total, 1))
        out[k].append(ch)
        done += ch.count
    return out
