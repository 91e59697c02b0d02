"""Running a packet program over a capture: per-packet outcomes and a verdict summary."""
from __future__ import annotations

import errno as E
import sys
import time
from array import array
from collections import Counter
from itertools import compress, islice
from operator import attrgetter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..engines.jit import BatchWriter, MappedCapture, open_capture
from ..packet.pcap import Frame, Writer
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
        _replay_each(runner, frames, s, on_packet, progress)
    s.seconds = time.perf_counter() - t0
    return s


def _replay_each(runner, frames: Iterable[Frame], s: Summary, on_packet, progress) -> None:
    for fr in frames:
        s.packets += 1
        s.bytes_in += len(fr.data)
        _emit(s, _run_one(runner, fr, s), on_packet)
        if progress is not None and s.packets % 1000 == 0:
            progress(s.packets)


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


class _Native:
    """One replay's use of the native XDP driver: runs stretches of packets (from
    Frame objects or straight from a mapped capture) and folds their results into
    the Summary -- counts with C-level passes only; an Outcome per packet only for
    ``on_packet``; output packets through a :class:`BatchWriter` natively."""

    def __init__(self, runner, s: Summary, on_packet, progress, out=None):
        self.runner, self.s, self.on_packet, self.progress, self.out = \
            runner, s, on_packet, progress, out
        net = runner.net
        xdp = runner.frames
        if xdp is not None:
            runner.frames = None
            xdp.reset(bytes(ETH_HLEN), dev=net.loopback)
        else:
            xdp = XdpBuff(bytes(ETH_HLEN), dev=net.loopback)
        self.xdp = xdp
        self.batch = runner.bound.native_frames(xdp)
        self.rc = _BatchContext(RunContext(net, P.XDP, xdp), lambda: self.batch.cur)
        self.tx = Redirect("tx", ifindex=net.loopback.ifindex)
        self.names: dict[int, str] = {}
        self.keeps: dict[int, bool] = {}
        self.marks: dict[int, int] = {}       # return value -> BatchWriter mark
        self.ns0 = s.native_ns
        self.frame_of: Callable[[int], Frame] = lambda k: None   # type: ignore[assignment, return-value]
        self.ts_addr = 0                        # u64 ns per packet of the running stretch

    def classify(self, v: int) -> None:
        if v not in self.names:
            self.names[v], self.keeps[v] = _classify(self.s.prog_type, v)
            if self.out is not None:
                self.marks[v] = 0 if not self.keeps[v] else \
                    self.out.comment_id(f"{self.names[v]} -> {self.tx.describe()}") \
                    if v == XdpAction.TX else 1

    def redirect_of(self, k: int, v: int):
        if v == XdpAction.TX:              # _redirect_outcome: XDP_TX goes back out
            return self.tx
        return self.rc.redirects.get(k) if is_redirect(self.s.prog_type, v) else None

    def results(self, start, stop, rets, ooff, olen, out) -> None:
        s, pt = self.s, self.s.prog_type
        s.native += stop - start
        if self.on_packet is not None:
            for k in range(start, stop):
                v = rets[k]
                o = ooff[k]
                _emit(s, _outcome(s, pt, self.frame_of(k), v, bytes(out[o:o + olen[k]]),
                                  self.redirect_of(k, v)), self.on_packet)
        else:   # C-level passes over the arrays, no Python per packet
            names, keeps = self.names, self.keeps
            r = rets[start:stop]
            counts = Counter(r)
            for v, n in counts.items():
                self.classify(v)
                s.verdicts[names[v]] += n
                if keeps[v]:
                    s.written += n
            s.bytes_out += sum(compress(olen[start:stop], map(keeps.__getitem__, r)))
            if XdpAction.TX in counts:
                s.redirects[self.tx.describe()] += counts[XdpAction.TX]
            reds = []
            for k, red in self.rc.redirects.items():
                if start <= k < stop and rets[k] != XdpAction.TX and is_redirect(pt, rets[k]):
                    s.redirects[red.describe()] += 1
                    reds.append((k, red))
            if self.out is not None:
                marks = array("I", map(self.marks.__getitem__, r))
                for k, red in reds:
                    if keeps[rets[k]]:
                        marks[k - start] = self.out.comment_id(f"{names[rets[k]]} -> "
                                                               f"{red.describe()}")
                self.out.write(stop - start, marks, self.ts_addr + 8 * start, out,
                               ooff.buffer_info()[0] + 4 * start,
                               olen.buffer_info()[0] + 4 * start,
                               lambda j: bytes(out[ooff[start + j]:ooff[start + j]
                                                   + olen[start + j]]))
        if self.progress is not None:
            self.progress(s.packets)

    def _run(self, go) -> None:
        machine = self.runner.machine
        machine.progctx = self.rc
        try:
            go()
        finally:
            machine.progctx = None
            self.rc.redirects.clear()
            self.s.native_ns = self.ns0 + self.batch.ns

    def run_frames(self, part: list[Frame], datas: list[bytes], lens: list[int]) -> None:
        self.frame_of = part.__getitem__
        self._run(lambda: self.batch.run(datas, lens, self.results))

    def run_raw(self, addr: int, offs_addr: int, lens_addr: int, count: int, frame_of,
                ts_addr: int) -> None:
        self.frame_of, self.ts_addr = frame_of, ts_addr
        self._run(lambda: self.batch.run_raw(addr, offs_addr, lens_addr, count, self.results))

    def close(self) -> None:
        runner = self.runner
        if runner.own_machine and runner.frames is None:
            runner.frames = self.xdp
        else:
            self.xdp.close()


