"""QUEUE and STACK (kernel/bpf/queue_stack_maps.c): keyless, bounded, push/pop/peek.

Both keep ``max_entries + 1`` value slots in a ring in ``SHARED``.  A push
onto a full map fails with E2BIG unless it carries BPF_EXIST, which drops the
oldest element (for a stack too: the bottom one), as Linux does.
"""
from __future__ import annotations

import errno as E

from .. import uapi as U
from ..uapi import MapType
from .base import ACCESS_MASK, Map
from .errors import map_error


class QueueMap(Map):
    map_type = MapType.QUEUE
    keyless = True
    create_flags = U.BPF_F_NUMA_NODE | ACCESS_MASK
    is_stack = False

    def check_attr(self) -> None:
        if self.max_entries == 0 or self.key_size != 0 or self.value_size == 0:
            raise map_error(E.EINVAL, "queues and stacks need key_size 0, value_size > 0, max_entries > 0")
        if self.value_size > U.KMALLOC_MAX_SIZE:
            raise map_error(E.E2BIG)

    def alloc(self) -> None:
        self.size = self.max_entries + 1
        self.value_region = self._add_region(self.size * self.value_size, "values")
        self.head = self.tail = 0
        self._write_handle(self.value_region.start)

    def _full(self) -> bool:
        h = self.head + 1
        return (0 if h >= self.size else h) == self.tail

    def push_raw(self, value: bytes, flags: int) -> int:
        if flags & U.BPF_NOEXIST or flags > U.BPF_EXIST:
            return E.EINVAL
        if self._full():
            if not flags & U.BPF_EXIST:
                return E.E2BIG
            self.tail += 1
            if self.tail >= self.size:
                self.tail = 0
        vs = self.value_size
        self.value_region.buf[self.head * vs:(self.head + 1) * vs] = value[:vs]
        self.head += 1
        if self.head >= self.size:
            self.head = 0
        return 0

    def pop_raw(self, delete: bool) -> bytes | None:
        if self.head == self.tail:
            return None
        vs = self.value_size
        if self.is_stack:
            idx = self.head - 1 if self.head else self.size - 1
            if delete:
                self.head = idx
        else:
            idx = self.tail
            if delete:
                self.tail = idx + 1 if idx + 1 < self.size else 0
        return bytes(self.value_region.buf[idx * vs:(idx + 1) * vs])

    # -- syscall side ----------------------------------------------------------------------

    def _sys_lookup(self, key, flags) -> bytes:
        v = self.pop_raw(False)
        if v is None:
            raise map_error(E.ENOENT)
        return v

    def _sys_update(self, key, value: bytes, flags: int) -> None:
        err = self.push_raw(value, flags)
        if err:
            raise map_error(err)

    def _sys_delete(self, key) -> None:
        raise map_error(E.EINVAL, "queue and stack elements cannot be deleted by key")

    def _get_next_key(self, key) -> bytes:
        raise map_error(E.EINVAL, "queues and stacks have no keys")

    def _sys_lookup_and_delete(self, key, flags) -> bytes:
        v = self.pop_raw(True)
        if v is None:
            raise map_error(E.ENOENT)
        return v

    def __len__(self) -> int:
        return (self.head - self.tail) % self.size

    def __iter__(self):
        raise TypeError(f"{self.type.name} maps cannot be iterated; use pop()")

    # -- program side ------------------------------------------------------------------------

    def prog_push(self, value: bytes, flags: int, cpu: int) -> int:
        with self.lock:
            return -self.push_raw(value, flags)

    def prog_pop(self, cpu: int) -> bytes | int:
        with self.lock:
            v = self.pop_raw(True)
        return -E.ENOENT if v is None else v

    def prog_peek(self, cpu: int) -> bytes | int:
        with self.lock:
            v = self.pop_raw(False)
        return -E.ENOENT if v is None else v

    def prog_lookup(self, key, cpu) -> int:
        raise map_error(E.EINVAL, "use bpf_map_peek_elem on queues and stacks")


class StackMap(QueueMap):
    map_type = MapType.STACK
    is_stack = True
