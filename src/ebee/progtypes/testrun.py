"""Running programs with BPF_PROG_TEST_RUN semantics (net/bpf/test_run.c).

:func:`run` is ``bpf(BPF_PROG_TEST_RUN)`` without a kernel: the same inputs
(data_in, ctx_in, repeat, flags, cpu, batch_size, output buffer sizes), the
same validation and errno values, the same context the kernel builds (an
``sk_buff`` from the loopback device with the protocol from eth_type_trans,
an ``xdp_buff`` with 256 bytes of headroom, ...), and the same outputs
(data_out, ctx_out with only the fields Linux copies back, retval, duration).
Redirects are recorded as the run's outcome (``RunResult.redirect``).

:func:`run_event` runs the tracing types Linux cannot test-run (kprobe,
tracepoint, perf_event) on a synthetic event.
"""
from __future__ import annotations

import errno
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from ..isa import Instruction
from ..layouts.kernel import (BPF_FLOW_DISSECTOR, BPF_PERF_EVENT_DATA_KERN, BPF_SK_LOOKUP_KERN,
                              PERF_SAMPLE_DATA, SKB_SHARED_INFO, SOCK)
from ..packet.net import Network
from ..packet.skbuff import ETH_HLEN, ETH_P_IP, ETH_P_IPV6, NET_IP_ALIGN, NET_SKB_PAD, SkBuff
from ..packet.xdpbuff import XDP_METALEN_MAX, XDP_PACKET_HEADROOM, XdpBuff
from ..uapi import (AF_INET, AF_INET6, BPF_F_TEST_RUN_ON_CPU, BPF_F_TEST_XDP_LIVE_FRAMES, AttachType as A,
                    ProgType as P)
from ..vm.machine import Machine
from ..vm.memory import SHARED, Region
from .registry import ProgTypeInfo, get
from .rewrite import rewrite

PAGE_SIZE = 4096
ENOTSUPP = 524               # the kernel-internal errno BPF_PROG_TEST_RUN returns for no test_run
U16_MAX = 0xFFFF
U32_MAX = 0xFFFFFFFF
GSO_LEGACY_MAX_SIZE = 65536
GSO_MAX_SEGS = 65535
TEST_XDP_MAX_BATCH = 256
MAX_BPF_FUNC_ARGS = 12
SKB_SIZEOF = 192             # sizeof(struct __sk_buff)
XDP_MD_SIZEOF = 24
FLOW_KEYS_SIZEOF = 56
SK_LOOKUP_SIZEOF = 72
SKB_TAILROOM = (SKB_SHARED_INFO.size + 63) & ~63


class TestRunError(OSError):
    """BPF_PROG_TEST_RUN failed: ``errno`` is what the kernel returns, with its reason."""

    __test__ = False   # not a pytest test class

    def __init__(self, err: int, reason: str):
        self.reason = reason
        super().__init__(err, reason)


@dataclass(frozen=True)
class Redirect:
    """Where a program asked for the packet to go (bpf_redirect*, XDP_TX)."""
    kind: str                     # "ifindex", "map", "tx", "clone", "peer", "neigh"
    ifindex: int | None = None
    map_id: int | None = None
    map_name: str | None = None
    key: int | None = None
    flags: int = 0
    ingress: bool = False

    def describe(self) -> str:
        if self.kind == "map":
            return f"map {self.map_name or self.map_id}[{self.key}]"
        if self.kind == "tx":
            return "tx (same device)"
        d = f"ifindex {self.ifindex}"
        return d + (" ingress" if self.ingress else "") + (f" ({self.kind})" if self.kind != "ifindex" else "")


@dataclass
class RunResult:
    """The outcome of a test run, as BPF_PROG_TEST_RUN reports it (plus what ebee saw)."""
    retval: int
    data_out: bytes = b""
    ctx_out: bytes | None = None
    duration_ns: int = 0
    redirect: Redirect | None = None
    trace_output: list[str] = field(default_factory=list)
    data_size_out: int = 0        # the full output size even when data_out was cut (ENOSPC)
    insns: int = 0                # instructions executed by the last repetition
    prog_type: P | None = None
    clones: list[Redirect] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """The return value named for the program type (``XDP_DROP``, ``TC_ACT_OK``...)."""
        from .verdicts import verdict_name
        return verdict_name(self.prog_type, self.retval)


class RunContext:
    """Per-run state helpers reach through ``machine.progctx`` (Linux: bpf_redirect_info etc.)."""

    def __init__(self, net: Network, prog_type: P, ctx_obj: Any = None):
        self.net = net
        self.prog_type = prog_type
        self.ctx_obj = ctx_obj
        self.redirect: Redirect | None = None
        self.clones: list[Redirect] = []
        self.trace: list[str] = []

    def reset(self) -> None:
        self.redirect = None


class RunMachine(Machine):
    """A machine that knows the socket buffer behind LD_ABS/LD_IND."""

    progctx: RunContext | None = None
    keep_buffers = False          # a Runner keeps one XDP frame for all its runs
    xdp_pool = None

    def close(self) -> None:
        if self.xdp_pool is not None:
            self.xdp_pool.close()
            self.xdp_pool = None
        super().close()

    def ld_abs(self, ctx: int, offset: int, size: int, pc: int) -> int | None:
        from ..packet.skbuff import from_ctx
        return from_ctx(ctx).load_abs(offset if offset < 1 << 63 else offset - (1 << 64), size)


