"""A TCP flow driving a BPF ``tcp_congestion_ops``, as Linux's TCP calls one.

:func:`simulate` runs one bulk sender over a modelled path -- a propagation
RTT, a bottleneck of some rate with a drop-tail queue, random loss and
optionally reordering -- and calls the object's struct_ops programs where
net/ipv4 calls the congestion-control operations:

* ``init`` when the connection is established (cwnd 10, ssthresh "infinite",
  ``tcp_init_congestion_control``), ``release`` when it closes;
* per ACK (``tcp_ack``): ``pkts_acked`` with an ``ack_sample`` (segments
  acked, RTT sample, packets in flight), then loss handling
  (``tcp_fastretrans_alert``: on the first loss of a window ``ssthresh`` and
  ``set_state(TCP_CA_Recovery)``, cwnd reduced to ssthresh -- PRR's end
  point, unless the table has ``cong_control`` --, ``set_state(TCP_CA_Open)``
  once the recovery point is acked),
  then ``cong_control`` with a ``rate_sample`` if the table has one, else
  ``cong_avoid(sk, ack, acked)`` when the state is Open;
* ``cwnd_event(CA_EVENT_TX_START)`` when sending starts with nothing in
  flight, ``cwnd_event(CA_EVENT_LOSS)`` and ``set_state(TCP_CA_Loss)`` on a
  retransmission timeout (cwnd 1);
* ``undo_cwnd`` when a reduction proves spurious (a "loss" that was
  reordering, as DSACKs tell Linux): cwnd becomes what it returns and ssthresh
  its value before the reduction.

The socket is a whole ``struct tcp_sock`` laid out from the kernel's BTF in
shared memory (what the programs' BTF pointers read and write): ``snd_cwnd``,
``snd_ssthresh``, ``snd_cwnd_cnt``, ``snd_cwnd_clamp``, ``prior_cwnd``,
``srtt_us`` (<< 3, as Linux keeps it), ``mdev_us``, ``mss_cache``,
``packets_out``, ``snd_una``/``snd_nxt``, ``delivered``, ``lost_out``,
``icsk_ca_state``; other bytes are zero.  What the programs write to the
congestion fields is what the flow then uses.

Time advances in steps of an eighth of the base RTT; the ACKs of a step are
one (stretch) ACK, as GRO hands Linux's TCP.  Everything is deterministic
given ``seed``.
"""
from __future__ import annotations

import random
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..btf import BTF, Kind
from ..engines import Machine, select_engine
from ..helpers import RUNTIME
from ..memory import SHARED, Region
from ..packet.net import Network
from ..runtime import RunContext
from ..uapi import ProgType as P

if TYPE_CHECKING:
    from ..program import Program

TCP_INIT_CWND = 10
TCP_INFINITE_SSTHRESH = 0x7FFFFFFF
TCP_CA_Open, TCP_CA_Disorder, TCP_CA_CWR, TCP_CA_Recovery, TCP_CA_Loss = range(5)
CA_EVENT_TX_START, CA_EVENT_CWND_RESTART, CA_EVENT_COMPLETE_CWR, CA_EVENT_LOSS = range(4)
TCP_RTO_MIN = 0.2
OPS = ("init", "release", "ssthresh", "cong_avoid", "set_state", "cwnd_event", "in_ack_event",
       "pkts_acked", "cong_control", "undo_cwnd")
#: tcp_sock fields the flow keeps (paths from struct tcp_sock)
_FIELDS = {"snd_cwnd": "snd_cwnd", "snd_ssthresh": "snd_ssthresh",
           "snd_cwnd_cnt": "snd_cwnd_cnt", "snd_cwnd_clamp": "snd_cwnd_clamp",
           "prior_cwnd": "prior_cwnd", "prior_ssthresh": "prior_ssthresh",
           "srtt_us": "srtt_us", "mdev_us": "mdev_us", "mss_cache": "mss_cache",
           "packets_out": "packets_out", "snd_una": "snd_una", "snd_nxt": "snd_nxt",
           "delivered": "delivered", "lost_out": "lost_out", "snd_cwnd_stamp": "snd_cwnd_stamp"}


class SimError(ValueError):
    """The object or the path cannot be simulated (a one-line reason)."""


