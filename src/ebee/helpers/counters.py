"""Helpers over state the kernel keeps beside the program: perf counters
(bpf_perf_event_read, bpf_perf_event_read_value) and the route of a packet
(bpf_get_route_realm); cgroup storage is in cgroups.py.

Perf counters are modelled: a PERF_EVENT_ARRAY slot holds a :class:`Counter` (set with
:func:`set_counter`) -- the perf event a user opened on one CPU with its count, enabled
and running times -- or a :class:`~ebee.maps.perf.PerfRing` (a bpf-output event, which
counts nothing).  The errnos are get_map_perf_counter()'s and perf_event_read_local()'s.
"""
from __future__ import annotations

import errno as E
import struct
import weakref
from dataclasses import dataclass
from typing import Any

from .. import uapi as U
from ..packet.skbuff import from_ctx
from ..uapi import FuncId as F
from .maps import map_of
from .registry import implements

M64 = (1 << 64) - 1
#: struct bpf_perf_event_value { __u64 counter; __u64 enabled; __u64 running; }
PERF_EVENT_VALUE = struct.Struct("<QQQ")


def neg(e: int) -> int:
    return -e & M64


@dataclass
class Counter:
    """A perf counter event bound to one CPU (``cpu=-1``: a task counter, readable from
    any CPU, as perf_event_read_local allows for events of the current task)."""
    count: int = 0
    enabled: int = 0
    running: int = 0
    cpu: int = -1
    inherit: bool = False


def set_counter(mp, index: int, counter: Counter | None) -> None:
    """Put ``counter`` in slot ``index`` of PERF_EVENT_ARRAY ``mp`` (None: empty it), as
    user space's map update with a perf event fd does."""
    if not 0 <= index < mp.max_entries:
        raise IndexError(f"slot {index} of a {mp.max_entries}-slot perf event array")
    mp.slots[index] = counter


def _read(m, mp, flags: int) -> tuple[int, int, int] | int:
    """get_map_perf_counter() + perf_event_read_local(): (counter, enabled, running) or
    a negative errno."""
    if flags & ~U.BPF_F_INDEX_MASK:
        return -E.EINVAL
    index = flags & U.BPF_F_INDEX_MASK
    if index == U.BPF_F_CURRENT_CPU:
        index = m.cpu
    if index >= mp.max_entries:
        return -E.E2BIG
    ev = mp.slots[index]
    if ev is None:
        return -E.ENOENT
    if isinstance(ev, Counter):
        # perf_event_read_local(): an inherited counter cannot be read from a program,
        # nor a CPU counter of another CPU
        if ev.inherit or ev.cpu not in (-1, m.cpu):
            return -E.EOPNOTSUPP if ev.inherit else -E.EINVAL
        return ev.count & M64, ev.enabled & M64, ev.running & M64
    # a bpf-output event (a perf ring): a software event of one CPU that counts nothing
    cpu = getattr(ev, "cpu", m.cpu)
    if cpu != m.cpu:
        return -E.EINVAL
    return 0, 0, 0


@implements(F.perf_event_read)
def perf_event_read(m, mp, flags, *_):
    r = _read(m, map_of(mp), flags)
    return neg(-r) if isinstance(r, int) else r[0]


@implements(F.perf_event_read_value)
def perf_event_read_value(m, mp, flags, buf, size, _r5):
    size &= 0xFFFFFFFF
    err: int | tuple[int, int, int] = -E.EINVAL
    if size == PERF_EVENT_VALUE.size:
        err = _read(m, map_of(mp), flags)
        if not isinstance(err, int):
            m.write(buf, PERF_EVENT_VALUE.pack(*err))
            return 0
    m.zero(buf, size)           # the kernel clears the buffer on any error
    return neg(-err)


# -- routes ------------------------------------------------------------------------------

_REALMS: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()


def set_route_realm(skb, realm: int) -> None:
    """Give ``skb`` a route (dst) whose realm (``tclassid``, set by ``ip route ... realm``)
    is ``realm``; a packet without one -- every test run's -- has realm 0."""
    _REALMS[skb] = realm & 0xFFFFFFFF


@implements(F.get_route_realm)
def get_route_realm(m, ctx, *_):
    return _REALMS.get(from_ctx(ctx), 0)
