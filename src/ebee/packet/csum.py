"""Internet checksum arithmetic as Linux does it (include/net/checksum.h).

Values are what the kernel holds in registers on a little-endian host: a
``__sum16`` or ``__be16``/``__be32`` is the raw memory bytes read as a
little-endian integer.  One's-complement sums are byte-order independent, so
this matches the kernel bit for bit.
"""
from __future__ import annotations

M32 = 0xFFFFFFFF


def csum_add(a: int, b: int) -> int:
    r = (a & M32) + (b & M32)
    return (r + (r >> 32)) & M32


def csum_sub(a: int, b: int) -> int:
    return csum_add(a, ~b & M32)


def csum_fold(s: int) -> int:
    s &= M32
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def csum_unfold(n: int) -> int:
    return n & 0xFFFF


def csum_replace4(sum16: int, old: int, new: int) -> int:
    tmp = csum_sub(~csum_unfold(sum16) & M32, old)
    return csum_fold(csum_add(tmp, new))


def csum16_add(a: int, b: int) -> int:
    r = (a + b) & 0xFFFF
    return (r + (1 if r < (b & 0xFFFF) else 0)) & 0xFFFF


def csum16_sub(a: int, b: int) -> int:
    return csum16_add(a, ~b & 0xFFFF)


def csum_replace2(sum16: int, old: int, new: int) -> int:
    return ~csum16_add(csum16_sub(~sum16 & 0xFFFF, old), new) & 0xFFFF


def csum_replace_by_diff(sum16: int, diff: int) -> int:
    return csum_fold(csum_add(diff, ~csum_unfold(sum16) & M32))


def csum_partial(data: bytes, seed: int = 0) -> int:
    """The 32-bit partial sum of ``data`` (as csum_partial() leaves it, unfolded)."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    s = seed & M32
    for i in range(0, len(data), 2):
        s = csum_add(s, data[i] | (data[i + 1] << 8))
    return s


def ip_checksum(header: bytes) -> int:
    """The checksum field value (little-endian u16 of the memory bytes) of an IP header."""
    return csum_fold(csum_partial(header))
