"""Linux's stream parser (net/strparser/strparser.c) as an sk_skb stream parser drives it.

The socket's TCP receive queue holds one skb per segment (loopback TCP does not coalesce
them while the parser holds a message, as the kernel shows).  ``data_ready`` reads the
queue as ``strp_data_ready`` -> ``tcp_read_sock`` -> ``__strp_recv`` do:

- a message's *head* is a clone of the skb it starts in, *whole*: the parser and the
  verdict program see ``skb->len`` and bytes from that skb's first byte (the message
  starts ``offset`` bytes in), plus every later skb appended whole;
- the parser's return is the message length from ``offset``: 0 asks for more data, a
  negative value is an error, more than ``sk_rcvbuf`` is ``EMSGSIZE``, a length that
  ends before the newest skb is ``EPROTO``; an error stops the parser for good, reports
  ``-err`` on the socket (``SO_ERROR``) and leaves the unread bytes in the queue;
- a known length that the queued bytes cannot complete sets ``need_bytes``: later skbs
  stay unread in the queue until that many bytes are there;
- each complete message goes to ``rcv_msg(head, offset, full_len)`` (the verdict).
"""
from __future__ import annotations

import errno as E
from typing import Callable

#: sk_rcvbuf of a loopback TCP socket (net.ipv4.tcp_rmem[1]): strparser's max_msg_size
RCVBUF = 131072


class StrParser:
    """``struct strparser`` of one socket; ``parse(head) -> int`` runs the parser
    program, ``rcv_msg(head, offset, full_len)`` the verdict, ``abort(errno)`` reports
    the error that stopped it (strp_abort_strp: ``sk->sk_err``)."""

    def __init__(self, parse: Callable[[bytes], int],
                 rcv_msg: Callable[[bytes, int, int], None],
                 abort: Callable[[int], None] = lambda err: None, rcvbuf: int = RCVBUF):
        self.parse, self.rcv_msg, self.abort, self.rcvbuf = parse, rcv_msg, abort, rcvbuf
        self.queue: list[bytes] = []     # sk_receive_queue: skbs not read yet
        self.qoff = 0                    # bytes of queue[0] already read
        self.head: list[bytes] | None = None   # the message in progress: whole skbs
        self.offset = 0                  # where the message starts in head[0]
        self.full_len = 0                # 0: not known yet
        self.accum = 0                   # bytes of the message in head
        self.need_bytes = 0
        self.stopped = False
        self.error = 0                   # the errno the parser stopped with

    def unread(self) -> int:
        """tcp_inq(): bytes in the receive queue that nothing read."""
        return sum(len(s) for s in self.queue) - self.qoff

    def data_ready(self, skb: bytes) -> None:
        """A segment arrives (tcp_data_queue, then sk_data_ready)."""
        if skb:
            self.queue.append(bytes(skb))
        if self.stopped:
            return
        if self.need_bytes and self.unread() < self.need_bytes:
            return
        self._read_sock()

    def _read_sock(self) -> None:
        """tcp_read_sock() with strp_recv as the actor; desc->count = 1."""
        while self.queue and not self.stopped:
            skb = self.queue[0]
            eaten, more = self._recv(skb, self.qoff)
            self.qoff += eaten
            if self.qoff >= len(skb):
                self.queue.pop(0)
                self.qoff = 0
            if not more:
                break

    def _recv(self, skb: bytes, orig_offset: int) -> tuple[int, bool]:
        """__strp_recv(): (bytes eaten, go on reading)."""
        orig_len = len(skb) - orig_offset
        eaten = 0
        while eaten < orig_len:
            cand = orig_len - eaten
            if self.head is None:
                self.head, self.offset = [skb], orig_offset + eaten
                self.full_len = self.accum = 0
            else:
                self.head.append(skb)
            if not self.full_len:
                n = self.parse(b"".join(self.head))
                if n == 0:                      # need more header to know the length
                    self.accum += cand
                    return eaten + cand, True
                if n < 0:
                    return self._abort(eaten, -n)
                if n > self.rcvbuf:
                    return self._abort(eaten, E.EMSGSIZE)
                if n <= self.accum:             # the length must end in the new skb
                    return self._abort(eaten, E.EPROTO)
                self.full_len = n
            extra = self.accum + cand - self.full_len
            if extra < 0:                       # not complete yet
                need = self.full_len - self.accum
                self.accum += cand
                if need > self.unread():
                    # not in the socket buffer: wait for the rest, stop reading
                    self.need_bytes = self.full_len - self.accum
                    return eaten + cand, False
                return eaten + cand, True
            eaten += cand - extra
            head, off, n = b"".join(self.head), self.offset, self.full_len
            self.head, self.need_bytes = None, 0
            self.rcv_msg(head, off, n)
        return eaten, True

    def _abort(self, eaten: int, err: int) -> tuple[int, bool]:
        """strp_parser_err(): the message in progress is freed, the parser stops."""
        self.head = None
        self.stopped, self.error = True, err
        self.abort(err)
        return eaten, False


__all__ = ["RCVBUF", "StrParser"]
