"""The maps' memory layouts: docs/maps-layout.md, ebee.layouts.maps and the bytes maps write agree."""
from __future__ import annotations

import ctypes
import re
import struct
import zlib
from pathlib import Path

import pytest

from ebee.layouts import Layout
from ebee.layouts.maps import (HASH_CRC32, HASH_JHASH, HTAB_ENTRY, HTAB_HEADER, MAP_HANDLE,
                               MAP_VIEW_OFF, STATE_USED)
from ebee.maps import Map
from ebee.maps.jhash import htab_hash
from ebee.uapi import BPF_F_ZERO_SEED, MapType as T

DOC = Path(__file__).resolve().parents[1] / "docs" / "maps-layout.md"
SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "key_size bytes": 0}
ROW = re.compile(r"^\| (\d+) \| ([^|]+?) \| `(\w+)`")


def _doc_table(after: str) -> dict[str, tuple[int, int]]:
    """The named rows of the first table after the line ``after``: name -> (offset, size)."""
    lines = DOC.read_text().splitlines()
    start = lines.index(after)
    rows: dict[str, tuple[int, int]] = {}
    for line in lines[start + 1:]:
        if rows and not line.startswith("|"):
            break
        m = ROW.match(line)
        if m:
            rows[m[3]] = (int(m[1]), SIZES[m[2]])
    return rows


@pytest.mark.parametrize("layout,after", [
    (MAP_HANDLE, "## The handle: just before what a map pointer points at"),
    (HTAB_HEADER, "Control region:"),
    (HTAB_ENTRY, "Entry:"),
], ids=["handle", "htab_header", "htab_entry"])
def test_the_doc_tables_are_the_layouts(layout: Layout, after: str):
    assert _doc_table(after) == layout.members


def _read(buf, layout: Layout, name: str) -> int:
    off, size = layout.members[name]
    return int.from_bytes(bytes(buf[off:off + size]), "little")


@pytest.mark.parametrize("map_type", [T.ARRAY, T.PERCPU_ARRAY, T.HASH, T.LRU_PERCPU_HASH])
def test_the_handle_holds_what_its_layout_names(map_type):
    with Map(map_type, 4, 12, 10) as m:
        assert m.addr == m.handle.start + MAP_VIEW_OFF
        h = m.handle.buf[:MAP_HANDLE.size]
        got = {name: _read(h, MAP_HANDLE, name) for name in MAP_HANDLE.members}
        assert got == {"type": int(map_type), "key_size": 4, "value_size": 12, "max_entries": 10,
                       "map_flags": 0, "id": m.id, "elem_size": 16,
                       "slots": m.ncpus if m.percpu else 1, "values": m.value_region.start,
                       "ctl": m.ctl.start if hasattr(m, "ctl") else 0, "ncpus": m.ncpus}
        assert not any(h[MAP_HANDLE.off("ncpus") + 4:])


@pytest.mark.parametrize("flags,kind", [(0, HASH_CRC32), (BPF_F_ZERO_SEED, HASH_JHASH)])
def test_a_hash_table_is_walkable_through_its_layouts(flags, kind):
    """Find a key as native code does, from the handle's addresses alone."""
    with Map(T.HASH, 4, 8, 8, flags) as m:
        for i in range(6):
            m[i] = i * 100
        c = m.ctl.buf
        assert _read(m.handle.buf, MAP_HANDLE, "ctl") == m.ctl.start
        assert _read(c, HTAB_HEADER, "hash_kind") == kind and _read(c, HTAB_HEADER, "count") == 6
        # the bucket heads and entries are in the table region (which a pin can share
        # between processes), found by the header's absolute addresses
        buckets = _read(c, HTAB_HEADER, "buckets")
        entries = _read(c, HTAB_HEADER, "entries")
        esize, nb = _read(c, HTAB_HEADER, "entry_size"), _read(c, HTAB_HEADER, "n_buckets")
        key = struct.pack("<I", 4)
        h = htab_hash(key, 0) if kind == HASH_JHASH else zlib.crc32(key)
        i = int.from_bytes(ctypes.string_at(buckets + 4 * (h & (nb - 1)), 4), "little")
        while i:
            e = ctypes.string_at(entries + (i - 1) * esize, esize)
            if bytes(e[HTAB_ENTRY.off("key"):][:4]) == key:
                break
            i = _read(e, HTAB_ENTRY, "next")
        assert i and _read(e, HTAB_ENTRY, "hash") == h and _read(e, HTAB_ENTRY, "state") == STATE_USED
        values = _read(c, HTAB_HEADER, "values")
        assert values == m.value_region.start
        off = (i - 1) * _read(c, HTAB_HEADER, "stride")
        assert bytes(m.value_region.buf[off:off + 8]) == struct.pack("<Q", 400)


def test_a_packer_covers_the_named_members_with_zero_padding():
    assert MAP_HANDLE.packer().format == "<IIIIIIIIQQI" + "x" * 12
    assert HTAB_HEADER.packer().format == "<IIIIIIIII" + "xxxx" + "QQQ"
    assert HTAB_ENTRY.packer("next", "hash").format == "<II"
    with pytest.raises(ValueError):
        HTAB_ENTRY.packer("key")
