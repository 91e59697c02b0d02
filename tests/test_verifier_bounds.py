"""Soundness of the verifier's scalar domain: tnums and Bounds against concrete values.

For random finite sets of 64-bit values, the abstract value built from them
must, after any operation, contain every concrete result (soundness); a branch
decision must agree with every pair of values; refinement on a branch edge
must keep every pair of values that takes the edge.
"""
from __future__ import annotations

import operator

from hypothesis import given, settings, strategies as st

from ebee.verifier.bounds import (UNBOUNDED, Bounds, is_scalar_branch_taken, refine_cond_op,
                                  s32, s64)
from ebee.verifier.tnum import U32, U64, Tnum, const, trange

INTERESTING = [0, 1, 2, 3, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, 0x100000000, (1 << 63) - 1, 1 << 63, U64 - 1, U64]
value = st.one_of(st.sampled_from(INTERESTING), st.integers(0, U64),
                  st.integers(0, 300), st.integers(U64 - 300, U64))
values = st.lists(value, min_size=1, max_size=5)


def abstract(vals: list[int]) -> Bounds:
    """The tightest Bounds holding every value (then synced, as the verifier does)."""
    t = const(vals[0])
    for v in vals[1:]:
        t = t.union(const(v))
    b = UNBOUNDED.copy()
    b.var_off = t
    b.umin_value, b.umax_value = min(vals), max(vals)
    sv = [s64(v) for v in vals]
    b.smin_value, b.smax_value = min(sv), max(sv)
    u = [v & U32 for v in vals]
    b.u32_min_value, b.u32_max_value = min(u), max(u)
    s = [s32(v) for v in vals]
    b.s32_min_value, b.s32_max_value = min(s), max(s)
    return b.sync()


def contains(b: Bounds, v: int) -> bool:
    v &= U64
    t = b.var_off
    return ((v & ~t.mask) == t.value and b.umin_value <= v <= b.umax_value
            and b.smin_value <= s64(v) <= b.smax_value
            and b.u32_min_value <= (v & U32) <= b.u32_max_value
            and b.s32_min_value <= s32(v) <= b.s32_max_value)


def _shift_ok(op, b):
    return op not in ("lsh", "rsh", "arsh")


CONCRETE = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul,
    "and": operator.and_, "or": operator.or_, "xor": operator.xor,
}


def concrete(op: str, a: int, b: int, alu32: bool) -> int:
    if alu32:
        a, b = a & U32, b & U32
    bits = 32 if alu32 else 64
    mask = (1 << bits) - 1
    if op in CONCRETE:
        r = CONCRETE[op](a, b)
    elif op == "lsh":
        r = a << b
    elif op == "rsh":
        r = a >> b
    elif op == "arsh":
        sa = a - (1 << bits) if a >> (bits - 1) else a
        r = sa >> b
    elif op == "neg":
        r = -a
    else:
        raise AssertionError(op)
    return r & mask


@settings(max_examples=300, deadline=None)
@given(values, values, st.sampled_from(list(CONCRETE) + ["neg"]), st.booleans())
def test_alu_is_sound(xs, ys, op, alu32):
    a, b = abstract(xs), abstract(ys)
    r = a.alu(op, a if op == "neg" else b, alu32)
    for x in xs:
        for y in ([x] if op == "neg" else ys):
            assert contains(r, concrete(op, x, y, alu32)), (op, alu32, x, y, r)
    assert r.invariant_violation() is None


@settings(max_examples=200, deadline=None)
@given(values, st.sampled_from(["lsh", "rsh", "arsh"]), st.booleans(), st.data())
def test_shifts_by_constants_are_sound(xs, op, alu32, data):
    n = data.draw(st.integers(0, 31 if alu32 else 63))
    a = abstract(xs)
    r = a.alu(op, Bounds.const(n), alu32)
    for x in xs:
        assert contains(r, concrete(op, x, n, alu32)), (op, alu32, x, n, r)


@settings(max_examples=200, deadline=None)
@given(values, st.sampled_from([1, 2, 4]))
def test_truncation_and_sign_extension_are_sound(xs, size):
    a = abstract(xs)
    nb = size * 8
    for x in xs:
        low = x & ((1 << nb) - 1)
        assert contains(a.truncate(size), low)
        sx = (low - (1 << nb) if low >> (nb - 1) else low) & U64
        assert contains(a.sign_extend(size), sx)
        if size < 4:
            assert contains(a.sign_extend32(size), sx & U32)


@settings(max_examples=200, deadline=None)
@given(values, st.sampled_from([16, 32, 64]), st.booleans())
def test_byte_swaps_are_sound(xs, bits, swap):
    a = abstract(xs)
    r = a.byte_swap(bits, swap)
    n = bits // 8
    for x in xs:
        low = x & ((1 << bits) - 1)
        want = int.from_bytes(low.to_bytes(n, "little"), "big") if swap else low
        assert contains(r, want)


JMPS = {"jeq": lambda a, b: a == b, "jne": lambda a, b: a != b, "jgt": operator.gt,
        "jge": operator.ge, "jlt": operator.lt, "jle": operator.le,
        "jsgt": lambda a, b: s64(a) > s64(b), "jsge": lambda a, b: s64(a) >= s64(b),
        "jslt": lambda a, b: s64(a) < s64(b), "jsle": lambda a, b: s64(a) <= s64(b),
        "jset": lambda a, b: bool(a & b)}


