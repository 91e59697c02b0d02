"""LPM_TRIE: longest-prefix match over ``struct bpf_lpm_trie_key`` keys.

A key is ``u32 prefixlen`` followed by ``key_size - 4`` bytes of data, most
significant bit first (network byte order).  The trie is the kernel's
(kernel/bpf/lpm_trie.c): a binary Patricia trie with intermediate nodes,
updated, searched and walked (get_next_key: post-order, more specific
prefixes first) the same way, so results, errors and iteration order match
Linux.  Node values live in a values region of ``SHARED``.

The nodes are not Python objects: as the kernel's ``struct lpm_trie_node``
(child pointers, prefixlen, flags, data), node *i* is row *i* of a few typed
arrays -- prefix length, value slot (-1 for an intermediate node), the two
child indices (-1 for none) and the data, kept as the big-endian integer it
spells (one machine word a node when the data fits one, bytes otherwise).
A million /32 entries then take about 20 bytes a node instead of ~180, and
prefix matching is an XOR and ``bit_length`` instead of a loop over bytes.
"""
from __future__ import annotations

import errno as E
import struct
import sys
from array import array
from typing import Iterator

from .. import uapi as U
from ..uapi import MapType
from .base import ACCESS_MASK, Map, round_up
from .errors import map_error

_U32 = struct.Struct("<I")
LPM_KEY_SIZE_MIN = 4 + U.LPM_DATA_SIZE_MIN
LPM_KEY_SIZE_MAX = 4 + U.LPM_DATA_SIZE_MAX
LPM_NODE_SIZE = 48   # sizeof(struct lpm_trie_node), bounds the value size
NIL = -1             # no node (a NULL child pointer)
# data sizes whose integer fits an array item: the data lives in the array itself
_DATA_TYPECODES = {n: c for c in "BHIQ" if (n := array(c).itemsize) in (1, 2, 4, 8)}


