"""Helpers implemented in IR, emitted inline at the call site.

Each emitter produces exactly what the registry's Python implementation
returns for the same machine, so the engines stay interchangeable:

* time: the host clocks through ``clock_gettime`` -- but only while the
  machine's clock is the host clock (``ThreadState.native_clock``); a test's
  virtual clock is still called back in Python;
* ``bpf_get_prandom_u32``: CPython's Mersenne Twister (``getrandbits(32)``)
  on a copy of the machine's ``random`` state, synchronised around runs;
* CPU and NUMA identity from the thread state.
"""
from __future__ import annotations

import ctypes
import time

import llvmlite.binding as llvm
from llvmlite import ir

from ...uapi import FuncId
from . import abi
from .irgen import PTR, ModuleGen, c64, i32, i64, native_helper

_CLOCKS = {
    FuncId.ktime_get_ns: time.CLOCK_MONOTONIC,
    FuncId.ktime_get_boot_ns: getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC),
    FuncId.ktime_get_coarse_ns: getattr(time, "CLOCK_MONOTONIC_COARSE", time.CLOCK_MONOTONIC),
    FuncId.ktime_get_tai_ns: getattr(time, "CLOCK_TAI", time.CLOCK_REALTIME),
}


def _register_libc() -> None:
    """Make libc's clock_gettime resolvable by name inside JIT-compiled code."""
    libc = ctypes.CDLL(None)
    llvm.add_symbol("clock_gettime", ctypes.cast(libc.clock_gettime, ctypes.c_void_p).value)


_register_libc()


def _clock(fid: FuncId, clock_id: int):
    def emit(g: ModuleGen, insn) -> ir.Value:
        b = g.b
        gettime = g.intrinsic("clock_gettime", ir.FunctionType(i32, [i32, PTR]))
        native = b.icmp_unsigned("!=", g.ts_load(b, "native_clock"), c64(0))
        with b.if_else(native, likely=True) as (then, other):
            with then:
                tsp = g.entry_alloca(ir.ArrayType(i64, 2), "timespec")
                b.call(gettime, [ir.Constant(i32, clock_id), tsp])
                sec = b.load(b.gep(tsp, [c64(0), ir.Constant(i32, 0)]), typ=i64)
                nsec = b.load(b.gep(tsp, [c64(0), ir.Constant(i32, 1)]), typ=i64)
                fast = b.add(b.mul(sec, c64(1_000_000_000)), nsec)
                fast_bb = b.block
            with other:
                slow = g.callback(g.layout.slot("helper", int(fid)), insn.pc, None, g.args15())
                slow_bb = b.block
        phi = b.phi(i64)
        phi.add_incoming(fast, fast_bb)
        phi.add_incoming(slow, slow_bb)
        return phi
    return emit


for _fid, _cid in _CLOCKS.items():
    native_helper(_fid)(_clock(_fid, _cid))


@native_helper(FuncId.get_smp_processor_id)
def _cpu(g: ModuleGen, insn) -> ir.Value:
    return g.ts_load(g.b, "cpu")


@native_helper(FuncId.get_numa_node_id)
def _numa(g: ModuleGen, insn) -> ir.Value:
    return g.ts_load(g.b, "numa_node")


# -- bpf_get_prandom_u32: MT19937 as CPython implements it ---------------------------------

_N, _M = abi.MT_N, 397
_MATRIX_A, _UPPER, _LOWER = 0x9908B0DF, 0x80000000, 0x7FFFFFFF


def _mt_next(g: ModuleGen) -> ir.Function:
    """``i32 ebee_mt_next(ptr ts)``: CPython's genrand_uint32 on ts->mt."""
    fn = g.module.globals.get("ebee_mt_next")
    if fn is not None:
        return fn
    fn = ir.Function(g.module, ir.FunctionType(i32, [PTR]), "ebee_mt_next")
    fn.linkage = "internal"
    ts = fn.args[0]
    entry, twist, body, done, out = (fn.append_basic_block(n) for n in
                                     ("entry", "twist", "body", "done", "out"))
    b = ir.IRBuilder(entry)
    mt = g.ts_ptr(b, "mt", ts)
    pos = g.ts_load(b, "mt_pos", ts)

    def word(idx):
        return b.gep(mt, [b.mul(idx, c64(4))], source_etype=ir.IntType(8))

    b.cbranch(b.icmp_unsigned(">=", pos, c64(_N)), twist, out)
    b.position_at_end(twist)
    b.branch(body)
    b.position_at_end(body)
    kk = b.phi(i64)
    kk.add_incoming(c64(0), twist)
    nxt = b.urem(b.add(kk, c64(1)), c64(_N))
    far = b.urem(b.add(kk, c64(_M)), c64(_N))
    y = b.or_(b.and_(b.load(word(kk), typ=i32), ir.Constant(i32, _UPPER)),
              b.and_(b.load(word(nxt), typ=i32), ir.Constant(i32, _LOWER)))
    mag = b.select(b.trunc(y, ir.IntType(1)), ir.Constant(i32, _MATRIX_A), ir.Constant(i32, 0))
    v = b.xor(b.xor(b.load(word(far), typ=i32), b.lshr(y, ir.Constant(i32, 1))), mag)
    b.store(v, word(kk))
    k1 = b.add(kk, c64(1))
    kk.add_incoming(k1, body)
    b.cbranch(b.icmp_unsigned("<", k1, c64(_N)), body, done)
    b.position_at_end(done)
    b.branch(out)
    b.position_at_end(out)
    p = b.phi(i64)
    p.add_incoming(pos, entry)
    p.add_incoming(c64(0), done)
    y = b.load(word(p), typ=i32)
    g.ts_store(b, "mt_pos", b.add(p, c64(1)), ts)
    g.ts_store(b, "mt_calls", b.add(g.ts_load(b, "mt_calls", ts), c64(1)), ts)
    y = b.xor(y, b.lshr(y, ir.Constant(i32, 11)))
    y = b.xor(y, b.and_(b.shl(y, ir.Constant(i32, 7)), ir.Constant(i32, 0x9D2C5680)))
    y = b.xor(y, b.and_(b.shl(y, ir.Constant(i32, 15)), ir.Constant(i32, 0xEFC60000)))
    y = b.xor(y, b.lshr(y, ir.Constant(i32, 18)))
    b.ret(y)
    return fn


@native_helper(FuncId.get_prandom_u32)
def _prandom(g: ModuleGen, insn) -> ir.Value:
    return g.b.zext(g.b.call(_mt_next(g), [g.ts]), i64)
