"""Running a packet program over a capture: per-packet outcomes and a verdict summary."""
from __future__ import annotations

import errno as E
import sys
import time
from collections import Counter
from itertools import compress, islice
from operator import attrgetter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..packet.pcap import Frame
from ..packet.skbuff import ETH_HLEN
from ..packet.xdpbuff import XDP_PACKET_HEADROOM, XdpBuff
from ..progtypes.verdicts import is_redirect, verdict_name
from ..runtime import Redirect, RunContext
from ..uapi import (TC_ACT_OK, TC_ACT_PIPE, TC_ACT_RECLASSIFY, TC_ACT_REDIRECT, TC_ACT_UNSPEC,
                    AttachType as A, ProgType as P, XdpAction)
from .common import PAGE_SIZE, SKB_TAILROOM, TestRunError
from .runner import Runner

_data = attrgetter("data")
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
    # why: (errno name, the test run's reason) -> packets, and the first packet (1-based)
    error_reasons: Counter = field(default_factory=Counter)
    first_error: dict = field(default_factory=dict)
    written: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    native: int = 0                 # packets the native batch driver ran (the rest: test runs)
    native_ns: int = 0              # thread CPU time inside the driver (setup + program runs)

    @property
    def pps(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        return {"program": self.program, "type": self.prog_type.name.lower(),
                "packets": self.packets, "seconds": round(self.seconds, 6),
                "packets_per_second": round(self.pps, 1), "verdicts": dict(self.verdicts),
                "redirects": dict(self.redirects), "errors": dict(self.errors),
                "error_reasons": [{"error": e, "reason": r, "packets": n,
                                   "first_packet": self.first_error.get((e, r))}
                                  for (e, r), n in self.error_reasons.most_common()],
                "written": self.written, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "native_packets": self.native}


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


_classified: dict[tuple[P, int], tuple[str, bool]] = {}


def _classify(pt: P, retval: int) -> tuple[str, bool]:
    """(verdict name, whether the packet goes on) for a return value, remembered."""
    key = (pt, retval & 0xFFFFFFFF)
    hit = _classified.get(key)
    if hit is None:
        hit = (verdict_name(pt, retval), _keeps(pt, retval, 0)[0])
        if len(_classified) < 4096:          # return values are few; never let junk grow it
            _classified[key] = hit
    return hit


def _outcome(s: Summary, pt: P, fr: Frame, retval: int, data_out: bytes | None,
             redirect) -> Outcome:
    """One run's outcome (and its verdict and redirect counts): both replay paths."""
    verdict, keep = _classify(pt, retval)
    s.verdicts[verdict] += 1
    data = None
    mark = None
    if keep:
        if pt is P.SOCKET_FILTER or pt is P.CGROUP_SKB:
            # these programs cannot rewrite the frame; the test run zeroes its MAC header
            trim = _keeps(pt, retval, len(fr.data))[1]
            data = fr.data[:trim] if trim is not None else fr.data
        else:
            data = data_out
    if redirect is not None:
        s.redirects[redirect.describe()] += 1
        mark = f"{verdict} -> {redirect.describe()}"
    elif pt is P.XDP and (retval & 0xFFFFFFFF) == XdpAction.TX:
        mark = "XDP_TX"
    return Outcome(fr.index, retval, verdict, data, mark)


def _run_one(runner, fr: Frame, s: Summary) -> Outcome:
    """One test run (``Runner.run``) for one frame."""
    try:
        res = runner.run(fr.data)
    except TestRunError as e:
        name = E.errorcode.get(e.errno, str(e.errno))
        s.errors[name] += 1
        s.error_reasons[name, e.reason] += 1
        s.first_error.setdefault((name, e.reason), fr.index + 1)
        return Outcome(fr.index, None, f"error {name}", None, error=e.reason)
    return _outcome(s, s.prog_type, fr, res.retval, res.data_out, res.redirect)


def replay(runner, frames: Iterable[Frame], *, on_packet: Callable[[Outcome], None] | None = None,
           progress: Callable[[int], None] | None = None, native: bool | None = None) -> Summary:
    """Run ``runner`` (a :class:`ebee.testrun.Runner`) on every frame.

    ``native`` None (the default) runs XDP programs on the JIT through the
    native batch driver (:mod:`ebee.engines.jit.xdp_batch`: no Python call per packet)
    and everything else one test run per packet; True insists on the driver
    (ValueError saying why it cannot), False always runs packet by packet.
    Both give the same outcomes.
    """
    pt = runner.info.prog_type
    s = Summary(runner.program.name or "?", pt)
    why = native_batch_unavailable(runner) if native is not False else "not asked for"
    if native and why:
        raise ValueError(f"no native batch replay for this program: {why}")
    t0 = time.perf_counter()
    if why is None:
        _replay_native(runner, frames, s, on_packet, progress)
    else:
        for fr in frames:
            s.packets += 1
            s.bytes_in += len(fr.data)
            _emit(s, _run_one(runner, fr, s), on_packet)
            if progress is not None and s.packets % 1000 == 0:
                progress(s.packets)
    s.seconds = time.perf_counter() - t0
    return s


def _emit(s: Summary, out: Outcome, on_packet) -> None:
    if out.data_out is not None:
        s.written += 1
        s.bytes_out += len(out.data_out)
    if on_packet is not None:
        on_packet(out)


# -- the native batch path (XDP on the JIT) -----------------------------------------------------

NATIVE_CHUNK = 4096      # frames per call of the native driver (bounds the copies held at once)


def native_batch_unavailable(runner: Runner) -> str | None:
    """Why ``replay`` must run ``runner`` packet by packet (None: the native driver can)."""
    info = runner.info
    if getattr(runner, "sanitize", False):
        return "a sanitizing run checks each packet's run on its own"
    if info.prog_type is not P.XDP:
        return f"{info.prog_type.name.lower()} programs run one test run per packet"
    if info.expected_attach_type in (A.XDP_DEVMAP, A.XDP_CPUMAP):
        return "devmap/cpumap XDP programs cannot be test-run"
    return runner.bound.native_unavailable


def _linear_limits() -> tuple[int, int]:
    """Frame sizes the driver takes: what run_xdp puts in the linear part whole (no
    fragments), and not a runt (which the test run refuses)."""
    return ETH_HLEN, PAGE_SIZE - XDP_PACKET_HEADROOM - SKB_TAILROOM


class _BatchContext:
    """The run context of a batch: ``redirect`` is kept per packet (the driver's ``cur``),
    as a fresh context per test run would keep it."""

    def __init__(self, base, cur: Callable[[], int]):
        self.__dict__["_base"] = base
        self.__dict__["_cur"] = cur
        self.__dict__["redirects"] = {}

    @property
    def redirect(self):
        return self.redirects.get(self._cur())

    @redirect.setter
    def redirect(self, v) -> None:
        if v is None:
            self.redirects.pop(self._cur(), None)
        else:
            self.redirects[self._cur()] = v

    def reset(self) -> None:
        self.redirect = None

    def __getattr__(self, name):
        return getattr(self._base, name)

    def __setattr__(self, name, v) -> None:
        if name == "redirect":
            object.__setattr__(self, name, v)
        else:
            setattr(self._base, name, v)


def _replay_native(runner, frames: Iterable[Frame], s: Summary, on_packet, progress) -> None:
    pt = s.prog_type
    machine, net = runner.machine, runner.net
    xdp = runner.frames
    if xdp is not None:
        runner.frames = None
        xdp.reset(bytes(ETH_HLEN), dev=net.loopback)
    else:
        xdp = XdpBuff(bytes(ETH_HLEN), dev=net.loopback)
    batch = runner.bound.native_frames(xdp)
    rc = _BatchContext(RunContext(net, P.XDP, xdp), lambda: batch.cur)
    tx = Redirect("tx", ifindex=net.loopback.ifindex)
    names: dict[int, str] = {}
    keeps: dict[int, bool] = {}
    group: list[Frame] = []             # the frames the driver is running

    def classify(v: int) -> None:
        if v not in names:
            names[v], keeps[v] = _classify(pt, v)

    def redirect_of(k: int, v: int):
        if v == XdpAction.TX:              # _redirect_outcome: XDP_TX goes back out
            return tx
        return rc.redirects.get(k) if is_redirect(pt, v) else None

    def results(start, stop, rets, ooff, olen, out) -> None:
        s.native += stop - start
        if on_packet is not None:
            for k in range(start, stop):
                v = rets[k]
                o = ooff[k]
                _emit(s, _outcome(s, pt, group[k], v, bytes(out[o:o + olen[k]]),
                                  redirect_of(k, v)), on_packet)
        else:   # counts only: C-level passes over the arrays, no Python per packet
            r = rets[start:stop]
            counts = Counter(r)
            for v, n in counts.items():
                classify(v)
                s.verdicts[names[v]] += n
                if keeps[v]:
                    s.written += n
            s.bytes_out += sum(compress(olen[start:stop], map(keeps.__getitem__, r)))
            if XdpAction.TX in counts:
                s.redirects[tx.describe()] += counts[XdpAction.TX]
            for k, red in rc.redirects.items():
                if start <= k < stop and rets[k] != XdpAction.TX and is_redirect(pt, rets[k]):
                    s.redirects[red.describe()] += 1
        if progress is not None:
            progress(s.packets)

    def native(part: list[Frame], datas: list[bytes], lens: list[int]) -> None:
        group[:] = part
        machine.progctx = rc
        try:
            batch.run(datas, lens, results)
        finally:
            machine.progctx = None
            rc.redirects.clear()
            s.native_ns = batch.ns

    lo, hi = _linear_limits()

    def chunk_run(chunk: list[Frame]) -> None:
        datas = list(map(_data, chunk))
        lens = list(map(len, datas))
        s.packets += len(chunk)
        s.bytes_in += sum(lens)
        if lo <= min(lens) and max(lens) <= hi:      # the usual case: C-level checks only
            native(chunk, datas, lens)
            return
        start = 0                  # fragments or runts: those take the test run's own path
        for k, n in enumerate(lens):
            if not lo <= n <= hi:
                if k > start:
                    native(chunk[start:k], datas[start:k], lens[start:k])
                _emit(s, _run_one(runner, chunk[k], s), on_packet)
                start = k + 1
        if start < len(chunk):
            native(chunk[start:], datas[start:], lens[start:])

    it = iter(frames)
    try:
        while True:
            chunk: list[Frame] = []
            try:               # list.extend keeps what it took before the reader failed
                chunk.extend(islice(it, NATIVE_CHUNK))
            except Exception:
                if chunk:      # the frames before a bad one run, as packet by packet
                    chunk_run(chunk)
                raise
            if not chunk:
                break
            chunk_run(chunk)
    finally:
        if runner.own_machine and runner.frames is None:
            runner.frames = xdp
        else:
            xdp.close()


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
    if s.error_reasons:
        lines.append("")
        for (e, r), n in s.error_reasons.most_common():
            first = s.first_error.get((e, r))
            lines.append(f"{e}: {r} ({n:,} packet{'s' if n != 1 else ''}"
                         + (f", first: packet {first}" if first else "") + ")")
    if s.redirects:
        lines.append("")
        w2 = max(len("redirect target"), *(len(t) for t in s.redirects))
        lines.append(f"{'redirect target':<{w2}}  {'packets':>9}")
        for t, n in s.redirects.most_common():
            lines.append(f"{t:<{w2}}  {n:>9,}")
    return "\n".join(lines)