class LpmTrie(Map):
    map_type = MapType.LPM_TRIE
    create_flags = U.BPF_F_NO_PREALLOC | U.BPF_F_NUMA_NODE | ACCESS_MASK
    batch_ops = frozenset({"lookup", "update", "delete"})

    def check_attr(self) -> None:
        if (self.max_entries == 0 or not self.flags & U.BPF_F_NO_PREALLOC
                or not LPM_KEY_SIZE_MIN <= self.key_size <= LPM_KEY_SIZE_MAX
                or not 1 <= self.value_size <= U.KMALLOC_MAX_SIZE - U.LPM_DATA_SIZE_MAX - LPM_NODE_SIZE):
            raise map_error(E.EINVAL, "LPM tries need BPF_F_NO_PREALLOC, key_size 5..260, "
                                      "value_size > 0 and max_entries > 0")

    def alloc(self) -> None:
        self.data_size = self.key_size - 4
        self.max_prefixlen = self.data_size * 8
        self.root = NIL
        self.n_entries = 0
        self.stride = round_up(self.value_size, 8)
        # one spare slot: a replacing node is allocated before the old one is freed
        nslots = self.max_entries + 1
        self.value_region = self._add_region(nslots * self.stride, "values",
                                             writable=not self.flags & U.BPF_F_RDONLY_PROG)
        self._write_handle(self.value_region.start)
        # value slots are handed out lowest first, freed ones again most recent first
        self._next_slot = 0
        self._free_slots = array("i")
        # the node pool (grown on demand, as the kernel allocates nodes on update)
        self._plen = array("H")          # max_prefixlen is at most 2048
        self._slot = array("i")
        self._child = (array("i"), array("i"))
        code = _DATA_TYPECODES.get(self.data_size)
        self._data_words = array(code) if code else None
        self._data_bytes = bytearray()
        self._free_nodes = array("i")

    def node_memory(self) -> int:
        """Bytes held by the node pool (the values region not included)."""
        arrays = (self._plen, self._slot, *self._child, self._free_nodes, self._free_slots,
                  self._data_bytes) + ((self._data_words,) if self._data_words is not None else ())
        return sum(sys.getsizeof(a) for a in arrays)

    # -- the node pool -------------------------------------------------------------------

    def _split(self, key: bytes) -> tuple[int, int]:
        return _U32.unpack_from(key)[0], int.from_bytes(key[4:self.key_size], "big")

    def _data(self, node: int) -> int:
        words = self._data_words
        if words is not None:
            return words[node]
        o = node * self.data_size
        return int.from_bytes(self._data_bytes[o:o + self.data_size], "big")

    def _match(self, node: int, plen: int, data: int) -> int:
        """longest_prefix_match()"""
        limit = min(self._plen[node], plen)
        x = self._data(node) ^ data
        return limit if not x else min(self.max_prefixlen - x.bit_length(), limit)

    def _bit(self, data: int, index: int) -> int:
        return (data >> (self.max_prefixlen - 1 - index)) & 1

    def _new_node(self, plen: int, data: int, value: bytes | None) -> int:
        slot = NIL
        if value is not None:
            if self._free_slots:
                slot = self._free_slots.pop()
            else:
                slot = self._next_slot
                self._next_slot += 1
            off = slot * self.stride
            self.value_region.buf[off:off + self.value_size] = value[:self.value_size]
        c0, c1 = self._child
        words = self._data_words
        if self._free_nodes:
            n = self._free_nodes.pop()
            self._plen[n], self._slot[n], c0[n], c1[n] = plen, slot, NIL, NIL
            if words is not None:
                words[n] = data
            else:
                o = n * self.data_size
                self._data_bytes[o:o + self.data_size] = data.to_bytes(self.data_size, "big")
            return n
        n = len(self._plen)
        self._plen.append(plen)
        self._slot.append(slot)
        c0.append(NIL)
        c1.append(NIL)
        if words is not None:
            words.append(data)
        else:
            self._data_bytes += data.to_bytes(self.data_size, "big")
        return n

    def _free_value(self, node: int) -> None:
        if self._slot[node] >= 0:
            self._free_slots.append(self._slot[node])
            self._slot[node] = NIL

    def _free_node(self, node: int) -> None:
        self._free_value(node)
        self._free_nodes.append(node)

    def _set_child(self, owner: int, side: int, node: int) -> None:
        """Point ``owner``'s child ``side`` at ``node``; owner NIL is the root pointer."""
        if owner == NIL:
            self.root = node
        else:
            self._child[side][owner] = node

    # -- operations ---------------------------------------------------------------------

    def _lookup_node(self, key: bytes) -> int:
        # the programs' path: the loop of _match and _bit, inlined
        plen, data = self._split(key)
        top = self.max_prefixlen
        plens, slots, (c0, c1) = self._plen, self._slot, self._child
        words = self._data_words
        node, found = self.root, NIL
        while node != NIL:
            np = plens[node]
            x = (words[node] if words is not None else self._data(node)) ^ data
            m = np if np < plen else plen
            if x:
                m = min(top - x.bit_length(), m)
            if m == top:
                found = node
                break
            if m < np:
                break
            if slots[node] != NIL:
                found = node
            node = (c1 if (data >> (top - 1 - np)) & 1 else c0)[node]
        return found

    def _update(self, key: bytes, value: bytes, flags: int) -> int:
        if flags > U.BPF_EXIST:
            return E.EINVAL
        plen, data = self._split(key)
        if plen > self.max_prefixlen:
            return E.EINVAL

        def check_add() -> int:
            if flags == U.BPF_EXIST:
                return E.ENOENT
            if self.n_entries == self.max_entries:
                return E.ENOSPC
            self.n_entries += 1
            return 0

        c0, c1 = self._child
        parent, side = NIL, 0
        node = self.root
        m = np = 0
        while node != NIL:
            m = self._match(node, plen, data)
            np = self._plen[node]
            if np != m or np == plen:
                break
            parent, side = node, self._bit(data, np)
            node = self._child[side][node]

        if node == NIL:
            err = check_add()
            if err:
                return err
            self._set_child(parent, side, self._new_node(plen, data, value))
            return 0
        if np == m:
            if self._slot[node] != NIL:
                if flags == U.BPF_NOEXIST:
                    return E.EEXIST
            else:
                err = check_add()
                if err:
                    return err
            new = self._new_node(plen, data, value)
            c0[new], c1[new] = c0[node], c1[node]
            self._set_child(parent, side, new)
            self._free_node(node)
            return 0
        err = check_add()
        if err:
            return err
        new = self._new_node(plen, data, value)
        node_data = self._data(node)
        if m == plen:
            self._child[self._bit(node_data, m)][new] = node
            self._set_child(parent, side, new)
            return 0
        im = self._new_node(m, node_data, None)
        if self._bit(data, m):
            c0[im], c1[im] = node, new
        else:
            c0[im], c1[im] = new, node
        self._set_child(parent, side, im)
        return 0

    def _delete(self, key: bytes) -> int:
        plen, data = self._split(key)
        if plen > self.max_prefixlen:
            return E.EINVAL
        c0, c1 = self._child
        # trim = (owner, side) of the pointer to node, trim2 the one to its parent
        trim = trim2 = (NIL, 0)
        parent = NIL
        node = self.root
        m = np = 0
        while node != NIL:
            m = self._match(node, plen, data)
            np = self._plen[node]
            if np != m or np == plen:
                break
            parent = node
            trim2 = trim
            trim = (node, self._bit(data, np))
            node = self._child[trim[1]][node]
        if node == NIL or np != plen or np != m or self._slot[node] == NIL:
            return E.ENOENT

        self.n_entries -= 1
        left, right = c0[node], c1[node]
        if left != NIL and right != NIL:
            # it stays, as an intermediate node
            self._free_value(node)
            return 0
        if parent != NIL and self._slot[parent] == NIL and left == NIL and right == NIL:
            # a leaf under an intermediate node: both go, the sibling takes the parent's place
            other = c1[parent] if node == c0[parent] else c0[parent]
            self._set_child(*trim2, other)
            self._free_node(node)
            self._free_node(parent)
            return 0
        self._set_child(*trim, left if left != NIL else right)
        self._free_node(node)
        return 0

    def _next(self, key: bytes | None) -> int:
        root = self.root
        if root == NIL:
            raise map_error(E.ENOENT)
        c0, c1 = self._child
        slots = self._slot
        search_root = root
        if key is not None:
            plen, data = self._split(key)
            if plen <= self.max_prefixlen:
                stack: list[int] = []
                node = root
                m = np = 0
                while node != NIL:
                    stack.append(node)
                    m = self._match(node, plen, data)
                    np = self._plen[node]
                    if np != m or np == plen:
                        break
                    node = self._child[self._bit(data, np)][node]
                if node != NIL and np == m and slots[node] != NIL:
                    node = stack[-1]
                    sp = len(stack) - 1
                    while sp > 0:
                        par = stack[sp - 1]
                        if c0[par] == node and c1[par] != NIL:
                            search_root = c1[par]
                            break
                        if slots[par] != NIL:
                            return par
                        node = par
                        sp -= 1
                    else:
                        raise map_error(E.ENOENT)
        node, nxt = search_root, NIL
        while node != NIL:
            if slots[node] == NIL:
                node = c0[node]
            else:
                nxt = node
                node = c0[node]
                if node == NIL:
                    node = c1[nxt]
        return nxt

    # -- syscall side ----------------------------------------------------------------------

    def _sys_lookup(self, key: bytes, flags: int) -> bytes:
        n = self._lookup_node(key)
        if n == NIL:
            raise map_error(E.ENOENT)
        off = self._slot[n] * self.stride
        return bytes(self.value_region.buf[off:off + self.value_size])

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        err = self._update(key, value, flags)
        if err:
            raise map_error(err)

    def _sys_delete(self, key: bytes) -> None:
        err = self._delete(key)
        if err:
            raise map_error(err)

    def _get_next_key(self, key: bytes | None) -> bytes:
        n = self._next(key)
        return _U32.pack(self._plen[n]) + self._data(n).to_bytes(self.data_size, "big")

    # -- program side ------------------------------------------------------------------------

    def prog_lookup(self, key: bytes, cpu: int) -> int:
        n = self._lookup_node(key)
        return 0 if n == NIL else self.value_region.start + self._slot[n] * self.stride

    def prog_update(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        with self.lock:
            return -self._update(key, value, flags)

    def prog_delete(self, key: bytes, cpu: int) -> int:
        with self.lock:
            return -self._delete(key)

    def for_each(self, cpu: int) -> Iterator[tuple[bytes, int]]:
        raise map_error(E.EINVAL, "bpf_for_each_map_elem does not support LPM tries")
