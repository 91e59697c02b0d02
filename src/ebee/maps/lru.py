"""The LRU lists of LRU_HASH / LRU_PERCPU_HASH, as kernel/bpf/bpf_lru_list.c keeps them.

Linux does not evict the least recently used element exactly: it keeps an
active and an inactive list with a reference bit per node, per-CPU local
free and pending lists (or, with BPF_F_NO_COMMON_LRU, one whole LRU list per
CPU), and refills a CPU's local free list in batches.  Which key an update
evicts follows from that machinery, so ebee runs the same algorithm, step by
step, over node indices (node i is hash-table entry slot i).  The reference
bit lives in the entry itself (see docs/maps-layout.md) so that a native
lookup can set it; everything else here is runtime state.

Lists are circular and doubly linked through ``prev``/``next`` arrays; list
heads are sentinel indices after the nodes.  ``list_add`` inserts after the
head (the "head" of the list), ``list_move`` unlinks then adds, and the
"tail" is ``prev[head]`` -- the same vocabulary as <linux/list.h>.
"""
from __future__ import annotations

from typing import Callable

from .. import uapi as U

ACTIVE, INACTIVE, FREE, LOCAL_FREE, LOCAL_PENDING = range(5)
NR_COUNT = 2   # only ACTIVE and INACTIVE are counted


class _LruList:
    """struct bpf_lru_list: active, inactive and free lists plus counts."""

    __slots__ = ("heads", "counts", "next_inactive_rotation")

    def __init__(self, lru: "Lru"):
        self.heads = [lru._sentinel() for _ in range(3)]
        self.counts = [0, 0]
        self.next_inactive_rotation = self.heads[INACTIVE]


class _LocalList:
    """struct bpf_lru_locallist: a CPU's free stack and pending list."""

    __slots__ = ("free", "pending", "next_steal")

    def __init__(self, lru: "Lru", cpu: int):
        self.free: list[int] = []          # llist: push and pop at the end
        self.pending = lru._sentinel()
        self.next_steal = cpu