def holds(op: str, a: int, b: int, is32: bool) -> bool:
    """The comparison on concrete values (jmp32 compares the low halves)."""
    if is32:
        a, b = a & U32, b & U32
        if op in ("jsgt", "jsge", "jslt", "jsle"):
            a, b = s32(a) & U64, s32(b) & U64     # sign-extend so s64() sees the s32 value
    return JMPS[op](a, b)


@settings(max_examples=400, deadline=None)
@given(values, values, st.sampled_from(sorted(JMPS)), st.booleans())
def test_branch_decisions_and_refinements_are_sound(xs, ys, op, is32):
    a, b = abstract(xs), abstract(ys)
    taken = is_scalar_branch_taken(a, b, op, is32)
    outcomes = {holds(op, x, y, is32) for x in xs for y in ys}
    if taken == 1:
        assert outcomes == {True}
    elif taken == 0:
        assert outcomes == {False}
    if taken != -1:
        return
    t1, t2 = refine_cond_op(a, b, op, is32)
    neg = {"jeq": "jne", "jne": "jeq", "jset": "jset_neg", "jgt": "jle", "jle": "jgt",
           "jge": "jlt", "jlt": "jge", "jsgt": "jsle", "jsle": "jsgt", "jsge": "jslt",
           "jslt": "jsge"}[op]
    f1, f2 = refine_cond_op(a, b, neg, is32)
    for x in xs:
        for y in ys:
            if holds(op, x, y, is32):
                assert contains(t1, x) and contains(t2, y), (op, x, y, t1, t2)
            else:
                assert contains(f1, x) and contains(f2, y), (neg, x, y, f1, f2)


@settings(max_examples=300, deadline=None)
@given(values)
def test_fused_sync_matches_the_reference_steps(xs):
    b = abstract(xs).copy()
    b.umax_value = min(U64, b.umax_value + 5)
    ref = b.copy()
    b._sync()
    ref._sync_reference()
    assert b == ref


@settings(max_examples=300, deadline=None)
@given(st.integers(0, U64), st.lists(st.integers(0, 1 << 40), min_size=8, max_size=8))
def test_fused_sync_of_a_constant_matches_the_reference_steps(c, d):
    # a constant tnum with ranges that hold it (_sync's shortcut)
    b = Bounds.const(c)
    b.smin_value = max(-(1 << 63), b.smin_value - d[0])
    b.smax_value = min((1 << 63) - 1, b.smax_value + d[1])
    b.umin_value = max(0, b.umin_value - d[2])
    b.umax_value = min(U64, b.umax_value + d[3])
    b.s32_min_value = max(-(1 << 31), b.s32_min_value - d[4])
    b.s32_max_value = min((1 << 31) - 1, b.s32_max_value + d[5])
    b.u32_min_value = max(0, b.u32_min_value - d[6])
    b.u32_max_value = min(U32, b.u32_max_value + d[7])
    ref = b.copy()
    b._sync()
    ref._sync_reference()
    assert b == ref


@given(st.integers(0, U64), st.integers(0, U64))
def test_tnum_range_contains_the_range(lo, hi):
    lo, hi = min(lo, hi), max(lo, hi)
    t = trange(lo, hi)
    for v in (lo, hi, (lo + hi) // 2):
        assert t.contains(Tnum(v, 0))


def test_kernel_print_forms():
    from ebee.verifier.log import format_reg
    from ebee.verifier.state import RegState
    from ebee.verifier.types import PTR_TO_PACKET, PTR_TO_STACK, SCALAR_VALUE
    r = RegState(SCALAR_VALUE, 0, Bounds.const(0).alu("or", abstract([0, 255]), False))
    assert format_reg(r, 0) == "scalar(smin=smin32=0,smax=umax=smax32=umax32=255," \
                               "var_off=(0x0; 0xff))"
    r = RegState(PTR_TO_STACK, -8, Bounds.const(0))
    assert format_reg(r, 0) == "fp-8"
    p = RegState(PTR_TO_PACKET, 14, Bounds.const(0))
    p.range = -2
    assert format_reg(p, 0) == "pkt(off=14,r=0xfffffffffffffffe)"
    assert format_reg(RegState(SCALAR_VALUE, 0, Bounds.const(-5)), 0) == "-5"
    assert format_reg(RegState(SCALAR_VALUE, 0, Bounds.const(0x12345)), 0) == "0x12345"


@settings(max_examples=400, deadline=None)
@given(st.integers(0, U32), st.integers(0, U32), st.integers(0, U32), st.integers(0, 1 << 32),
       st.integers(0, 1 << 32))
def test_sync_keeps_values_when_s32_range_crosses_zero(v, du_lo, du_hi, ds_lo, ds_hi):
    """A signed 32-bit range across zero and an unsigned one in one half of the
    domain tighten each other (__reg32_deduce_bounds); no value in both is lost."""
    b = UNBOUNDED.copy()
    b.var_off = trange(0, U32)
    b.umin_value, b.umax_value, b.smin_value, b.smax_value = 0, U32, 0, U32
    b.u32_min_value, b.u32_max_value = max(0, v - du_lo), min(U32, v + du_hi)
    sv = s32(v)
    b.s32_min_value = max(-(1 << 31), sv - ds_lo)
    b.s32_max_value = min((1 << 31) - 1, sv + ds_hi)
    assert contains(b.sync(), v)
