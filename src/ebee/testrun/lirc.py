"""Running lirc_mode2 programs on a stream of raw infrared samples.

Linux runs a lirc_mode2 program once for every sample a receiver reports (the
program is attached to a ``/dev/lircN`` with BPF_PROG_ATTACH), its context one u32:
``LIRC_MODE2_PULSE``/``SPACE``/``FREQUENCY``/``TIMEOUT``/``OVERFLOW`` in the top
byte, microseconds (or Hz) below.  There is no BPF_PROG_TEST_RUN for the type; here
:class:`LircReceiver` feeds a program samples in order on one CPU (its maps keep the
decoder's state between samples, as in the kernel) and records what it reports with
``bpf_rc_keydown``, ``bpf_rc_repeat`` and ``bpf_rc_pointer_rel`` as :class:`RcEvent`
s, each with the index of the sample that produced it::

    rx = LircReceiver(obj.programs["nec_decode"])
    events = rx.feed(nec_frame(0x04, 0x08))
    events[0].scancode            # 0x0408, protocol RC_PROTO_NEC

What is not modelled: rc-core's handling of the reports (key-up timeouts, keymaps,
the input device); events are the program's calls, as it made them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..helpers.lirc import RcDevice
from ..memory import SHARED
from ..runtime import RunContext
from ..runtime.trace_pipe import capture
from ..uapi import ProgType as P
from .common import TestRunError, TestTarget
from .runner import Runner, default_net

LIRC_MODE2_SPACE = 0x00000000
LIRC_MODE2_PULSE = 0x01000000
LIRC_MODE2_FREQUENCY = 0x02000000
LIRC_MODE2_TIMEOUT = 0x03000000
LIRC_MODE2_OVERFLOW = 0x04000000
LIRC_VALUE_MASK = 0x00FFFFFF

#: enum rc_proto values of the NEC family (include/uapi/linux/lirc.h)
RC_PROTO_NEC, RC_PROTO_NECX, RC_PROTO_NEC32 = 9, 10, 11


def pulse(us: int) -> int:
    return LIRC_MODE2_PULSE | (us & LIRC_VALUE_MASK)


def space(us: int) -> int:
    return LIRC_MODE2_SPACE | (us & LIRC_VALUE_MASK)


def timeout(us: int) -> int:
    return LIRC_MODE2_TIMEOUT | (us & LIRC_VALUE_MASK)


def nec_frame(address: int, command: int, *, not_address: int | None = None,
              not_command: int | None = None) -> list[int]:
    """The samples of one NEC frame (leader, 32 bits LSB first, trailing pulse); give
    ``not_address`` (NECX) or ``not_command`` (NEC32) to send other than complements."""
    na = (~address & 0xFF) if not_address is None else not_address
    nc = (~command & 0xFF) if not_command is None else not_command
    bits = (address & 0xFF) | (na & 0xFF) << 8 | (command & 0xFF) << 16 | (nc & 0xFF) << 24
    out = [pulse(9000), space(4500)]
    for i in range(32):
        out += [pulse(562), space(1687 if bits >> i & 1 else 562)]
    return out + [pulse(562)]


def nec_repeat() -> list[int]:
    """The samples of an NEC repeat code (a held key)."""
    return [pulse(9000), space(2250), pulse(562)]


_WORDS = {"pulse": LIRC_MODE2_PULSE, "space": LIRC_MODE2_SPACE, "timeout": LIRC_MODE2_TIMEOUT,
          "frequency": LIRC_MODE2_FREQUENCY, "carrier": LIRC_MODE2_FREQUENCY,
          "overflow": LIRC_MODE2_OVERFLOW}


def parse_samples(text: str) -> list[int]:
    """Samples from text as ``mode2`` prints them (``pulse 9000``, ``space 4500``,
    ``timeout 12000``, ...) or as ``ir-ctl`` writes them (``+9000 -4500``); ``#``
    starts a comment.  ValueError names the first bad token."""
    out: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        toks = line.split("#", 1)[0].replace(",", " ").split()
        i = 0
        while i < len(toks):
            t = toks[i].lower()
            try:
                if t in _WORDS and i + 1 < len(toks):
                    mode, value = _WORDS[t], int(toks[i + 1])
                    i += 2
                elif t[:1] in "+-" and len(t) > 1:
                    mode, value = (LIRC_MODE2_PULSE if t[0] == "+" else LIRC_MODE2_SPACE), int(t[1:])
                    i += 1
                else:
                    raise ValueError
            except ValueError:
                raise ValueError(f"line {lineno}: {toks[i]!r} is not a sample (pulse N, "
                                 f"space N, timeout N, +N or -N)") from None
            if not 0 <= value <= LIRC_VALUE_MASK:
                raise ValueError(f"line {lineno}: {value} does not fit the 24 bits of a sample")
            out.append(mode | value)
    return out


@dataclass(frozen=True)
class RcEvent:
    """One report of the program: ``kind`` is "keydown" (protocol, scancode, toggle),
    "repeat", or "pointer_rel" (rel_x, rel_y); ``sample`` the index of the sample."""
    sample: int
    kind: str
    protocol: int = 0
    scancode: int = 0
    toggle: int = 0
    rel_x: int = 0
    rel_y: int = 0

    def describe(self) -> str:
        if self.kind == "keydown":
            return (f"sample {self.sample}: keydown protocol {self.protocol} scancode "
                    f"{self.scancode:#x} toggle {self.toggle}")
        if self.kind == "pointer_rel":
            return f"sample {self.sample}: pointer_rel x {self.rel_x} y {self.rel_y}"
        return f"sample {self.sample}: {self.kind}"


def _event(index: int, raw: tuple) -> RcEvent:
    if raw[0] == "keydown":
        return RcEvent(index, "keydown", protocol=raw[1], scancode=raw[2], toggle=raw[3])
    if raw[0] == "pointer_rel":
        return RcEvent(index, "pointer_rel", rel_x=raw[1], rel_y=raw[2])
    return RcEvent(index, raw[0])


class LircReceiver:
    """A receiver with ``prog`` attached: :meth:`feed` runs it on each sample."""

    def __init__(self, prog: TestTarget, *, engine: str | None = None):
        if prog.info.prog_type is not P.LIRC_MODE2:
            raise TestRunError(22, f"{prog.name} is a {prog.info.prog_type.name} program, "
                                   f"not lirc_mode2")
        self.runner = Runner(prog, engine=engine)
        self.device = RcDevice(SHARED)
        self.events: list[RcEvent] = []
        self.samples = 0
        self.trace_output: list[str] = []

    def feed(self, samples: Iterable[int]) -> list[RcEvent]:
        """Run the program on each sample in order; returns the events these produced
        (all of them accumulate in :attr:`events`)."""
        m = self.runner.machine
        new: list[RcEvent] = []
        for value in samples:
            r = self.device.sample(value)
            before = len(self.device.events)
            m.progctx = RunContext(default_net(), P.LIRC_MODE2)
            try:
                with capture() as lines:
                    self.runner.bound.run(r.start)
            finally:
                m.progctx = None
                self.device.close()
            self.trace_output += [ln.message for ln in lines]
            new += [_event(self.samples, e) for e in self.device.events[before:]]
            self.samples += 1
        self.events += new
        return new

    def close(self) -> None:
        self.device.close()
        self.runner.close()

    def __enter__(self) -> "LircReceiver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def decode(prog: TestTarget, samples: Iterable[int], *, engine: str | None = None) -> list[RcEvent]:
    """The events ``prog`` reports for ``samples`` fed in order to a fresh receiver."""
    with LircReceiver(prog, engine=engine) as rx:
        return rx.feed(samples)
