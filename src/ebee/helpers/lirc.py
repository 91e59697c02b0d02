"""lirc_mode2 helpers: bpf_rc_repeat, bpf_rc_keydown and bpf_rc_pointer_rel, recorded.

A lirc_mode2 program decodes the raw infrared pulses of a remote control: its context
is one u32 sample (LIRC_MODE2_PULSE/SPACE/... and a duration), and what it decodes it
reports to the rc device as key presses, repeats and pointer motion.  In ebee the device
is a :class:`RcDevice`; :meth:`RcDevice.sample` makes the context of one sample, and the
reports land in ``events`` in order::

    dev = RcDevice()
    machine.run(prog, dev.sample(LIRC_PULSE | 560).start)
    dev.events            # [("keydown", protocol, scancode, toggle), ...]
"""
from __future__ import annotations

import struct
import weakref

from ..errors import VMError
from ..memory import SHARED, Memory, Region
from ..uapi import FuncId as F
from .registry import implements

_by_sample: "weakref.WeakValueDictionary[int, RcDevice]" = weakref.WeakValueDictionary()


class RcDevice:
    """A remote-control receiver: the samples it feeds programs and what they report."""

    def __init__(self, memory: Memory = SHARED) -> None:
        self.memory = memory
        self.events: list[tuple] = []
        self._samples: list[Region] = []

    def sample(self, value: int) -> Region:
        r = self.memory.add(Region(struct.pack("<I", value & 0xFFFFFFFF), "lirc sample"))
        self._samples.append(r)
        _by_sample[r.start] = self
        return r

    def close(self) -> None:
        for r in self._samples:
            self.memory.remove(r)
        self._samples.clear()


def _dev(ctx: int) -> RcDevice:
    d = _by_sample.get(ctx)
    if d is None:
        raise VMError(f"{ctx:#x} is not a lirc sample of an ebee.helpers.lirc.RcDevice")
    return d


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


@implements(F.rc_repeat)
def rc_repeat(m, ctx, *_):
    _dev(ctx).events.append(("repeat",))
    return 0


@implements(F.rc_keydown)
def rc_keydown(m, ctx, protocol, scancode, toggle, _):
    _dev(ctx).events.append(("keydown", protocol & 0xFFFFFFFF, scancode,
                             int((toggle & 0xFFFFFFFF) != 0)))
    return 0


@implements(F.rc_pointer_rel)
def rc_pointer_rel(m, ctx, rel_x, rel_y, *_):
    _dev(ctx).events.append(("pointer_rel", _s32(rel_x), _s32(rel_y)))
    return 0