class Lru:
    def __init__(self, nr_nodes: int, ncpus: int, percpu: bool,
                 del_from_htab: Callable[[int], bool], is_ref: Callable[[int], bool],
                 clear_ref: Callable[[int], None]):
        self.n = nr_nodes
        self.ncpus = ncpus
        self.percpu = percpu
        self.prev: list[int] = list(range(nr_nodes))
        self.next: list[int] = list(range(nr_nodes))
        self.type = [FREE] * nr_nodes
        self.cpu = [0] * nr_nodes
        self.del_from_htab = del_from_htab
        self.is_ref = is_ref
        self.clear_ref = clear_ref
        if percpu:
            self.lists = [_LruList(self) for _ in range(ncpus)]
            self.nr_scans = U.BPF_LRU_PERCPU_FREE_TARGET
        else:
            self.common = _LruList(self)
            self.local = [_LocalList(self, c) for c in range(ncpus)]
            self.nr_scans = U.BPF_LRU_LOCAL_FREE_TARGET
        self._populate()

    # -- <linux/list.h> over indices ---------------------------------------------------

    def _sentinel(self) -> int:
        i = len(self.prev)
        self.prev.append(i)
        self.next.append(i)
        return i

    def _add(self, node: int, head: int) -> None:
        nxt = self.next[head]
        self.next[head] = node
        self.prev[node] = head
        self.next[node] = nxt
        self.prev[nxt] = node

    def _del(self, node: int) -> None:
        p, n = self.prev[node], self.next[node]
        self.next[p] = n
        self.prev[n] = p

    def _move(self, node: int, head: int) -> None:
        self._del(node)
        self._add(node, head)

    def _empty(self, head: int) -> bool:
        return self.next[head] == head

    # -- bpf_lru_list.c ------------------------------------------------------------------

    def _populate(self) -> None:
        if self.percpu:
            per = self.n // self.ncpus
            i = 0
            for c in range(self.ncpus):
                lst = self.lists[c]
                while i < self.n:
                    self.cpu[i] = c
                    self.type[i] = FREE
                    self._add(i, lst.heads[FREE])
                    i += 1
                    if i % per == 0:
                        break
                if i == self.n:
                    break
        else:
            for i in range(self.n):
                self.type[i] = FREE
                self._add(i, self.common.heads[FREE])
            self.target_free = min(max((self.n // self.ncpus) // 2, 1), U.BPF_LRU_LOCAL_FREE_TARGET)

    def _count_inc(self, lst: _LruList, t: int) -> None:
        if t < NR_COUNT:
            lst.counts[t] += 1

    def _count_dec(self, lst: _LruList, t: int) -> None:
        if t < NR_COUNT:
            lst.counts[t] -= 1

    def _move_to_free(self, lst: _LruList, node: int, free_head: int | None, tgt: int,
                      sink: list[int] | None = None) -> None:
        if node == lst.next_inactive_rotation:
            lst.next_inactive_rotation = self.prev[node]
        self._count_dec(lst, self.type[node])
        self.type[node] = tgt
        if sink is not None:           # the harvest list of pop_free_to_local
            self._del(node)
            sink.append(node)
        else:
            self._move(node, free_head)

    def _move_in(self, lst: _LruList, node: int, tgt: int) -> None:
        self._count_inc(lst, tgt)
        self.type[node] = tgt
        self.clear_ref(node)
        self._move(node, lst.heads[tgt])

    def _node_move(self, lst: _LruList, node: int, tgt: int) -> None:
        if self.type[node] != tgt:
            self._count_dec(lst, self.type[node])
            self._count_inc(lst, tgt)
            self.type[node] = tgt
        self.clear_ref(node)
        if node == lst.next_inactive_rotation:
            lst.next_inactive_rotation = self.prev[node]
        self._move(node, lst.heads[tgt])

    def _rotate_active(self, lst: _LruList) -> None:
        head = lst.heads[ACTIVE]
        first = self.next[head]
        node = self.prev[head]
        i = 0
        while node != head:
            tmp = self.prev[node]
            self._node_move(lst, node, ACTIVE if self.is_ref(node) else INACTIVE)
            i += 1
            if i == self.nr_scans or node == first:
                break
            node = tmp

    def _rotate_inactive(self, lst: _LruList) -> None:
        inactive = lst.heads[INACTIVE]
        if self._empty(inactive):
            return
        last = self.next[lst.next_inactive_rotation]
        if last == inactive:
            last = self.next[last]
        cur = lst.next_inactive_rotation
        nxt = inactive
        i = 0
        while i < self.nr_scans:
            if cur == inactive:
                cur = self.prev[cur]
                continue
            nxt = self.prev[cur]
            if self.is_ref(cur):
                self._node_move(lst, cur, ACTIVE)
            if cur == last:
                break
            cur = nxt
            i += 1
        lst.next_inactive_rotation = nxt

    def _shrink_inactive(self, lst: _LruList, tgt_nshrink: int, free_head: int | None,
                         tgt_type: int, sink: list[int] | None) -> int:
        head = lst.heads[INACTIVE]
        node = self.prev[head]
        nshrinked = i = 0
        while node != head:
            tmp = self.prev[node]
            if self.is_ref(node):
                self._node_move(lst, node, ACTIVE)
            elif self.del_from_htab(node):
                self._move_to_free(lst, node, free_head, tgt_type, sink)
                nshrinked += 1
                if nshrinked == tgt_nshrink:
                    break
            i += 1
            if i == self.nr_scans:
                break
            node = tmp
        return nshrinked

    def _rotate(self, lst: _LruList) -> None:
        if lst.counts[INACTIVE] < lst.counts[ACTIVE]:
            self._rotate_active(lst)
        self._rotate_inactive(lst)

    def _shrink(self, lst: _LruList, tgt_nshrink: int, free_head: int | None, tgt_type: int,
                sink: list[int] | None = None) -> int:
        n = self._shrink_inactive(lst, tgt_nshrink, free_head, tgt_type, sink)
        if n:
            return n
        head = lst.heads[INACTIVE] if not self._empty(lst.heads[INACTIVE]) else lst.heads[ACTIVE]
        node = self.prev[head]
        while node != head:
            tmp = self.prev[node]
            if self.del_from_htab(node):
                self._move_to_free(lst, node, free_head, tgt_type, sink)
                return 1
            node = tmp
        return 0

    def _flush(self, lst: _LruList, loc: _LocalList) -> None:
        head = loc.pending
        node = self.prev[head]
        while node != head:
            tmp = self.prev[node]
            self._move_in(lst, node, ACTIVE if self.is_ref(node) else INACTIVE)
            node = tmp

    def _pop_free_to_local(self, loc: _LocalList) -> None:
        lst = self.common
        self._flush(lst, loc)
        self._rotate(lst)
        harvest: list[int] = []
        head = lst.heads[FREE]
        node = self.next[head]
        nfree = 0
        while node != head:
            tmp = self.next[node]
            self._move_to_free(lst, node, None, LOCAL_FREE, harvest)
            nfree += 1
            if nfree == self.target_free:
                break
            node = tmp
        if nfree < self.target_free:
            self._shrink(lst, self.target_free - nfree, None, LOCAL_FREE, harvest)
        # list_add onto a temporary list, then llist_add each: the last harvested is
        # popped first
        for node in reversed(harvest):
            loc.free.append(node)

    def _add_pending(self, loc: _LocalList, cpu: int, node: int) -> None:
        self.cpu[node] = cpu
        self.type[node] = LOCAL_PENDING
        self.clear_ref(node)
        self._add(node, loc.pending)

    def _pop_pending(self, loc: _LocalList) -> int | None:
        for force in (False, True):
            head = loc.pending
            node = self.prev[head]
            while node != head:
                if (force or not self.is_ref(node)) and self.del_from_htab(node):
                    self._del(node)
                    return node
                node = self.prev[node]
        return None

    def pop_free(self, cpu: int) -> int | None:
        """bpf_lru_pop_free(): a node for a new element (evicting if need be), or None."""
        if self.percpu:
            lst = self.lists[cpu]
            self._rotate(lst)
            free = lst.heads[FREE]
            if self._empty(free):
                self._shrink(lst, U.BPF_LRU_PERCPU_FREE_TARGET, free, FREE)
            if self._empty(free):
                return None
            node = self.next[free]
            self.clear_ref(node)
            self._node_move(lst, node, INACTIVE)
            return node
        loc = self.local[cpu]
        node = loc.free.pop() if loc.free else None
        if node is None:
            self._pop_free_to_local(loc)
            node = loc.free.pop() if loc.free else None
        if node is not None:
            self._add_pending(loc, cpu, node)
            return node
        first = steal = loc.next_steal
        while True:
            sl = self.local[steal]
            node = sl.free.pop() if sl.free else None
            if node is None:
                node = self._pop_pending(sl)
            steal = (steal + 1) % self.ncpus
            if node is not None or steal == first:
                break
        loc.next_steal = steal
        if node is not None:
            self._add_pending(loc, cpu, node)
        return node

    def push_free(self, node: int) -> None:
        """bpf_lru_push_free(): an element's node is free again."""
        if self.percpu:
            self._node_move(self.lists[self.cpu[node]], node, FREE)
            return
        if self.type[node] == LOCAL_PENDING:
            loc = self.local[self.cpu[node]]
            self.type[node] = LOCAL_FREE
            self.clear_ref(node)
            self._del(node)
            loc.free.append(node)
            return
        self._node_move(self.common, node, FREE)
