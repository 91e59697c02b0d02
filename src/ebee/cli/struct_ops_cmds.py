"""``ebee struct-ops simulate``: a BPF tcp_congestion_ops on a modelled TCP flow.

::

    ebee struct-ops simulate cc.o --rtt 10ms --rate 100mbit --loss 0.1% --duration 10s \\
        --plot cwnd.svg

prints cwnd, ssthresh, the smoothed RTT and the delivered throughput at each
report interval, then the goodput and how often each operation was called
(:mod:`ebee.testrun.tcp_cc` says what is modelled).  ``--plot`` writes an SVG
of cwnd (and ssthresh) over time, with the loss reductions marked.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import LoadError
from ..session import load
from ..testrun.tcp_cc import PathModel, SimError, SimResult, simulate
from .common import UsageError

_TIME = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "": 1.0}
_RATE = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 8, "kbps": 8e3,
         "mbps": 8e6, "gbps": 8e9, "": 1}
_STATES = {0: "open", 1: "disorder", 2: "cwr", 3: "recovery", 4: "loss"}


def parse_time(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(us|ms|s|)\s*", text.lower())
    if m is None:
        raise UsageError(f"error: bad time '{text}' (e.g. 10ms, 2s, 500us)")
    return float(m.group(1)) * _TIME[m.group(2)]


def parse_rate(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmg]?(?:bit|bps)|)\s*", text.lower())
    if m is None:
        raise UsageError(f"error: bad rate '{text}' (e.g. 100mbit, 1gbit, 12.5mbps)")
    return float(m.group(1)) * _RATE[m.group(2)]


def parse_ratio(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%?)\s*", text)
    if m is None:
        raise UsageError(f"error: bad ratio '{text}' (e.g. 0.1% or 0.001)")
    v = float(m.group(1)) / (100 if m.group(2) else 1)
    if v >= 1:
        raise UsageError(f"error: ratio '{text}' must be below 100%")
    return v


def register(sub) -> None:
    p = sub.add_parser("struct-ops", help="struct_ops tables: simulate a BPF TCP congestion "
                                          "control")
    ssub = p.add_subparsers(dest="struct_ops_cmd", metavar="COMMAND")
    ssub.required = True
    s = ssub.add_parser("simulate", help="run a tcp_congestion_ops over a modelled path")
    s.add_argument("file", help="an ELF object with a .struct_ops(.link) tcp_congestion_ops")
    s.add_argument("--map", metavar="NAME", help="the struct_ops map, if the object has several")
    s.add_argument("--rtt", default="10ms", help="propagation round-trip time (default 10ms)")
    s.add_argument("--rate", default="100mbit", help="bottleneck rate (default 100mbit)")
    s.add_argument("--loss", default="0", help="random loss per packet (e.g. 0.1%%)")
    s.add_argument("--queue", type=int, metavar="PKTS",
                   help="bottleneck queue in packets (default: one bandwidth-delay product)")
    s.add_argument("--reorder", default="0",
                   help="share of loss detections that are reordering, undone (e.g. 20%%)")
    s.add_argument("--duration", default="10s", help="simulated time (default 10s)")
    s.add_argument("--interval", help="report interval (default duration/50)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--plot", metavar="OUT.svg", help="write an SVG plot of cwnd over time")
    s.add_argument("--json", action="store_true", help="print the run as JSON")
    s.set_defaults(func=cmd_simulate)


def cmd_simulate(args) -> int:
    if args.queue is not None and args.queue < 1:
        raise UsageError("error: --queue must be at least 1 packet")
    path = PathModel(rtt=parse_time(args.rtt), rate=parse_rate(args.rate),
                     loss=parse_ratio(args.loss), queue=args.queue,
                     reorder=parse_ratio(args.reorder))
    duration = parse_time(args.duration)
    interval = parse_time(args.interval) if args.interval else None
    if not Path(args.file).is_file():
        raise UsageError(f"{args.file}: error: no such file")
    if path.rtt <= 0 or path.rate <= 0 or duration <= 0:
        raise UsageError("error: --rtt, --rate and --duration must be positive")
    if duration / (path.rtt / 8) > 2_000_000:
        raise UsageError("error: --duration is more than 2 million steps of rtt/8")
    try:
        obj = load(args.file)
        res = simulate(obj, path, duration, map_name=args.map, interval=interval,
                       seed=args.seed)
    except (LoadError, SimError) as e:
        raise UsageError(f"{args.file}: error: {e}") from None
    if args.plot:
        try:
            Path(args.plot).write_text(svg_plot(res))
        except OSError as e:
            raise UsageError(f"{args.plot}: error: {e.strerror}") from None
    if args.json:
        print(json.dumps(to_json(res), indent=1))
    else:
        print(report(res))
    return 0


def _fmt_rate(bps: float) -> str:
    return f"{bps / 1e9:g} Gbit/s" if bps >= 1e9 else f"{bps / 1e6:g} Mbit/s"


def report(res: SimResult) -> str:
    p = res.path
    lines = [f"{res.name}: {p.rtt * 1e3:g} ms RTT, {_fmt_rate(p.rate)}, queue "
             f"{p.queue_limit()} pkts, loss {p.loss * 100:g}%"
             + (f", reorder {p.reorder * 100:g}%" if p.reorder else "")
             + f", {res.duration:g} s",
             f"{'time s':>8} {'cwnd':>7} {'ssthresh':>10} {'srtt ms':>8} {'Mbit/s':>8}  state"]
    for s in res.samples:
        ssth = "inf" if s.ssthresh >= 0x7FFFFFFF else str(s.ssthresh)
        lines.append(f"{s.t:8.3f} {s.cwnd:7d} {ssth:>10} {s.rtt_ms:8.2f} "
                     f"{s.throughput / 1e6:8.2f}  {_STATES.get(s.state, s.state)}")
    lines.append(f"goodput {res.goodput / 1e6:.2f} Mbit/s, {len(res.losses)} cwnd reductions")
    lines.append("calls: " + ", ".join(f"{k} {v}" for k, v in res.calls.items() if v))
    return "\n".join(lines)


def to_json(res: SimResult) -> dict:
    return {"name": res.name, "path": vars(res.path) | {"queue": res.path.queue_limit()},
            "duration": res.duration, "goodput": res.goodput, "losses": res.losses,
            "calls": res.calls,
            "samples": [vars(s) for s in res.samples]}


def svg_plot(res: SimResult, width: int = 800, height: int = 400) -> str:
    """cwnd (solid) and ssthresh (dashed, where finite) over time, reductions marked."""
    left, right, top, bottom = 60, 20, 30, 45
    w, h = width - left - right, height - top - bottom
    trace = res.trace or [(0.0, 0)]
    tmax = res.duration
    cmax = max(c for _, c in trace) or 1
    ymax = _nice(cmax * 1.1)

    def x(t):
        return left + w * t / tmax

    def y(v):
        return top + h - h * min(v, ymax) / ymax

    # one point per pixel column keeps big runs small (the largest cwnd of the column)
    cols: dict[int, tuple[float, int]] = {}
    for t, c in trace:
        k = int(x(t))
        if k not in cols or c > cols[k][1]:
            cols[k] = (t, c)
    pts = " ".join(f"{x(t):.1f},{y(c):.1f}" for t, c in sorted(cols.values()))
    ss = [(s.t, s.ssthresh) for s in res.samples if s.ssthresh < 0x7FFFFFFF]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left + w / 2}" y="18" text-anchor="middle" font-size="14">'
           f'{_esc(res.name)}: cwnd over time ({res.path.rtt * 1e3:g} ms, '
           f'{_esc(_fmt_rate(res.path.rate))}, loss {res.path.loss * 100:g}%)</text>']
    for i in range(6):
        v = ymax * i / 5
        out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + w}" y2="{y(v):.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for i in range(6):
        t = tmax * i / 5
        out.append(f'<text x="{x(t):.1f}" y="{top + h + 16}" text-anchor="middle">{t:g}</text>')
    out.append(f'<text x="{left + w / 2}" y="{height - 8}" text-anchor="middle">time (s)</text>')
    out.append(f'<text x="14" y="{top + h / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + h / 2})">cwnd (segments)</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" '
               f'stroke="black"/>')
    for t in res.losses:
        out.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{top + h}" '
                   f'stroke="#f4b0b0" stroke-width="1"/>')
    if len(ss) > 1:
        out.append('<polyline fill="none" stroke="#888" stroke-dasharray="4 3" points="'
                   + " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in ss) + '"/>')
    out.append(f'<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="{pts}"/>')
    out.append('</svg>')
    return "\n".join(out) + "\n"


def _nice(v: float) -> float:
    """The smallest 1/2/5 x 10^k at or above v."""
    k = 1.0
    while k * 10 <= v:
        k *= 10
    for m in (1, 2, 5, 10):
        if m * k >= v:
            return m * k
    return 10 * k


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
