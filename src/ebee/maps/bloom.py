"""BLOOM_FILTER (kernel/bpf/bloom_filter.c): push values, ask whether one may be present.

The bit array is sized as Linux sizes it (``max_entries * nr_hash_funcs * 7/5``
bits rounded up to a power of two) and values are hashed with jhash/jhash2
seeded with ``seed + i`` for hash function i, so with BPF_F_ZERO_SEED the very
same bits are set -- and the same false positives reported -- as in Linux.
``map_extra`` (low 4 bits) is the number of hash functions (0 means 5).
"""
from __future__ import annotations

import errno as E
import random
import struct

from .. import uapi as U
from ..uapi import MapType
from .base import ACCESS_MASK, Map, round_up, roundup_pow_of_two
from .errors import map_error
from .jhash import jhash, jhash2

BITS_PER_LONG = 64
U32_MAX = 0xFFFFFFFF


class BloomFilter(Map):
    map_type = MapType.BLOOM_FILTER
    keyless = True
    create_flags = U.BPF_F_NUMA_NODE | U.BPF_F_ZERO_SEED | ACCESS_MASK

    def check_attr(self) -> None:
        if self.key_size != 0 or self.value_size == 0 or self.max_entries == 0 or self.map_extra & ~0xF:
            raise map_error(E.EINVAL, "bloom filters need key_size 0, value_size > 0, "
                                      "max_entries > 0 and map_extra <= 15")

    def alloc(self) -> None:
        self.nr_hash_funcs = (self.map_extra & 0xF) or U.BLOOM_DEFAULT_NR_HASH_FUNCS
        nr_bits = self.max_entries * self.nr_hash_funcs
        if nr_bits > U32_MAX or (nr_bits // 5) * 7 > U32_MAX or (nr_bits // 5) * 7 > 1 << 31:
            nbytes, self.mask = (U32_MAX + 8) // 8, U32_MAX
        else:
            nr_bits = (nr_bits // 5) * 7
            nr_bits = BITS_PER_LONG if nr_bits <= BITS_PER_LONG else roundup_pow_of_two(nr_bits)
            nbytes, self.mask = nr_bits // 8, nr_bits - 1
        self.bits = self._add_region(round_up(nbytes, 8), "bits", shared=False)
        self.seed = 0 if self.flags & U.BPF_F_ZERO_SEED else random.getrandbits(32)
        self.words = self.value_size // 4 if self.value_size % 4 == 0 else 0
        self._write_handle(0, self.bits.start)

    def _hashes(self, value: bytes):
        vs = value[:self.value_size]
        w = struct.unpack(f"<{self.words}I", vs) if self.words else None
        for i in range(self.nr_hash_funcs):
            s = (self.seed + i) & U32_MAX
            h = jhash2(w, s) if w is not None else jhash(vs, s)
            yield h & self.mask

    def push_raw(self, value: bytes, flags: int) -> int:
        if flags != U.BPF_ANY:
            return E.EINVAL
        b = self.bits.buf
        for h in self._hashes(value):
            b[h >> 3] |= 1 << (h & 7)
        return 0

    def peek_raw(self, value: bytes) -> int:
        b = self.bits.buf
        for h in self._hashes(value):
            if not b[h >> 3] & (1 << (h & 7)):
                return E.ENOENT
        return 0

    # -- syscall side: lookup takes the value to test ----------------------------------

    def lookup(self, value=None, flags: int = 0):
        """True if ``value`` may have been pushed; MapKeyError (ENOENT) if it surely was not."""
        self._check_read(flags)
        err = self.peek_raw(self.value_conv.pack(value))
        if err:
            raise map_error(err)
        return True

    def __contains__(self, value) -> bool:
        return self.peek_raw(self.value_conv.pack(value)) == 0

    def _sys_lookup(self, key, flags):
        raise map_error(E.EINVAL)

    def _sys_update(self, key, value: bytes, flags: int) -> None:
        err = self.push_raw(value, flags)
        if err:
            raise map_error(err)

    def _sys_delete(self, key) -> None:
        raise map_error(E.EOPNOTSUPP)

    def _get_next_key(self, key) -> bytes:
        raise map_error(E.EOPNOTSUPP)

    def __iter__(self):
        raise TypeError("bloom filters cannot be iterated")

    # -- program side --------------------------------------------------------------------

    def prog_push(self, value: bytes, flags: int, cpu: int) -> int:
        return -self.push_raw(value, flags)

    def prog_peek(self, cpu: int, value: bytes = b"") -> int:
        return -self.peek_raw(value)

    def prog_pop(self, cpu: int) -> int:
        return -E.EOPNOTSUPP
