"""LPM_TRIE: longest-prefix match over ``struct bpf_lpm_trie_key`` keys.

A key is ``u32 prefixlen`` followed by ``key_size - 4`` bytes of data, most
significant bit first (network byte order).  The trie is the kernel's
(kernel/bpf/lpm_trie.c): a binary Patricia trie with intermediate nodes,
updated, searched and walked (get_next_key: post-order, more specific
prefixes first) the same way, so results, errors and iteration order match
Linux.  Node values live in a values region of ``SHARED``.
"""
from __future__ import annotations

import errno as E
import struct
from typing import Iterator

from .. import uapi as U
from ..uapi import MapType
from .base import ACCESS_MASK, Map, round_up
from .errors import map_error

_U32 = struct.Struct("<I")
LPM_KEY_SIZE_MIN = 4 + U.LPM_DATA_SIZE_MIN
LPM_KEY_SIZE_MAX = 4 + U.LPM_DATA_SIZE_MAX
LPM_NODE_SIZE = 48   # sizeof(struct lpm_trie_node), bounds the value size


class _Node:
    __slots__ = ("prefixlen", "data", "im", "child", "slot")

    def __init__(self, prefixlen: int, data: bytes, im: bool, slot: int):
        self.prefixlen, self.data, self.im, self.slot = prefixlen, data, im, slot
        self.child: list[_Node | None] = [None, None]


