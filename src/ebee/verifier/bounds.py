"""What the verifier knows about a scalar: a tnum plus signed/unsigned 64- and 32-bit ranges.

:class:`Bounds` is the one value type for the nine facts Linux keeps in
``struct bpf_reg_state`` (``var_off``, ``smin_value``/``smax_value``,
``umin_value``/``umax_value``, ``s32_min_value``/``s32_max_value``,
``u32_min_value``/``u32_max_value``).  A Bounds is immutable once handed out;
every operation returns a new one, so register states can share them freely
(copying a verifier state never copies bounds).

The arithmetic follows kernel/bpf/verifier.c: each ALU operation updates the
32-bit and 64-bit ranges and the tnum independently (``scalar_min_max_*``),
then :meth:`Bounds.sync` (``reg_bounds_sync``) lets each of the five
representations tighten the others.  Conditional jumps refine both operands
(:func:`refine_cond_op`, ``regs_refine_cond_op``) and may be decided outright
(:func:`is_branch_taken`, ``is_scalar_branch_taken``).

Signed values are stored as Python ints in their signed range, unsigned ones
as non-negative ints, so comparisons read like the C source.
"""
from __future__ import annotations

from .tnum import U32, U64, UNKNOWN, Tnum, const, trange

S64_MIN, S64_MAX = -(1 << 63), (1 << 63) - 1
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1


def s64(v: int) -> int:
    v &= U64
    return v - (1 << 64) if v >> 63 else v


def s32(v: int) -> int:
    v &= U32
    return v - (1 << 32) if v >> 31 else v


# Bounds are immutable, so a constant's is shared: the first few thousand values met
# (a process-wide memo, bounded so a program of many distinct constants cannot grow it)
_CONSTS: dict = {}
_CONSTS_MAX = 4096


