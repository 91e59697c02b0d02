"""Running a packet program over a capture: per-packet outcomes and a verdict summary."""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..uapi import (TC_ACT_OK, TC_ACT_PIPE, TC_ACT_RECLASSIFY, TC_ACT_REDIRECT, TC_ACT_UNSPEC,
                    ProgType as P, XdpAction)
from .pcap import Frame

REPLAY_TYPES = (P.XDP, P.SCHED_CLS, P.SCHED_ACT, P.SOCKET_FILTER, P.CGROUP_SKB)


@dataclass
class Outcome:
    """What happened to one packet."""
    index: int
    retval: int | None
    verdict: str
    data_out: bytes | None          # None: the packet is gone (dropped, or the run failed)
    mark: str | None = None         # XDP_TX / redirect note for pcapng output
    error: str | None = None


@dataclass
class Summary:
    program: str
    prog_type: P
    packets: int = 0
    seconds: float = 0.0
    verdicts: Counter = field(default_factory=Counter)
    redirects: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    written: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        return {"program": self.program, "type": self.prog_type.name.lower(),
                "packets": self.packets, "seconds": round(self.seconds, 6),
                "packets_per_second": round(self.pps, 1), "verdicts": dict(self.verdicts),
                "redirects": dict(self.redirects), "errors": dict(self.errors),
                "written": self.written, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out}


def _keeps(pt: P, retval: int, frame_len: int) -> tuple[bool, int | None]:
    """Whether the packet goes on, and (socket filters) how many bytes of it."""
    r = retval & 0xFFFFFFFF
    if pt is P.XDP:
        return r in (XdpAction.PASS, XdpAction.TX, XdpAction.REDIRECT), None
    if pt in (P.SCHED_CLS, P.SCHED_ACT):
        s = r - (1 << 32) if r & 0x80000000 else r
        return s in (TC_ACT_OK, TC_ACT_UNSPEC, TC_ACT_PIPE, TC_ACT_RECLASSIFY,
                     TC_ACT_REDIRECT), None
    if pt is P.SOCKET_FILTER:
        return r != 0, min(r, frame_len)
    if pt is P.CGROUP_SKB:
        return bool(r & 1), None
    return True, None


def replay(runner, frames: Iterable[Frame], *, on_packet: Callable[[Outcome], None] | None = None,
           progress: Callable[[int], None] | None = None) -> Summary:
    """Run ``runner`` (a :class:`ebee.progtypes.Runner`) on every frame."""
    from ..progtypes.testrun import TestRunError
    from ..progtypes.verdicts import verdict_name
    p = runner.prepared
    pt = p.info.prog_type
    s = Summary(p.name or "?", pt)
    t0 = time.perf_counter()
    for fr in frames:
        s.packets += 1
        s.bytes_in += len(fr.data)
        try:
            res = runner.run(fr.data)
        except TestRunError as e:
            import errno as E
            name = E.errorcode.get(e.errno, str(e.errno))
            s.errors[name] += 1
            out = Outcome(fr.index, None, f"error {name}", None, error=e.reason)
        else:
            verdict = verdict_name(pt, res.retval)
            s.verdicts[verdict] += 1
            keep, trim = _keeps(pt, res.retval, len(fr.data))
            data = None
            mark = None
            if keep:
                if pt in (P.SOCKET_FILTER, P.CGROUP_SKB):
                    # these programs cannot rewrite the frame; the test run zeroes its MAC header
                    data = fr.data[:trim] if trim is not None else fr.data
                else:
                    data = res.data_out
            if res.redirect is not None:
                s.redirects[res.redirect.describe()] += 1
                mark = f"{verdict} -> {res.redirect.describe()}"
            elif pt is P.XDP and (res.retval & 0xFFFFFFFF) == XdpAction.TX:
                mark = "XDP_TX"
            out = Outcome(fr.index, res.retval, verdict, data, mark)
        if out.data_out is not None:
            s.written += 1
            s.bytes_out += len(out.data_out)
        if on_packet is not None:
            on_packet(out)
        if progress is not None and s.packets % 1000 == 0:
            progress(s.packets)
    s.seconds = time.perf_counter() - t0
    return s


class ProgressBar:
    """A one-line progress bar on stderr (only when it is a terminal)."""

    def __init__(self, total: int, stream=None, width: int = 30):
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.width = width
        self.t0 = time.perf_counter()
        self.enabled = getattr(self.stream, "isatty", lambda: False)()

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        frac = min(done / self.total, 1.0)
        fill = int(frac * self.width)
        el = time.perf_counter() - self.t0
        rate = done / el if el > 0 else 0
        self.stream.write(f"\r[{'#' * fill}{'.' * (self.width - fill)}] {frac * 100:5.1f}% "
                          f"{done}/{self.total} {rate:,.0f} pkt/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * (self.width + 50) + "\r")
            self.stream.flush()


def format_summary(s: Summary) -> str:
    lines = [f"program {s.program} ({s.prog_type.name.lower()}): {s.packets:,} packets in "
             f"{s.seconds:.3f} s, {s.pps:,.0f} packets/s", ""]
    total = max(s.packets, 1)
    rows = [(v, n) for v, n in s.verdicts.most_common()] + \
        [(f"error {e}", n) for e, n in s.errors.most_common()]
    w = max([len("verdict")] + [len(v) for v, _ in rows])
    lines.append(f"{'verdict':<{w}}  {'packets':>9}  {'share':>6}")
    for v, n in rows:
        lines.append(f"{v:<{w}}  {n:>9,}  {100 * n / total:>5.1f}%")
    if s.redirects:
        lines.append("")
        w2 = max(len("redirect target"), *(len(t) for t in s.redirects))
        lines.append(f"{'redirect target':<{w2}}  {'packets':>9}")
        for t, n in s.redirects.most_common():
            lines.append(f"{t:<{w2}}  {n:>9,}")
    return "\n".join(lines)