@dataclass(frozen=True)
class PathModel:
    """The network path: propagation RTT (s), bottleneck rate (bit/s), drop-tail queue
    (packets; None: one bandwidth-delay product), random loss probability per packet,
    and the share of loss detections that are reordering (undone)."""
    rtt: float = 0.010
    rate: float = 100e6
    loss: float = 0.0
    queue: int | None = None
    reorder: float = 0.0
    mss: int = 1448

    def bdp(self) -> float:
        return self.rate * self.rtt / (8 * (self.mss + 52))

    def queue_limit(self) -> int:
        return self.queue if self.queue is not None else max(int(self.bdp()), 1)


@dataclass
class Sample:
    """The flow at the end of one report interval."""
    t: float
    cwnd: int
    ssthresh: int
    rtt_ms: float
    throughput: float           # delivered bit/s over the interval
    state: int


@dataclass
class SimResult:
    name: str
    path: PathModel
    duration: float
    samples: list[Sample]
    trace: list[tuple[float, int]]          # (t, cwnd) at every step
    losses: list[float]                     # times a reduction started
    calls: dict[str, int]                   # op -> how often the flow called it
    delivered_bytes: int

    @property
    def goodput(self) -> float:
        return self.delivered_bytes * 8 / self.duration if self.duration else 0.0


class _Sock:
    """``struct tcp_sock`` in SHARED, its fields by name (offsets from the kernel's BTF)."""

    def __init__(self, btf: BTF):
        t = btf.find("tcp_sock", Kind.STRUCT)
        self.region = SHARED.add(Region(t.size, "tcp_sock"))
        self.off: dict[str, tuple[int, int]] = {}
        for name, path in _FIELDS.items():
            r = _path(btf, t, path)
            if r is None:
                raise SimError(f"struct tcp_sock has no {path} in this kernel's BTF")
            self.off[name] = r
        self.ca_state = _bitfield(btf, t, "inet_conn", "icsk_ca_state")

    @property
    def addr(self) -> int:
        return self.region.start

    def __getitem__(self, name: str) -> int:
        off, size = self.off[name]
        return int.from_bytes(self.region.buf[off:off + size], "little")

    def __setitem__(self, name: str, value: int) -> None:
        off, size = self.off[name]
        self.region.buf[off:off + size] = (int(value) & ((1 << 8 * size) - 1)).to_bytes(
            size, "little")

    def set_ca_state(self, state: int) -> None:
        if self.ca_state is None:
            return
        byte, shift, bits = self.ca_state
        mask = ((1 << bits) - 1) << shift
        b = self.region.buf[byte]
        self.region.buf[byte] = (b & ~mask & 0xFF) | ((state << shift) & mask)

    def close(self) -> None:
        SHARED.remove(self.region)


def _path(btf: BTF, t, path: str) -> tuple[int, int] | None:
    """(offset, size) of a member of ``t``, looking into nested and anonymous members."""
    for m in t.members:
        mt = btf.resolve(m.type_id)
        if m.name == path and not m.bitfield_size:
            return m.bits_offset // 8, btf.sizeof(mt)
        if mt.kind in (Kind.STRUCT, Kind.UNION):
            inner = _path(btf, mt, path)
            if inner is not None:
                return m.bits_offset // 8 + inner[0], inner[1]
    return None


def _bitfield(btf: BTF, t, outer: str, name: str) -> tuple[int, int, int] | None:
    """(byte, bit shift, width) of a bitfield inside member ``outer``."""
    o = next((m for m in t.members if m.name == outer), None)
    if o is None:
        return None
    ot = btf.resolve(o.type_id)
    m = next((m for m in ot.members if m.name == name), None)
    if m is None:
        return None
    bit = o.bits_offset + m.bits_offset
    width = m.bitfield_size or 8 * btf.sizeof(m.type_id)
    return bit // 8, bit % 8, width


