"""The native ABI shared by generated code and the Python runtime.

One place defines the layout both sides agree on: the per-CPU thread state
(``ThreadState``, a ctypes structure whose field offsets the IR generator
reads, so the two can never drift apart), the per-binding program table, the
status codes native code leaves behind, and the callback signature Python
helpers are called through.

Native functions of a program all have one signature::

    {i64 r0, i64 n} f(ptr ts, ptr pt, i64 r1, i64 r2, i64 r3, i64 r4, i64 r5, i64 fp, i64 n)

``ts`` is the thread state of the virtual CPU running the program, ``pt``
the program table of this (program, machine) binding, ``fp`` the frame
pointer (r10) of the frame being entered and ``n`` the instructions executed
so far.  Native code never raises: a fault stores a status and its details
in ``ts`` and every frame returns at once ("bails"); Python turns the status
into the same exception the interpreter raises.
"""
from __future__ import annotations

import ctypes
import enum

u64 = ctypes.c_uint64

MT_N = 624    # words of MT19937 state (CPython's random.Random)


class Status(enum.IntEnum):
    """What ``ThreadState.status`` says after a native run."""
    OK = 0
    MEM = 1          # memory fault: fault_pc, fault_addr, fault_size, fault_write
    STATIC = 2       # a fault found at translation time: fault_arg indexes Layout.messages
    BUDGET = 3       # instruction budget exceeded at fault_pc after fault_arg instructions
    DEPTH = 4        # too many nested bpf-to-bpf calls at fault_pc
    PYEXC = 5        # a Python callback raised; the runtime holds the exception
    ABORT = 6        # LD_ABS/LD_IND out of bounds: the program ends with r0 = 0


class ThreadState(ctypes.Structure):
    """Everything one virtual CPU's native code reads or writes outside the program."""
    _fields_ = [
        ("status", u64),
        ("fault_pc", u64),
        ("fault_addr", u64),
        ("fault_size", u64),
        ("fault_write", u64),
        ("fault_arg", u64),
        ("fault_pt", u64),       # program table of the faulting program (tail calls)
        ("n", u64),              # instructions executed by the last run
        ("stack_lo", u64),       # the machine's stack region [stack_lo, stack_hi)
        ("stack_hi", u64),
        ("limit", u64),          # instruction budget (checked code only)
        ("tail_calls", u64),
        ("cpu", u64),
        ("numa_node", u64),
        ("regions", u64),        # address of a RegionEntry array sorted by start
        ("nregions", u64),
        ("tc_fn", u64),          # tail-call lookup result: native entry and program table
        ("tc_pt", u64),
        ("native_clock", u64),   # 1: ktime helpers may read the host clock directly
        ("mt_pos", u64),         # MT19937 index (CPython's ``mti``)
        ("mt_calls", u64),       # prandom draws since the state was last synced
        ("mt", ctypes.c_uint32 * MT_N),
        # calls through the program table (Python callbacks) since the thread state was
        # made: a batch driver knows a run reached Python (helpers may have moved packet
        # pointers or written outside the packet) when this changes
        ("callbacks", u64),
    ]


class RegionEntry(ctypes.Structure):
    """One live region, as checked code searches them."""
    _fields_ = [("start", u64), ("end", u64), ("writable", u64)]


def offset(name: str) -> int:
    """Byte offset of a ThreadState field (what the IR generator indexes with)."""
    return getattr(ThreadState, name).offset


# Python callbacks: (pc, x, r1, r2, r3, r4, r5) -> r0.  ``x`` carries an extra
# operand for the callbacks that need one (callx target, LD_IND base, tail-call
# map); helpers ignore it.
CALLBACK = ctypes.CFUNCTYPE(u64, u64, u64, u64, u64, u64, u64, u64)

# The exported entry points of every compiled program.
RUN = ctypes.CFUNCTYPE(u64, ctypes.c_void_p, ctypes.c_void_p, u64, u64, u64, u64, u64)
BATCH = ctypes.CFUNCTYPE(u64, ctypes.c_void_p, ctypes.c_void_p, u64, u64, u64, u64, u64, u64)

RUN_SYMBOL = "ebee_run"        # i64 (ts, pt, r1..r5): one run from frame 0
BATCH_SYMBOL = "ebee_batch"    # i64 (ts, pt, r1..r5, repeat): repeat runs, no Python between them
CALLFN_SYMBOL = "ebee_callfn"  # i64 (ts, pt, entry_pc, r1..r5, fp): one function, as a callback
CALLFN = ctypes.CFUNCTYPE(u64, ctypes.c_void_p, ctypes.c_void_p, u64, u64, u64, u64, u64, u64, u64)
MAIN_SYMBOL = "ebee_main"      # the entry function itself, for tail calls from other programs

# Program table slot 0 holds the address of the program's code image (what
# function pointers from ``lddw src=4`` point into); the IR generator assigns
# the slots after it (see irgen.Layout).
PT_CODE_ADDR = 0
