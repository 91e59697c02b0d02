"""The scatterlist of an ``struct sk_msg`` and the edits sk_msg programs make to it:
bpf_msg_pull_data, bpf_msg_push_data, bpf_msg_pop_data (net/core/filter.c).

The bytes are kept linear (``data``); ``lens`` are the scatterlist elements' lengths in
ring order, which is all a program can observe of the ring: ``data``..``data_end`` is
one element (the first after a push or pop, the pulled window after a pull), and when
the ring is full the helpers fall back to copying as the kernel does.  Elements never
carry the ``sg.copy`` bit here: ebee's messages come from sendmsg, not sendfile.
"""
from __future__ import annotations

import errno as E

#: MAX_MSG_FRAGS (MAX_SKB_FRAGS, CONFIG_MAX_SKB_FRAGS=17 on this kernel)
MAX_MSG_FRAGS = 17
#: the largest alloc_pages() can give (PAGE_SIZE << MAX_PAGE_ORDER); more is -ENOMEM
MAX_ALLOC = 4096 << 10
U32 = 0xFFFFFFFF


class SkMsgSg:
    """A message's bytes and scatterlist; the window is ``data[win[0]:win[0]+win[1]]``."""

    def __init__(self, data: bytes, lens: list[int] | None = None):
        self.data = bytearray(data)
        self.lens = list(lens) if lens is not None else ([len(data)] if data else [])
        assert sum(self.lens) == len(self.data)
        self.win = (0, self.lens[0] if self.lens else 0)

    @property
    def size(self) -> int:
        return len(self.data)

    def _find(self, start: int) -> tuple[int, int, int]:
        """The kernel's walk to the element holding ``start``: (i, offset, l); i may be
        the ring's end (len(lens)) when start is at or past the end."""
        i, offset, l = 0, 0, 0
        while True:
            offset += l
            l = self.lens[i] if i < len(self.lens) else 0
            if start < offset + l:
                break
            i += 1
            if i >= len(self.lens):
                break
        return i, offset, l

    def _first(self) -> None:
        """sk_msg_compute_data_pointers(): the window is the first element."""
        self.win = (0, self.lens[0] if self.lens else 0)

    def pull(self, start: int, end: int, flags: int) -> int:
        start, end = start & U32, end & U32
        if flags or end <= start:
            return -E.EINVAL
        nbytes = end - start
        i, offset, l = self._find(start)
        if start >= offset + l:
            return -E.EINVAL
        total = start - offset + nbytes
        if total > l:
            # linearize the elements from i until total bytes are in one
            copy, j = 0, i
            while j < len(self.lens):
                copy += self.lens[j]
                j += 1
                if total <= copy:
                    break
            if total > copy:
                return -E.EINVAL
            if copy > MAX_ALLOC:
                return -E.ENOMEM
            self.lens[i:j] = [copy]
        self.win = (start, nbytes)
        return 0

    def push(self, start: int, n: int, flags: int) -> int:
        start, n = start & U32, n & U32
        if flags:
            return -E.EINVAL
        if n == 0:
            return 0
        i, offset, l = self._find(start)
        if start > offset + l:
            return -E.EINVAL
        space = MAX_MSG_FRAGS - len(self.lens)
        copy = 0
        if space <= 0 or (space == 1 and start != offset):
            # the kernel reads the slot at i, which past the end is an empty one
            copy = self.lens[i] if i < len(self.lens) else 0
        if copy + n > U32:
            return -E.EINVAL
        if copy + n > MAX_ALLOC:
            return -E.ENOMEM
        if copy:
            # no free slot: one new page holds the element with the bytes inside it
            self.lens[i] += n
        elif start != offset:
            if i == len(self.lens):
                i -= 1
            a = start - offset
            rest = self.lens[i] - a
            self.lens[i:i + 1] = [a, n] + ([rest] if rest else [])
        else:
            self.lens.insert(i, n)
        # alloc_pages() does not zero the new bytes; ebee's are zero
        self.data[start:start] = bytes(n)
        self._first()
        return 0

    def pop(self, start: int, n: int, flags: int) -> int:
        start, n = start & U32, n & U32
        if flags:
            return -E.EINVAL
        if n == 0:
            return 0
        i, offset, l = self._find(start)
        if start >= offset + l or start + n > self.size:
            return -E.EINVAL
        space = MAX_MSG_FRAGS - len(self.lens)
        pop = n
        if start != offset:
            a = start - offset
            b = self.lens[i] - pop - a
            if b > 0:
                if space:
                    self.lens[i:i + 1] = [a, b]
                else:
                    self.lens[i] = a + b
                pop = 0
            else:
                pop -= self.lens[i] - a
                self.lens[i] = a
            i += 1
        while pop:
            if pop < self.lens[i]:
                self.lens[i] -= pop
                pop = 0
            else:
                pop -= self.lens.pop(i)
        del self.data[start:start + n]
        self._first()
        return 0

    def consume(self, n: int) -> bytes:
        """The first ``n`` bytes leave (sent): the elements they filled go with them."""
        out = bytes(self.data[:n])
        del self.data[:n]
        while n and self.lens:
            if n < self.lens[0]:
                self.lens[0] -= n
                n = 0
            else:
                n -= self.lens.pop(0)
        self._first()
        return out

    def append(self, data: bytes) -> None:
        """More bytes of a corked send: they extend the last element (sk_msg_alloc
        coalesces a contiguous page fragment into it)."""
        if not data:
            return
        self.data += data
        if self.lens:
            self.lens[-1] += len(data)
        else:
            self.lens.append(len(data))
        self._first()


__all__ = ["MAX_MSG_FRAGS", "SkMsgSg"]