class _Ops:
    """The table's programs, bound once, callable with u64 arguments."""

    def __init__(self, programs: dict[str, "Program"], engine: str | None):
        self.machine = Machine()
        self.args = SHARED.add(Region(8 * 12, "struct_ops args"))
        self.bound: dict[str, Any] = {}
        self.calls = {op: 0 for op in OPS}
        for op, prog in programs.items():
            if prog.btf is not None:
                self.machine.btf = prog.btf
            exe = prog.executable(evidence=engine != "interp")
            self.bound[op] = select_engine(engine, exe.evidence).compile(
                exe.insns, exe.evidence).bind(self.machine, RUNTIME)
        self.machine.progctx = RunContext(Network(), P.STRUCT_OPS)

    def has(self, op: str) -> bool:
        return op in self.bound

    def __call__(self, op: str, *args: int) -> int | None:
        b = self.bound.get(op)
        if b is None:
            return None
        self.calls[op] += 1
        struct.pack_into(f"<{len(args)}Q", self.args.buf, 0,
                         *(a & 0xFFFFFFFFFFFFFFFF for a in args))
        return b.run(self.args.start).retval & 0xFFFFFFFF

    def close(self) -> None:
        self.machine.progctx = None
        SHARED.remove(self.args)
        self.machine.close()


def table_programs(obj, map_name: str | None = None) -> tuple[str, dict[str, "Program"]]:
    """The ``tcp_congestion_ops`` map of an object (the only one, or ``map_name``): its
    ``name`` member and its programs by member."""
    maps = [(n, m) for n, m in obj.spec.maps.items() if m.struct_ops is not None
            and m.struct_ops.type_name == "tcp_congestion_ops"]
    if map_name is not None:
        maps = [(n, m) for n, m in maps if n == map_name]
    if not maps:
        raise SimError(f"no tcp_congestion_ops struct_ops map"
                       f"{' named ' + map_name if map_name else ''} in the object")
    if len(maps) > 1:
        raise SimError(f"several tcp_congestion_ops maps ({', '.join(n for n, _ in maps)}): "
                       f"name one")
    name, m = maps[0]
    st = m.struct_ops
    t = obj.spec.btf[st.type_id]
    progs: dict[str, Any] = {}
    cc_name = name
    for i, mem in enumerate(t.members):
        if i in st.progs:
            progs[mem.name] = obj.programs[st.progs[i]]
        elif mem.name == "name":
            off = mem.bits_offset // 8
            raw = st.data[off:off + 16].split(b"\0", 1)[0]
            cc_name = raw.decode(errors="replace") or name
    for need in ("ssthresh", "undo_cwnd"):
        if need not in progs:
            raise SimError(f"{name}: tcp_congestion_ops needs {need} (tcp_validate_congestion_"
                           f"control)")
    if "cong_avoid" not in progs and "cong_control" not in progs:
        raise SimError(f"{name}: tcp_congestion_ops needs cong_avoid or cong_control")
    return cc_name, progs


@dataclass
class _Batch:
    n: int              # segments sent together
    lost: int           # of them, dropped (queue or random)
    first_ack: float    # when the first one's ACK arrives (they leave the bottleneck 1/C
    ack_at: float       # apart, so their ACKs come back spread out until ack_at)
    sent_at: float
    seq_end: int        # snd_nxt after them
    reordered: bool = False
    acked: int = 0      # segments whose ACK came already

    def due(self, t: float) -> int:
        """Segments of the batch ACKed by time ``t``."""
        if t >= self.ack_at:
            return self.n
        if t < self.first_ack:
            return 0
        span = self.ack_at - self.first_ack
        return min(self.n, 1 + int((t - self.first_ack) / span * (self.n - 1))) if span else \
            self.n


