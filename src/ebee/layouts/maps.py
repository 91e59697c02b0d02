"""The maps' own memory as native code reads it: the handle and the hash table.

docs/maps-layout.md describes these structures in prose; this is the one
place their offsets are written.  ``ebee.maps`` packs them (the handle in
``maps/base.py``, the table in ``maps/hashtab.py``) and the JIT's native
``bpf_map_lookup_elem`` (``jit/natives_maps.py``) reads them, so both follow
any change here.  Integers are little-endian; bytes not named are reserved
and zero.
"""
from __future__ import annotations

from .layout import Layout

#: ebee's own description of a map, just before what a map pointer points at (both in
#: one read-only registered region, see MAP_VIEW_OFF).  ``slots`` is
#: the number of value slots per element: the CPU count for per-CPU maps, else
#: 1; ``values`` and ``ctl`` are addresses (0 if the map has none); ``ncpus`` is
#: the CPU count the map was created with (CPUs 0..ncpus-1 have per-CPU state).
MAP_HANDLE = Layout("map handle", 64, {
    "type": (0, 4), "key_size": (4, 4), "value_size": (8, 4), "max_entries": (12, 4),
    "map_flags": (16, 4), "id": (20, 4), "elem_size": (24, 4), "slots": (28, 4),
    "values": (32, 8), "ctl": (40, 8), "ncpus": (48, 4),
})

#: A map pointer is the handle's address plus this.  The map's *kernel view* follows
#: the handle -- the bytes of the kernel's struct for the map type, laid out from the
#: kernel's BTF (``ebee.verifier.btfaccess.map_view``) -- because programs may read a
#: map pointer as that struct (``map->max_entries``), as in Linux.  The handle then
#: sits at negative offsets, which the verifier never lets a program read.
MAP_VIEW_OFF = MAP_HANDLE.size

#: The header of a hash table's control region; the bucket heads (u32 each)
#: follow it, then the entries.  ``buckets``, ``entries`` and ``values`` are
#: addresses; ``free_head`` is as of the last user-space sync.
HTAB_HEADER = Layout("hash table header", 64, {
    "lock": (0, 4), "count": (4, 4), "n_buckets": (8, 4), "nslots": (12, 4),
    "key_size": (16, 4), "entry_size": (20, 4), "stride": (24, 4), "free_head": (28, 4),
    "hash_kind": (32, 4), "buckets": (40, 8), "entries": (48, 8), "values": (56, 8),
})

#: A bucket head: slot + 1 of the chain's first entry, 0 for an empty bucket.
HTAB_BUCKET_SIZE = 4

#: One entry: ``next`` is slot + 1 of the next entry in the chain (or of the
#: next free slot), then the key's hash, its state and the LRU reference bit a
#: program's lookup sets; the key follows, padded to 8 bytes.
HTAB_ENTRY = Layout("hash table entry", 16, {
    "next": (0, 4), "hash": (4, 4), "state": (8, 1), "lru_ref": (9, 1), "key": (16, 0),
})

# HTAB_ENTRY.state
STATE_FREE, STATE_USED, STATE_EXTRA = 0, 1, 2       # EXTRA: a CPU's spare element

# HTAB_HEADER.hash_kind: CRC-32 (zlib, IEEE), or Linux's htab_map_hash (BPF_F_ZERO_SEED)
HASH_CRC32, HASH_JHASH = 0, 1
