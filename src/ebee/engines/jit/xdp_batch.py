"""XDP frames in one native loop: the driver behind ``ebee run --pcap`` on the JIT.

A per-packet test run costs a Python call, an ``XdpBuff`` reset and a result
object per frame -- far more than the program.  The driver here is a small,
program-independent native function (compiled once per process) that, for a
chunk of frames laid out in one buffer (offsets + lengths), does what
``run_xdp`` and ``XdpBuff.reset`` do for one packet, directly on the frame's
real memory:

* zero the frame the previous packet dirtied, copy the packet behind the
  headroom, point ``xdp_buff.data``/``data_meta``/``data_end`` at it (the
  words the program's rewritten ``xdp_md`` loads read);
* call the program's native entry (``ebee_main``) through its pointer, with a
  fresh status and tail-call count, as ``JitBinding.run`` does;
* record the return value and copy ``data_meta..data_end`` (what the test
  run reports as ``data_out``) to an output buffer.

Nothing in it calls Python.  Helpers without a native implementation are
still Python callbacks of the program; they find the run's state through the
machine as in any run, and can tell which packet is running from
``XdpBatch.cur``.  The loop stops at the first run that fails (a fault,
an exception in a callback) so that Python raises exactly what the
per-packet run raises, and before a frame could overflow the output buffer.

Clearing: Linux's test run starts every packet in a zeroed page.  Verified
code without callbacks can only write inside the packet, so only the bytes
the previous packet occupied beyond the new one need clearing; after a run
that called back into Python (``bpf_xdp_adjust_head`` may have exposed and
written headroom) or for checked code (which may write anywhere in the
frame), the whole frame is cleared.
"""
from __future__ import annotations

import ctypes
import threading
import time
from array import array
from itertools import accumulate

from llvmlite import ir

from ...layouts.kernel import XDP_BUFF
from . import abi
from .irgen import FNTY, PTR, STACK, c64, i8, i64
from .codegen import Codegen

u64 = ctypes.c_uint64
i32 = ir.IntType(32)
SYMBOL = "ebee_xdp_frames"


class XdpBatch(ctypes.Structure):
    """The driver's arguments and resumable state (the IR reads these field offsets)."""
    _fields_ = [
        ("frame", u64),          # the XDP frame (data_hard_start) and its size
        ("frame_size", u64),
        ("headroom", u64),
        ("xdp", u64),            # the xdp_buff region: the program's ctx
        ("in_buf", u64),         # packets: bytes, u32 offsets, u32 lengths
        ("in_off", u64),
        ("in_len", u64),
        ("next", u64),           # in/out: the first packet to run / the first not run
        ("count", u64),
        ("retval", u64),         # out: u32 per packet
        ("out_buf", u64),        # out: data_meta..data_end of each packet after its run
        ("out_cap", u64),
        ("out_pos", u64),        # in/out: bytes of out_buf used
        ("out_off", u64),        # out: u32 offset and length per packet in out_buf
        ("out_len", u64),
        ("cur", u64),            # the packet running now (for Python callbacks)
        ("dirty", u64),          # in/out: the frame must be cleared whole before the next packet
        ("prev_len", u64),       # in/out: length of the packet the frame last held
        ("reset_all", u64),      # clear the whole frame before every packet (checked code)
        ("failed", u64),         # out: the status of the run that stopped the loop (0: none)
        ("insns", u64),          # out: instructions executed, summed over the packets run
    ]


def _off(name: str) -> int:
    return getattr(XdpBatch, name).offset