@dataclass
class Prepared:
    """A program ready to run: its type info and rewritten instructions."""
    info: ProgTypeInfo
    insns: list[Instruction]
    name: str = ""
    attach_target: str | None = None


_prepared: dict[int, tuple[Any, Prepared]] = {}


def prepare(prog, prog_type: P | int | None = None,
            expected_attach_type: A | int | None = None) -> Prepared:
    """Rewrite a program's ctx accesses for the runtime (cached per program object)."""
    key = id(prog)
    hit = _prepared.get(key)
    if hit is not None and hit[0] is prog and prog_type is None:
        return hit[1]
    if isinstance(prog, Prepared):
        return prog
    insns = prog if isinstance(prog, list) else prog.insns
    pt = prog_type if prog_type is not None else getattr(prog, "type", None)
    if pt is None:
        raise ValueError("the program type is not known: pass prog_type")
    at = expected_attach_type if expected_attach_type is not None else \
        getattr(prog, "expected_attach_type", None)
    info = get(pt, at)
    new = rewrite(list(insns), info.rules) if info.rules is not None and info.ctx_kind == "struct" \
        else list(insns)
    p = Prepared(info, new, getattr(prog, "name", ""), getattr(prog, "attach_target", None))
    if not isinstance(prog, list):
        if len(_prepared) > 256:
            _prepared.clear()
        _prepared[key] = (prog, p)
    return p


def xlated(prog) -> tuple[list[Instruction], dict[int, int]]:
    """The program as the runtime runs it -- what ``bpftool prog dump xlated`` shows for
    the kernel -- and the map from original pcs to rewritten ones."""
    from .rewrite import rewrite_map
    info = get(prog.type, getattr(prog, "expected_attach_type", None))
    if info.rules is None or info.ctx_kind != "struct":
        return list(prog.insns), {i.pc: i.pc for i in prog.insns}
    return rewrite_map(list(prog.insns), info.rules)


def _bind(machine: Machine, insns, engine: str | None, prog=None):
    verified = _admitted(prog)
    if engine == "interp":
        return machine.bind(insns)
    # engine None/"auto" (issue 8): the JIT when llvmlite is there and the program
    # verifies (its ctx rewrites are the runtime's, as in Linux), else the interpreter
    from .. import jit
    if verified is None and prog is not None and jit.available():
        verified = jit.evidence_for(prog)
    return machine.bind(insns, engine=engine or "auto", verified=verified)


def _admitted(prog):
    """Loading verifies, as in Linux: a program that asks for it (``ebee.load``'s
    default ``verify=True``) runs only once the verifier has accepted it --
    otherwise :class:`ebee.verifier.VerifierError`."""
    if prog is None or not getattr(prog, "requires_verification", False):
        return None
    from ..verifier import admit
    return admit(prog)


def _native_batch(bound, *args):
    """``repeat`` runs in one native loop (the JIT's run_batch), or None for the interpreter."""
    batch = getattr(bound, "run_batch", None)
    return None if batch is None else (lambda n: batch(n, *args))


