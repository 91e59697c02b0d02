"""Helpers that call back into the program: bpf_loop, bpf_for_each_map_elem, timers.

``Cpu.call_function`` runs a program function given its code address (what
``lddw rX, subprog[...]`` -- BPF_PSEUDO_FUNC -- loads) in a new frame one
below the caller's, as Linux runs callbacks.  Timers fire from a
:class:`VirtualClock` that user space advances: ``clock.advance(ns)`` runs
every callback that falls due, in expiry order, on the machine that armed it.
"""
from __future__ import annotations

import errno as E
import itertools
import struct
import threading
from dataclasses import dataclass, field

from .. import uapi as U
from ..errors import VMError
from ..maps.base import FIELD_FREE, MAP_FREE
from ..uapi import FuncId
from ..memory import Region
from ..runtime.clock import Clock
from .registry import implements
from .maps import map_of, map_op

M64 = (1 << 64) - 1


@implements(FuncId.loop)
def loop(m, nr_loops, cb, ctx, flags, _):
    if flags:
        return -E.EINVAL
    nr_loops &= 0xFFFFFFFF
    if nr_loops > U.BPF_MAX_LOOPS:
        return -E.E2BIG
    fn = m.find_function(cb)
    for i in range(nr_loops):
        if m.call_function(cb, i, ctx, fn=fn):
            return i + 1
    return nr_loops


@implements(FuncId.for_each_map_elem)
@map_op
def for_each_map_elem(m, mp, cb, ctx, flags, _):
    if flags:
        return -E.EINVAL
    mo = map_of(mp)
    fn = m.find_function(cb)
    n = 0
    keybuf = Region(max(mo.key_size, 1), "for_each key", writable=False)
    m.memory.add(keybuf)
    try:
        for key, vaddr in list(mo.for_each(mo.cpu_slot(m.cpu))):
            keybuf.buf[:len(key)] = key
            n += 1
            if m.call_function(cb, mp, keybuf.start, vaddr, ctx, fn=fn):
                break
    finally:
        m.memory.remove(keybuf)
    return n


# ---------------------------------------------------------------------------------------
# timers
# ---------------------------------------------------------------------------------------

MAX_CLOCKS = 16
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME = 0, 1, 7
_U64 = struct.Struct("<Q")


class VirtualClock(Clock):
    """A clock that only moves when told to; advancing it fires due timers."""

    def __init__(self, start_ns: int = 1_000_000_000):
        self.now = start_ns

    def monotonic_ns(self) -> int:
        return self.now

    boottime_ns = coarse_ns = tai_ns = monotonic_ns

    def advance(self, ns: int) -> int:
        """Move time forward by ``ns``, running due timer callbacks; returns how many ran."""
        target = self.now + ns
        ran = 0
        while True:
            t = _next_due(self, target)
            if t is None:
                break
            self.now = max(self.now, t.expires)
            t.active = False
            t.fire()
            ran += 1
        self.now = target
        return ran


@dataclass(eq=False)
class Timer:
    """The state behind one ``struct bpf_timer`` in a map value."""
    id: int
    map: object
    key: bytes
    value_addr: int
    clock: Clock
    machine: object = None
    callback: int = 0
    fn: object = None
    expires: int = 0
    active: bool = False
    running: bool = False
    seq: int = field(default=0)

    def fire(self) -> None:
        m = self.machine
        keybuf = Region(max(len(self.key), 1), "timer key", writable=False)
        m.memory.add(keybuf)
        keybuf.buf[:len(self.key)] = self.key
        self.running = True
        try:
            m.call_function(self.callback, self.map.addr, keybuf.start, self.value_addr, fn=self.fn)
        finally:
            self.running = False
            m.memory.remove(keybuf)


_timers: dict[int, Timer] = {}
_ids = itertools.count(1)
_lock = threading.RLock()


def _next_due(clock: Clock, target: int) -> Timer | None:
    with _lock:
        due = [t for t in _timers.values() if t.active and t.clock is clock and t.expires <= target]
    return min(due, key=lambda t: (t.expires, t.seq)) if due else None


def _timer_at(m, addr: int) -> Timer | None:
    tid = _U64.unpack(m.read(addr, 8))[0]
    return _timers.get(tid)


def _owner(mp, addr: int) -> tuple[bytes, int] | None:
    """(key, value address) of the map element whose value holds ``addr``."""
    for key, vaddr in mp.for_each(0):
        if vaddr <= addr < vaddr + mp.value_size:
            return key, vaddr
    return None


@implements(FuncId.timer_init)
@map_op
def timer_init(m, timer, mp, flags, *_):
    clockid = flags & (MAX_CLOCKS - 1)
    if flags >= MAX_CLOCKS or clockid not in (CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_BOOTTIME):
        return -E.EINVAL
    with _lock:
        if _timer_at(m, timer) is not None:
            return -E.EBUSY
        mo = map_of(mp)
        owner = _owner(mo, timer)
        if owner is None:
            raise VMError(f"bpf_timer at {timer:#x} is not inside a value of map {mo.id}")
        t = Timer(next(_ids), mo, owner[0], owner[1], m.clock)
        _timers[t.id] = t
        m.write(timer, _U64.pack(t.id) + bytes(8))
    return 0


@implements(FuncId.timer_set_callback)
def timer_set_callback(m, timer, cb, *_):
    t = _timer_at(m, timer)
    if t is None:
        return -E.EINVAL
    t.machine, t.callback, t.fn = m, cb, m.find_function(cb)
    return 0


@implements(FuncId.timer_start)
def timer_start(m, timer, nsecs, flags, *_):
    if flags & ~(U.BPF_F_TIMER_ABS | U.BPF_F_TIMER_CPU_PIN):
        return -E.EINVAL
    t = _timer_at(m, timer)
    if t is None or not t.callback:
        return -E.EINVAL
    now = t.clock.monotonic_ns()
    t.expires = nsecs if flags & U.BPF_F_TIMER_ABS else now + nsecs
    t.active = True
    t.seq = next(_ids)
    return 0


@implements(FuncId.timer_cancel)
def timer_cancel(m, timer, *_):
    t = _timer_at(m, timer)
    if t is None:
        return -E.EINVAL
    if t.running:
        return -E.EDEADLK
    was = t.active
    t.active = False
    return 1 if was else 0


def _free_timer(mp, buf, off: int) -> None:
    """bpf_timer_cancel_and_free: the value holding the timer is gone."""
    tid = _U64.unpack_from(buf, off)[0]
    with _lock:
        t = _timers.pop(tid, None)
    if t is not None:
        t.active = False
    buf[off:off + 16] = bytes(16)


def _free_map_timers(mp) -> None:
    with _lock:
        gone = [tid for tid, t in _timers.items() if t.map is mp]
        for tid in gone:
            _timers.pop(tid).active = False


FIELD_FREE["bpf_timer"] = _free_timer
MAP_FREE.append(_free_map_timers)


def pending_timers() -> list[Timer]:
    """Armed timers, soonest first."""
    with _lock:
        return sorted((t for t in _timers.values() if t.active), key=lambda t: t.expires)