def generate() -> ir.Module:
    """``void ebee_xdp_frames(ts, pt, main, batch)``: run packets next..count-1."""
    mod = ir.Module(name="ebee_xdp_frames")
    fnty = ir.FunctionType(ir.VoidType(), [PTR, PTR, i64, PTR])
    fn = ir.Function(mod, fnty, SYMBOL)
    fn.attributes.add("nounwind")
    ts, pt, main, d = fn.args
    memset = ir.Function(mod, ir.FunctionType(ir.VoidType(), [PTR, i8, i64, ir.IntType(1)]),
                         "llvm.memset.p0.i64")
    memcpy = ir.Function(mod, ir.FunctionType(ir.VoidType(), [PTR, PTR, i64, ir.IntType(1)]),
                         "llvm.memcpy.p0.p0.i64")
    false = ir.Constant(ir.IntType(1), 0)

    def at(b, base, off):
        return b.gep(base, [c64(off)], source_etype=i8)

    def dget(b, name):
        return b.load(at(b, d, _off(name)), typ=i64)

    def dput(b, name, v):
        b.store(v, at(b, d, _off(name)))

    def tsget(b, name):
        return b.load(at(b, ts, abi.offset(name)), typ=i64)

    def tsput(b, name, v):
        b.store(v, at(b, ts, abi.offset(name)))

    def ptr(b, v):
        return b.inttoptr(v, PTR)

    def u32_at(b, arr, k):
        return b.gep(ptr(b, arr), [k], source_etype=i32)

    blk = {name: fn.append_basic_block(name) for name in
           ("entry", "head", "room", "body", "full", "partial", "tail", "copy", "ran", "fail",
            "exit")}
    b = ir.IRBuilder(blk["entry"])
    fp = b.add(tsget(b, "stack_lo"), c64(STACK))
    frame, fsize, headroom, xdp = (dget(b, n) for n in ("frame", "frame_size", "headroom", "xdp"))
    in_buf, in_off, in_len, count = (dget(b, n) for n in ("in_buf", "in_off", "in_len", "count"))
    rets, out_buf, out_cap = (dget(b, n) for n in ("retval", "out_buf", "out_cap"))
    out_off, out_len, reset_all = (dget(b, n) for n in ("out_off", "out_len", "reset_all"))
    k0, pos0, dirty0, prev0, insns0 = (dget(b, n) for n in ("next", "out_pos", "dirty",
                                                           "prev_len", "insns"))
    hd = b.add(frame, headroom)
    x_data, x_end, x_meta = (at(b, ptr(b, xdp), XDP_BUFF.off(n))
                             for n in ("data", "data_end", "data_meta"))
    b.branch(blk["head"])

    # head: loop-carried state, stop at the end or when the output could overflow
    b.position_at_end(blk["head"])
    k = b.phi(i64, "k")
    pos = b.phi(i64, "pos")
    dirty = b.phi(i64, "dirty")
    prev = b.phi(i64, "prev")
    insns = b.phi(i64, "insns")
    for phi, v in ((k, k0), (pos, pos0), (dirty, dirty0), (prev, prev0), (insns, insns0)):
        phi.add_incoming(v, blk["entry"])
    b.cbranch(b.icmp_unsigned("<", k, count), blk["room"], blk["exit"])
    b.position_at_end(blk["room"])
    b.cbranch(b.icmp_unsigned("<=", b.add(pos, fsize), out_cap), blk["body"], blk["exit"])

    # body: clear what needs clearing, then copy the packet behind the headroom
    b.position_at_end(blk["body"])
    n = b.zext(b.load(u32_at(b, in_len, k), typ=i32), i64)
    src = b.add(in_buf, b.zext(b.load(u32_at(b, in_off, k), typ=i32), i64))
    whole = b.icmp_unsigned("!=", b.or_(dirty, reset_all), c64(0))
    b.cbranch(whole, blk["full"], blk["partial"])
    b.position_at_end(blk["full"])
    b.call(memset, [ptr(b, frame), ir.Constant(i8, 0), fsize, false])
    b.branch(blk["copy"])
    b.position_at_end(blk["partial"])
    b.cbranch(b.icmp_unsigned("<", n, prev), blk["tail"], blk["copy"])
    b.position_at_end(blk["tail"])
    b.call(memset, [ptr(b, b.add(hd, n)), ir.Constant(i8, 0), b.sub(prev, n), false])
    b.branch(blk["copy"])

    # copy: set the frame up and run the program on it
    b.position_at_end(blk["copy"])
    b.call(memcpy, [ptr(b, hd), ptr(b, src), n, false])
    end = b.add(hd, n)
    b.store(hd, x_data)
    b.store(hd, x_meta)
    b.store(end, x_end)
    dput(b, "cur", k)
    tsput(b, "status", c64(0))
    tsput(b, "tail_calls", c64(0))
    cb0 = tsget(b, "callbacks")
    entry = b.inttoptr(main, FNTY.as_pointer())
    res = b.call(entry, [ts, pt, xdp, c64(0), c64(0), c64(0), c64(0), fp, c64(0)])
    st = tsget(b, "status")
    aborted = b.icmp_unsigned("==", st, c64(int(abi.Status.ABORT)))
    ok = b.or_(b.icmp_unsigned("==", st, c64(0)), aborted)
    b.cbranch(ok, blk["ran"], blk["fail"])

    # ran: record the verdict and data_meta..data_end
    b.position_at_end(blk["ran"])
    tsput(b, "status", c64(0))
    r0 = b.select(aborted, c64(0), b.extract_value(res, 0))   # LD_ABS abort: r0 = 0
    b.store(b.trunc(r0, i32), u32_at(b, rets, k))
    meta = b.load(x_meta, typ=i64)
    last = b.load(x_end, typ=i64)
    olen = b.select(b.icmp_unsigned(">", last, meta), b.sub(last, meta), c64(0))
    olen = b.select(b.icmp_unsigned(">", olen, fsize), fsize, olen)
    b.call(memcpy, [ptr(b, b.add(out_buf, pos)), ptr(b, meta), olen, false])
    b.store(b.trunc(pos, i32), u32_at(b, out_off, k))
    b.store(b.trunc(olen, i32), u32_at(b, out_len, k))
    called = b.zext(b.icmp_unsigned("!=", tsget(b, "callbacks"), cb0), i64)
    for phi, v in ((k, b.add(k, c64(1))), (pos, b.add(pos, olen)), (dirty, called),
                   (prev, n), (insns, b.add(insns, b.extract_value(res, 1)))):
        phi.add_incoming(v, blk["ran"])
    b.branch(blk["head"])

    # fail: leave the status for Python (JitBinding._failed raises what run() raises)
    b.position_at_end(blk["fail"])
    dput(b, "failed", st)
    dput(b, "next", k)
    dput(b, "out_pos", pos)
    dput(b, "dirty", c64(1))
    dput(b, "prev_len", n)
    dput(b, "insns", insns)
    b.ret_void()

    b.position_at_end(blk["exit"])
    dput(b, "failed", c64(0))
    dput(b, "next", k)
    dput(b, "out_pos", pos)
    dput(b, "dirty", dirty)
    dput(b, "prev_len", prev)
    dput(b, "insns", insns)
    b.ret_void()
    return mod


