"""The LPM trie against a reference model (a dict and a sort), over many keys and data sizes.

The kernel differential test (test_maps_kernel_diff.py) compares with Linux on small tries;
this one drives deep tries with nested, split and merged prefixes through both node-data
layouts (data in an array word: 1, 2, 4, 8 bytes; in bytes: 3, 16) and checks every
lookup, error, value address and the whole get_next_key walk after each step.
"""
from __future__ import annotations

import errno
import itertools
import struct

from hypothesis import given, settings, strategies as st

from ebee.maps import Map, MapError
from ebee.memory import SHARED
from ebee.uapi import BPF_ANY, BPF_EXIST, BPF_F_NO_PREALLOC, BPF_NOEXIST, MapType as T

U32 = struct.Struct("<I")
MAX_ENTRIES = 12


class Model:
    """What Linux's trie answers, said without a trie."""

    def __init__(self, width: int):
        self.width = width
        self.entries: dict[tuple[int, int], tuple[int, bytes]] = {}  # (plen, prefix) -> data, value

    def ident(self, plen: int, data: int) -> tuple[int, int]:
        return plen, data >> (self.width - plen)

    def lookup(self, plen: int, data: int) -> bytes | None:
        best = None
        for (p, _), (_, v) in self.entries.items():
            if p <= plen and self.ident(p, data) in self.entries and (best is None or p > best[0]):
                best = (p, self.entries[self.ident(p, data)][1])
        return None if best is None else best[1]

    def update(self, plen: int, data: int, value: bytes, flags: int) -> int:
        if flags > BPF_EXIST or plen > self.width:
            return errno.EINVAL
        k = self.ident(plen, data)
        if k in self.entries:
            if flags == BPF_NOEXIST:
                return errno.EEXIST
        elif flags == BPF_EXIST:
            return errno.ENOENT
        elif len(self.entries) == MAX_ENTRIES:
            return errno.ENOSPC
        self.entries[k] = (data, value)    # a replaced entry keeps the new key's data bits
        return 0

    def delete(self, plen: int, data: int) -> int:
        if plen > self.width:
            return errno.EINVAL
        return 0 if self.entries.pop(self.ident(plen, data), None) else errno.ENOENT

    def order(self) -> list[tuple[int, int]]:
        # post-order: a prefix after every longer prefix under it, a 0 branch before a 1
        def bits(k):
            p, pre = k
            return [(pre >> (p - 1 - i)) & 1 for i in range(p)] + [2]
        return [(p, self.entries[(p, pre)][0]) for p, pre in sorted(self.entries, key=bits)]


def errno_of(fn, *args) -> int:
    try:
        fn(*args)
    except MapError as e:
        return e.errno
    return 0


@st.composite
def scenario(draw):
    ds = draw(st.sampled_from([1, 2, 3, 4, 8, 16]))
    width = ds * 8
    # a few base addresses so that prefixes nest, share and split
    bases = draw(st.lists(st.integers(0, 2 ** width - 1), min_size=1, max_size=4))
    # and a few prefix lengths, so that deletes and get_next_key often hit a present key
    plens = st.sampled_from(draw(st.lists(st.integers(0, width + 1), min_size=1, max_size=5)))
    key = st.tuples(plens, st.sampled_from(bases), st.integers(0, 3))
    update = st.tuples(st.just("update"), key,
                       st.sampled_from([BPF_ANY, BPF_ANY, BPF_NOEXIST, BPF_EXIST, 3]))
    op = st.one_of(
        update, update,
        st.tuples(st.just("delete"), key, st.just(0)),
        st.tuples(st.just("lookup"), key, st.just(0)))
    return ds, draw(st.lists(op, min_size=20, max_size=80))


@settings(max_examples=150)
@given(scenario())
def test_lpm_trie_agrees_with_the_reference_model(sc):
    ds, ops = sc
    width = ds * 8
    model = Model(width)
    with Map(T.LPM_TRIE, 4 + ds, 4, MAX_ENTRIES, BPF_F_NO_PREALLOC) as m:
        for i, (op, (plen, base, flip), flags) in enumerate(ops):
            # flip the low bits: the same prefix spelled with other trailing bits
            data = base ^ flip
            key = U32.pack(plen) + data.to_bytes(ds, "big")
            if op == "update":
                value = U32.pack(i)
                assert errno_of(m.update, key, value, flags) == model.update(plen, data, value, flags)
            elif op == "delete":
                assert errno_of(m.delete, key) == model.delete(plen, data)
            want = model.lookup(plen, data)
            if want is None:
                assert errno_of(m.lookup, key) == errno.ENOENT and m.prog_lookup(key, 0) == 0
            else:
                assert m.lookup(key) == want
                assert SHARED.read(m.prog_lookup(key, 0), 4) == want
            walk = [U32.pack(p) + d.to_bytes(ds, "big") for p, d in model.order()]
            # bounded: a broken trie can walk in a cycle
            assert list(itertools.islice(m.keys(), MAX_ENTRIES + 1)) == walk
            # from a key that is not there (or too long) the walk starts over
            if model.ident(min(plen, width), data) not in model.entries or plen > width:
                assert errno_of(m.get_next_key, key) == (0 if walk else errno.ENOENT)
                if walk:
                    assert m.get_next_key(key) == walk[0]


def test_a_million_entries_fit_in_a_compact_pool():
    # the kernel counts 36 bytes a /32 entry (node, data, value); the pool holds a node
    # for each entry and each intermediate node in about 20 bytes
    n = 20_000
    with Map(T.LPM_TRIE, 8, 8, n, BPF_F_NO_PREALLOC) as m:
        for i in range(n):
            m.update(U32.pack(32) + ((10 << 24) + i).to_bytes(4, "big"), bytes(8))
        assert m.node_memory() < 2 * n * 24
        assert len(m) == n