def _replay_native(runner, frames: Iterable[Frame], s: Summary, on_packet, progress) -> None:
    nat = _Native(runner, s, on_packet, progress)
    lo, hi = _linear_limits()

    def chunk_run(chunk: list[Frame]) -> None:
        datas = list(map(_data, chunk))
        lens = list(map(len, datas))
        s.packets += len(chunk)
        s.bytes_in += sum(lens)
        if lo <= min(lens) and max(lens) <= hi:      # the usual case: C-level checks only
            nat.run_frames(chunk, datas, lens)
            return
        start = 0                  # fragments or runts: those take the test run's own path
        for k, n in enumerate(lens):
            if not lo <= n <= hi:
                if k > start:
                    nat.run_frames(chunk[start:k], datas[start:k], lens[start:k])
                _emit(s, _run_one(runner, chunk[k], s), on_packet)
                start = k + 1
        if start < len(chunk):
            nat.run_frames(chunk[start:], datas[start:], lens[start:])

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
        nat.close()


# -- captures replayed from a memory-mapped file ------------------------------------------------

def outcome_writer(writer: Writer, frames: Iterable[Frame]):
    """(frames, on_packet): ``on_packet`` writes each outcome's packet to ``writer``
    with its frame's timestamp (the packet-by-packet way of ``replay_capture``)."""
    ts: dict[int, int] = {}

    def tracked():
        for fr in frames:
            ts[fr.index] = fr.ts_ns if fr.ts_ns is not None else round(fr.ts * 1e9)
            yield fr

    def on_packet(out: Outcome) -> None:
        t = ts.pop(out.index, 0)
        if out.data_out is not None:
            writer.write(out.data_out, comment=out.mark, ts_ns=t)
    return tracked(), on_packet


def replay_capture(runner, cap: MappedCapture, *, writer: Writer | None = None,
                   progress: Callable[[int], None] | None = None,
                   native: bool | None = None) -> Summary:
    """:func:`replay` over a memory-mapped capture (:func:`ebee.engines.jit.capture.open_capture`),
    its packets written to ``writer`` if given.

    On the native path (as for ``replay``) the packets go from the mapping to the
    driver and from its output buffer to the file with no Python object per packet;
    otherwise each frame takes a test run.  Both give the same counts and the same
    output file, byte for byte, as ``replay`` over :func:`ebee.packet.pcap.read`.
    """
    pt = runner.info.prog_type
    s = Summary(runner.program.name or "?", pt)
    why = native_batch_unavailable(runner) if native is not False else "not asked for"
    if native and why:
        raise ValueError(f"no native batch replay for this program: {why}")
    t0 = time.perf_counter()
    if why is None and not (writer is not None and cap.raw_ts):
        _replay_mapped(runner, cap, cap.chunks(), s, writer, progress)
        if cap.stopped:        # the rest from the Python reader (or its error)
            frames, on_packet = outcome_writer(writer, cap.rest()) if writer is not None \
                else (cap.rest(), None)
            _replay_native(runner, frames, s, on_packet, progress)
    else:
        frames, on_packet = outcome_writer(writer, cap.frames()) if writer is not None \
            else (cap.frames(), None)
        if why is None:
            _replay_native(runner, frames, s, on_packet, progress)
        else:
            _replay_each(runner, frames, s, on_packet, progress)
    s.seconds = time.perf_counter() - t0
    return s


def replay_mapped_chunks(runner, cap: MappedCapture, chunks: Iterable) -> Summary:
    """Counts of ``chunks`` of ``cap`` through the native driver (a share of a capture
    that :func:`ebee.testrun.parallel.replay_capture_parallel` gives one thread)."""
    s = Summary(runner.program.name or "?", runner.info.prog_type)
    t0 = time.perf_counter()
    _replay_mapped(runner, cap, chunks, s, None, None)
    s.seconds = time.perf_counter() - t0
    return s


def _replay_mapped(runner, cap: MappedCapture, chunks: Iterable, s: Summary, writer,
                   progress) -> None:
    """The native path over ``chunks`` of ``cap`` (not what follows a stop of its scan)."""
    out = BatchWriter(writer) if writer is not None else None
    nat = _Native(runner, s, None, progress, out)
    lo, hi = _linear_limits()
    lt = cap.layout.linktype
    try:
        for ch in chunks:
            n = ch.count
            s.packets += n
            s.bytes_in += sum(ch.lens[:n]) if n < len(ch.lens) else sum(ch.lens)
            offs, lens, tss = (a.buffer_info()[0] for a in (ch.off, ch.lens, ch.ts))

            def frame(k: int, ch=ch) -> Frame:
                d = ch.data(k)
                return Frame(ch.index + k, ch.ts[k] / 1e9, d, len(d), lt, ch.ts[k])

            def stretch(a: int, b: int, ch=ch, offs=offs, lens=lens, tss=tss) -> None:
                nat.run_raw(ch.addr, offs + 4 * a, lens + 4 * a, b - a,
                            lambda k, a=a: frame(a + k), tss + 8 * a)

            if lo <= ch.min_len and ch.max_len <= hi:
                stretch(0, n)
                continue
            start = 0              # fragments or runts: those take the test run's own path
            for k in range(n):
                if not lo <= ch.lens[k] <= hi:
                    if k > start:
                        stretch(start, k)
                    o = _run_one(runner, frame(k), s)
                    _emit(s, o, None)
                    if writer is not None and o.data_out is not None:
                        writer.write(o.data_out, comment=o.mark, ts_ns=ch.ts[k])
                    start = k + 1
            if start < n:
                stretch(start, n)
    finally:
        nat.close()


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