DRIVER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, u64, ctypes.c_void_p)
_driver: tuple | None = None
_lock = threading.Lock()


def driver():
    """The compiled driver (compiled once per process; ctypes releases the GIL around it)."""
    global _driver
    with _lock:
        if _driver is None:
            lib = Codegen.get().compile(generate())
            _driver = (lib, DRIVER(lib.address(SYMBOL)))
        return _driver[1]


def _addr(buf) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buf)) if len(buf) else 0


class FrameBatch:
    """Runs lists of frames through one JIT binding on one ``XdpBuff``.

    ``run`` hands each stretch of results (return values, output offsets and
    lengths into one buffer) to a callback as soon as the driver returns; a
    run that fails raises the exception the per-packet test run raises, after
    the packets before it were handed over.  Input and output stay in place
    between calls; the only per-call Python work is a few array set-ups.
    """

    def __init__(self, binding, xdp, *, out_capacity: int = 1 << 22):
        self.binding = binding
        self.xdp = xdp
        self.fn = driver()
        d = self.d = XdpBatch()
        d.frame, d.frame_size = xdp.frame.start, xdp.frame.size
        d.headroom = xdp.data - xdp.frame.start
        d.xdp = xdp.addr
        d.reset_all = 1 if binding.image.checked else 0
        d.dirty = 1                       # the frame's history is unknown: clear it first
        self.out = bytearray(max(out_capacity, 2 * xdp.frame.size))
        self.main = binding.image.main_addr
        self.ns = 0                       # thread CPU time spent in the driver so far

    @property
    def cur(self) -> int:
        """The packet (index within the current chunk) the driver is running."""
        return self.d.cur

    def run(self, payloads: list[bytes], lens: list[int], on_chunk) -> None:
        """Run every payload (``lens``: their lengths); ``on_chunk(start, stop, retvals,
        out_off, out_len, out)`` gets each stretch whose outputs are in the buffer.
        A failed run raises after ``on_chunk`` has seen the packets before it."""
        lens = array("I", lens)
        offs = array("I", accumulate(lens[:-1], initial=0))
        inbuf = b"".join(payloads)        # read in place (the driver never writes it)
        addr = ctypes.cast(ctypes.c_char_p(inbuf), ctypes.c_void_p).value or 0
        self.run_raw(addr, offs.buffer_info()[0], lens.buffer_info()[0], len(payloads), on_chunk)

    def run_raw(self, in_addr: int, offs_addr: int, lens_addr: int, count: int,
                on_chunk) -> None:
        """``run`` on packets already in memory: packet k is the ``lens[k]`` bytes at
        ``in_addr + offs[k]`` (u32 arrays at ``offs_addr``, ``lens_addr``), which must stay
        alive and unchanged for the call (a memory-mapped capture)."""
        d, st, b = self.d, self.binding.state, self.binding
        zeros = bytes(4 * count)
        rets, ooff, olen = array("I", zeros), array("I", zeros), array("I", zeros)
        d.in_buf = in_addr
        d.in_off, d.in_len = offs_addr, lens_addr
        d.retval, d.out_off, d.out_len = (a.buffer_info()[0] for a in (rets, ooff, olen))
        d.out_buf, d.out_cap = _addr(self.out), len(self.out)
        d.count, d.next = count, 0
        d.insns = 0
        while d.next < count:
            start = d.next
            d.out_pos = 0
            b._enter()
            try:
                t0 = time.thread_time_ns()
                self.fn(st.ts_addr, b.pt_addr, self.main, ctypes.addressof(d))
                self.ns += time.thread_time_ns() - t0
            finally:
                b._leave()
            stop = d.next
            if stop > start:
                on_chunk(start, stop, rets, ooff, olen, self.out)
            if d.failed:
                st.ts.status = d.failed
                b._failed()               # raises the run's exception (an abort never gets here)
                raise AssertionError("a failed batch run did not raise")   # pragma: no cover
