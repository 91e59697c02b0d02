"""Capture files scanned and written natively: no Python object per packet.

``ebee run --pcap`` spent most of its time building a ``Frame`` per record
(struct unpacking, a bytes copy, a dataclass) before the native XDP driver
ran the program in a few dozen nanoseconds.  The two routines here work on a
memory-mapped capture directly:

* ``ebee_capture_scan`` walks pcap records or pcapng blocks from a byte
  position and fills arrays of (data offset, captured length, timestamp in
  ns) for up to ``limit`` packets -- the layout the XDP driver reads.  It
  accepts only records the Python reader (:func:`ebee.packet.pcap.read`)
  would return unchanged; anything else (truncation, a bad length, pcapng
  options it would have to interpret, a new section) stops the scan *at*
  that record so that the Python reader, resumed there, yields or raises
  exactly what it always did.
* ``ebee_capture_write`` appends pcap records or pcapng enhanced packet
  blocks (byte for byte what :class:`ebee.packet.pcap.Writer` writes) for a
  run of packets whose bytes sit in the batch driver's output buffer, so the
  output capture is written with one ``write`` per chunk.

Both are compiled once per process through the JIT's :class:`Codegen`.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct
import sys
import threading
from array import array
from itertools import accumulate

from llvmlite import ir

from ...packet.pcap import Frame, layout, read_from
from .codegen import Codegen
from .irgen import PTR, c64, i8, i64

i1 = ir.IntType(1)
i16 = ir.IntType(16)
i32 = ir.IntType(32)
u64 = ctypes.c_uint64
SCAN = "ebee_capture_scan"
WRITE = "ebee_capture_write"

PCAPNG_BT_SHB = 0x0A0D0D0A
PCAPNG_BT_PB = 2
PCAPNG_BT_EPB = 6
PCAPNG_OPT_COMMENT = 1

# why a scan stopped
STOP_END = 0        # the end of the file: every record was taken
STOP_LIMIT = 1      # ``limit`` packets taken; more may follow
STOP_PYTHON = 2     # the record at ``pos`` needs the Python reader (it may be an error)

# why a write stopped
WRITE_DONE = 0
WRITE_FULL = 1      # the output buffer has no room for packet ``next``
WRITE_BAD_TS = 2    # packet ``next``'s timestamp does not fit the format


class ScanState(ctypes.Structure):
    _fields_ = [
        ("buf", u64), ("size", u64),
        ("pos", u64),            # in/out: the next record or block
        ("base", u64),           # offsets are written relative to this byte of the file
        ("pcapng", u64), ("swap", u64),
        ("caplen_max", u64),     # pcap: larger records are errors
        ("mult", u64),           # ns per timestamp unit (pcap: per fraction unit; pcapng:
                                 # 0 = store raw units, the caller converts)
        ("limit", u64),
        ("off", u64), ("len", u64), ("ts", u64),     # out arrays: u32, u32, u64
        ("count", u64), ("stop", u64),
        ("min_len", u64), ("max_len", u64),
        ("end_off", u64),        # out: the offset (from base) after the last data taken
    ]


class WriteState(ctypes.Structure):
    _fields_ = [
        ("pcapng", u64), ("nano", u64),
        ("next", u64), ("count", u64),       # in/out: packets next..count-1
        ("marks", u64),          # u32 per packet: 0 not written, 1 no comment, m: comment m-2
        ("ts", u64),             # u64 ns per packet
        ("src", u64), ("src_off", u64), ("src_len", u64),   # the packets' bytes (u32 arrays)
        ("dst", u64), ("cap", u64), ("pos", u64),           # in/out: bytes used of dst
        ("cm_buf", u64), ("cm_off", u64), ("cm_len", u64),  # comments (u32 arrays)
        ("ts_limit", u64),
        ("written", u64), ("stop", u64),
    ]


def _fields(st):
    return {name: getattr(st, name).offset for name, _ in st._fields_}


def _intrinsic(mod: ir.Module, name: str, fnty: ir.FunctionType) -> ir.Function:
    try:
        return mod.get_global(name)
    except KeyError:
        return ir.Function(mod, fnty, name)


class _Fn:
    """Small helpers over one IR function whose last argument is a state struct."""

    def __init__(self, mod: ir.Module, name: str, state):
        self.fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [PTR]), name)
        self.fn.attributes.add("nounwind")
        self.d = self.fn.args[0]
        self.offs = _fields(state)
        self.memcpy = _intrinsic(mod, "llvm.memcpy.p0.p0.i64",
                                 ir.FunctionType(ir.VoidType(), [PTR, PTR, i64, i1]))
        self.memset = _intrinsic(mod, "llvm.memset.p0.i64",
                                 ir.FunctionType(ir.VoidType(), [PTR, i8, i64, i1]))
        self.bswap32 = _intrinsic(mod, "llvm.bswap.i32", ir.FunctionType(i32, [i32]))
        self.bswap16 = _intrinsic(mod, "llvm.bswap.i16", ir.FunctionType(i16, [i16]))
        self.blocks: dict[str, ir.Block] = {}

    def block(self, name: str) -> ir.Block:
        if name not in self.blocks:
            self.blocks[name] = self.fn.append_basic_block(name)
        return self.blocks[name]

    def get(self, b, name):
        return b.load(b.gep(self.d, [c64(self.offs[name])], source_etype=i8), typ=i64)

    def put(self, b, name, v):
        b.store(v, b.gep(self.d, [c64(self.offs[name])], source_etype=i8))

    @staticmethod
    def ptr(b, addr):
        return b.inttoptr(addr, PTR)

    def load(self, b, addr, typ):
        v = b.load(self.ptr(b, addr), typ=typ)
        v.align = 1
        return v

    def store(self, b, v, addr):
        s = b.store(v, self.ptr(b, addr))
        s.align = 1

    def elem(self, b, arr, k, typ):
        return b.gep(self.ptr(b, arr), [k], source_etype=typ)


def _scan(mod: ir.Module) -> None:
    f = _Fn(mod, SCAN, ScanState)
    b = ir.IRBuilder(f.block("entry"))
    buf, size, base = f.get(b, "buf"), f.get(b, "size"), f.get(b, "base")
    ng = b.icmp_unsigned("!=", f.get(b, "pcapng"), c64(0))
    swap = b.icmp_unsigned("!=", f.get(b, "swap"), c64(0))
    capmax, mult, limit = f.get(b, "caplen_max"), f.get(b, "mult"), f.get(b, "limit")
    offs, lens, tss = f.get(b, "off"), f.get(b, "len"), f.get(b, "ts")
    pos0 = f.get(b, "pos")
    entry = b.block
    b.branch(f.block("head"))

    b.position_at_end(f.block("head"))
    k = b.phi(i64, "k")
    pos = b.phi(i64, "pos")
    mn = b.phi(i64, "mn")
    mx = b.phi(i64, "mx")
    end = b.phi(i64, "end")
    for phi, v in ((k, c64(0)), (pos, pos0), (mn, c64(0xFFFFFFFF)), (mx, c64(0)),
                   (end, c64(0))):
        phi.add_incoming(v, entry)

    def u32(addr):
        v = f.load(b, addr, i32)
        return b.zext(b.select(swap, b.call(f.bswap32, [v]), v), i64)

    def u16(addr):
        v = f.load(b, addr, i16)
        return b.zext(b.select(swap, b.call(f.bswap16, [v]), v), i64)

    def leave(stop, at_pos):
        for name, v in (("pos", at_pos), ("count", k), ("stop", c64(stop)), ("min_len", mn),
                        ("max_len", mx), ("end_off", end)):
            f.put(b, name, v)
        b.ret_void()

    b.cbranch(b.icmp_unsigned(">=", k, limit), f.block("limit"), f.block("more"))
    b.position_at_end(f.block("limit"))
    leave(STOP_LIMIT, pos)
    b.position_at_end(f.block("more"))
    b.cbranch(b.icmp_unsigned("==", pos, size), f.block("eof"), f.block("kind"))
    b.position_at_end(f.block("eof"))
    leave(STOP_END, pos)
    b.position_at_end(f.block("python"))
    leave(STOP_PYTHON, pos)
    room = None

    def need(cond_bad, ok_name):
        b.cbranch(cond_bad, f.block("python"), f.block(ok_name))
        b.position_at_end(f.block(ok_name))

    b.position_at_end(f.block("kind"))
    room = b.sub(size, pos)
    b.cbranch(ng, f.block("ng"), f.block("pcap"))

    # taking one packet: (data offset in the file, length, ts) -> arrays, and on
    def take(data_at, caplen, ts, next_pos, from_block_name):
        b.store(b.trunc(b.sub(data_at, base), i32), f.elem(b, offs, k, i32))
        b.store(b.trunc(caplen, i32), f.elem(b, lens, k, i32))
        b.store(ts, f.elem(b, tss, k, i64))
        nmn = b.select(b.icmp_unsigned("<", caplen, mn), caplen, mn)
        nmx = b.select(b.icmp_unsigned(">", caplen, mx), caplen, mx)
        nend = b.add(b.sub(data_at, base), caplen)
        for phi, v in ((k, b.add(k, c64(1))), (pos, next_pos), (mn, nmn), (mx, nmx),
                       (end, nend)):
            phi.add_incoming(v, b.block)
        b.branch(f.block("head"))

    # pcap: sec, frac, caplen, wirelen, then caplen bytes
    b.position_at_end(f.block("pcap"))
    need(b.icmp_unsigned("<", room, c64(16)), "pcap_hdr")
    at = b.add(buf, pos)
    sec = u32(at)
    frac = u32(b.add(at, c64(4)))
    caplen = u32(b.add(at, c64(8)))
    need(b.icmp_unsigned(">", caplen, capmax), "pcap_len")
    need(b.icmp_unsigned(">", caplen, b.sub(room, c64(16))), "pcap_data")
    ts = b.add(b.mul(sec, c64(1_000_000_000)), b.mul(frac, mult))
    take(b.add(pos, c64(16)), caplen, ts, b.add(pos, b.add(c64(16), caplen)), "pcap")

    # pcapng: type, length, body, length
    b.position_at_end(f.block("ng"))
    need(b.icmp_unsigned("<", room, c64(8)), "ng_hdr")
    at = b.add(buf, pos)
    btype = u32(at)
    blen = u32(b.add(at, c64(4)))
    bad = b.or_(b.icmp_unsigned("<", blen, c64(12)),
                b.or_(b.icmp_unsigned("!=", b.and_(blen, c64(3)), c64(0)),
                      b.icmp_unsigned(">", blen, room)))
    need(bad, "ng_len")
    need(b.icmp_unsigned("!=", u32(b.add(at, b.sub(blen, c64(4)))), blen), "ng_trailer")
    need(b.icmp_unsigned("==", btype, c64(PCAPNG_BT_SHB)), "ng_type")
    nxt = b.add(pos, blen)
    is_pkt = b.or_(b.icmp_unsigned("==", btype, c64(PCAPNG_BT_EPB)),
                   b.icmp_unsigned("==", btype, c64(PCAPNG_BT_PB)))
    b.cbranch(is_pkt, f.block("ng_pkt"), f.block("ng_skip"))
    b.position_at_end(f.block("ng_skip"))           # other blocks: the reader skips them
    for phi, v in ((k, k), (pos, nxt), (mn, mn), (mx, mx), (end, end)):
        phi.add_incoming(v, b.block)
    b.branch(f.block("head"))

    b.position_at_end(f.block("ng_pkt"))
    need(b.icmp_unsigned("<", blen, c64(32)), "ng_min")
    caplen = u32(b.add(at, c64(20)))
    padded = b.and_(b.add(caplen, c64(3)), c64(~3 & 0xFFFFFFFFFFFF))
    need(b.icmp_unsigned(">", b.add(padded, c64(32)), blen), "ng_fits")
    # options, as dpkt walks them: each must fit; a comment must decode (ASCII is
    # taken here, anything else is left to the reader)
    o0 = b.add(at, b.add(c64(28), padded))
    oend = b.add(at, b.sub(blen, c64(4)))
    here = b.block
    b.branch(f.block("opt"))
    b.position_at_end(f.block("opt"))
    o = b.phi(i64, "o")
    o.add_incoming(o0, here)
    b.cbranch(b.icmp_unsigned("==", o, oend), f.block("opts_ok"), f.block("opt_one"))
    b.position_at_end(f.block("opt_one"))
    need(b.icmp_unsigned("<", b.sub(oend, o), c64(4)), "opt_hdr")
    code = u16(o)
    olen = u16(b.add(o, c64(2)))
    b.cbranch(b.icmp_unsigned("==", code, c64(0)), f.block("opts_ok"), f.block("opt_sz"))
    b.position_at_end(f.block("opt_sz"))
    osz = b.add(c64(4), b.and_(b.add(olen, c64(3)), c64(~3 & 0xFFFFF)))
    need(b.icmp_unsigned(">", osz, b.sub(oend, o)), "opt_fits")
    onext = b.add(o, osz)
    b.cbranch(b.icmp_unsigned("==", code, c64(PCAPNG_OPT_COMMENT)), f.block("cm"),
              f.block("opt_next"))
    b.position_at_end(f.block("cm"))
    cm0 = b.add(o, c64(4))
    cm_end = b.add(cm0, olen)
    here = b.block
    b.branch(f.block("cm_head"))
    b.position_at_end(f.block("cm_head"))
    c = b.phi(i64, "c")
    c.add_incoming(cm0, here)
    b.cbranch(b.icmp_unsigned("==", c, cm_end), f.block("opt_next"), f.block("cm_byte"))
    b.position_at_end(f.block("cm_byte"))
    byte = f.load(b, c, i8)
    need(b.icmp_signed("<", byte, ir.Constant(i8, 0)), "cm_ascii")
    c.add_incoming(b.add(c, c64(1)), b.block)
    b.branch(f.block("cm_head"))
    b.position_at_end(f.block("opt_next"))
    o.add_incoming(onext, b.block)
    b.branch(f.block("opt"))

    b.position_at_end(f.block("opts_ok"))
    units = b.or_(b.shl(u32(b.add(at, c64(12))), c64(32)), u32(b.add(at, c64(16))))
    raw = b.icmp_unsigned("==", mult, c64(0))
    umul = ir.Function(mod, ir.FunctionType(ir.LiteralStructType([i64, i1]), [i64, i64]),
                       "llvm.umul.with.overflow.i64")
    prod = b.call(umul, [units, mult])
    # a timestamp past 2**64 ns: the reader's own arithmetic (unbounded) takes it
    need(b.and_(b.not_(raw), b.extract_value(prod, 1)), "ng_ts")
    ts = b.select(raw, units, b.extract_value(prod, 0))
    take(b.add(pos, c64(28)), caplen, ts, nxt, "ng_take")


def _write(mod: ir.Module) -> None:
    f = _Fn(mod, WRITE, WriteState)
    b = ir.IRBuilder(f.block("entry"))
    ng = b.icmp_unsigned("!=", f.get(b, "pcapng"), c64(0))
    nano = b.icmp_unsigned("!=", f.get(b, "nano"), c64(0))
    count, marks, tss = f.get(b, "count"), f.get(b, "marks"), f.get(b, "ts")
    src, src_off, src_len = f.get(b, "src"), f.get(b, "src_off"), f.get(b, "src_len")
    dst, cap = f.get(b, "dst"), f.get(b, "cap")
    cm_buf, cm_off, cm_len = f.get(b, "cm_buf"), f.get(b, "cm_off"), f.get(b, "cm_len")
    ts_limit = f.get(b, "ts_limit")
    k0, pos0, w0 = f.get(b, "next"), f.get(b, "pos"), f.get(b, "written")
    entry = b.block
    b.branch(f.block("head"))
    b.position_at_end(f.block("head"))
    k = b.phi(i64, "k")
    pos = b.phi(i64, "pos")
    w = b.phi(i64, "w")
    for phi, v in ((k, k0), (pos, pos0), (w, w0)):
        phi.add_incoming(v, entry)

    def leave(stop):
        for name, v in (("next", k), ("pos", pos), ("written", w), ("stop", c64(stop))):
            f.put(b, name, v)
        b.ret_void()

    def loop(nk, npos, nw):
        for phi, v in ((k, nk), (pos, npos), (w, nw)):
            phi.add_incoming(v, b.block)
        b.branch(f.block("head"))

    b.cbranch(b.icmp_unsigned("<", k, count), f.block("one"), f.block("done"))
    b.position_at_end(f.block("done"))
    leave(WRITE_DONE)
    b.position_at_end(f.block("full"))
    leave(WRITE_FULL)
    b.position_at_end(f.block("badts"))
    leave(WRITE_BAD_TS)

    b.position_at_end(f.block("one"))
    m = b.zext(b.load(f.elem(b, marks, k, i32), typ=i32), i64)
    b.cbranch(b.icmp_unsigned("==", m, c64(0)), f.block("skip"), f.block("put"))
    b.position_at_end(f.block("skip"))
    loop(b.add(k, c64(1)), pos, w)

    b.position_at_end(f.block("put"))
    ts = b.load(f.elem(b, tss, k, i64), typ=i64)
    b.cbranch(b.icmp_unsigned(">=", ts, ts_limit), f.block("badts"), f.block("ts_ok"))
    b.position_at_end(f.block("ts_ok"))
    n = b.zext(b.load(f.elem(b, src_len, k, i32), typ=i32), i64)
    data = b.add(src, b.zext(b.load(f.elem(b, src_off, k, i32), typ=i32), i64))
    padded = b.and_(b.add(n, c64(3)), c64(~3 & 0xFFFFFFFFFFFF))
    has_cm = b.icmp_unsigned(">=", m, c64(2))
    ci = b.sub(b.select(has_cm, m, c64(2)), c64(2))
    clen = b.select(has_cm, b.zext(b.load(f.elem(b, cm_len, ci, i32), typ=i32), i64), c64(0))
    coff = b.zext(b.load(f.elem(b, cm_off, ci, i32), typ=i32), i64)
    cpad = b.and_(b.add(clen, c64(3)), c64(~3 & 0xFFFFFFFFFFFF))
    opts = b.select(has_cm, b.add(cpad, c64(8)), c64(0))
    ng_size = b.add(b.add(c64(32), padded), opts)
    size = b.select(ng, ng_size, b.add(c64(16), n))
    b.cbranch(b.icmp_unsigned(">", b.add(pos, size), cap), f.block("full"), f.block("room"))

    b.position_at_end(f.block("room"))
    at = b.add(dst, pos)
    b.cbranch(ng, f.block("epb"), f.block("rec"))

    b.position_at_end(f.block("rec"))
    sec = b.udiv(ts, c64(1_000_000_000))
    ns = b.urem(ts, c64(1_000_000_000))
    frac = b.select(nano, ns, b.udiv(ns, c64(1000)))
    for i, v in enumerate((sec, frac, n, n)):
        f.store(b, b.trunc(v, i32), b.add(at, c64(4 * i)))
    b.call(f.memcpy, [f.ptr(b, b.add(at, c64(16))), f.ptr(b, data), n, ir.Constant(i1, 0)])
    loop(b.add(k, c64(1)), b.add(pos, size), b.add(w, c64(1)))

    b.position_at_end(f.block("epb"))
    words = (c64(PCAPNG_BT_EPB), ng_size, c64(0), b.lshr(ts, c64(32)), ts, n, n)
    for i, v in enumerate(words):
        f.store(b, b.trunc(v, i32), b.add(at, c64(4 * i)))
    b.call(f.memcpy, [f.ptr(b, b.add(at, c64(28))), f.ptr(b, data), n, ir.Constant(i1, 0)])
    b.call(f.memset, [f.ptr(b, b.add(b.add(at, c64(28)), n)), ir.Constant(i8, 0),
                      b.sub(padded, n), ir.Constant(i1, 0)])
    o = b.add(b.add(at, c64(28)), padded)
    b.cbranch(has_cm, f.block("cm"), f.block("trailer"))
    b.position_at_end(f.block("cm"))
    f.store(b, ir.Constant(i16, PCAPNG_OPT_COMMENT), o)
    f.store(b, b.trunc(clen, i16), b.add(o, c64(2)))
    b.call(f.memcpy, [f.ptr(b, b.add(o, c64(4))), f.ptr(b, b.add(cm_buf, coff)), clen,
                      ir.Constant(i1, 0)])
    b.call(f.memset, [f.ptr(b, b.add(b.add(o, c64(4)), clen)), ir.Constant(i8, 0),
                      b.add(b.sub(cpad, clen), c64(4)), ir.Constant(i1, 0)])   # + endofopt
    b.branch(f.block("trailer"))
    b.position_at_end(f.block("trailer"))
    f.store(b, b.trunc(ng_size, i32), b.add(at, b.sub(ng_size, c64(4))))
    loop(b.add(k, c64(1)), b.add(pos, size), b.add(w, c64(1)))


def generate() -> ir.Module:
    mod = ir.Module(name="ebee_capture")
    _scan(mod)
    _write(mod)
    return mod


FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_compiled: tuple | None = None
_lock = threading.Lock()


def routines() -> tuple:
    """(scan, write), compiled once per process (ctypes releases the GIL around them)."""
    global _compiled
    with _lock:
        if _compiled is None:
            lib = Codegen.get().compile(generate())
            _compiled = (lib, FN(lib.address(SCAN)), FN(lib.address(WRITE)))
        return _compiled[1], _compiled[2]




class Chunk:
    """Up to ``limit`` packets of a mapped capture: their bytes stay in the mapping;
    ``off``/``lens`` (u32, relative to ``addr``) and ``ts`` (u64 ns) describe them."""

    __slots__ = ("addr", "index", "count", "off", "lens", "ts", "min_len", "max_len", "nbytes",
                 "mapped")

    def __init__(self, mapped: "MappedCapture", addr: int, index: int, count: int, off, lens, ts,
                 min_len: int, max_len: int, nbytes: int):
        self.mapped, self.addr, self.index, self.count = mapped, addr, index, count
        self.off, self.lens, self.ts = off, lens, ts
        self.min_len, self.max_len, self.nbytes = min_len, max_len, nbytes

    def data(self, k: int) -> bytes:
        """Packet ``k`` of the chunk as bytes (for the packets taking a Python path)."""
        o = self.addr - self.mapped.addr + self.off[k]
        return bytes(self.mapped.view[o:o + self.lens[k]])


class MappedCapture:
    """A capture file memory-mapped and scanned natively, chunk by chunk.

    ``chunks`` yields :class:`Chunk` objects until the file ends or a record
    needs the Python reader; then ``rest`` is that reader resumed at the
    record (it yields the frames the native scan left, or raises the reader's
    own error for a bad one).
    """

    def __init__(self, lay, *, chunk: int = 4096):
        self.layout = lay
        self.chunk = chunk
        self.pos = lay.start
        self.index = 0
        self.stopped = False          # a record needs the Python reader (``rest``)
        self.done = False
        self._file = open(lay.path, "rb")
        size = os.fstat(self._file.fileno()).st_size
        self.size = size
        # ACCESS_COPY: a private writable view (ctypes needs a writable buffer for its
        # address); the file itself is never written
        self._map = mmap.mmap(self._file.fileno(), size, access=mmap.ACCESS_COPY) \
            if size else None
        self._anchor = ctypes.c_char.from_buffer(self._map) if size else None
        self.addr = ctypes.addressof(self._anchor) if size else 0
        self.view = memoryview(self._map) if size else memoryview(b"")
        self.scan, self.write = routines()
        st = self.st = ScanState()
        st.buf, st.size = self.addr, size
        st.pcapng, st.swap = int(lay.pcapng), int(lay.swap)
        st.caplen_max = lay.caplen_max
        if lay.pcapng:
            per_s = lay.per_s
            exact = per_s > 0 and 1_000_000_000 % per_s == 0 and lay.tsoffset == 0
            st.mult = 1_000_000_000 // per_s if exact else 0
            self.raw_ts = not exact
        else:
            st.mult = lay.unit_ns
            self.raw_ts = False

    def ts_ns(self, units: int) -> int:
        """A raw pcapng timestamp (``raw_ts``) in ns, as the reader computes it."""
        per_s = self.layout.per_s
        return self.layout.tsoffset * 1_000_000_000 + (units * 1_000_000_000 * 2 + per_s) \
            // (2 * per_s)

    def chunks(self):
        st = self.st
        while not (self.done or self.stopped):
            n = self.chunk
            off, lens, ts = array("I", bytes(4 * n)), array("I", bytes(4 * n)), \
                array("Q", bytes(8 * n))
            st.pos = self.pos
            # offsets are u32 from the chunk's first record; the chunk stays below 4 GiB
            st.base = self.pos
            st.limit = min(n, max(1, ((1 << 32) - 1) // (self.layout.caplen_max + 64)))
            st.off, st.len, st.ts = (a.buffer_info()[0] for a in (off, lens, ts))
            self.scan(ctypes.addressof(st))
            count = st.count
            chunk = Chunk(self, self.addr + self.pos, self.index, count, off, lens, ts,
                          st.min_len, st.max_len, st.end_off)
            self.pos = st.pos
            self.index += count
            if st.stop == STOP_END:
                self.done = True
            elif st.stop == STOP_PYTHON:
                self.stopped = True
            if count:
                yield chunk

    def frames(self):
        """Every frame as a :class:`~ebee.packet.pcap.Frame` (what :func:`ebee.packet.pcap.read`
        yields), for the paths that run packets one at a time."""
        lt = self.layout.linktype
        wire = struct.Struct((">" if (self.layout.swap == (sys.byteorder == "little")) else "<")
                             + "I")
        for ch in self.chunks():
            base = ch.addr - self.addr
            for k in range(ch.count):
                t = self.ts_ns(ch.ts[k]) if self.raw_ts else ch.ts[k]
                d = ch.data(k)
                orig = len(d) if self.layout.pcapng else \
                    wire.unpack_from(self.view, base + ch.off[k] - 4)[0]
                yield Frame(ch.index + k, t / 1e9, d, orig, lt, t)
        yield from self.rest()

    def count(self) -> int:
        """How many packets the capture holds (PcapError for a bad record), scanned
        natively; the capture is read again from its start afterwards."""
        n = sum(ch.count for ch in self.chunks())
        for _ in self.rest():
            n += 1
        self.pos, self.index, self.stopped, self.done = self.layout.start, 0, False, False
        return n

    def rest(self):
        """The Python reader from the record the scan stopped at (nothing if it did not)."""
        if not self.stopped:
            return iter(())
        return read_from(self.layout, self.pos, self.index)

    def close(self) -> None:
        if self._map is not None:
            self.view.release()
            self._anchor = None
            self._map.close()
            self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "MappedCapture":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BatchWriter:
    """Packets in the batch driver's output buffer appended to a
    :class:`~ebee.packet.pcap.Writer` natively: the bytes ``Writer.write`` would
    write for each, one ``write`` call per buffer-full.  ``marks`` (u32 per
    packet) say which packets are written: 0 not, 1 without a comment, ``m``
    with comment ``m - 2`` of :meth:`comment_id`."""

    def __init__(self, writer, *, capacity: int = 1 << 22):
        if sys.byteorder != "little":
            raise ValueError("native capture writing needs a little-endian host")
        self.writer = writer
        self.fn = routines()[1]
        self.buf = bytearray(capacity)
        self.comments: list[str] = []
        self._ids: dict[str, int] = {}
        # never empty: the routine reads entry 0 for packets without a comment too
        self._cm = (b"", array("I", [0]), array("I", [0]))
        ws = self.ws = WriteState()
        ws.pcapng, ws.nano = int(writer.pcapng), int(writer.nano)
        ws.ts_limit = (1 << 64) - 1 if writer.pcapng else (1 << 32) * 1_000_000_000

    def comment_id(self, text: str) -> int:
        """The mark for a packet written with comment ``text``."""
        m = self._ids.get(text)
        if m is None:
            m = self._ids[text] = len(self.comments) + 2
            self.comments.append(text)
            blobs = [c.encode() for c in self.comments]
            self._cm = (b"".join(blobs), array("I", accumulate(map(len, blobs[:-1]), initial=0)),
                        array("I", map(len, blobs)))
        return m

    def write(self, count: int, marks, ts_addr: int, src, off_addr: int, len_addr: int,
              data_of) -> None:
        """Packets 0..count-1: bytes ``len[k]`` at ``src + off[k]`` (``src`` a buffer),
        timestamps (u64 ns) at ``ts_addr``; ``data_of(k)`` gives a packet's bytes for one
        written by ``Writer.write`` (whose timestamp the native check refused)."""
        ws, w = self.ws, self.writer
        cm, cm_off, cm_len = self._cm
        ws.marks = marks.buffer_info()[0]
        ws.ts, ws.src_off, ws.src_len = ts_addr, off_addr, len_addr
        ws.src = ctypes.addressof(ctypes.c_char.from_buffer(src)) if len(src) else 0
        ws.cm_buf = ctypes.cast(ctypes.c_char_p(cm), ctypes.c_void_p).value or 0
        ws.cm_off, ws.cm_len = cm_off.buffer_info()[0], cm_len.buffer_info()[0]
        ws.next, ws.count = 0, count
        tss = (ctypes.c_uint64 * count).from_address(ts_addr) if count else ()
        while True:
            ws.dst, ws.cap = ctypes.addressof(ctypes.c_char.from_buffer(self.buf)), len(self.buf)
            ws.pos = ws.written = 0
            self.fn(ctypes.addressof(ws))
            if ws.pos:
                w.write_records(memoryview(self.buf)[:ws.pos], ws.written)
            if ws.stop == WRITE_DONE:
                return
            if ws.stop == WRITE_FULL:
                if ws.pos == 0:                 # one packet larger than the buffer
                    self.buf = bytearray(2 * len(self.buf))
                continue
            k = ws.next                         # WRITE_BAD_TS: the writer's own check
            m = marks[k]
            w.write(data_of(k), comment=self.comments[m - 2] if m >= 2 else None,
                    ts_ns=tss[k])
            ws.next = k + 1


def open_capture(path: str, *, chunk: int = 4096) -> MappedCapture:
    """Map ``path`` for native scanning; PcapError for a bad file header."""
    return MappedCapture(layout(path), chunk=chunk)


__all__ = ["BatchWriter", "Chunk", "MappedCapture", "open_capture", "ScanState", "WriteState", "routines", "STOP_END", "STOP_LIMIT", "STOP_PYTHON",
           "WRITE_DONE", "WRITE_FULL", "WRITE_BAD_TS"]
