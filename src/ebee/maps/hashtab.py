"""Hash tables: HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH, HASH_OF_MAPS.

The table is flat memory with a documented layout (``ebee.layouts.maps``,
described in docs/maps-layout.md) that native code can walk: a control region holding a header, the bucket heads
and the entries (chain link, hash, state, LRU reference bit, key), and a
values region in ``SHARED`` with one value slot per entry (``ncpus`` slots
for per-CPU tables), so program lookups return real addresses.

Semantics follow kernel/bpf/hashtab.c: ``roundup_pow_of_two(max_entries)``
buckets, new elements at the head of their bucket's chain, an update of an
existing key in a plain hash table inserts a fresh element and retires the
old one to the CPU's spare ("extra") element, E2BIG when no free element is
left, get_next_key walking chains then buckets and restarting from the first
bucket for a missing key, batches bucket by bucket.  With BPF_F_ZERO_SEED
keys are hashed with jhash exactly as Linux does, so iteration order matches
the kernel's; otherwise with CRC-32 (Linux's order is then random anyway).
"""
from __future__ import annotations

import errno as E
import struct
import zlib
from typing import Any, Iterator

from .. import uapi as U
from ..layouts.maps import (HASH_CRC32, HASH_JHASH, HTAB_BUCKET_SIZE, HTAB_ENTRY, HTAB_HEADER,
                            STATE_EXTRA, STATE_FREE, STATE_USED)
from ..uapi import MapType
from .array import MapInMapMixin, check_inner_template
from . import cpus
from .base import ACCESS_MASK, Map, free_fields, round_up, roundup_pow_of_two
from .errors import map_error
from .jhash import htab_hash
from .lru import Lru

HEADER = HTAB_HEADER.packer()
_H_COUNT, _H_FREE_HEAD = HTAB_HEADER.off("count"), HTAB_HEADER.off("free_head")
# an entry's members, from the entry's offset
_E_NEXT, _E_HASH = HTAB_ENTRY.off("next"), HTAB_ENTRY.off("hash")
_E_STATE, _E_REF = HTAB_ENTRY.off("state"), HTAB_ENTRY.off("lru_ref")
ENTRY_META = HTAB_ENTRY.off("key")       # the bookkeeping before the key
_KEY_TO_NEXT = _E_NEXT - ENTRY_META
_NEXT_HASH = HTAB_ENTRY.packer("next", "hash")
_U32 = struct.Struct("<I")               # a bucket head, a link, a value slot's map id
# The table region (mappable: a pin maps its file over it, ebee.maps.shared) starts with the
# state every process must see: a busy word (non-zero while a writer edits the chains), the
# element count, the free list head, each CPU's spare slot; the bucket heads and entries
# follow.  The header the handle points at holds absolute addresses, so it stays private.
_T_BUSY, _T_COUNT, _T_FREE, _T_EXTRA = 0, 4, 8, 16
HTAB_ELEM_SIZE = 48      # sizeof(struct htab_elem) in the kernel (bounds the key+value size)


