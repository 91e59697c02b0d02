"""Tracked numbers: what the verifier knows about the individual bits of a value.

A tnum is a pair ``(value, mask)`` of 64-bit words.  Bits set in ``mask`` are
unknown; every other bit is known and equal to the corresponding bit of
``value`` (which is always zero where ``mask`` is set).  The operations
return a tnum containing every possible result of the operation applied to
members of the operands (Linux's kernel/bpf/tnum.c, Vishwanathan et al.,
"Sound, Precise, and Fast Abstract Interpretation with Tristate Numbers").

Tnums are immutable; all operations return new ones.
"""
from __future__ import annotations

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1


class Tnum:
    __slots__ = ("value", "mask")

    def __init__(self, value: int, mask: int):
        self.value = value
        self.mask = mask

    # -- predicates -------------------------------------------------------
    def is_const(self) -> bool:
        return not self.mask

    def is_unknown(self) -> bool:
        return self.mask == U64

    def equals_const(self, v: int) -> bool:
        return not self.mask and self.value == v

    def is_aligned(self, size: int) -> bool:
        if not size:
            return True
        return not ((self.value | self.mask) & (size - 1))

    def contains(self, b: "Tnum") -> bool:
        """tnum_in(self, b): every value of ``b`` is a value of ``self``."""
        if b.mask & ~self.mask:
            return False
        return self.value == (b.value & ~self.mask)

    def overlap(self, b: "Tnum") -> bool:
        """The known bits of both agree (they may share a value)."""
        mu = ~self.mask & ~b.mask
        return (self.value & mu) == (b.value & mu)

    def subreg_is_const(self) -> bool:
        return not (self.mask & U32)

    # -- arithmetic -------------------------------------------------------
    def lshift(self, shift: int) -> "Tnum":
        return Tnum((self.value << shift) & U64, (self.mask << shift) & U64)

    def rshift(self, shift: int) -> "Tnum":
        return Tnum(self.value >> shift, self.mask >> shift)

    def arshift(self, shift: int, bits: int) -> "Tnum":
        if bits == 32:
            v = _sx(self.value & U32, 32) >> shift
            m = _sx(self.mask & U32, 32) >> shift
            return Tnum(v & U32, m & U32)
        return Tnum((_sx(self.value, 64) >> shift) & U64, (_sx(self.mask, 64) >> shift) & U64)

    def add(self, b: "Tnum") -> "Tnum":
        sm = self.mask + b.mask
        sv = self.value + b.value
        sigma = (sm + sv) & U64
        chi = sigma ^ (sv & U64)
        mu = chi | self.mask | b.mask
        return Tnum(sv & ~mu & U64, mu)

    def sub(self, b: "Tnum") -> "Tnum":
        dv = (self.value - b.value) & U64
        alpha = (dv + self.mask) & U64
        beta = (dv - b.mask) & U64
        chi = alpha ^ beta
        mu = chi | self.mask | b.mask
        return Tnum(dv & ~mu & U64, mu)

    def neg(self) -> "Tnum":
        return ZERO.sub(self)

    def and_(self, b: "Tnum") -> "Tnum":
        alpha = self.value | self.mask
        beta = b.value | b.mask
        v = self.value & b.value
        return Tnum(v, alpha & beta & ~v)

    def or_(self, b: "Tnum") -> "Tnum":
        v = self.value | b.value
        mu = self.mask | b.mask
        return Tnum(v, mu & ~v)

    def xor(self, b: "Tnum") -> "Tnum":
        v = self.value ^ b.value
        mu = self.mask | b.mask
        return Tnum(v & ~mu, mu)

    def mul(self, b: "Tnum") -> "Tnum":
        # Long multiplication over the bits of self: a known 1 adds b, an
        # unknown bit takes the union of adding and not adding b.
        a = self
        acc = ZERO
        while a.value or a.mask:
            if a.value & 1:
                acc = acc.add(b)
            elif a.mask & 1:
                acc = acc.union(acc.add(b))
            a = a.rshift(1)
            b = b.lshift(1)
        return acc

    def intersect(self, b: "Tnum") -> "Tnum":
        v = self.value | b.value
        mu = self.mask & b.mask
        return Tnum(v & ~mu, mu)

    def union(self, b: "Tnum") -> "Tnum":
        v = self.value & b.value
        mu = (self.value ^ b.value) | self.mask | b.mask
        return Tnum(v & ~mu, mu)

    def cast(self, size: int) -> "Tnum":
        m = (1 << (size * 8)) - 1
        return Tnum(self.value & m, self.mask & m)

    # -- 32-bit subregister views ----------------------------------------
    def subreg(self) -> "Tnum":
        return Tnum(self.value & U32, self.mask & U32)

    def clear_subreg(self) -> "Tnum":
        return Tnum(self.value & ~U32 & U64, self.mask & ~U32 & U64)

    def with_subreg(self, sub: "Tnum") -> "Tnum":
        return self.clear_subreg().or_(sub.subreg())

    def const_subreg(self, v: int) -> "Tnum":
        return self.with_subreg(Tnum(v & U32, 0))

    # -- misc ---------------------------------------------------------------
    def __eq__(self, other) -> bool:
        return isinstance(other, Tnum) and self.value == other.value and self.mask == other.mask

    def __hash__(self) -> int:
        return hash((self.value, self.mask))

    def __repr__(self) -> str:
        return f"Tnum({self.value:#x}, {self.mask:#x})"

    def __str__(self) -> str:
        """tnum_strn: a decimal or hex constant, else ``(value; mask)``."""
        if not self.mask:
            return str(self.value) if self.value <= 0xFFFF else f"{self.value:#x}"
        return f"({self.value:#x}; {self.mask:#x})"


def _sx(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


def const(v: int) -> Tnum:
    return Tnum(v & U64, 0)


def trange(lo: int, hi: int) -> Tnum:
    """The smallest tnum holding every value of [lo, hi] (unsigned)."""
    chi = lo ^ hi
    bits = chi.bit_length()
    if bits > 63:
        return UNKNOWN
    delta = (1 << bits) - 1
    return Tnum(lo & ~delta, delta)


UNKNOWN = Tnum(0, U64)
ZERO = Tnum(0, 0)