class Bounds:
    __slots__ = ("var_off", "smin_value", "smax_value", "umin_value", "umax_value",
                 "s32_min_value", "s32_max_value", "u32_min_value", "u32_max_value")

    def __init__(self, var_off: Tnum, smin: int, smax: int, umin: int, umax: int,
                 s32min: int, s32max: int, u32min: int, u32max: int):
        self.var_off = var_off
        self.smin_value = smin
        self.smax_value = smax
        self.umin_value = umin
        self.umax_value = umax
        self.s32_min_value = s32min
        self.s32_max_value = s32max
        self.u32_min_value = u32min
        self.u32_max_value = u32max

    # -- construction -----------------------------------------------------
    @staticmethod
    def const(v: int) -> "Bounds":
        """___mark_reg_known: exactly ``v`` (taken as a 64-bit value)."""
        u = v & U64
        b = _CONSTS.get(u)
        if b is None:
            b = Bounds(Tnum(u, 0), s64(u), s64(u), u, u, s32(u), s32(u), u & U32, u & U32)
            if len(_CONSTS) < _CONSTS_MAX:
                _CONSTS[u] = b
        return b

    @staticmethod
    def unknown() -> "Bounds":
        return UNBOUNDED

    def copy(self) -> "Bounds":
        return Bounds(self.var_off, self.smin_value, self.smax_value, self.umin_value,
                      self.umax_value, self.s32_min_value, self.s32_max_value,
                      self.u32_min_value, self.u32_max_value)

    def key(self) -> tuple:
        return (self.var_off.value, self.var_off.mask, self.smin_value, self.smax_value,
                self.umin_value, self.umax_value, self.s32_min_value, self.s32_max_value,
                self.u32_min_value, self.u32_max_value)

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        if not isinstance(other, Bounds):
            return False
        a, c = self.var_off, other.var_off
        return (a.value == c.value and a.mask == c.mask and self.smin_value == other.smin_value
                and self.smax_value == other.smax_value and self.umin_value == other.umin_value
                and self.umax_value == other.umax_value
                and self.s32_min_value == other.s32_min_value
                and self.s32_max_value == other.s32_max_value
                and self.u32_min_value == other.u32_min_value
                and self.u32_max_value == other.u32_max_value)

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return (f"Bounds(var_off={self.var_off!r}, s=[{self.smin_value}, {self.smax_value}], "
                f"u=[{self.umin_value}, {self.umax_value}], s32=[{self.s32_min_value}, "
                f"{self.s32_max_value}], u32=[{self.u32_min_value}, {self.u32_max_value}])")

    # -- predicates -------------------------------------------------------
    def is_const(self) -> bool:
        return not self.var_off.mask

    def is_const32(self) -> bool:
        return not (self.var_off.mask & U32)

    def const_value(self, is32: bool = False) -> int:
        return self.var_off.value & U32 if is32 else self.var_off.value

    def is_unbounded(self) -> bool:
        return (self.var_off.mask == U64 and self.smin_value == S64_MIN
                and self.smax_value == S64_MAX and self.umin_value == 0
                and self.umax_value == U64 and self.s32_min_value == S32_MIN
                and self.s32_max_value == S32_MAX and self.u32_min_value == 0
                and self.u32_max_value == U32)

    def is_reg_const(self, is32: bool) -> bool:
        return self.is_const32() if is32 else self.is_const()

    def range_within(self, cur: "Bounds") -> bool:
        """Every value of ``cur`` is within this one's ranges (range_within)."""
        return (self.umin_value <= cur.umin_value and cur.umax_value <= self.umax_value
                and self.smin_value <= cur.smin_value and cur.smax_value <= self.smax_value
                and self.u32_min_value <= cur.u32_min_value
                and cur.u32_max_value <= self.u32_max_value
                and self.s32_min_value <= cur.s32_min_value
                and cur.s32_max_value <= self.s32_max_value)

    def width(self) -> int:
        """get_reg_width: number of significant bits of umax."""
        return self.umax_value.bit_length()

    def invariant_violation(self) -> str | None:
        """reg_bounds_sanity_check: the ranges contradict each other."""
        if (self.umin_value > self.umax_value or self.smin_value > self.smax_value
                or self.u32_min_value > self.u32_max_value
                or self.s32_min_value > self.s32_max_value):
            return "range bounds violation"
        if self.var_off.is_const():
            v = self.var_off.value
            sv, v32, sv32 = s64(v), v & U32, s32(v)
            if (self.umin_value != v or self.umax_value != v or self.smin_value != sv
                    or self.smax_value != sv or self.u32_min_value != v32
                    or self.u32_max_value != v32 or self.s32_min_value != sv32
                    or self.s32_max_value != sv32):
                return "const tnum out of sync with range bounds"
        elif self.var_off.subreg_is_const():
            v32 = self.var_off.value & U32
            sv32 = s32(v32)
            if (self.u32_min_value != v32 or self.u32_max_value != v32
                    or self.s32_min_value != sv32 or self.s32_max_value != sv32):
                return "const subreg tnum out of sync with range bounds"
        return None

    # ---------------------------------------------------------------------
    # In-place steps.  Only ever called on a fresh copy that no register
    # holds yet; they mirror the kernel helpers of the same names.

    def _mark_known(self, v: int) -> None:
        u = v & U64
        self.var_off = Tnum(u, 0)
        self.smin_value = self.smax_value = s64(u)
        self.umin_value = self.umax_value = u
        self.s32_min_value = self.s32_max_value = s32(u)
        self.u32_min_value = self.u32_max_value = u & U32

    def with_known32(self, v: int) -> "Bounds":
        """__mark_reg32_known: the lower half becomes ``v``; the upper half is kept."""
        b = self.copy()
        b._mark_known32(v)
        return b

    def _mark_known32(self, v: int) -> None:
        self.var_off = self.var_off.const_subreg(v)
        self.s32_min_value = self.s32_max_value = s32(v)
        self.u32_min_value = self.u32_max_value = v & U32

    def _mark64_unbounded(self) -> None:
        self.smin_value, self.smax_value = S64_MIN, S64_MAX
        self.umin_value, self.umax_value = 0, U64

    def _mark32_unbounded(self) -> None:
        self.s32_min_value, self.s32_max_value = S32_MIN, S32_MAX
        self.u32_min_value, self.u32_max_value = 0, U32

    def _update32(self) -> None:
        v32 = self.var_off.value & U32
        m32 = self.var_off.mask & U32
        self.s32_min_value = max(self.s32_min_value, s32(v32 | (m32 & 0x80000000)))
        self.s32_max_value = min(self.s32_max_value, s32(v32 | (m32 & 0x7FFFFFFF)))
        self.u32_min_value = max(self.u32_min_value, v32)
        self.u32_max_value = min(self.u32_max_value, v32 | m32)

    def _update64(self) -> None:
        v, m = self.var_off.value, self.var_off.mask
        self.smin_value = max(self.smin_value, s64(v | (m & (1 << 63))))
        self.smax_value = min(self.smax_value, s64(v | (m & S64_MAX)))
        self.umin_value = max(self.umin_value, v)
        self.umax_value = min(self.umax_value, v | m)

    def _update(self) -> None:
        self._update32()
        self._update64()

    def _deduce32(self) -> None:
        umin, umax, smin, smax = self.umin_value, self.umax_value, self.smin_value, self.smax_value
        if (umin >> 32) == (umax >> 32):
            self.u32_min_value = max(self.u32_min_value, umin & U32)
            self.u32_max_value = min(self.u32_max_value, umax & U32)
            if s32(umin) <= s32(umax):
                self.s32_min_value = max(self.s32_min_value, s32(umin))
                self.s32_max_value = min(self.s32_max_value, s32(umax))
        if (smin >> 32) == (smax >> 32):
            if (smin & U32) <= (smax & U32):
                self.u32_min_value = max(self.u32_min_value, smin & U32)
                self.u32_max_value = min(self.u32_max_value, smax & U32)
            if s32(smin) <= s32(smax):
                self.s32_min_value = max(self.s32_min_value, s32(smin))
                self.s32_max_value = min(self.s32_max_value, s32(smax))
        if (((umin >> 32) + 1) & U32) == (umax >> 32) and s32(umin) < 0 <= s32(umax):
            self.s32_min_value = max(self.s32_min_value, s32(umin))
            self.s32_max_value = min(self.s32_max_value, s32(umax))
        if ((((smin >> 32) & U32) + 1) & U32) == ((smax >> 32) & U32) \
                and s32(smin) < 0 <= s32(smax):
            self.s32_min_value = max(self.s32_min_value, s32(smin))
            self.s32_max_value = min(self.s32_max_value, s32(smax))
        if s32(self.u32_min_value) <= s32(self.u32_max_value):
            self.s32_min_value = max(self.s32_min_value, s32(self.u32_min_value))
            self.s32_max_value = min(self.s32_max_value, s32(self.u32_max_value))
        if (self.s32_min_value & U32) <= (self.s32_max_value & U32):
            self.u32_min_value = max(self.s32_min_value & U32, self.u32_min_value)
            self.u32_max_value = min(self.s32_max_value & U32, self.u32_max_value)
        elif self.u32_max_value < (self.s32_min_value & U32):
            # the signed range wraps around the middle of the unsigned domain: an
            # unsigned range in one half only tightens it (as the 64-bit case)
            self.s32_min_value = s32(self.u32_min_value)
            self.u32_max_value = min(self.u32_max_value, self.s32_max_value & U32)
        elif (self.s32_max_value & U32) < self.u32_min_value:
            self.s32_max_value = s32(self.u32_max_value)
            self.u32_min_value = max(self.u32_min_value, self.s32_min_value & U32)

    def _deduce64(self) -> None:
        if s64(self.umin_value) <= s64(self.umax_value):
            self.smin_value = max(self.smin_value, s64(self.umin_value))
            self.smax_value = min(self.smax_value, s64(self.umax_value))
        if (self.smin_value & U64) <= (self.smax_value & U64):
            self.umin_value = max(self.smin_value & U64, self.umin_value)
            self.umax_value = min(self.smax_value & U64, self.umax_value)
        else:
            # the signed range wraps around the middle of the unsigned
            # domain: if the unsigned range sits in one half only, the two
            # ranges can tighten each other
            if self.umax_value < (self.smin_value & U64):
                self.smin_value = s64(self.umin_value)
                self.umax_value = min(self.umax_value, self.smax_value & U64)
            elif (self.smax_value & U64) < self.umin_value:
                self.smax_value = s64(self.umax_value)
                self.umin_value = max(self.umin_value, self.smin_value & U64)

    def _deduce_mixed(self) -> None:
        hi = U64 & ~U32
        new_umin = (self.umin_value & hi) | self.u32_min_value
        new_umax = (self.umax_value & hi) | self.u32_max_value
        self.umin_value = max(self.umin_value, new_umin)
        self.umax_value = min(self.umax_value, new_umax)
        new_smin = s64((self.smin_value & hi) | self.u32_min_value)
        new_smax = s64((self.smax_value & hi) | self.u32_max_value)
        self.smin_value = max(self.smin_value, new_smin)
        self.smax_value = min(self.smax_value, new_smax)
        if self.s32_min_value >= 0 and self.smin_value >= S32_MIN and self.smax_value <= S32_MAX:
            self.smin_value = self.s32_min_value
            self.smax_value = self.s32_max_value
            self.umin_value = self.s32_min_value
            self.umax_value = self.s32_max_value
            self.var_off = self.var_off.intersect(trange(self.smin_value & U64,
                                                         self.smax_value & U64))

    def _deduce(self) -> None:
        self._deduce32()
        self._deduce64()
        self._deduce_mixed()

    def _bound_offset(self) -> None:
        var64 = self.var_off.intersect(trange(self.umin_value, self.umax_value))
        var32 = var64.subreg().intersect(trange(self.u32_min_value, self.u32_max_value))
        self.var_off = var64.clear_subreg().or_(var32)

    def _sync(self) -> None:
        """reg_bounds_sync: update from tnum, deduce (twice), tnum from ranges, update.

        The same steps as _update/_deduce/_bound_offset, fused over local
        variables because this is the verifier's hottest function."""
        vo = self.var_off
        v, m = vo.value, vo.mask
        if not m:
            # a constant within every range: each step leaves exactly the constant
            sv = v - 0x10000000000000000 if v >> 63 else v
            v32 = v & U32
            sv32 = v32 - 0x100000000 if v32 >> 31 else v32
            if (self.smin_value <= sv <= self.smax_value and self.umin_value <= v <= self.umax_value
                    and self.s32_min_value <= sv32 <= self.s32_max_value
                    and self.u32_min_value <= v32 <= self.u32_max_value):
                self.smin_value = self.smax_value = sv
                self.umin_value = self.umax_value = v
                self.s32_min_value = self.s32_max_value = sv32
                self.u32_min_value = self.u32_max_value = v32
                return
        smin, smax = self.smin_value, self.smax_value
        umin, umax = self.umin_value, self.umax_value
        s32min, s32max = self.s32_min_value, self.s32_max_value
        u32min, u32max = self.u32_min_value, self.u32_max_value
        # __update_reg_bounds
        v32, m32 = v & U32, m & U32
        x = v32 | (m32 & 0x80000000)
        x = x - 0x100000000 if x & 0x80000000 else x
        if x > s32min:
            s32min = x
        x = v32 | (m32 & 0x7FFFFFFF)
        x = x - 0x100000000 if x & 0x80000000 else x
        if x < s32max:
            s32max = x
        if v32 > u32min:
            u32min = v32
        if v32 | m32 < u32max:
            u32max = v32 | m32
        x = v | (m & 0x8000000000000000)
        x = x - 0x10000000000000000 if x >> 63 else x
        if x > smin:
            smin = x
        x = v | (m & 0x7FFFFFFFFFFFFFFF)
        if x < smax:
            smax = x
        if v > umin:
            umin = v
        if v | m < umax:
            umax = v | m
        for _ in (0, 1):
            # __reg32_deduce_bounds
            if (umin >> 32) == (umax >> 32):
                if umin & U32 > u32min:
                    u32min = umin & U32
                if umax & U32 < u32max:
                    u32max = umax & U32
                a, c = s32(umin), s32(umax)
                if a <= c:
                    if a > s32min:
                        s32min = a
                    if c < s32max:
                        s32max = c
            if (smin >> 32) == (smax >> 32):
                a, c = smin & U32, smax & U32
                if a <= c:
                    if a > u32min:
                        u32min = a
                    if c < u32max:
                        u32max = c
                a, c = s32(smin), s32(smax)
                if a <= c:
                    if a > s32min:
                        s32min = a
                    if c < s32max:
                        s32max = c
            if (((umin >> 32) + 1) & U32) == (umax >> 32):
                a, c = s32(umin), s32(umax)
                if a < 0 <= c:
                    if a > s32min:
                        s32min = a
                    if c < s32max:
                        s32max = c
            if ((((smin >> 32) & U32) + 1) & U32) == ((smax >> 32) & U32):
                a, c = s32(smin), s32(smax)
                if a < 0 <= c:
                    if a > s32min:
                        s32min = a
                    if c < s32max:
                        s32max = c
            a, c = s32(u32min), s32(u32max)
            if a <= c:
                if a > s32min:
                    s32min = a
                if c < s32max:
                    s32max = c
            a, c = s32min & U32, s32max & U32
            if a <= c:
                if a > u32min:
                    u32min = a
                if c < u32max:
                    u32max = c
            elif u32max < a:
                s32min = s32(u32min)
                if c < u32max:
                    u32max = c
            elif c < u32min:
                s32max = s32(u32max)
                if a > u32min:
                    u32min = a
            # __reg64_deduce_bounds
            a, c = s64(umin), s64(umax)
            if a <= c:
                if a > smin:
                    smin = a
                if c < smax:
                    smax = c
            a, c = smin & U64, smax & U64
            if a <= c:
                if a > umin:
                    umin = a
                if c < umax:
                    umax = c
            elif umax < a:
                smin = s64(umin)
                if c < umax:
                    umax = c
            elif c < umin:
                smax = s64(umax)
                if a > umin:
                    umin = a
            # __reg_deduce_mixed_bounds
            nu = (umin & 0xFFFFFFFF00000000) | u32min
            if nu > umin:
                umin = nu
            nu = (umax & 0xFFFFFFFF00000000) | u32max
            if nu < umax:
                umax = nu
            ns = s64((smin & 0xFFFFFFFF00000000) | u32min)
            if ns > smin:
                smin = ns
            ns = s64((smax & 0xFFFFFFFF00000000) | u32max)
            if ns < smax:
                smax = ns
            if s32min >= 0 and smin >= S32_MIN and smax <= S32_MAX:
                smin, smax = s32min, s32max
                umin, umax = s32min, s32max
                t = trange(smin & U64, smax & U64)
                tm = m & t.mask
                v, m = (v | t.value) & ~tm, tm
        # __reg_bound_offset
        t = trange(umin, umax)
        tm = m & t.mask
        v64, m64 = (v | t.value) & ~tm, tm
        t = trange(u32min, u32max)
        tm = (m64 & U32) & t.mask
        v32, m32 = ((v64 & U32) | t.value) & ~tm, tm
        hi = 0xFFFFFFFF00000000
        v = (v64 & hi) | v32
        m = ((m64 & hi) | m32) & ~v
        # __update_reg_bounds again
        v32, m32 = v & U32, m & U32
        x = v32 | (m32 & 0x80000000)
        x = x - 0x100000000 if x & 0x80000000 else x
        if x > s32min:
            s32min = x
        x = v32 | (m32 & 0x7FFFFFFF)
        x = x - 0x100000000 if x & 0x80000000 else x
        if x < s32max:
            s32max = x
        if v32 > u32min:
            u32min = v32
        if v32 | m32 < u32max:
            u32max = v32 | m32
        x = v | (m & 0x8000000000000000)
        x = x - 0x10000000000000000 if x >> 63 else x
        if x > smin:
            smin = x
        x = v | (m & 0x7FFFFFFFFFFFFFFF)
        if x < smax:
            smax = x
        if v > umin:
            umin = v
        if v | m < umax:
            umax = v | m
        if v != vo.value or m != vo.mask:
            self.var_off = Tnum(v, m)
        self.smin_value, self.smax_value = smin, smax
        self.umin_value, self.umax_value = umin, umax
        self.s32_min_value, self.s32_max_value = s32min, s32max
        self.u32_min_value, self.u32_max_value = u32min, u32max

    def _sync_reference(self) -> None:
        """The unfused reg_bounds_sync (kept as the specification _sync is tested against)."""
        self._update()
        self._deduce()
        self._deduce()
        self._bound_offset()
        self._update()

    def _assign_32_into_64(self) -> None:
        self.umin_value = self.u32_min_value
        self.umax_value = self.u32_max_value
        if 0 <= self.s32_min_value and 0 <= self.s32_max_value:
            self.smin_value = self.s32_min_value
            self.smax_value = self.s32_max_value
        else:
            self.smin_value = 0
            self.smax_value = U32

    def _zext_32_to_64(self) -> None:
        self.var_off = self.var_off.subreg()
        self._assign_32_into_64()

    # -- public operations (each returns a new Bounds) ----------------------
    def sync(self) -> "Bounds":
        b = self.copy()
        b._sync()
        return b

    def zext(self) -> "Bounds":
        """The 32-bit subregister zero-extended (what every ALU32 result is)."""
        b = self.copy()
        b._zext_32_to_64()
        b._sync()
        return b

    def alu(self, op: str, src: "Bounds", alu32: bool) -> "Bounds":
        """adjust_scalar_min_max_vals for scalar dst OP scalar src."""
        if not _safe_to_compute(op, src, alu32):
            return UNBOUNDED
        d = self.copy()
        if op == "add":
            _add32(d, src)
            _add64(d, src)
            d.var_off = d.var_off.add(src.var_off)
        elif op == "sub":
            _sub32(d, src)
            _sub64(d, src)
            d.var_off = d.var_off.sub(src.var_off)
        elif op == "neg":
            orig = self
            d._mark_known(0)
            _sub32(d, orig)
            _sub64(d, orig)
            d.var_off = orig.var_off.neg()
        elif op == "mul":
            d.var_off = d.var_off.mul(src.var_off)
            _mul32(d, src)
            _mul64(d, src)
        elif op == "and":
            d.var_off = d.var_off.and_(src.var_off)
            _and32(d, src)
            _and64(d, src)
        elif op == "or":
            d.var_off = d.var_off.or_(src.var_off)
            _or32(d, src)
            _or64(d, src)
        elif op == "xor":
            d.var_off = d.var_off.xor(src.var_off)
            _xor32(d, src)
            _xor64(d, src)
        elif op == "lsh":
            (_lsh32 if alu32 else _lsh64)(d, src)
        elif op == "rsh":
            (_rsh32 if alu32 else _rsh64)(d, src)
        elif op == "arsh":
            (_arsh32 if alu32 else _arsh64)(d, src)
        if alu32:
            d._zext_32_to_64()
        d._sync()
        return d

    def truncate(self, size: int) -> "Bounds":
        """coerce_reg_to_size: keep the low ``size`` bytes (zero-extended)."""
        b = self.copy()
        b.var_off = b.var_off.cast(size)
        mask = (1 << (size * 8)) - 1
        if (b.umin_value & ~mask) == (b.umax_value & ~mask):
            b.umin_value &= mask
            b.umax_value &= mask
        else:
            b.umin_value, b.umax_value = 0, mask
        b.smin_value, b.smax_value = b.umin_value, b.umax_value
        if size < 4:
            b._mark32_unbounded()
        b._sync()
        return b

    def sign_extend(self, size: int) -> "Bounds":
        """coerce_reg_to_size_sx: the low ``size`` bytes, sign-extended to 64 bits."""
        nb = size * 8
        if self.var_off.is_const():
            return Bounds.const(_sx_bits(self.var_off.value, nb))
        b = self.copy()
        if ((self.smax_value & U64) >> nb) == ((self.smin_value & U64) >> nb):
            a, c = _sx_bits(self.smax_value, nb), _sx_bits(self.smin_value, nb)
            hi, lo = max(a, c), min(a, c)
            if (hi >= 0) == (lo >= 0):
                b.s32_min_value = b.smin_value = lo
                b.s32_max_value = b.smax_value = hi
                b.u32_min_value, b.umin_value = lo & U32, lo & U64
                b.u32_max_value, b.umax_value = hi & U32, hi & U64
                b.var_off = trange(lo & U64, hi & U64)
                return b
        lo, hi = -(1 << (nb - 1)), (1 << (nb - 1)) - 1
        b.smin_value = b.s32_min_value = lo
        b.smax_value = b.s32_max_value = hi
        b.umin_value = b.u32_min_value = 0
        b.umax_value, b.u32_max_value = U64, U32
        b.var_off = UNKNOWN
        return b

    def sign_extend32(self, size: int) -> "Bounds":
        """coerce_subreg_to_size_sx, zero-extended and synced: w = (sN) w."""
        nb = size * 8
        b = self.copy()
        if self.var_off.is_const():
            v = _sx_bits(self.var_off.value, nb) & U64
            b.var_off = Tnum(v, 0)
            b.s32_min_value = b.s32_max_value = s32(v)
            b.u32_min_value = b.u32_max_value = v & U32
        else:
            done = False
            if ((self.s32_max_value & U32) >> nb) == ((self.s32_min_value & U32) >> nb):
                a, c = _sx_bits(self.s32_max_value, nb), _sx_bits(self.s32_min_value, nb)
                hi, lo = max(a, c), min(a, c)
                if (lo >= 0) == (hi >= 0):
                    b.s32_min_value, b.s32_max_value = lo, hi
                    b.u32_min_value, b.u32_max_value = lo & U32, hi & U32
                    b.var_off = trange(lo & U64, hi & U64).subreg()
                    done = True
            if not done:
                b.s32_min_value, b.s32_max_value = -(1 << (nb - 1)), (1 << (nb - 1)) - 1
                b.u32_min_value, b.u32_max_value = 0, U32
                b.var_off = UNKNOWN.subreg()
        b._zext_32_to_64()
        b._sync()
        return b

    def byte_swap(self, bits: int, swap: bool) -> "Bounds":
        """scalar_byte_swap: BPF_END/bswap; the tnum's bytes are swapped when the
        instruction swaps on this (little-endian) machine, the ranges re-derived."""
        b = self.copy()
        if swap:
            n = bits // 8
            m = (1 << bits) - 1
            v = (b.var_off.value & m).to_bytes(n, "little")
            k = (b.var_off.mask & m).to_bytes(n, "little")
            b.var_off = Tnum(int.from_bytes(v, "big"), int.from_bytes(k, "big"))
            b._mark64_unbounded()
            b._mark32_unbounded()
        if bits in (16, 32):
            return b.truncate(bits // 8)
        b._sync()
        return b

    def with_umax(self, umax: int) -> "Bounds":
        b = self.copy()
        b.umax_value = min(b.umax_value, umax)
        b._sync()
        return b


UNBOUNDED = Bounds(UNKNOWN, S64_MIN, S64_MAX, 0, U64, S32_MIN, S32_MAX, 0, U32)
ZERO = Bounds.const(0)


def from_range(umin: int, umax: int) -> Bounds:
    """An unknown value in [umin, umax] (unsigned), synced."""
    b = UNBOUNDED.copy()
    b.umin_value, b.umax_value = umin, umax
    b._sync()
    return b


# ---------------------------------------------------------------------------
# scalar_min_max_* (kernel names; dst is a private copy)


def _safe_to_compute(op: str, src: Bounds, alu32: bool) -> bool:
    if op in ("add", "sub", "neg", "and", "xor", "or", "mul"):
        return True
    if op in ("lsh", "rsh", "arsh"):
        if alu32:
            const = (src.var_off.subreg_is_const() and src.s32_min_value == src.s32_max_value
                     and src.u32_min_value == src.u32_max_value)
        else:
            const = (src.var_off.is_const() and src.smin_value == src.smax_value
                     and src.umin_value == src.umax_value)
        return const and src.umax_value < (32 if alu32 else 64)
    return False


def _add32(d: Bounds, s: Bounds) -> None:
    lo = d.s32_min_value + s.s32_min_value
    hi = d.s32_max_value + s.s32_max_value
    if lo < S32_MIN or lo > S32_MAX or hi < S32_MIN or hi > S32_MAX:
        d.s32_min_value, d.s32_max_value = S32_MIN, S32_MAX
    else:
        d.s32_min_value, d.s32_max_value = lo, hi
    umin = d.u32_min_value + s.u32_min_value
    umax = d.u32_max_value + s.u32_max_value
    if umin <= U32 and umax > U32:
        d.u32_min_value, d.u32_max_value = 0, U32
    else:
        d.u32_min_value, d.u32_max_value = umin & U32, umax & U32


def _add64(d: Bounds, s: Bounds) -> None:
    lo = d.smin_value + s.smin_value
    hi = d.smax_value + s.smax_value
    if lo < S64_MIN or lo > S64_MAX or hi < S64_MIN or hi > S64_MAX:
        d.smin_value, d.smax_value = S64_MIN, S64_MAX
    else:
        d.smin_value, d.smax_value = lo, hi
    umin = d.umin_value + s.umin_value
    umax = d.umax_value + s.umax_value
    if umin <= U64 and umax > U64:
        d.umin_value, d.umax_value = 0, U64
    else:
        d.umin_value, d.umax_value = umin & U64, umax & U64


def _sub32(d: Bounds, s: Bounds) -> None:
    lo = d.s32_min_value - s.s32_max_value
    hi = d.s32_max_value - s.s32_min_value
    if lo < S32_MIN or lo > S32_MAX or hi < S32_MIN or hi > S32_MAX:
        d.s32_min_value, d.s32_max_value = S32_MIN, S32_MAX
    else:
        d.s32_min_value, d.s32_max_value = lo, hi
    umin = d.u32_min_value - s.u32_max_value
    umax = d.u32_max_value - s.u32_min_value
    if umin < 0 <= umax:
        d.u32_min_value, d.u32_max_value = 0, U32
    else:
        d.u32_min_value, d.u32_max_value = umin & U32, umax & U32


def _sub64(d: Bounds, s: Bounds) -> None:
    lo = d.smin_value - s.smax_value
    hi = d.smax_value - s.smin_value
    if lo < S64_MIN or lo > S64_MAX or hi < S64_MIN or hi > S64_MAX:
        d.smin_value, d.smax_value = S64_MIN, S64_MAX
    else:
        d.smin_value, d.smax_value = lo, hi
    umin = d.umin_value - s.umax_value
    umax = d.umax_value - s.umin_value
    if umin < 0 <= umax:
        d.umin_value, d.umax_value = 0, U64
    else:
        d.umin_value, d.umax_value = umin & U64, umax & U64


def _mul32(d: Bounds, s: Bounds) -> None:
    umax = d.u32_max_value * s.u32_max_value
    umin = d.u32_min_value * s.u32_min_value
    if umax > U32 or umin > U32:
        d.u32_min_value, d.u32_max_value = 0, U32
    else:
        d.u32_min_value, d.u32_max_value = umin, umax
    prods = (d.s32_min_value * s.s32_min_value, d.s32_min_value * s.s32_max_value,
             d.s32_max_value * s.s32_min_value, d.s32_max_value * s.s32_max_value)
    if any(p < S32_MIN or p > S32_MAX for p in prods):
        d.s32_min_value, d.s32_max_value = S32_MIN, S32_MAX
    else:
        d.s32_min_value, d.s32_max_value = min(prods), max(prods)


def _mul64(d: Bounds, s: Bounds) -> None:
    umax = d.umax_value * s.umax_value
    umin = d.umin_value * s.umin_value
    if umax > U64 or umin > U64:
        d.umin_value, d.umax_value = 0, U64
    else:
        d.umin_value, d.umax_value = umin, umax
    prods = (d.smin_value * s.smin_value, d.smin_value * s.smax_value,
             d.smax_value * s.smin_value, d.smax_value * s.smax_value)
    if any(p < S64_MIN or p > S64_MAX for p in prods):
        d.smin_value, d.smax_value = S64_MIN, S64_MAX
    else:
        d.smin_value, d.smax_value = min(prods), max(prods)


def _s32_from_u32(d: Bounds) -> None:
    if s32(d.u32_min_value) <= s32(d.u32_max_value):
        d.s32_min_value, d.s32_max_value = s32(d.u32_min_value), s32(d.u32_max_value)
    else:
        d.s32_min_value, d.s32_max_value = S32_MIN, S32_MAX


def _s64_from_u64(d: Bounds) -> None:
    if s64(d.umin_value) <= s64(d.umax_value):
        d.smin_value, d.smax_value = s64(d.umin_value), s64(d.umax_value)
    else:
        d.smin_value, d.smax_value = S64_MIN, S64_MAX


def _and32(d: Bounds, s: Bounds) -> None:
    t = d.var_off.subreg()
    if s.var_off.subreg_is_const() and t.is_const():
        d._mark_known32(t.value)
        return
    d.u32_min_value = t.value
    d.u32_max_value = min(d.u32_max_value, s.u32_max_value)
    _s32_from_u32(d)


def _and64(d: Bounds, s: Bounds) -> None:
    if s.var_off.is_const() and d.var_off.is_const():
        d._mark_known(d.var_off.value)
        return
    d.umin_value = d.var_off.value
    d.umax_value = min(d.umax_value, s.umax_value)
    _s64_from_u64(d)
    d._update()


def _or32(d: Bounds, s: Bounds) -> None:
    t = d.var_off.subreg()
    if s.var_off.subreg_is_const() and t.is_const():
        d._mark_known32(t.value)
        return
    d.u32_min_value = max(d.u32_min_value, s.u32_min_value)
    d.u32_max_value = t.value | t.mask
    _s32_from_u32(d)


def _or64(d: Bounds, s: Bounds) -> None:
    if s.var_off.is_const() and d.var_off.is_const():
        d._mark_known(d.var_off.value)
        return
    d.umin_value = max(d.umin_value, s.umin_value)
    d.umax_value = d.var_off.value | d.var_off.mask
    _s64_from_u64(d)
    d._update()


def _xor32(d: Bounds, s: Bounds) -> None:
    t = d.var_off.subreg()
    if s.var_off.subreg_is_const() and t.is_const():
        d._mark_known32(t.value)
        return
    d.u32_min_value = t.value
    d.u32_max_value = t.value | t.mask
    _s32_from_u32(d)


def _xor64(d: Bounds, s: Bounds) -> None:
    if s.var_off.is_const() and d.var_off.is_const():
        d._mark_known(d.var_off.value)
        return
    d.umin_value = d.var_off.value
    d.umax_value = d.var_off.value | d.var_off.mask
    _s64_from_u64(d)
    d._update()


def _lsh32_bounds(d: Bounds, umin_val: int, umax_val: int) -> None:
    d.s32_min_value, d.s32_max_value = S32_MIN, S32_MAX
    if umax_val > 31 or d.u32_max_value > 1 << (31 - umax_val):
        d.u32_min_value, d.u32_max_value = 0, U32
    else:
        d.u32_min_value = (d.u32_min_value << umin_val) & U32
        d.u32_max_value = (d.u32_max_value << umax_val) & U32


def _lsh32(d: Bounds, s: Bounds) -> None:
    umin_val, umax_val = s.u32_min_value, s.u32_max_value
    sub = d.var_off.subreg()
    _lsh32_bounds(d, umin_val, umax_val)
    d.var_off = sub.lshift(umin_val).subreg()
    d._mark64_unbounded()
    d._update32()


def _lsh64(d: Bounds, s: Bounds) -> None:
    umin_val, umax_val = s.umin_value, s.umax_value
    # <<32 (the compiler's sign-extension idiom, then s>>32): the s32 bounds shifted are
    # exact, negative ones included, as Linux 6.18 has it (__scalar64_min_max_lsh)
    if umin_val == 32 and umax_val == 32:
        d.smax_value = d.s32_max_value << 32
        d.smin_value = d.s32_min_value << 32
    else:
        d.smax_value, d.smin_value = S64_MAX, S64_MIN
    if d.umax_value > 1 << (63 - umax_val):
        d.umin_value, d.umax_value = 0, U64
    else:
        d.umin_value = (d.umin_value << umin_val) & U64
        d.umax_value = (d.umax_value << umax_val) & U64
    _lsh32_bounds(d, umin_val, umax_val)
    d.var_off = d.var_off.lshift(umin_val)
    d._update()


def _rsh32(d: Bounds, s: Bounds) -> None:
    umin_val, umax_val = s.u32_min_value, s.u32_max_value
    sub = d.var_off.subreg()
    d.s32_min_value, d.s32_max_value = S32_MIN, S32_MAX
    d.var_off = sub.rshift(umin_val)
    d.u32_min_value >>= umax_val
    d.u32_max_value >>= umin_val
    d._mark64_unbounded()
    d._update32()


def _rsh64(d: Bounds, s: Bounds) -> None:
    umin_val, umax_val = s.umin_value, s.umax_value
    d.smin_value, d.smax_value = S64_MIN, S64_MAX
    d.var_off = d.var_off.rshift(umin_val)
    d.umin_value >>= umax_val
    d.umax_value >>= umin_val
    d._mark32_unbounded()
    d._update()


def _arsh32(d: Bounds, s: Bounds) -> None:
    n = s.u32_min_value
    d.s32_min_value >>= n
    d.s32_max_value >>= n
    d.var_off = d.var_off.subreg().arshift(n, 32)
    d.u32_min_value, d.u32_max_value = 0, U32
    d._mark64_unbounded()
    d._update32()


def _arsh64(d: Bounds, s: Bounds) -> None:
    n = s.umin_value
    d.smin_value >>= n
    d.smax_value >>= n
    d.var_off = d.var_off.arshift(n, 64)
    d.umin_value, d.umax_value = 0, U64
    d._mark32_unbounded()
    d._update()


def _sx_bits(v: int, nb: int) -> int:
    v &= (1 << nb) - 1
    return v - (1 << nb) if v >> (nb - 1) else v


# ---------------------------------------------------------------------------
# conditional jumps


def flip_opcode(op: str) -> str:
    """The comparison with its operands swapped (a > b  <=>  b < a)."""
    return _FLIP.get(op, op)


def rev_opcode(op: str) -> str:
    """The negated comparison (what holds on the fall-through path)."""
    return _REV[op]


_FLIP = {"jgt": "jlt", "jlt": "jgt", "jge": "jle", "jle": "jge", "jsgt": "jslt", "jslt": "jsgt",
         "jsge": "jsle", "jsle": "jsge"}
_REV = {"jeq": "jne", "jne": "jeq", "jset": "jset_neg", "jset_neg": "jset", "jgt": "jle",
        "jle": "jgt", "jge": "jlt", "jlt": "jge", "jsgt": "jsle", "jsle": "jsgt",
        "jsge": "jslt", "jslt": "jsge"}


def is_scalar_branch_taken(r1: Bounds, r2: Bounds, op: str, is32: bool) -> int:
    """1 if the jump is always taken, 0 if never, -1 if unknown."""
    if is32:
        t1, t2 = r1.var_off.subreg(), r2.var_off.subreg()
        umin1, umax1, smin1, smax1 = r1.u32_min_value, r1.u32_max_value, r1.s32_min_value, r1.s32_max_value
        umin2, umax2, smin2, smax2 = r2.u32_min_value, r2.u32_max_value, r2.s32_min_value, r2.s32_max_value
    else:
        t1, t2 = r1.var_off, r2.var_off
        umin1, umax1, smin1, smax1 = r1.umin_value, r1.umax_value, r1.smin_value, r1.smax_value
        umin2, umax2, smin2, smax2 = r2.umin_value, r2.umax_value, r2.smin_value, r2.smax_value
    if op == "jeq" or op == "jne":
        eq = op == "jeq"
        if t1.is_const() and t2.is_const():
            return int((t1.value == t2.value) == eq)
        if not t1.overlap(t2):
            return int(not eq)
        if umin1 > umax2 or umax1 < umin2 or smin1 > smax2 or smax1 < smin2:
            return int(not eq)
        if not is32:
            if (r1.u32_min_value > r2.u32_max_value or r1.u32_max_value < r2.u32_min_value
                    or r1.s32_min_value > r2.s32_max_value or r1.s32_max_value < r2.s32_min_value):
                return int(not eq)
        return -1
    if op == "jset":
        if not r2.is_reg_const(is32):
            r1, r2 = r2, r1
            t1, t2 = t2, t1
        if not r2.is_reg_const(is32):
            return -1
        if (~t1.mask & t1.value) & t2.value:
            return 1
        if not ((t1.mask | t1.value) & t2.value):
            return 0
        return -1
    if op == "jgt":
        return 1 if umin1 > umax2 else 0 if umax1 <= umin2 else -1
    if op == "jsgt":
        return 1 if smin1 > smax2 else 0 if smax1 <= smin2 else -1
    if op == "jlt":
        return 1 if umax1 < umin2 else 0 if umin1 >= umax2 else -1
    if op == "jslt":
        return 1 if smax1 < smin2 else 0 if smin1 >= smax2 else -1
    if op == "jge":
        return 1 if umin1 >= umax2 else 0 if umax1 < umin2 else -1
    if op == "jsge":
        return 1 if smin1 >= smax2 else 0 if smax1 < smin2 else -1
    if op == "jle":
        return 1 if umax1 <= umin2 else 0 if umin1 > umax2 else -1
    if op == "jsle":
        return 1 if smax1 <= smin2 else 0 if smin1 > smax2 else -1
    return -1


def refine_cond_op(b1: Bounds, b2: Bounds, op: str, is32: bool,
                   alias: bool = False) -> tuple[Bounds, Bounds]:
    """regs_refine_cond_op + reg_bounds_sync of both: what ``b1 OP b2`` being true implies.

    ``op`` may be ``jset_neg`` (the fall-through of jset).  Returns new bounds
    for both operands in the original order.  ``alias``: both operands are one
    register (``if r1 < r1``), refined in place as Linux does.
    """
    swapped = False
    if op in ("jge", "jgt", "jsge", "jsgt"):
        op = _FLIP[op]
        b1, b2 = b2, b1
        swapped = True
    r1 = b1.copy()
    r2 = r1 if alias else b2.copy()
    if op == "jeq":
        if is32:
            r1.u32_min_value = max(r1.u32_min_value, r2.u32_min_value)
            r1.u32_max_value = min(r1.u32_max_value, r2.u32_max_value)
            r1.s32_min_value = max(r1.s32_min_value, r2.s32_min_value)
            r1.s32_max_value = min(r1.s32_max_value, r2.s32_max_value)
            r2.u32_min_value, r2.u32_max_value = r1.u32_min_value, r1.u32_max_value
            r2.s32_min_value, r2.s32_max_value = r1.s32_min_value, r1.s32_max_value
            t = r1.var_off.subreg().intersect(r2.var_off.subreg())
            r1.var_off = r1.var_off.with_subreg(t)
            r2.var_off = r2.var_off.with_subreg(t)
        else:
            r1.umin_value = max(r1.umin_value, r2.umin_value)
            r1.umax_value = min(r1.umax_value, r2.umax_value)
            r1.smin_value = max(r1.smin_value, r2.smin_value)
            r1.smax_value = min(r1.smax_value, r2.smax_value)
            r2.umin_value, r2.umax_value = r1.umin_value, r1.umax_value
            r2.smin_value, r2.smax_value = r1.smin_value, r1.smax_value
            r1.var_off = r1.var_off.intersect(r2.var_off)
            r2.var_off = r1.var_off
    elif op == "jne":
        a, c = r1, r2
        if not c.is_reg_const(is32):
            a, c = c, a
        if c.is_reg_const(is32):
            val = c.const_value(is32)
            if is32:
                if a.u32_min_value == val:
                    a.u32_min_value = (a.u32_min_value + 1) & U32
                if a.u32_max_value == val:
                    a.u32_max_value = (a.u32_max_value - 1) & U32
                if a.s32_min_value == s32(val):
                    a.s32_min_value = s32(a.s32_min_value + 1)
                if a.s32_max_value == s32(val):
                    a.s32_max_value = s32(a.s32_max_value - 1)
            else:
                if a.umin_value == val:
                    a.umin_value = (a.umin_value + 1) & U64
                if a.umax_value == val:
                    a.umax_value = (a.umax_value - 1) & U64
                if a.smin_value == s64(val):
                    a.smin_value = s64(a.smin_value + 1)
                if a.smax_value == s64(val):
                    a.smax_value = s64(a.smax_value - 1)
    elif op == "jset":
        a, c = r1, r2
        if not c.is_reg_const(is32):
            a, c = c, a
        if c.is_reg_const(is32):
            val = c.const_value(is32)
            if val and not (val & (val - 1)):
                if is32:
                    a.var_off = a.var_off.with_subreg(a.var_off.subreg().or_(const(val)))
                else:
                    a.var_off = a.var_off.or_(const(val))
    elif op == "jset_neg":
        a, c = r1, r2
        if not c.is_reg_const(is32):
            a, c = c, a
        if c.is_reg_const(is32):
            val = c.const_value(is32)
            a._mark64_unbounded()
            a._mark32_unbounded()
            if is32:
                a.var_off = a.var_off.with_subreg(a.var_off.subreg().and_(const(~val & U64)))
            else:
                a.var_off = a.var_off.and_(const(~val & U64))
    elif op == "jle":
        if is32:
            r1.u32_max_value = min(r1.u32_max_value, r2.u32_max_value)
            r2.u32_min_value = max(r1.u32_min_value, r2.u32_min_value)
        else:
            r1.umax_value = min(r1.umax_value, r2.umax_value)
            r2.umin_value = max(r1.umin_value, r2.umin_value)
    elif op == "jlt":
        if is32:
            r1.u32_max_value = min(r1.u32_max_value, (r2.u32_max_value - 1) & U32)
            r2.u32_min_value = max((r1.u32_min_value + 1) & U32, r2.u32_min_value)
        else:
            r1.umax_value = min(r1.umax_value, (r2.umax_value - 1) & U64)
            r2.umin_value = max((r1.umin_value + 1) & U64, r2.umin_value)
    elif op == "jsle":
        if is32:
            r1.s32_max_value = min(r1.s32_max_value, r2.s32_max_value)
            r2.s32_min_value = max(r1.s32_min_value, r2.s32_min_value)
        else:
            r1.smax_value = min(r1.smax_value, r2.smax_value)
            r2.smin_value = max(r1.smin_value, r2.smin_value)
    elif op == "jslt":
        if is32:
            r1.s32_max_value = min(r1.s32_max_value, s32(r2.s32_max_value - 1))
            r2.s32_min_value = max(s32(r1.s32_min_value + 1), r2.s32_min_value)
        else:
            r1.smax_value = min(r1.smax_value, s64(r2.smax_value - 1))
            r2.smin_value = max(s64(r1.smin_value + 1), r2.smin_value)
    r1._sync()
    r2._sync()
    if swapped:
        return r2, r1
    return r1, r2


def add_const_nosync(b: Bounds, delta: int) -> Bounds:
    """scalar(32)_min_max_add + tnum_add of a constant, without reg_bounds_sync
    (what sync_linked_regs applies to a register linked with an offset)."""
    d = b.copy()
    c = Bounds.const(delta)
    _add32(d, c)
    _add64(d, c)
    d.var_off = d.var_off.add(c.var_off)
    return d