class HashMap(Map):
    """BPF_MAP_TYPE_HASH; subclasses set ``percpu`` / ``lru``."""

    map_type = MapType.HASH
    lru = False
    _staged: bytearray | None = None
    elements_in_regions = True
    create_flags = U.BPF_F_NO_PREALLOC | U.BPF_F_NO_COMMON_LRU | U.BPF_F_NUMA_NODE | ACCESS_MASK | \
        U.BPF_F_ZERO_SEED
    batch_ops = frozenset({"lookup", "update", "delete", "lookup_and_delete"})

    def check_attr(self) -> None:
        # htab_map_alloc_check()
        percpu_lru = bool(self.flags & U.BPF_F_NO_COMMON_LRU)
        prealloc = not self.flags & U.BPF_F_NO_PREALLOC
        if not self.lru and percpu_lru:
            raise map_error(E.EINVAL, "BPF_F_NO_COMMON_LRU is for LRU maps")
        if self.lru and not prealloc:
            raise map_error(U.ENOTSUPP, "LRU maps are always preallocated")
        if self.flags & U.BPF_F_NUMA_NODE and (self.percpu or percpu_lru):
            raise map_error(E.EINVAL, "per-CPU maps take no NUMA node")
        if self.max_entries == 0 or self.key_size == 0 or self.value_size == 0:
            raise map_error(E.EINVAL, "hash maps need key_size, value_size and max_entries > 0")
        if self.key_size + self.value_size >= U.KMALLOC_MAX_SIZE - HTAB_ELEM_SIZE:
            raise map_error(E.E2BIG)
        if self.percpu and round_up(self.value_size, 8) > U.PCPU_MIN_UNIT_SIZE:
            raise map_error(E.E2BIG, f"per-CPU values are limited to {U.PCPU_MIN_UNIT_SIZE} bytes")

    # -- memory ----------------------------------------------------------------------------

    def alloc(self) -> None:
        self.percpu_lru = bool(self.flags & U.BPF_F_NO_COMMON_LRU)
        if self.percpu_lru:
            # each CPU's LRU list gets the same number of elements
            n = self.ncpus
            me = (self.max_entries + n - 1) // n * n
            if me < self.max_entries:
                me = self.max_entries // n * n
            self.max_entries = me
        if self.max_entries > 1 << 31:
            raise map_error(E.E2BIG)
        self.n_buckets = roundup_pow_of_two(self.max_entries)
        # Linux keeps one spare element per CPU for updates of existing keys in
        # plain tables; without preallocation it allocates a fresh one, which the
        # spare models too
        self.extra_elems = not self.percpu and not self.lru
        nslots = self.max_entries + (self.ncpus if self.extra_elems else 0)
        self.nslots = nslots
        self.kstride = round_up(self.key_size, 8)
        self.esize = ENTRY_META + self.kstride
        self.stride = self.elem_size * (self.ncpus if self.percpu else 1)
        self.boff = round_up(_T_EXTRA + 4 * self.ncpus, 8)
        self.eoff = self.boff + round_up(HTAB_BUCKET_SIZE * self.n_buckets, 8)
        table_size = self.eoff + nslots * self.esize
        if table_size + nslots * self.stride > 1 << 34:
            raise map_error(E.ENOMEM)
        self.ctl = self._add_region(HTAB_HEADER.size, "header", shared=False)
        self.table = self._add_region(table_size, "table", shared=False, mappable=True)
        self.value_region = self._add_region(nslots * self.stride, "values", mappable=True,
                                       writable=not self.flags & U.BPF_F_RDONLY_PROG)
        self.c = self.table.buf
        self.vbuf = self.value_region.buf
        self.hash_kind = HASH_JHASH if self.flags & U.BPF_F_ZERO_SEED else HASH_CRC32
        self.count = 0
        # free list: chained through the entries' next fields, first slot first
        c, eoff, esz = self.c, self.eoff, self.esize
        self.free_head = 0
        extra_from = self.max_entries if self.extra_elems else nslots
        for slot in range(extra_from - 1, -1, -1):
            _U32.pack_into(c, eoff + slot * esz + _E_NEXT, self.free_head)
            self.free_head = slot + 1
        self.extra = memoryview(c)[_T_EXTRA:_T_EXTRA + 4 * self.ncpus].cast("I") \
            if self.extra_elems else []
        for cpu in range(len(self.extra)):
            self.extra[cpu] = extra_from + cpu
        for slot in self.extra:
            c[eoff + slot * esz + _E_STATE] = STATE_EXTRA
        if self.lru:
            self.lru_lists = Lru(self.max_entries, self.ncpus, self.percpu_lru, self._lru_del_node,
                                 self._is_ref, self._clear_ref)
        self._sync_header()
        self._write_handle(self.value_region.start, self.ctl.start)

    def _sync_header(self) -> None:
        HEADER.pack_into(self.ctl.buf, 0, 0, self.count, self.n_buckets, self.nslots,
                         self.key_size, self.esize, self.stride, self.free_head, self.hash_kind,
                         self.table.start + self.boff, self.table.start + self.eoff,
                         self.value_region.start)

    # the table's shared state
    count = property(lambda s: _U32.unpack_from(s.c, _T_COUNT)[0],
                     lambda s, v: _U32.pack_into(s.c, _T_COUNT, v))
    free_head = property(lambda s: _U32.unpack_from(s.c, _T_FREE)[0],
                         lambda s, v: _U32.pack_into(s.c, _T_FREE, v))

    def _op(self, write: bool = False) -> "_SharedOp | _NoLock":
        """The cross-process lock of a shared table (nothing for a private one)."""
        return _NOLOCK if self.shared is None else _SharedOp(self, write)

    def repair(self) -> None:
        """Rebuild the chains' invariants after a writer was killed in the middle of an edit
        (found by its busy word): every chain keeps each key once (the newest, nearest the
        head), only live entries are linked, the spares are unlinked slots, the free list and
        the count are what is left."""
        c, eoff, esz, ks = self.c, self.eoff, self.esize, self.key_size
        linked: set[int] = set()
        for b in range(self.n_buckets):
            boff = self.boff + b * HTAB_BUCKET_SIZE
            prev, seen = boff, set()
            i = _U32.unpack_from(c, boff)[0]
            while i:
                slot = i - 1
                e = eoff + slot * esz
                key = bytes(c[e + ENTRY_META:e + ENTRY_META + ks])
                nxt = _U32.unpack_from(c, e + _E_NEXT)[0]
                bad = slot >= self.nslots or slot in linked or key in seen or \
                    c[e + _E_STATE] != STATE_USED or \
                    (_U32.unpack_from(c, e + _E_HASH)[0] & (self.n_buckets - 1)) != b
                if bad:
                    if slot >= self.nslots or slot in linked:
                        _U32.pack_into(c, prev, 0)      # a cycle or garbage: cut the chain
                        break
                    _U32.pack_into(c, prev, nxt)        # the older copy of a replaced key
                    i = nxt
                    continue
                linked.add(slot)
                seen.add(key)
                prev = e + _E_NEXT
                i = nxt
        spares = []
        for cpu in range(len(self.extra)):
            s = self.extra[cpu]
            if s >= self.nslots or s in linked or s in spares:
                s = next(x for x in range(self.nslots) if x not in linked and x not in spares
                         and x not in self.extra[cpu + 1:])
                self.extra[cpu] = s
            spares.append(s)
            c[eoff + s * esz + _E_STATE] = STATE_EXTRA
        self.free_head = 0
        for slot in range(self.nslots - 1, -1, -1):
            if slot not in linked and slot not in spares:
                self._free_slot(slot)
        self.count = len(linked)
        _U32.pack_into(c, _T_BUSY, 0)

    # -- the table ---------------------------------------------------------------------------

    def _hash(self, key: bytes) -> int:
        if self.hash_kind == HASH_JHASH:
            return htab_hash(key, 0)
        return zlib.crc32(key)

    def _find(self, key: bytes, h: int) -> tuple[int, int]:
        """(slot or -1, bucket offset) for key."""
        c = self.c
        boff = self.boff + (h & (self.n_buckets - 1)) * HTAB_BUCKET_SIZE
        i = _U32.unpack_from(c, boff)[0]
        eoff, esz, ks = self.eoff + ENTRY_META, self.esize, self.key_size
        while i:
            e = eoff + (i - 1) * esz
            if c[e:e + ks] == key:
                return i - 1, boff
            i = _U32.unpack_from(c, e + _KEY_TO_NEXT)[0]
        return -1, boff

    def _link_head(self, slot: int, boff: int, key: bytes, h: int) -> None:
        c = self.c
        e = self.eoff + slot * self.esize
        _NEXT_HASH.pack_into(c, e + _E_NEXT, _U32.unpack_from(c, boff)[0], h)
        c[e + _E_STATE] = STATE_USED
        c[e + _E_REF] = 0
        c[e + ENTRY_META:e + ENTRY_META + self.key_size] = key
        _U32.pack_into(c, boff, slot + 1)

    def _unlink(self, slot: int, boff: int) -> bool:
        c = self.c
        links, esz = self.eoff + _E_NEXT, self.esize
        prev = boff                          # the link to rewrite: a bucket head or an entry's next
        i = _U32.unpack_from(c, boff)[0]
        while i:
            link = links + (i - 1) * esz
            nxt = _U32.unpack_from(c, link)[0]
            if i - 1 == slot:
                _U32.pack_into(c, prev, nxt)
                c[link - _E_NEXT + _E_STATE] = STATE_FREE
                return True
            prev = link
            i = nxt
        return False

    def _alloc_slot(self) -> int:
        if not self.free_head:
            return -1
        slot = self.free_head - 1
        self.free_head = _U32.unpack_from(self.c, self.eoff + slot * self.esize + _E_NEXT)[0]
        return slot

    def _free_slot(self, slot: int) -> None:
        e = self.eoff + slot * self.esize
        _U32.pack_into(self.c, e + _E_NEXT, self.free_head)
        self.c[e + _E_STATE] = STATE_FREE
        self.free_head = slot + 1

    def _voff(self, slot: int) -> int:
        return slot * self.stride

    def _write_value(self, slot: int, value: bytes, cpu: int | None) -> None:
        """Copy a value in: all CPUs from a syscall buffer (cpu None) or one CPU's slot."""
        off = slot * self.stride
        vs, es = self.value_size, self.elem_size
        if self.shared is not None and self.vbuf is not self._staged:
            # in place over a live element: through the file's journal, so a process killed
            # in the middle leaves the old value or the new one
            self._staged = staged = bytearray(self.vbuf[off:off + self.stride])
            real, self.vbuf = self.vbuf, staged
            try:
                self._write_value(0, value, cpu)
            finally:
                self.vbuf = real
                self._staged = None
            self.shared.write(off, bytes(staged))
            return
        if self.percpu:
            if cpu is None:
                for k in range(self.ncpus):
                    self.vbuf[off + k * es:off + k * es + vs] = value[k * es:k * es + vs]
            else:
                self.vbuf[off + cpu * es:off + cpu * es + vs] = value[:vs]
            return
        lo = self.spin_lock_off
        if lo >= 0:
            self.vbuf[off:off + lo] = value[:lo]
            self.vbuf[off + lo + 4:off + vs] = value[lo + 4:vs]
        else:
            self.vbuf[off:off + vs] = value[:vs]

    def _init_percpu(self, slot: int, value: bytes, cpu: int | None) -> None:
        """pcpu_init_value(): a new element from a program zeroes the other CPUs."""
        if cpu is None:
            self._write_value(slot, value, None)
            return
        off = slot * self.stride
        self.vbuf[off:off + self.stride] = bytes(self.stride)
        self._write_value(slot, value, cpu)

    def _read_value(self, slot: int) -> bytes:
        off = slot * self.stride
        if self.percpu:
            return bytes(self.vbuf[off:off + self.stride])
        out = self.vbuf[off:off + self.value_size]
        if self.spin_lock_off >= 0:
            out = bytearray(out)
            out[self.spin_lock_off:self.spin_lock_off + 4] = bytes(4)
        return bytes(out)

    # -- LRU glue ------------------------------------------------------------------------------

    def _is_ref(self, slot: int) -> bool:
        return self.c[self.eoff + slot * self.esize + _E_REF] != 0

    def _clear_ref(self, slot: int) -> None:
        self.c[self.eoff + slot * self.esize + _E_REF] = 0

    def _set_ref(self, slot: int) -> None:
        self.c[self.eoff + slot * self.esize + _E_REF] = 1

    def _lru_del_node(self, slot: int) -> bool:
        """htab_lru_map_delete_node(): unlink the evicted element if it is in the table."""
        e = self.eoff + slot * self.esize
        h = _U32.unpack_from(self.c, e + _E_HASH)[0]
        boff = self.boff + (h & (self.n_buckets - 1)) * HTAB_BUCKET_SIZE
        if self.c[e + _E_STATE] != STATE_USED:
            return False
        if self._unlink(slot, boff):
            self.count -= 1
            self._on_remove(slot)
            return True
        return False

    def _on_remove(self, slot: int) -> None:
        """An element leaves the table (deleted, replaced, evicted): its special
        fields go with it, as in Linux (a timer in it is cancelled)."""
        if self.record and not self.percpu:
            free_fields(self, self.vbuf, self._voff(slot))

    # -- core operations (shared by syscall and program sides) ----------------------------------

    def _check_flags(self, found: bool, flags: int) -> int:
        f = flags & ~U.BPF_F_LOCK
        if found and f == U.BPF_NOEXIST:
            return E.EEXIST
        if not found and f == U.BPF_EXIST:
            return E.ENOENT
        return 0

    def _update(self, key: bytes, value: bytes, flags: int, cpu: int | None, run_cpu: int) -> int:
        """0 or an errno.  ``cpu`` None: value holds every CPU's slot (syscall)."""
        if self.percpu:
            if flags > U.BPF_EXIST:
                return E.EINVAL
        elif (flags & ~U.BPF_F_LOCK) > U.BPF_EXIST:
            return E.EINVAL
        h = self._hash(key)
        if self.lru:
            return self._lru_update(key, value, flags, cpu, run_cpu, h)
        slot, boff = self._find(key, h)
        if flags & U.BPF_F_LOCK:
            if self.spin_lock_off < 0:
                return E.EINVAL
            err = self._check_flags(slot >= 0, flags)
            if err:
                return err
            if slot >= 0:
                self._write_value(slot, value, cpu)
                return 0
        err = self._check_flags(slot >= 0, flags)
        if err:
            return err
        if self.percpu:
            if slot >= 0:
                self._write_value(slot, value, cpu)
                return 0
            new = self._alloc_slot()
            if new < 0:
                return E.E2BIG
            self._init_percpu(new, value, cpu)
            self._link_head(new, boff, key, h)
            self.count += 1
            return 0
        if slot >= 0 and self.extra_elems:
            # alloc_htab_elem() with an old element: take the CPU's spare, retire the old one
            new = self.extra[run_cpu]
            self.extra[run_cpu] = slot
        else:
            new = self._alloc_slot()
            if new < 0:
                return E.E2BIG
            if slot < 0:
                self.count += 1
        self._write_value(new, value, None)
        self._store_obj(new, value)
        self._link_head(new, boff, key, h)
        if slot >= 0:
            self._unlink(slot, boff)
            self._on_remove(slot)
            if self.extra_elems:
                self.c[self.eoff + slot * self.esize + _E_STATE] = STATE_EXTRA
            else:
                self._free_slot(slot)
        return 0

    def _store_obj(self, slot: int, value: Any) -> None:
        """Hook for HASH_OF_MAPS."""

    def _lru_update(self, key: bytes, value: bytes, flags: int, cpu: int | None, run_cpu: int,
                    h: int) -> int:
        lru = self.lru_lists
        if self.percpu:
            # htab_lru_percpu_map_update_elem()
            new = -1
            if flags != U.BPF_EXIST:
                node = lru.pop_free(run_cpu)
                if node is None:
                    return E.ENOMEM
                new = node
                self.count += 1
                self._stamp(new, h)
            slot, boff = self._find(key, h)
            err = self._check_flags(slot >= 0, flags)
            if not err:
                if slot >= 0:
                    self._set_ref(slot)
                    self._write_value(slot, value, cpu)
                else:
                    self._init_percpu(new, value, cpu)
                    self._link_head(new, boff, key, h)
                    new = -1
            if new >= 0:
                self.count -= 1
                lru.push_free(new)
            return err
        # htab_lru_map_update_elem(): the new node is taken (possibly evicting) first
        node = lru.pop_free(run_cpu)
        if node is None:
            return E.ENOMEM
        self.count += 1
        self._stamp(node, h)
        self._write_value(node, value, None)
        slot, boff = self._find(key, h)
        err = self._check_flags(slot >= 0, flags)
        if err:
            self.count -= 1
            lru.push_free(node)
            return err
        self._link_head(node, boff, key, h)
        if slot >= 0:
            self._set_ref(node)
            self._unlink(slot, boff)
            self.count -= 1
            lru.push_free(slot)
        return 0

    def _stamp(self, slot: int, h: int) -> None:
        e = self.eoff + slot * self.esize
        _U32.pack_into(self.c, e + _E_HASH, h)
        self.c[e + _E_STATE] = STATE_FREE

    def _delete(self, key: bytes) -> int:
        h = self._hash(key)
        slot, boff = self._find(key, h)
        if slot < 0:
            return E.ENOENT
        self._remove(slot, boff)
        return 0

    def _remove(self, slot: int, boff: int) -> None:
        self._unlink(slot, boff)
        self.count -= 1
        self._on_remove(slot)
        if self.lru:
            self.lru_lists.push_free(slot)
        else:
            self._free_slot(slot)

    # -- syscall side ----------------------------------------------------------------------------

    def _sys_lookup(self, key: bytes, flags: int) -> bytes:
        with self._op():
            slot, _ = self._find(key, self._hash(key))
            if slot < 0:
                raise map_error(E.ENOENT)
            return self._read_value(slot)

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        # a user CPU above the map's count shares a lower CPU's spare element / LRU list
        with self._op(True):
            err = self._update(key, value, flags, None, cpus.user_cpu() % self.ncpus)
        if err:
            raise map_error(err)
        self._sync_count()

    def _sync_count(self) -> None:
        _U32.pack_into(self.ctl.buf, _H_COUNT, self.count)
        _U32.pack_into(self.ctl.buf, _H_FREE_HEAD, self.free_head)

    def _sys_delete(self, key: bytes) -> None:
        with self._op(True):
            err = self._delete(key)
        if err:
            raise map_error(err)
        self._sync_count()

    def _sys_lookup_and_delete(self, key: bytes, flags: int) -> bytes:
        if self.percpu and flags & U.BPF_F_LOCK:
            raise map_error(E.EINVAL)
        h = self._hash(key)
        with self._op(True):
            slot, boff = self._find(key, h)
            if slot < 0:
                raise map_error(E.ENOENT)
            v = self._read_value(slot)
            self._remove(slot, boff)
        self._sync_count()
        return v

    def _first_in(self, bucket: int) -> int:
        return _U32.unpack_from(self.c, self.boff + bucket * HTAB_BUCKET_SIZE)[0]

    def _key_of(self, slot: int) -> bytes:
        e = self.eoff + slot * self.esize + ENTRY_META
        return bytes(self.c[e:e + self.key_size])

    def _get_next_key(self, key: bytes | None) -> bytes:
        with self._op():
            return self._next_key(key)

    def _next_key(self, key: bytes | None) -> bytes:
        i = 0
        if key is not None:
            h = self._hash(key)
            slot, _ = self._find(key, h)
            if slot >= 0:
                nxt = _U32.unpack_from(self.c, self.eoff + slot * self.esize + _E_NEXT)[0]
                if nxt:
                    return self._key_of(nxt - 1)
                i = (h & (self.n_buckets - 1)) + 1
        for b in range(i, self.n_buckets):
            first = self._first_in(b)
            if first:
                return self._key_of(first - 1)
        raise map_error(E.ENOENT)

    def _chain(self, bucket: int) -> list[int]:
        out = []
        i = self._first_in(bucket)
        # bounded: for_each walks without the lock, while another process may edit
        while i and len(out) <= self.nslots:
            out.append(i - 1)
            i = _U32.unpack_from(self.c, self.eoff + (i - 1) * self.esize + _E_NEXT)[0]
        return out

    def _lookup_batch(self, in_batch, count, elem_flags, delete):
        """__htab_map_lookup_and_delete_batch(): whole buckets at a time."""
        with self._op(delete):
            return self._lookup_batch_locked(in_batch, count, elem_flags, delete)

    def _lookup_batch_locked(self, in_batch, count, elem_flags, delete):
        if elem_flags & ~U.BPF_F_LOCK or (elem_flags & U.BPF_F_LOCK and self.spin_lock_off < 0):
            return [], [], None, E.EINVAL
        if not count:
            return [], [], None, 0
        batch = 0
        if in_batch is not None:
            batch = in_batch if isinstance(in_batch, int) else _U32.unpack(bytes(in_batch)[:4])[0]
        if batch >= self.n_buckets:
            return [], [], None, E.ENOENT
        keys, values = [], []
        err = 0
        while True:
            chain = self._chain(batch)
            if len(chain) > count - len(keys):
                if not keys:
                    err = E.ENOSPC
                break
            for slot in chain:
                keys.append(self._key_of(slot))
                values.append(self._batch_value(slot))
            if delete:
                boff = self.boff + batch * HTAB_BUCKET_SIZE
                for slot in chain:
                    self._remove(slot, boff)
                self._sync_count()
            batch += 1
            if batch >= self.n_buckets:
                err = E.ENOENT
                break
        return keys, values, batch, err

    def _batch_value(self, slot: int) -> Any:
        return self._read_value(slot)

    # -- program side --------------------------------------------------------------------------

    def prog_lookup(self, key: bytes, cpu: int) -> int:
        with self._op():
            slot, _ = self._find(key, self._hash(key))
        if slot < 0:
            return 0
        if self.lru:
            self._set_ref(slot)
        return self.value_region.start + slot * self.stride + (cpu * self.elem_size if self.percpu else 0)

    def prog_lookup_percpu(self, key: bytes, cpu: int) -> int:
        if not self.percpu or cpu >= self.ncpus:
            return 0
        return self.prog_lookup(key, cpu)

    def prog_update(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        with self.lock, self._op(True):
            err = self._update(key, value, flags, cpu if self.percpu else None, cpu)
            self._sync_count()
        return -err

    def prog_delete(self, key: bytes, cpu: int) -> int:
        with self.lock, self._op(True):
            err = self._delete(key)
            self._sync_count()
        return -err

    def for_each(self, cpu: int) -> Iterator[tuple[bytes, int]]:
        for b in range(self.n_buckets):
            for slot in self._chain(b):
                yield self._key_of(slot), self.value_region.start + slot * self.stride + \
                    (cpu * self.elem_size if self.percpu else 0)


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


_NOLOCK = _NoLock()


class _SharedOp:
    """One operation on a shared table: the file's lock (flock: released by the kernel when
    a holder dies, so a killed process wedges no one), then -- if the busy word says the last
    writer died in the middle of an edit -- :meth:`HashMap.repair`; writers hold the busy
    word for the edit."""

    __slots__ = ("m", "write")

    def __init__(self, m: HashMap, write: bool):
        self.m, self.write = m, write

    def __enter__(self) -> None:
        m = self.m
        m.shared.__enter__()
        if _U32.unpack_from(m.c, _T_BUSY)[0]:
            m.repair()
        if self.write:
            _U32.pack_into(m.c, _T_BUSY, 1)

    def __exit__(self, *exc) -> None:
        m = self.m
        if self.write:
            _U32.pack_into(m.c, _T_BUSY, 0)
        m.shared.__exit__()


class PercpuHashMap(HashMap):
    map_type = MapType.PERCPU_HASH
    percpu = True


class LruHashMap(HashMap):
    map_type = MapType.LRU_HASH
    lru = True


class LruPercpuHashMap(HashMap):
    map_type = MapType.LRU_PERCPU_HASH
    lru = True
    percpu = True


class HashOfMaps(MapInMapMixin, HashMap):
    """BPF_MAP_TYPE_HASH_OF_MAPS: values are maps; the value slot holds the inner map's id."""

    map_type = MapType.HASH_OF_MAPS

    def check_attr(self) -> None:
        if self.value_size != 4:
            raise map_error(E.EINVAL, "map-in-map values are 4 bytes")
        super().check_attr()
        check_inner_template(self)

    def alloc(self) -> None:
        super().alloc()
        self.objs: dict[int, Map] = {}

    def _sys_value(self, value: Any) -> Any:
        return self.check_value(value)

    def _unv(self, raw: Any) -> Any:
        return raw

    def _write_value(self, slot: int, value: Any, cpu: int | None) -> None:
        _U32.pack_into(self.vbuf, slot * self.stride, value.id)

    def _store_obj(self, slot: int, value: Any) -> None:
        self.objs[slot] = value

    def _on_remove(self, slot: int) -> None:
        self.objs.pop(slot, None)

    def _read_value(self, slot: int) -> Any:
        return self.objs[slot]

    def _batch_value(self, slot: int) -> Any:
        return self.objs[slot]

    def prog_lookup(self, key: bytes, cpu: int) -> int:
        slot, _ = self._find(key, self._hash(key))
        return self.objs[slot].addr if slot >= 0 else 0

    def prog_update(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        return -E.EINVAL