def _bit(data: bytes, index: int) -> int:
    return (data[index >> 3] >> (7 - (index & 7))) & 1


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
        self.root: _Node | None = None
        self.n_entries = 0
        self.stride = round_up(self.value_size, 8)
        # one spare slot: a replacing node is allocated before the old one is freed
        nslots = self.max_entries + 1
        self.value_region = self._add_region(nslots * self.stride, "values",
                                       writable=not self.flags & U.BPF_F_RDONLY_PROG)
        self.free = list(range(nslots - 1, -1, -1))
        self._write_handle(self.value_region.start)

    # -- helpers ------------------------------------------------------------------------

    def _split(self, key: bytes) -> tuple[int, bytes]:
        return _U32.unpack_from(key)[0], key[4:]

    def _match(self, node: _Node, plen: int, data: bytes) -> int:
        """longest_prefix_match()"""
        limit = min(node.prefixlen, plen)
        nd = node.data
        n = 0
        i = 0
        while n < limit:
            x = nd[i] ^ data[i]
            if x:
                n += 8 - x.bit_length()
                return min(n, limit)
            n += 8
            i += 1
        return limit

    def _new_node(self, plen: int, data: bytes, value: bytes | None) -> _Node:
        if value is None:
            return _Node(plen, data, True, -1)
        slot = self.free.pop()
        off = slot * self.stride
        self.value_region.buf[off:off + self.value_size] = value[:self.value_size]
        return _Node(plen, data, False, slot)

    def _free_node(self, node: _Node) -> None:
        if node.slot >= 0:
            self.free.append(node.slot)
            node.slot = -1

    # -- operations ---------------------------------------------------------------------

    def _lookup_node(self, key: bytes) -> _Node | None:
        plen, data = self._split(key)
        node, found = self.root, None
        while node is not None:
            m = self._match(node, plen, data)
            if m == self.max_prefixlen:
                found = node
                break
            if m < node.prefixlen:
                break
            if not node.im:
                found = node
            node = node.child[_bit(data, node.prefixlen)]
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

        parent, side = None, 0
        node = self.root
        m = 0
        while node is not None:
            m = self._match(node, plen, data)
            if node.prefixlen != m or node.prefixlen == plen:
                break
            parent, side = node, _bit(data, node.prefixlen)
            node = node.child[side]

        def assign(n: _Node) -> None:
            if parent is None:
                self.root = n
            else:
                parent.child[side] = n

        if node is None:
            err = check_add()
            if err:
                return err
            assign(self._new_node(plen, data, value))
            return 0
        if node.prefixlen == m:
            if not node.im:
                if flags == U.BPF_NOEXIST:
                    return E.EEXIST
            else:
                err = check_add()
                if err:
                    return err
            new = self._new_node(plen, data, value)
            new.child = node.child
            assign(new)
            self._free_node(node)
            return 0
        err = check_add()
        if err:
            return err
        new = self._new_node(plen, data, value)
        if m == plen:
            new.child[_bit(node.data, m)] = node
            assign(new)
            return 0
        im = self._new_node(m, node.data, None)
        if _bit(data, m):
            im.child = [node, new]
        else:
            im.child = [new, node]
        assign(im)
        return 0

    def _delete(self, key: bytes) -> int:
        plen, data = self._split(key)
        if plen > self.max_prefixlen:
            return E.EINVAL
        # trim = (owner, side): owner None is the root slot
        trim: tuple[_Node | None, int] = (None, 0)
        trim2 = trim
        parent = None
        node = self.root
        m = 0
        while node is not None:
            m = self._match(node, plen, data)
            if node.prefixlen != m or node.prefixlen == plen:
                break
            parent = node
            trim2 = trim
            trim = (node, _bit(data, node.prefixlen))
            node = node.child[trim[1]]
        if node is None or node.prefixlen != plen or node.prefixlen != m or node.im:
            return E.ENOENT

        def set_slot(t, n) -> None:
            if t[0] is None:
                self.root = n
            else:
                t[0].child[t[1]] = n

        self.n_entries -= 1
        if node.child[0] is not None and node.child[1] is not None:
            node.im = True
            self._free_node(node)
            return 0
        if parent is not None and parent.im and node.child[0] is None and node.child[1] is None:
            other = parent.child[1] if node is parent.child[0] else parent.child[0]
            set_slot(trim2, other)
            self._free_node(node)
            return 0
        set_slot(trim, node.child[0] if node.child[0] is not None else node.child[1])
        self._free_node(node)
        return 0

    def _next(self, key: bytes | None) -> _Node | None:
        root = self.root
        if root is None:
            raise map_error(E.ENOENT)
        search_root = root
        if key is not None:
            plen, data = self._split(key)
            if plen <= self.max_prefixlen:
                stack: list[_Node] = []
                node = root
                m = 0
                while node is not None:
                    stack.append(node)
                    m = self._match(node, plen, data)
                    if node.prefixlen != m or node.prefixlen == plen:
                        break
                    node = node.child[_bit(data, node.prefixlen)]
                if node is not None and node.prefixlen == m and not node.im:
                    node = stack[-1]
                    sp = len(stack) - 1
                    while sp > 0:
                        par = stack[sp - 1]
                        if par.child[0] is node and par.child[1] is not None:
                            search_root = par.child[1]
                            break
                        if not par.im:
                            return par
                        node = par
                        sp -= 1
                    else:
                        raise map_error(E.ENOENT)
        node, nxt = search_root, None
        while node is not None:
            if node.im:
                node = node.child[0]
            else:
                nxt = node
                node = node.child[0]
                if node is None:
                    node = nxt.child[1]
        return nxt

    # -- syscall side ----------------------------------------------------------------------

    def _sys_lookup(self, key: bytes, flags: int) -> bytes:
        n = self._lookup_node(key)
        if n is None:
            raise map_error(E.ENOENT)
        off = n.slot * self.stride
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
        return _U32.pack(n.prefixlen) + n.data

    # -- program side ------------------------------------------------------------------------

    def prog_lookup(self, key: bytes, cpu: int) -> int:
        n = self._lookup_node(key)
        return 0 if n is None else self.value_region.start + n.slot * self.stride

    def prog_update(self, key: bytes, value: bytes, flags: int, cpu: int) -> int:
        with self.lock:
            return -self._update(key, value, flags)

    def prog_delete(self, key: bytes, cpu: int) -> int:
        with self.lock:
            return -self._delete(key)

    def for_each(self, cpu: int) -> Iterator[tuple[bytes, int]]:
        raise map_error(E.EINVAL, "bpf_for_each_map_elem does not support LPM tries")
