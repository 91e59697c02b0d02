"""STACK_TRACE (kernel/bpf/stackmap.c): stack ids to arrays of instruction pointers.

Programs call ``bpf_get_stackid``; the stack comes from the simulated current
task (``ebee.helpers.task``), since ebee runs no kernel.  Ids are
``jhash2(ips) & (n_buckets - 1)`` as in Linux; a different stack hashing to a
taken bucket gives -EEXIST unless BPF_F_REUSE_STACKID.
"""
from __future__ import annotations

import errno as E
import struct

from .. import uapi as U
from ..uapi import MapType
from .base import ACCESS_MASK, Map, roundup_pow_of_two
from .errors import map_error
from .jhash import jhash2

_U32 = struct.Struct("<I")


class StackTraceMap(Map):
    map_type = MapType.STACK_TRACE
    create_flags = U.BPF_F_NUMA_NODE | ACCESS_MASK | U.BPF_F_STACK_BUILD_ID

    def check_attr(self) -> None:
        if self.key_size != 4 or not self.value_size:
            raise map_error(E.EINVAL, "stack trace maps need key_size 4 and value_size > 0")
        entry = 32 if self.flags & U.BPF_F_STACK_BUILD_ID else 8   # bpf_stack_build_id / u64
        if self.value_size < entry or self.value_size % entry or \
                self.value_size // entry > U.PERF_MAX_STACK_DEPTH:
            raise map_error(E.EINVAL, f"value_size must be a multiple of {entry}, at most "
                                      f"{U.PERF_MAX_STACK_DEPTH} entries")
        if self.max_entries == 0:
            raise map_error(E.EINVAL)

    def alloc(self) -> None:
        self.n_buckets = roundup_pow_of_two(self.max_entries)
        self.buckets: list[tuple[int, ...] | None] = [None] * self.n_buckets
        self.value_region = self._add_region(self.n_buckets * self.value_size, "stacks", writable=False)
        self._write_handle(self.value_region.start)

    def get_stackid(self, ips: list[int], flags: int) -> int:
        """bpf_get_stackid() body: the id for ``ips`` (already skipped/trimmed), or -errno."""
        if flags & ~(U.BPF_F_SKIP_FIELD_MASK | U.BPF_F_USER_STACK | U.BPF_F_FAST_STACK_CMP
                     | U.BPF_F_REUSE_STACKID):
            return -E.EINVAL
        if not ips:
            return -E.EFAULT
        ips = tuple(ips[:self.value_size // 8])
        words = []
        for ip in ips:
            words += [ip & 0xFFFFFFFF, ip >> 32]
        h = jhash2(words, 0)
        bid = h & (self.n_buckets - 1)
        with self.lock:
            old = self.buckets[bid]
            if old == ips:
                return bid
            if old is not None and not flags & U.BPF_F_REUSE_STACKID:
                return -E.EEXIST
            self.buckets[bid] = ips
            data = b"".join(struct.pack("<Q", ip) for ip in ips)
            off = bid * self.value_size
            self.value_region.buf[off:off + self.value_size] = data + bytes(self.value_size - len(data))
        return bid

    def _sys_lookup(self, key: bytes, flags: int) -> bytes:
        sid = _U32.unpack(key)[0]
        if sid >= self.n_buckets or self.buckets[sid] is None:
            raise map_error(E.ENOENT)
        off = sid * self.value_size
        return bytes(self.value_region.buf[off:off + self.value_size])

    def _sys_update(self, key, value, flags) -> None:
        raise map_error(E.EINVAL, "stack traces are only added by bpf_get_stackid")

    def _sys_delete(self, key: bytes) -> None:
        sid = _U32.unpack(key)[0]
        if sid >= self.n_buckets:
            raise map_error(E.E2BIG)
        if self.buckets[sid] is None:
            raise map_error(E.ENOENT)
        self.buckets[sid] = None

    def _get_next_key(self, key: bytes | None) -> bytes:
        if key is None:
            i = 0
        else:
            i = _U32.unpack(key)[0]
            i = 0 if i >= self.n_buckets or self.buckets[i] is None else i + 1
        while i < self.n_buckets and self.buckets[i] is None:
            i += 1
        if i >= self.n_buckets:
            raise map_error(E.ENOENT)
        return _U32.pack(i)

    def _sys_lookup_and_delete(self, key, flags):
        raise map_error(U.ENOTSUPP)

    def prog_lookup(self, key: bytes, cpu: int) -> int:
        raise map_error(E.EINVAL, "programs cannot look up stack trace maps")
