"""Bob Jenkins' lookup3 hash as Linux's <linux/jhash.h> computes it.

Hash tables created with BPF_F_ZERO_SEED and bloom filters hash with
jhash/jhash2 exactly as the kernel does, so their bucket order (and so
iteration order) and bloom bit positions match Linux's.
"""
from __future__ import annotations

import struct

M = 0xFFFFFFFF
JHASH_INITVAL = 0xDEADBEEF


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & M


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & M; a ^= _rol(c, 4); c = (c + b) & M
    b = (b - a) & M; b ^= _rol(a, 6); a = (a + c) & M
    c = (c - b) & M; c ^= _rol(b, 8); b = (b + a) & M
    a = (a - c) & M; a ^= _rol(c, 16); c = (c + b) & M
    b = (b - a) & M; b ^= _rol(a, 19); a = (a + c) & M
    c = (c - b) & M; c ^= _rol(b, 4); b = (b + a) & M
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b; c = (c - _rol(b, 14)) & M
    a ^= c; a = (a - _rol(c, 11)) & M
    b ^= a; b = (b - _rol(a, 25)) & M
    c ^= b; c = (c - _rol(b, 16)) & M
    a ^= c; a = (a - _rol(c, 4)) & M
    b ^= a; b = (b - _rol(a, 14)) & M
    c ^= b; c = (c - _rol(b, 24)) & M
    return c


def jhash(key: bytes, initval: int = 0) -> int:
    """jhash(key, length, initval) over bytes."""
    n = len(key)
    a = b = c = (JHASH_INITVAL + n + initval) & M
    i = 0
    while n > 12:
        x, y, z = struct.unpack_from("<III", key, i)
        a, b, c = _mix((a + x) & M, (b + y) & M, (c + z) & M)
        i += 12
        n -= 12
    if n == 0:
        return c
    tail = key[i:] + bytes(12 - n)
    x, y, z = struct.unpack("<III", tail)
    return _final((a + x) & M, (b + y) & M, (c + z) & M)


def jhash2(words: tuple[int, ...] | list[int], initval: int = 0) -> int:
    """jhash2(u32 *k, length-in-words, initval)."""
    n = len(words)
    a = b = c = (JHASH_INITVAL + (n << 2) + initval) & M
    i = 0
    while n > 3:
        a, b, c = _mix((a + words[i]) & M, (b + words[i + 1]) & M, (c + words[i + 2]) & M)
        i += 3
        n -= 3
    if n == 0:
        return c
    if n == 3:
        c = (c + words[i + 2]) & M
    if n >= 2:
        b = (b + words[i + 1]) & M
    a = (a + words[i]) & M
    return _final(a, b, c)


def htab_hash(key: bytes, seed: int) -> int:
    """htab_map_hash(): jhash2 over u32 words when the length allows it."""
    if len(key) & 3 == 0:
        return jhash2(struct.unpack(f"<{len(key) // 4}I", key), seed)
    return jhash(key, seed)