def simulate(obj, path: PathModel, duration: float, *, map_name: str | None = None,
             interval: float | None = None, seed: int = 0, engine: str | None = None,
             btf: BTF | None = None) -> SimResult:
    """Run one bulk flow for ``duration`` seconds over ``path`` with the object's
    tcp_congestion_ops (see the module doc)."""
    if path.rtt <= 0 or path.rate <= 0 or duration <= 0:
        raise SimError("rtt, rate and duration must be positive")
    if not 0 <= path.loss < 1 or not 0 <= path.reorder <= 1:
        raise SimError("loss must be in [0, 1) and reorder in [0, 1]")
    name, progs = table_programs(obj, map_name)
    btf = btf or BTF.load_vmlinux()
    rng = random.Random(seed)
    dt = path.rtt / 8
    interval = interval or max(duration / 50, dt)
    pkt_rate = path.rate / (8 * (path.mss + 52))      # segments/s at the bottleneck
    qlimit = path.queue_limit()
    ops = _Ops(progs, engine)
    sk = _Sock(btf)
    sample_buf = SHARED.add(Region(btf.find("ack_sample", Kind.STRUCT).size, "ack_sample"))
    rst = btf.find("rate_sample", Kind.STRUCT)
    rs_layout = {m.name: (m.bits_offset // 8, btf.sizeof(m.type_id)) for m in rst.members}
    rs = SHARED.add(Region(rst.size, "rate_sample"))
    try:
        return _run(ops, sk, sample_buf, rs, rs_layout, name, path, duration, dt, interval,
                    pkt_rate, qlimit, rng)
    finally:
        SHARED.remove(rs)
        SHARED.remove(sample_buf)
        sk.close()
        ops.close()


def _run(ops: _Ops, sk: _Sock, sbuf: Region, rs: Region, rs_layout, name, path, duration, dt,
         interval, pkt_rate, qlimit, rng) -> SimResult:
    mss = path.mss
    sk["mss_cache"] = mss
    sk["snd_cwnd"] = TCP_INIT_CWND
    sk["snd_ssthresh"] = TCP_INFINITE_SSTHRESH
    sk["snd_cwnd_clamp"] = 0xFFFFFFFF
    sk.set_ca_state(TCP_CA_Open)
    ops("init", sk.addr)

    flight: deque[_Batch] = deque()
    state = TCP_CA_Open
    recovery_point = 0
    undo: tuple[int, int] | None = None      # (cwnd, ssthresh) before a spurious reduction
    link_free = 0.0                          # when the bottleneck finishes what it holds
    srtt = 0.0
    last_ack = 0.0
    snd_nxt = snd_una = 0
    delivered = 0
    trace: list[tuple[float, int]] = []
    samples: list[Sample] = []
    losses: list[float] = []
    next_report, report_bytes = interval, 0
    t = 0.0
    steps = int(round(duration / dt))
    for step in range(1, steps + 1):
        t = step * dt
        # --- ACKs that arrived in this step: one (stretch) ACK ------------------------------
        acked = lost = 0
        rtt_sample = 0.0
        reordered = False
        for b in flight:
            due = b.due(t)
            if due == b.acked:
                break
            # the losses of a batch show once its later segments are ACKed (dupACKs); a
            # reordered segment arrives after all: it was not lost, only looked lost
            lost_now = b.lost if due == b.n else 0
            new = due - b.acked
            good = new - (0 if b.reordered else lost_now) if due == b.n else new
            acked += max(good, 0)
            lost += lost_now
            reordered |= b.reordered and bool(lost_now)
            rtt_sample = t - b.sent_at
            snd_una = b.seq_end - (b.n - due)
            b.acked = due
            if due < b.n:
                break
        while flight and flight[0].acked == flight[0].n:
            flight.popleft()
        inflight = sum(b.n - b.acked for b in flight)
        if acked or lost:
            last_ack = t
            delivered += acked
            report_bytes += acked * mss
            srtt = rtt_sample if not srtt else 0.875 * srtt + 0.125 * rtt_sample
            sk["srtt_us"] = int(srtt * 1e6) << 3
            sk["mdev_us"] = int(abs(rtt_sample - srtt) * 1e6)
            sk["packets_out"] = inflight
            sk["snd_una"] = snd_una
            sk["delivered"] = delivered
            if acked:
                # struct ack_sample {u32 pkts_acked; s32 rtt_us; u32 in_flight}
                struct.pack_into("<IiI", sbuf.buf, 0, acked, int(rtt_sample * 1e6), inflight)
                ops("pkts_acked", sk.addr, sbuf.start)
            # --- tcp_fastretrans_alert ------------------------------------------------------
            if lost and state in (TCP_CA_Open, TCP_CA_Disorder):
                sk["prior_cwnd"] = sk["snd_cwnd"]
                sk["prior_ssthresh"] = sk["snd_ssthresh"]
                undo = (sk["snd_cwnd"], sk["snd_ssthresh"]) if reordered else None
                ssth = ops("ssthresh", sk.addr)
                sk["snd_ssthresh"] = ssth
                state = TCP_CA_Recovery
                sk.set_ca_state(state)
                ops("set_state", sk.addr, TCP_CA_Recovery)
                recovery_point = snd_nxt
                # PRR ends the reduction at ssthresh (tcp_end_cwnd_reduction); a table
                # with cong_control sets cwnd itself (tcp_cong_control skips PRR)
                if not ops.has("cong_control"):
                    sk["snd_cwnd"] = max(ssth, 2)
                sk["snd_cwnd_stamp"] = int(t * 1000)
                losses.append(t)
                sk["lost_out"] = lost
            elif state == TCP_CA_Recovery and snd_una >= recovery_point:
                if undo is not None:      # DSACKs: every retransmission was spurious
                    cw = ops("undo_cwnd", sk.addr)
                    sk["snd_cwnd"] = cw
                    sk["snd_ssthresh"] = max(sk["snd_ssthresh"], undo[1])
                    undo = None
                state = TCP_CA_Open
                sk.set_ca_state(state)
                ops("set_state", sk.addr, TCP_CA_Open)
                sk["lost_out"] = 0
            # --- tcp_cong_control ------------------------------------------------------------
            if ops.has("cong_control"):
                rs.buf[:] = bytes(len(rs.buf))
                for f, v in (("delivered", acked), ("interval_us", int(rtt_sample * 1e6)),
                             ("rtt_us", int(rtt_sample * 1e6)), ("losses", lost),
                             ("acked_sacked", acked), ("prior_in_flight", inflight + acked)):
                    off, size = rs_layout[f]
                    rs.buf[off:off + size] = (v & ((1 << 8 * size) - 1)).to_bytes(size, "little")
                ops("cong_control", sk.addr, snd_una, 0, rs.start)
            elif state == TCP_CA_Open and acked:
                ops("cong_avoid", sk.addr, snd_una, acked)
        # --- retransmission timeout ---------------------------------------------------------
        rto = max(TCP_RTO_MIN, srtt + 4 * float(sk["mdev_us"]) / 1e6) if srtt else 1.0
        if flight and t - last_ack > rto:
            ops("cwnd_event", sk.addr, CA_EVENT_LOSS)
            sk["prior_cwnd"] = sk["snd_cwnd"]
            sk["snd_ssthresh"] = ops("ssthresh", sk.addr)
            state = TCP_CA_Loss
            sk.set_ca_state(state)
            ops("set_state", sk.addr, TCP_CA_Loss)
            sk["snd_cwnd"] = 1
            flight.clear()               # everything outstanding is retransmitted
            inflight = 0
            last_ack = t
            losses.append(t)
            recovery_point = snd_nxt
        elif state == TCP_CA_Loss and not flight:
            state = TCP_CA_Open
            sk.set_ca_state(state)
            ops("set_state", sk.addr, TCP_CA_Open)
        # --- sending: what cwnd allows, into the bottleneck queue --------------------------
        cwnd = max(sk["snd_cwnd"], 1)
        room = cwnd - inflight
        if room > 0:
            if inflight == 0:
                ops("cwnd_event", sk.addr, CA_EVENT_TX_START)
            backlog = max(0.0, link_free - t) * pkt_rate
            accepted = min(room, max(0, int(qlimit - backlog)) + 1)
            dropped = room - accepted
            rnd = sum(1 for _ in range(accepted) if rng.random() < path.loss) \
                if path.loss else 0
            start = max(link_free, t)
            link_free = start + accepted / pkt_rate
            snd_nxt += room
            b = _Batch(room, dropped + rnd, start + 1 / pkt_rate + path.rtt,
                       link_free + path.rtt, t, snd_nxt)
            if b.lost and path.reorder and rng.random() < path.reorder:
                b.reordered = True
            flight.append(b)
            sk["snd_nxt"] = snd_nxt
            sk["packets_out"] = inflight + room
        trace.append((t, sk["snd_cwnd"]))
        if t + 1e-12 >= next_report:
            samples.append(Sample(round(t, 6), sk["snd_cwnd"], sk["snd_ssthresh"],
                                  srtt * 1e3, report_bytes * 8 / interval, state))
            next_report += interval
            report_bytes = 0
    ops("release", sk.addr)
    return SimResult(name, path, duration, samples, trace, losses, dict(ops.calls),
                     delivered * mss)