def _timed(fn, repeat: int, batch=None) -> tuple[Any, int]:
    repeat = repeat or 1
    if batch is not None and repeat > 1:     # no Python call per run (the JIT's batch loop)
        out, total = batch(repeat)
        return out, min(total // repeat, U32_MAX)
    t0 = time.perf_counter_ns()
    out = None
    for _ in range(repeat):
        out = fn()
    spent = (time.perf_counter_ns() - t0) // repeat
    return out, min(spent, U32_MAX)


def _check_tail_zero(buf: bytes, max_size: int) -> None:
    """bpf_check_uarg_tail_zero(): a longer struct is fine if the extra bytes are zero."""
    if len(buf) > max_size and any(buf[max_size:]):
        raise TestRunError(errno.E2BIG, f"ctx_in is {len(buf)} bytes; bytes past "
                                        f"{max_size} must be zero")


def _ctx_init(ctx_in: bytes | None, want_ctx_out: bool, max_size: int) -> bytearray | None:
    """bpf_ctx_init(): None when neither ctx_in nor ctx_out was given."""
    if ctx_in is None and not want_ctx_out:
        return None
    data = bytearray(max_size)
    if ctx_in is not None:
        _check_tail_zero(ctx_in, max_size)
        n = min(len(ctx_in), max_size)
        data[:n] = ctx_in[:n]
    return data


def _finish_data(data: bytes, data_size_out: int | None) -> tuple[bytes, int, int | None]:
    """bpf_test_finish(): (bytes copied out, full size, errno or None)."""
    size = len(data)
    if data_size_out and size > data_size_out:
        return data[:data_size_out], size, errno.ENOSPC
    return data, size, None


def _finish_ctx(ctx: bytearray | None, ctx_size_out: int | None) -> tuple[bytes | None, int | None]:
    if ctx is None:
        return None, None
    if ctx_size_out is not None and len(ctx) > ctx_size_out:
        return bytes(ctx[:ctx_size_out]), errno.ENOSPC
    return bytes(ctx), None


def _range_zero(buf: bytearray, lo: int, hi: int) -> bool:
    return not any(buf[lo:hi])


# -- the skb-based types ------------------------------------------------------------------

_SKB_IN_ALLOWED = (("mark", 8, 4), ("priority", 32, 4), ("ingress_ifindex", 36, 4),
                   ("ifindex", 40, 4), ("cb", 48, 20), ("tstamp", 152, 8), ("wire_len", 160, 4),
                   ("gso_segs", 164, 4), ("gso_size", 176, 4), ("hwtstamp", 184, 8))


def _u32(b, off):
    return struct.unpack_from("<I", b, off)[0]


def _convert_ctx_to_skb(skb: SkBuff, ctx: bytearray) -> None:
    """convert___skb_to_skb(): only these __sk_buff fields may be set in ctx_in."""
    pos = 0
    for name, off, size in _SKB_IN_ALLOWED:
        if not _range_zero(ctx, pos, off):
            raise TestRunError(errno.EINVAL, f"ctx_in: __sk_buff bytes {pos}..{off - 1} must be "
                                             f"zero (only mark, priority, ingress_ifindex, "
                                             f"ifindex, cb, tstamp, wire_len, gso_segs, gso_size "
                                             f"and hwtstamp may be set)")
        pos = off + size
    if not _range_zero(ctx, pos, SKB_SIZEOF):
        raise TestRunError(errno.EINVAL, f"ctx_in: __sk_buff bytes {pos}.. must be zero")
    skb.mark = _u32(ctx, 8)
    skb.priority = _u32(ctx, 32)
    skb.skb_iif = _u32(ctx, 36)
    skb.tstamp = struct.unpack_from("<Q", ctx, 152)[0]
    skb.cb_data = bytes(ctx[48:68])
    wire_len = _u32(ctx, 160)
    if wire_len == 0:
        skb.cb_pkt_len = skb.len
    else:
        if wire_len < skb.len or wire_len > GSO_LEGACY_MAX_SIZE:
            raise TestRunError(errno.EINVAL, f"ctx_in: wire_len {wire_len} must be between the "
                                             f"packet length {skb.len} and {GSO_LEGACY_MAX_SIZE}")
        skb.cb_pkt_len = wire_len
    gso_segs = _u32(ctx, 164)
    if gso_segs > GSO_MAX_SEGS:
        raise TestRunError(errno.EINVAL, f"ctx_in: gso_segs {gso_segs} > {GSO_MAX_SEGS}")
    skb.gso_segs = gso_segs
    skb.gso_size = _u32(ctx, 176) & 0xFFFF
    skb.hwtstamp = struct.unpack_from("<Q", ctx, 184)[0]


def _convert_skb_to_ctx(skb: SkBuff, ctx: bytearray) -> None:
    """convert_skb_to___skb(): what Linux copies back into ctx_out."""
    struct.pack_into("<I", ctx, 8, skb.mark)
    struct.pack_into("<I", ctx, 32, skb.priority)
    struct.pack_into("<I", ctx, 36, skb.skb_iif)
    struct.pack_into("<I", ctx, 40, skb.dev.ifindex)
    struct.pack_into("<Q", ctx, 152, skb.tstamp)
    ctx[48:68] = skb.cb_data
    struct.pack_into("<I", ctx, 160, skb.cb_pkt_len)
    struct.pack_into("<I", ctx, 164, skb.gso_segs)
    struct.pack_into("<Q", ctx, 184, skb.hwtstamp)


def _test_init(user_size: int, size: int, headroom: int, tailroom: int) -> None:
    """bpf_test_init()'s checks: the buffer (``size``) and what is copied into it."""
    if size < ETH_HLEN or size > PAGE_SIZE - headroom - tailroom:
        raise TestRunError(errno.EINVAL, f"data_in is {size} bytes; must be {ETH_HLEN}.."
                                         f"{PAGE_SIZE - headroom - tailroom}")
    if user_size > size:
        raise TestRunError(errno.EMSGSIZE, "data_in is larger than the buffer")


def _sock_for(net: Network, skb: SkBuff) -> Region:
    """The dummy socket test_run attaches (family and addresses from the packet)."""
    sk = SHARED.add(Region(SOCK.size, "sock"))
    b = sk.buf
    proto = skb.protocol
    hl = skb.headlen()
    if proto == ETH_P_IP:
        struct.pack_into("<H", b, SOCK.off("skc_family"), AF_INET)
        if hl >= 20:
            ip = skb.read(0, 20)
            b[SOCK.off("skc_rcv_saddr"):SOCK.off("skc_rcv_saddr") + 4] = ip[12:16]
            b[SOCK.off("skc_daddr"):SOCK.off("skc_daddr") + 4] = ip[16:20]
    elif proto == ETH_P_IPV6:
        struct.pack_into("<H", b, SOCK.off("skc_family"), AF_INET6)
        if hl >= 40:
            ip = skb.read(0, 40)
            o = SOCK.off("skc_v6_rcv_saddr")
            b[o:o + 16] = ip[8:24]
            o = SOCK.off("skc_v6_daddr")
            b[o:o + 16] = ip[24:40]
    struct.pack_into("<H", b, SOCK.off("skc_rx_queue_mapping"), 0xFFFF)
    return sk


def run_skb(p: Prepared, machine: "RunMachine", bound, data: bytes, ctx_in, repeat: int,
            flags: int, cpu: int, batch_size: int, data_size_out, ctx_size_out,
            want_ctx_out: bool, net: Network, link_layer: bool = False) -> RunResult:
    """bpf_prog_test_run_skb().

    ``link_layer`` runs a socket filter as a packet (AF_PACKET) socket sees the
    frame -- data at the MAC header, as tcpdump's filters expect -- instead of
    the test run's network-layer view.
    """
    if flags or cpu or batch_size:
        raise TestRunError(errno.EINVAL, "flags, cpu and batch_size must be 0 for this "
                                         "program type")
    size = len(data)
    _test_init(size, size, NET_SKB_PAD + NET_IP_ALIGN, SKB_TAILROOM)
    ctx = _ctx_init(ctx_in, want_ctx_out, SKB_SIZEOF)
    pt = p.info.prog_type
    is_l2 = pt in (P.SCHED_CLS, P.SCHED_ACT) or link_layer
    direct = pt in (P.SCHED_CLS, P.SCHED_ACT) or pt in (P.LWT_IN, P.LWT_OUT, P.LWT_XMIT)
    dev = net.loopback
    if ctx is not None and _u32(ctx, 40) > 1:
        try:
            dev = net.device(_u32(ctx, 40))
        except KeyError:
            raise TestRunError(errno.ENODEV, f"ctx_in: no device with ifindex {_u32(ctx, 40)}") \
                from None
    skb = SkBuff(data, dev=dev)
    sk = None
    try:
        skb.eth_type_trans()
        skb.reset_network_header()
        # 6.18 refuses IPv4/IPv6 frames too short for their network header
        need = {ETH_P_IP: 20, ETH_P_IPV6: 40}.get(skb.protocol, 0)
        if skb.headlen() < need:
            raise TestRunError(errno.EINVAL, f"an {'IPv4' if need == 20 else 'IPv6'} frame needs "
                                             f"{need} bytes after the Ethernet header; it has "
                                             f"{skb.headlen()}")
        sk = _sock_for(net, skb)
        struct.pack_into("<Q", skb.region.buf, 24, sk.start)
        if is_l2:
            skb.push(ETH_HLEN)
        if direct:
            skb.compute_data_pointers()
        if ctx is not None:
            _convert_ctx_to_skb(skb, ctx)
        rc = RunContext(net, pt, skb)
        machine.progctx = rc
        ex, duration = _timed(lambda: bound.run(skb.addr), repeat, _native_batch(bound, skb.addr))
        if not is_l2:
            if skb.headroom() < ETH_HLEN:
                skb.expand_head((ETH_HLEN - skb.headroom() + 15) & ~15, 0)
            skb.push(ETH_HLEN)
            skb.write(0, bytes(ETH_HLEN))
        if ctx is not None:
            _convert_skb_to_ctx(skb, ctx)
        out, full, err = _finish_data(skb.payload(), data_size_out)
        res = RunResult(ex.retval & U32_MAX, out, None, duration, _redirect_outcome(pt, ex.retval, rc),
                        rc.trace, full, ex.insns, pt, rc.clones)
        if err:
            raise TestRunError(err, f"data_out is smaller than the {full}-byte result")
        res.ctx_out, err = _finish_ctx(ctx, ctx_size_out)
        if err:
            raise TestRunError(err, "ctx_out is smaller than the context")
        return res
    finally:
        machine.progctx = None
        skb.close()
        if sk is not None:
            SHARED.remove(sk)


def _redirect_outcome(pt: P, retval: int, rc: RunContext) -> Redirect | None:
    from .verdicts import is_redirect
    if pt is P.XDP and retval == 3:          # XDP_TX: back out of the receiving device
        return Redirect("tx", ifindex=rc.ctx_obj.dev.ifindex if rc.ctx_obj else None)
    if is_redirect(pt, retval):
        return rc.redirect
    return None


# -- XDP ------------------------------------------------------------------------------------

def run_xdp(p: Prepared, machine: "RunMachine", bound, data: bytes, ctx_in, repeat: int,
            flags: int, cpu: int, batch_size: int, data_size_out, ctx_size_out,
            want_ctx_out: bool, net: Network) -> RunResult:
    """bpf_prog_test_run_xdp()."""
    at = p.info.expected_attach_type
    if at in (A.XDP_DEVMAP, A.XDP_CPUMAP):
        raise TestRunError(errno.EINVAL, "devmap/cpumap XDP programs cannot be test-run")
    if flags & ~BPF_F_TEST_XDP_LIVE_FRAMES:
        raise TestRunError(errno.EINVAL, f"unknown flags {flags:#x} for XDP")
    live = bool(flags & BPF_F_TEST_XDP_LIVE_FRAMES)
    if live:
        if batch_size > TEST_XDP_MAX_BATCH:
            raise TestRunError(errno.E2BIG, f"batch_size {batch_size} > {TEST_XDP_MAX_BATCH}")
    elif batch_size:
        raise TestRunError(errno.EINVAL, "batch_size needs BPF_F_TEST_XDP_LIVE_FRAMES")
    headroom = XDP_PACKET_HEADROOM
    tailroom = SKB_TAILROOM
    size = len(data)
    ctx = _ctx_init(ctx_in, want_ctx_out, XDP_MD_SIZEOF)
    meta_len = 0
    lin_req = size
    if ctx is not None:
        c_data, c_end, c_meta = _u32(ctx, 0), _u32(ctx, 4), _u32(ctx, 8)
        # 6.18: data_end may be below the data size -- it is then the linear part and the
        # rest of data_in goes to fragments
        if c_meta or c_end > size or c_data > c_end or (c_data & 3) or \
                c_data > XDP_METALEN_MAX or (live and (data_size_out is not None or want_ctx_out)):
            raise TestRunError(errno.EINVAL, "ctx_in: xdp_md needs data_meta 0, data <= "
                                             "data_end <= the data size, and data (the metadata "
                                             "length) 4-aligned and at most 255")
        meta_len = c_data
        headroom -= c_data
        lin_req = c_end
    max_data = PAGE_SIZE - headroom - tailroom
    lin = lin_req
    if lin > max_data:
        if live:
            raise TestRunError(errno.EINVAL, "live frames cannot be larger than a page")
        lin = max_data
    if size - meta_len < ETH_HLEN:     # 6.18 rejects runt frames before bpf_test_init()
        raise TestRunError(errno.EINVAL, f"data_in has {size - meta_len} bytes after the "
                                         f"metadata; less than ETH_HLEN")
    _test_init(lin, max_data, headroom, tailroom)
    frags = []
    rest = data[lin:]
    while rest:
        frags.append(rest[:PAGE_SIZE])
        rest = rest[PAGE_SIZE:]
    dev, queue = net.loopback, 0
    if ctx is not None:
        if _u32(ctx, 20):
            raise TestRunError(errno.EINVAL, "ctx_in: egress_ifindex must be 0")
        ing, q = _u32(ctx, 12), _u32(ctx, 16)
        if not ing and q:
            raise TestRunError(errno.EINVAL, "ctx_in: rx_queue_index needs ingress_ifindex")
        if ing:
            try:
                dev = net.device(ing)
            except KeyError:
                raise TestRunError(errno.ENODEV, f"ctx_in: no device with ifindex {ing}") \
                    from None
            if q >= dev.rx_queues:
                raise TestRunError(errno.EINVAL, f"ctx_in: rx_queue_index {q} >= the device's "
                                                 f"{dev.rx_queues} queues")
            queue = q
    # xdp_prepare_buff(): data_in lands at the (reduced) headroom; the first ctx.data
    # bytes of it are metadata (xdp_convert_md_to_buff)
    xdp = getattr(machine, "xdp_pool", None)
    if xdp is not None:
        machine.xdp_pool = None
        xdp.reset(data[:lin], dev=dev, queue_index=queue, headroom=headroom, frags=frags)
    else:
        xdp = XdpBuff(data[:lin], dev=dev, queue_index=queue, headroom=headroom, frags=frags)
    try:
        if meta_len:
            xdp.data = xdp.data_meta + meta_len
        rc = RunContext(net, P.XDP, xdp)
        machine.progctx = rc
        ex, duration = _timed(lambda: bound.run(xdp.addr), repeat, _native_batch(bound, xdp.addr))
        if ctx is not None:
            struct.pack_into("<I", ctx, 0, xdp.data - xdp.data_meta)
            struct.pack_into("<I", ctx, 4, xdp.data_end - xdp.data_meta)
        whole = bytes(xdp.frame.buf[xdp.data_meta - xdp.frame.start:xdp.data_end - xdp.frame.start])
        whole += b"".join(bytes(f) for f in xdp.frags)
        out, full, err = _finish_data(whole, data_size_out)
        res = RunResult(ex.retval & U32_MAX, out, None, duration,
                        _redirect_outcome(P.XDP, ex.retval & U32_MAX, rc), rc.trace, full,
                        ex.insns, P.XDP, rc.clones)
        if err:
            raise TestRunError(err, f"data_out is smaller than the {full}-byte result")
        res.ctx_out, err = _finish_ctx(ctx, ctx_size_out)
        if err:
            raise TestRunError(err, "ctx_out is smaller than the context")
        return res
    finally:
        machine.progctx = None
        if isinstance(machine, RunMachine) and machine.keep_buffers:
            machine.xdp_pool = xdp           # the next run of this Runner reuses the frame
        else:
            xdp.close()


# -- flow dissector, sk_lookup, raw_tp, syscall, tracing ---------------------------------------

def run_flow_dissector(p, machine, bound, data, ctx_in, repeat, flags, cpu, batch_size,
                       data_size_out, ctx_size_out, want_ctx_out, net) -> RunResult:
    from .flow_dissector import dissect
    if flags or cpu or batch_size:
        raise TestRunError(errno.EINVAL, "flags, cpu and batch_size must be 0 for this "
                                         "program type")
    size = len(data)
    if size < ETH_HLEN:
        raise TestRunError(errno.EINVAL, f"data_in is {size} bytes; less than ETH_HLEN")
    _test_init(size, size, 0, 0)
    uctx = _ctx_init(ctx_in, want_ctx_out, FLOW_KEYS_SIZEOF)
    fflags = 0
    if uctx is not None:
        # verify_user_bpf_flow_keys(): only flags (offset 48) may be set
        if not _range_zero(uctx, 0, 48) or not _range_zero(uctx, 52, FLOW_KEYS_SIZEOF):
            raise TestRunError(errno.EINVAL, "ctx_in: only bpf_flow_keys.flags may be set")
        fflags = _u32(uctx, 48)
    rc = RunContext(net, P.FLOW_DISSECTOR)
    machine.progctx = rc
    try:
        (retval, keys, n), duration = _timed(
            lambda: dissect(machine, bound, data, fflags), repeat)
    finally:
        machine.progctx = None
    out, full, err = _finish_data(keys, data_size_out)
    res = RunResult(retval, out, None, duration, None, rc.trace, full, n, P.FLOW_DISSECTOR)
    if err:
        raise TestRunError(err, "data_out is smaller than struct bpf_flow_keys")
    res.ctx_out, err = _finish_ctx(uctx, ctx_size_out)
    if err:
        raise TestRunError(err, "ctx_out is smaller than the context")
    return res


def run_sk_lookup(p, machine, bound, data, ctx_in, repeat, flags, cpu, batch_size,
                  data_size_out, ctx_size_out, want_ctx_out, net) -> RunResult:
    """bpf_prog_test_run_sk_lookup()."""
    import ipaddress
    if flags or cpu or batch_size:
        raise TestRunError(errno.EINVAL, "flags, cpu and batch_size must be 0 for this "
                                         "program type")
    if data or data_size_out:
        raise TestRunError(errno.EINVAL, "SK_LOOKUP programs take no data_in/data_out")
    uctx = _ctx_init(ctx_in, want_ctx_out, SK_LOOKUP_SIZEOF)
    if uctx is None:
        raise TestRunError(errno.EINVAL, "SK_LOOKUP test runs need ctx_in (struct bpf_sk_lookup)")
    if struct.unpack_from("<Q", uctx, 0)[0]:
        raise TestRunError(errno.EINVAL, "ctx_in: sk must be 0")
    if not _range_zero(uctx, 64, SK_LOOKUP_SIZEOF):
        raise TestRunError(errno.EINVAL, "ctx_in: bytes after local_port must be zero")
    local_port = _u32(uctx, 60)
    if local_port > U16_MAX:
        raise TestRunError(errno.ERANGE, f"ctx_in: local_port {local_port} > 65535")
    family, proto = _u32(uctx, 8) & 0xFFFF, _u32(uctx, 12) & 0xFFFF
    if family not in (AF_INET, AF_INET6):
        raise TestRunError(errno.EAFNOSUPPORT, f"ctx_in: family {family} is not AF_INET/AF_INET6")
    L = BPF_SK_LOOKUP_KERN
    kern = SHARED.add(Region(L.size, "bpf_sk_lookup_kern"))
    ip6 = SHARED.add(Region(32, "sk_lookup addresses", writable=False))
    b = kern.buf
    struct.pack_into("<H", b, L.off("family"), family)
    struct.pack_into("<H", b, L.off("protocol"), proto)
    struct.pack_into("<H", b, L.off("dport"), local_port)
    # remote_port is __be16 in the uapi struct's first two bytes
    b[L.off("sport"):L.off("sport") + 2] = uctx[36:38]
    if family == AF_INET:
        b[L.off("v4_daddr"):L.off("v4_daddr") + 4] = uctx[40:44]
        b[L.off("v4_saddr"):L.off("v4_saddr") + 4] = uctx[16:20]
    else:
        ip6.buf[0:16] = uctx[20:36]
        ip6.buf[16:32] = uctx[44:60]
        struct.pack_into("<Q", b, L.off("v6_saddr"), ip6.start)
        struct.pack_into("<Q", b, L.off("v6_daddr"), ip6.start + 16)
    rc = RunContext(net, P.SK_LOOKUP, kern)
    machine.progctx = rc

    def once():
        struct.pack_into("<Q", b, L.off("selected_sk"), 0)
        return bound.run(kern.start)
    try:
        ex, duration = _timed(once, repeat)
        selected = struct.unpack_from("<Q", b, L.off("selected_sk"))[0]
        struct.pack_into("<Q", uctx, 0, 0)
        cookie = 0
        if selected:
            sock = next((s for s in net.sockets if s.addr == selected), None)
            if sock is not None:
                if sock.reuseport and not b[L.off("no_reuseport")]:
                    raise TestRunError(errno.EOPNOTSUPP, "the selected socket is in a reuseport "
                                                         "group")
                cookie = sock.cookie
        struct.pack_into("<Q", uctx, 0, cookie)   # user_ctx->cookie overlays sk
        del ipaddress
        res = RunResult(ex.retval & U32_MAX, b"", None, duration, None, rc.trace, 0, ex.insns,
                        P.SK_LOOKUP)
        res.ctx_out, err = _finish_ctx(uctx, ctx_size_out)
        if err:
            raise TestRunError(err, "ctx_out is smaller than the context")
        return res
    finally:
        machine.progctx = None
        SHARED.remove(kern)
        SHARED.remove(ip6)


def _raw_args_run(p, machine, bound, ctx_in, limit: int, what: str) -> RunResult:
    args = bytes(ctx_in or b"")
    region = SHARED.add(Region(args, what)) if args else None
    rc = RunContext(Network(), p.info.prog_type)
    machine.progctx = rc
    try:
        ex = bound.run(region.start if region else 0)
        return RunResult(ex.retval & U32_MAX, b"", None, 0, None, rc.trace, 0, ex.insns,
                         p.info.prog_type)
    finally:
        machine.progctx = None
        if region is not None:
            SHARED.remove(region)


def run_raw_tp(p, machine, bound, data, ctx_in, repeat, flags, cpu, batch_size,
               data_size_out, ctx_size_out, want_ctx_out, net) -> RunResult:
    """bpf_prog_test_run_raw_tp(): ctx_in is the u64 argument array; nothing else."""
    if data or data_size_out or want_ctx_out or repeat or batch_size:
        raise TestRunError(errno.EINVAL, "raw tracepoint test runs take only ctx_in (no data, "
                                         "ctx_out, repeat or batch_size)")
    n = len(ctx_in or b"")
    if n < _max_ctx_offset(p) or n > MAX_BPF_FUNC_ARGS * 8:
        raise TestRunError(errno.EINVAL, f"ctx_in is {n} bytes; the program reads up to "
                                         f"{_max_ctx_offset(p)} and at most "
                                         f"{MAX_BPF_FUNC_ARGS * 8} are allowed")
    if not (flags & BPF_F_TEST_RUN_ON_CPU) and cpu:
        raise TestRunError(errno.EINVAL, "cpu needs BPF_F_TEST_RUN_ON_CPU")
    if flags & ~BPF_F_TEST_RUN_ON_CPU:
        raise TestRunError(errno.EINVAL, f"unknown flags {flags:#x}")
    if flags & BPF_F_TEST_RUN_ON_CPU and cpu >= _ncpus():
        raise TestRunError(errno.ENXIO, f"cpu {cpu} is not online")
    res = _raw_args_run(p, machine, bound, ctx_in, MAX_BPF_FUNC_ARGS * 8, "raw_tp args")
    return res


def _ncpus() -> int:
    import os
    return os.cpu_count() or 1


def _max_ctx_offset(p: Prepared) -> int:
    """prog->aux->max_ctx_offset: the end of the furthest ctx access the program makes."""
    from .rewrite import find_ctx_accesses
    insns = p.insns
    best = 0
    for k in find_ctx_accesses(insns):
        i = insns[k]
        best = max(best, i.off + i.spec.size)
    return best


def run_syscall(p, machine, bound, data, ctx_in, repeat, flags, cpu, batch_size,
                data_size_out, ctx_size_out, want_ctx_out, net) -> RunResult:
    """bpf_prog_test_run_syscall(): ctx_in is copied back out (the program may write it)."""
    if data or data_size_out or want_ctx_out or repeat or flags or batch_size:
        raise TestRunError(errno.EINVAL, "syscall program test runs take only ctx_in")
    n = len(ctx_in or b"")
    if n < _max_ctx_offset(p) or n > U16_MAX:
        raise TestRunError(errno.EINVAL, f"ctx_in is {n} bytes; the program reads up to "
                                         f"{_max_ctx_offset(p)}")
    region = SHARED.add(Region(bytes(ctx_in or b""), "syscall ctx")) if n else None
    rc = RunContext(net, P.SYSCALL)
    machine.progctx = rc
    try:
        ex = bound.run(region.start if region else 0)
        out = bytes(region.buf) if region else None
        return RunResult(ex.retval & U32_MAX, b"", out, 0, None, rc.trace, 0, ex.insns, P.SYSCALL)
    finally:
        machine.progctx = None
        if region is not None:
            SHARED.remove(region)


# bpf_prog_test_run_tracing() calls these kernel functions; fentry/fexit programs attached
# to one of them run with its arguments.
FENTRY_TEST_CALLS: dict[str, tuple[tuple[int, ...], int]] = {
    "bpf_fentry_test1": ((1,), 2), "bpf_fentry_test2": ((2, 3), 5),
    "bpf_fentry_test3": ((4, 5, 6), 15), "bpf_fentry_test4": ((7, 8, 9, 10), 34),
    "bpf_fentry_test5": ((11, 12, 13, 14, 15), 65),
    "bpf_fentry_test6": ((16, 17, 18, 19, 20, 21), 111),
    "bpf_fentry_test7": ((0,), 0), "bpf_fentry_test8": ((0,), 0),
}


def run_tracing(p, machine, bound, data, ctx_in, repeat, flags, cpu, batch_size,
                data_size_out, ctx_size_out, want_ctx_out, net) -> RunResult:
    """bpf_prog_test_run_tracing(): fentry/fexit run on the kernel's bpf_fentry_test*()."""
    if flags or cpu or batch_size:
        raise TestRunError(errno.EINVAL, "flags, cpu and batch_size must be 0 for this "
                                         "program type")
    at = p.info.expected_attach_type
    if at not in (A.TRACE_FENTRY, A.TRACE_FEXIT):
        raise TestRunError(ENOTSUPP, f"tracing programs of attach type "
                                     f"{at.name if at is not None else '?'} have no test run "
                                     f"in ebee (Linux runs fmod_ret only on its own test hooks)")
    target = p.attach_target
    call = FENTRY_TEST_CALLS.get(target or "")
    if call is not None:
        args, ret = call
        vals = list(args) + ([ret] if at is A.TRACE_FEXIT else [])
        _raw_args_run(p, machine, bound, struct.pack(f"<{len(vals)}Q", *vals), 96, "fentry args")
    return RunResult(0, b"", None, 0, None, [], 0, 0, P.TRACING)


def run_unsupported(p, *a, **k) -> RunResult:
    raise TestRunError(ENOTSUPP, f"BPF_PROG_TEST_RUN is not supported for "
                                 f"{p.info.prog_type.name} programs (Linux returns ENOTSUPP); "
                                 f"use run_event() for tracing programs")


def run_struct_ops(p, *a, **k) -> RunResult:
    raise TestRunError(errno.EINVAL, "struct_ops test runs need a registered struct_ops map "
                                     "(bpf_dummy_ops); ebee does not model struct_ops")


def run_nf(p, *a, **k) -> RunResult:
    raise TestRunError(ENOTSUPP, "netfilter test runs are not modelled by ebee "
                                 "(struct bpf_nf_ctx / nf_hook_state)")


_IMPLS = {"skb": run_skb, "xdp": run_xdp, "flow_dissector": run_flow_dissector,
          "sk_lookup": run_sk_lookup, "raw_tp": run_raw_tp, "syscall": run_syscall,
          "tracing": run_tracing, "struct_ops": run_struct_ops, "nf": run_nf}


class Runner:
    """A prepared program bound to a machine: run it many times cheaply (pcap replays)."""

    def __init__(self, prog, *, prog_type=None, expected_attach_type=None,
                 engine: str | None = None, net: Network | None = None,
                 machine: Machine | None = None, link_layer: bool = False):
        self.prepared = prepare(prog, prog_type, expected_attach_type)
        self.link_layer = link_layer
        self.machine = machine or RunMachine()
        self.own_machine = machine is None
        # kfuncs such as bpf_obj_new size objects from the program's own BTF
        btf = getattr(prog, "btf", None)
        if btf is not None:
            self.machine.btf = btf
        if self.own_machine:
            self.machine.keep_buffers = True
        self.bound = _bind(self.machine, self.prepared.insns, engine, prog)
        self.net = net or _default_net()
        self.impl = _IMPLS.get(self.prepared.info.test_run or "", run_unsupported)

    def run(self, data: bytes | None = None, *, ctx: bytes | None = None, repeat: int = 0,
            flags: int = 0, cpu: int = 0, batch_size: int = 0, data_size_out: int | None = None,
            ctx_size_out: int | None = None, ctx_out: bool = False) -> RunResult:
        want_ctx_out = ctx_out or ctx is not None
        if ctx_size_out is None and ctx is not None:
            ctx_size_out = len(ctx) if self.prepared.info.test_run not in ("skb", "xdp") \
                else None
        extra = {"link_layer": True} if self.link_layer and self.impl is run_skb else {}
        with _capture_trace() as lines:
            res = self.impl(self.prepared, self.machine, self.bound, bytes(data or b""),
                            bytes(ctx) if ctx is not None else None, repeat, flags, cpu,
                            batch_size, data_size_out, ctx_size_out, want_ctx_out, self.net,
                            **extra)
        res.trace_output = [ln.message for ln in lines]
        return res

    def close(self) -> None:
        if self.own_machine:
            self.machine.close()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_NET: Network | None = None


def _capture_trace():
    """What bpf_printk printed during the run (the trace pipe, without consuming it)."""
    from .. import trace
    return trace.capture()


def _default_net() -> Network:
    global _NET
    if _NET is None:
        _NET = Network()
    return _NET


def run(prog, data: bytes | None = None, *, ctx: bytes | None = None, repeat: int = 0,
        engine: str | None = None, flags: int = 0, cpu: int = 0, batch_size: int = 0,
        data_size_out: int | None = None, ctx_size_out: int | None = None, ctx_out: bool = False,
        net: Network | None = None, prog_type=None, expected_attach_type=None) -> RunResult:
    """Run ``prog`` once (or ``repeat`` times) with BPF_PROG_TEST_RUN semantics.

    ``prog`` is an ``ebee.Program``, a :class:`Prepared` program, or a list of
    instructions with ``prog_type``.  Raises :class:`TestRunError` (an OSError
    with the kernel's errno) where Linux's test run fails.
    """
    with Runner(prog, prog_type=prog_type, expected_attach_type=expected_attach_type,
                engine=engine, net=net) as r:
        return r.run(data, ctx=ctx, repeat=repeat, flags=flags, cpu=cpu, batch_size=batch_size,
                     data_size_out=data_size_out, ctx_size_out=ctx_size_out, ctx_out=ctx_out)


# -- synthetic events for the tracing types -------------------------------------------------

def run_event(prog, ctx: bytes, *, engine: str | None = None, prog_type=None,
              sample_period: int = 0, addr: int = 0) -> RunResult:
    """Run a tracing program on one synthetic event (Linux has no test run for these).

    ``ctx`` is what the program's context points at: ``pt_regs`` bytes for
    kprobe/uprobe (see :func:`ebee.progtypes.tracing.pt_regs`), a tracepoint
    record (``tracepoint_format(...).record(...)``), u64 arguments for raw
    tracepoints, fentry/fexit, tp_btf and lsm, or ``pt_regs`` for perf_event
    (with ``sample_period`` and ``addr``).
    """
    p = prepare(prog, prog_type)
    pt = p.info.prog_type
    m = RunMachine()
    regions = []
    try:
        bound = _bind(m, p.insns, engine, prog)
        data = SHARED.add(Region(bytes(ctx) or b"\0", "event", writable=False))
        regions.append(data)
        arg = data.start
        if pt is P.PERF_EVENT:
            sample = SHARED.add(Region(PERF_SAMPLE_DATA.size, "perf_sample_data", writable=False))
            regions.append(sample)
            struct.pack_into("<Q", sample.buf, PERF_SAMPLE_DATA.off("period"), sample_period)
            struct.pack_into("<Q", sample.buf, PERF_SAMPLE_DATA.off("addr"), addr)
            kern = SHARED.add(Region(BPF_PERF_EVENT_DATA_KERN.size, "bpf_perf_event_data_kern",
                                     writable=False))
            regions.append(kern)
            struct.pack_into("<Q", kern.buf, BPF_PERF_EVENT_DATA_KERN.off("regs"), data.start)
            struct.pack_into("<Q", kern.buf, BPF_PERF_EVENT_DATA_KERN.off("data"), sample.start)
            arg = kern.start
        rc = RunContext(_default_net(), pt)
        m.progctx = rc
        with _capture_trace() as lines:
            ex = bound.run(arg)
        return RunResult(ex.retval, b"", None, 0, None, [ln.message for ln in lines], 0,
                         ex.insns, pt)
    finally:
        m.progctx = None
        for r in regions:
            SHARED.remove(r)
        m.close()


__all__ = ["Prepared", "Redirect", "RunContext", "RunMachine", "RunResult", "Runner",
           "TestRunError", "prepare", "run", "run_event", "BPF_FLOW_DISSECTOR"]
