"""A loopback TCP/UDP stack over modelled sockets, calling sockops and sk_msg programs
where Linux's TCP calls them.

Programs are opaque here: the stack asks its :class:`Runner` (set by the session layer,
``ebee.testrun.sockets``) to run one on a context it lays out -- ``struct bpf_sock_ops``
or ``struct sk_msg_md`` in shared memory, the fields with the values the kernel's context
conversion gives (``remote_port`` a big-endian port in the upper half, ``local_port`` in
host order) -- and the ``ctx_obj`` the helpers reach (:class:`SockOpsCall`,
:class:`MsgCall`).
"""
from __future__ import annotations

import errno as E
import ipaddress
import itertools
import struct
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..memory import SHARED, Region
from ..progtypes.contexts import BPF_SOCK_OPS, SK_MSG_MD
from ..uapi import (AF_INET, IPPROTO_TCP, IPPROTO_UDP,
                    BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB as ACTIVE_ESTABLISHED,
                    BPF_SOCK_OPS_NEEDS_ECN as NEEDS_ECN,
                    BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB as PASSIVE_ESTABLISHED,
                    BPF_SOCK_OPS_RWND_INIT as RWND_INIT,
                    BPF_SOCK_OPS_STATE_CB as STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG,
                    BPF_SOCK_OPS_TCP_CONNECT_CB as TCP_CONNECT,
                    BPF_SOCK_OPS_TCP_LISTEN_CB as TCP_LISTEN_CB,
                    BPF_SOCK_OPS_TIMEOUT_INIT as TIMEOUT_INIT)
from .skmsg import SkMsgSg
from .strparser import StrParser
from .socket import (TCP_CLOSE, TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
                     TCP_LAST_ACK, TCP_LISTEN, TCP_NEW_SYN_RECV, TCP_SYN_RECV, TCP_SYN_SENT,
                     Delivery, Socket)

SOCK_STREAM, SOCK_DGRAM = 1, 2
SK_DROP, SK_PASS = 0, 1
BPF_F_INGRESS = 1
TCP_INFINITE_SSTHRESH = 0x7FFFFFFF
# psock->eval
EVAL_NONE, EVAL_PASS, EVAL_REDIRECT, EVAL_DROP = 0, 1, 2, 3


class Runner(Protocol):
    def __call__(self, prog: Any, ctx_addr: int, ctx_obj: Any) -> int: ...

    def skb(self, prog: Any, call: "SkbCall") -> int:
        """Run an sk_skb program on ``call.data`` received by ``call.sock``."""
        ...


@dataclass
class SockOpsCall:
    """What a sockops run's helpers reach (``struct bpf_sock_ops_kern``)."""
    sock: Socket
    op: int
    is_fullsock: bool
    region: Region

    def set_cb_flags(self, flags: int) -> None:
        self.sock.cb_flags = flags
        struct.pack_into("<I", self.region.buf, BPF_SOCK_OPS.offsetof("bpf_sock_ops_cb_flags"),
                         flags)


class MsgCall:
    """What an sk_msg run's helpers reach (``struct sk_msg``): the message (its bytes in
    ``data``, a region programs read and write, and its scatterlist), the program's
    apply/cork requests and redirect target."""

    def __init__(self, sock: Socket, sg: SkMsgSg, md: Region):
        self.sock, self.sg, self.md = sock, sg, md
        self.apply_bytes = 0
        self.cork_bytes = 0
        self.sk_redir: Socket | None = None
        self.flags = 0
        self.data = SHARED.add(Region(max(sg.size, 1), "sk_msg data"))
        self.data.buf[:sg.size] = sg.data
        self._pointers()

    @property
    def size(self) -> int:
        return self.sg.size

    def _pointers(self) -> None:
        """data, data_end and size as the context conversion reads them (live)."""
        off, n = self.sg.win
        struct.pack_into("<QQ", self.md.buf, 0, self.data.start + off, self.data.start + off + n)
        struct.pack_into("<I", self.md.buf, SK_MSG_MD.offsetof("size"), self.sg.size)

    def _edit(self, op, *args: int) -> int:
        """Run a scatterlist edit on what the program wrote so far; a message whose length
        changed moves to a new region (the verifier forgot every packet pointer)."""
        self.sg.data[:] = self.data.buf[:self.sg.size]
        before = self.sg.size
        r = op(*args)
        if self.sg.size != before:
            old = self.data
            self.data = SHARED.add(Region(max(self.sg.size, 1), "sk_msg data"))
            SHARED.remove(old)
        self.data.buf[:self.sg.size] = self.sg.data
        if r == 0:
            self._pointers()
        return r

    def pull(self, start: int, end: int, flags: int) -> int:
        return self._edit(self.sg.pull, start, end, flags)

    def push(self, start: int, n: int, flags: int) -> int:
        return self._edit(self.sg.push, start, n, flags)

    def pop(self, start: int, n: int, flags: int) -> int:
        return self._edit(self.sg.pop, start, n, flags)

    def finish(self) -> SkMsgSg:
        """The message after the run (the program's writes in it); frees the region."""
        self.sg.data[:] = self.data.buf[:self.sg.size]
        SHARED.remove(self.data)
        return self.sg


@dataclass
class SkbCall:
    """What an sk_skb verdict run's helpers reach: the receiving socket and the
    program's redirect (bpf_sk_redirect_map/hash)."""
    sock: Socket
    data: bytes
    sk_redir: Socket | None = None
    flags: int = 0


@dataclass
class Psock:
    """``struct sk_psock``: the sk_msg program a socket took from the map it joined, and the
    verdict state that outlives one sendmsg (apply_bytes, cork_bytes, the redirect)."""
    msg_prog: Any = None
    skb_prog: Any = None        # SK_SKB_VERDICT / SK_SKB_STREAM_VERDICT
    stream: bool = False        # skb_prog is a stream verdict (with a parser: strparser)
    parser: Any = None          # SK_SKB_STREAM_PARSER
    strp: StrParser | None = None
    links: int = 0
    eval: int = EVAL_NONE
    apply_bytes: int = 0
    cork_bytes: int = 0
    sk_redir: Socket | None = None
    redir_ingress: bool = False
    pending: SkMsgSg = field(default_factory=lambda: SkMsgSg(b""))   # the message in flight
    msg_cork: int = 0       # the last run's bpf_msg_cork_bytes


def suitable(sock: Socket) -> bool:
    """sock_map_sk_is_suitable(): ebee's sockets are TCP or UDP, both can join."""
    return sock.protocol in (IPPROTO_TCP, IPPROTO_UDP)


def state_allowed(sock: Socket) -> bool:
    """sock_map_sk_state_allowed(): TCP established or listening; UDP bound (hashed)."""
    if sock.is_tcp:
        return sock.state in (TCP_ESTABLISHED, TCP_LISTEN)
    return sock.local[1] != 0


def redirect_allowed(sock: Socket) -> bool:
    """sock_map_redirect_allowed()."""
    if sock.is_tcp:
        return sock.state != TCP_LISTEN
    return sock.state == TCP_ESTABLISHED


def link_psock(sock: Socket, msg_prog: Any, skb_prog: Any = None, parser: Any = None,
               stream: bool = False) -> int:
    """sock_map_link(): 0, or -EBUSY when the socket and the map both have an sk_msg
    program, both an sk_skb verdict program (stream or not) or both a stream parser."""
    ps = sock.psock
    if ps is not None and ((msg_prog is not None and ps.msg_prog is not None) or
                           (skb_prog is not None and ps.skb_prog is not None) or
                           (parser is not None and ps.parser is not None)):
        return -E.EBUSY
    if ps is None:
        ps = sock.psock = Psock()
    if msg_prog is not None:
        ps.msg_prog = msg_prog
    if skb_prog is not None:
        ps.skb_prog, ps.stream = skb_prog, stream
    if parser is not None:
        ps.parser = parser
    ps.links += 1
    return 0


@dataclass
class Event:
    """One thing the stack did, for ``Stack.log``."""
    what: str
    sock: int               # cookie
    detail: str = ""


class Stack:
    """Modelled sockets on a loopback network, one namespace.

    ``sockops`` programs attach to cgroup paths (``attach_sockops``): they run for the
    sockets of that cgroup and its descendants.  An sk_msg program attached to a
    SOCKMAP/SOCKHASH (the map's ``progs``) runs on every send of a TCP socket that joined
    the map after the attach, as Linux copies the map's programs into the socket's psock.
    """

    def __init__(self, runner: Runner | None = None):
        self.runner = runner
        self.sockets: list[Socket] = []
        self.sockops: list[tuple[str, Any]] = []
        self.log: list[Event] = []
        self.calls: dict[int, int] = {}          # sockops op -> how often it ran
        self._ports = itertools.count(40000)

    # -- programs ------------------------------------------------------------------------

    def attach_sockops(self, prog: Any, cgroup: str) -> None:
        self.sockops.append((_norm(cgroup), prog))

    def _sockops_progs(self, sock: Socket) -> list[Any]:
        return [p for cg, p in self.sockops if _under(sock.cgroup, cg)]

    def _call(self, sock: Socket, op: int, *args: int, fullsock: bool = True,
              cgroup_of: Socket | None = None) -> int:
        """tcp_call_bpf(): run the cgroup's sockops programs; the reply (args[0] after the
        run), -1 when none ran."""
        progs = self._sockops_progs(cgroup_of or sock)
        if not progs or self.runner is None:
            return -1
        self.calls[op] = self.calls.get(op, 0) + 1
        region = SHARED.add(Region(BPF_SOCK_OPS.size, "bpf_sock_ops"))
        try:
            _fill_sock_ops(region, sock, op, args, fullsock)
            call = SockOpsCall(sock, op, fullsock, region)
            reply = -1
            for p in progs:
                self.runner(p, region.start, call)
                reply = struct.unpack_from("<i", region.buf, 4)[0]
            self.log.append(Event(f"sockops op {op}", sock.cookie, f"reply {reply}"))
            return reply
        finally:
            SHARED.remove(region)

    def _set_state(self, sock: Socket, new: int) -> None:
        """tcp_set_state(): STATE_CB first when the socket asked for it."""
        old = sock.state
        if sock.cb_flags & BPF_SOCK_OPS_STATE_CB_FLAG:
            self._call(sock, STATE_CB, old, new)
        sock.state = new
        self.log.append(Event("state", sock.cookie, f"{old} -> {new}"))

    # -- sockets -------------------------------------------------------------------------

    def socket(self, family: int = AF_INET, type: int = SOCK_STREAM, *,
               cgroup: str = "/") -> Socket:
        """A new, unbound socket of a task in ``cgroup``."""
        proto = IPPROTO_TCP if type == SOCK_STREAM else IPPROTO_UDP
        any_ = "0.0.0.0" if family == AF_INET else "::"
        s = Socket(family, proto, (any_, 0), state=TCP_CLOSE, cgroup=_norm(cgroup))
        self.sockets.append(s)
        return s

    def bind(self, sock: Socket, addr: tuple[str, int]) -> None:
        port = addr[1] or next(self._ports)
        if any(o is not sock and not o.closed and o.protocol == sock.protocol and
               o.local[1] == port and o.remote is None for o in self.sockets):
            raise OSError(E.EADDRINUSE, f"port {port} is in use")
        sock.set_local((addr[0], port))

    def listen(self, sock: Socket) -> None:
        if not sock.is_tcp:
            raise OSError(E.EOPNOTSUPP, "only TCP sockets listen")
        if not sock.local[1]:
            self.bind(sock, (str(sock.local[0]), 0))
        sock.state = TCP_LISTEN
        sock.backlog = []                               # type: ignore[attr-defined]
        self._call(sock, TCP_LISTEN_CB)

    def _listener(self, addr: tuple[str, int]) -> Socket | None:
        ip = ipaddress.ip_address(addr[0])
        for s in self.sockets:
            if s.is_tcp and s.state == TCP_LISTEN and not s.closed and s.local[1] == addr[1] \
                    and (s.local[0] == ip or s.local[0].is_unspecified):
                return s
        return None

    def connect(self, sock: Socket, addr: tuple[str, int]) -> None:
        """A TCP three-way handshake over loopback, with the sockops callbacks of both
        ends (the connecting socket's, the listener's request socket's, the child's)."""
        if not sock.is_tcp:
            if not sock.local[1]:
                self.bind(sock, ("127.0.0.1", 0))
            sock.set_remote(addr)
            sock.state = TCP_ESTABLISHED
            return
        lst = self._listener(addr)
        if not sock.local[1]:
            self.bind(sock, ("127.0.0.1", 0))
        elif sock.local[0].is_unspecified:
            sock.set_local(("127.0.0.1", sock.local[1]))
        sock.set_remote(addr)
        self._set_state(sock, TCP_SYN_SENT)
        # tcp_connect(): TCP_CONNECT_CB, then tcp_connect_init() (the initial window, the
        # RTO), then the SYN (ECN)
        self._call(sock, TCP_CONNECT)
        self._call(sock, RWND_INIT)
        self._call(sock, TIMEOUT_INIT)
        self._call(sock, NEEDS_ECN)
        if lst is None:
            self._set_state(sock, TCP_CLOSE)
            raise ConnectionRefusedError(E.ECONNREFUSED, "nothing listens there")
        # the SYN reaches the listener: a request socket (not a full socket)
        req = Socket(sock.family, IPPROTO_TCP, (addr[0], addr[1]),
                     (str(sock.local[0]), sock.local[1]), state=TCP_NEW_SYN_RECV,
                     cgroup=lst.cgroup)
        try:
            # tcp_openreq_init_rwin(), the SYN-ACK's RTO, then its ECN (tcp_conn_request)
            self._call(req, RWND_INIT, fullsock=False, cgroup_of=lst)
            self._call(req, TIMEOUT_INIT, fullsock=False, cgroup_of=lst)
            self._call(req, NEEDS_ECN, fullsock=False, cgroup_of=lst)
        finally:
            req.close()
        # the SYN-ACK: the client is established (tcp_finish_connect)
        self._set_state(sock, TCP_ESTABLISHED)
        self._call(sock, ACTIVE_ESTABLISHED)
        # the ACK: the child, cloned from the listener, runs PASSIVE_ESTABLISHED while
        # still SYN_RECV, then becomes established
        child = Socket(sock.family, IPPROTO_TCP, (addr[0], addr[1]),
                       (str(sock.local[0]), sock.local[1]), state=TCP_SYN_RECV,
                       cgroup=lst.cgroup)
        child.cb_flags = lst.cb_flags
        self.sockets.append(child)
        self._call(child, PASSIVE_ESTABLISHED)
        self._set_state(child, TCP_ESTABLISHED)
        sock.peer, child.peer = child, sock
        lst.backlog.append(child)                       # type: ignore[attr-defined]

    def accept(self, lst: Socket) -> Socket:
        q = getattr(lst, "backlog", None)
        if not q:
            raise BlockingIOError(E.EAGAIN, "no connection to accept")
        return q.pop(0)

    # -- data ----------------------------------------------------------------------------

    def send(self, sock: Socket, data: bytes) -> int:
        """sendmsg(): through the socket's sk_msg program if it has one
        (tcp_bpf_sendmsg), else to the peer through the modelled TCP/IP path."""
        data = bytes(data)
        if not sock.is_tcp:
            raise OSError(E.EOPNOTSUPP, "use sendto for UDP sockets")
        if sock.state not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT):
            raise BrokenPipeError(E.EPIPE, "the socket is not connected")
        ps = sock.psock
        if ps is None or ps.msg_prog is None or self.runner is None:
            self._push(sock, data)
            return len(data)
        return self._sendmsg_bpf(sock, ps, data)

    def _push(self, sock: Socket, data: bytes) -> None:
        """tcp_push(): the bytes go out and reach the peer's receive queue."""
        peer = sock.peer
        self._ack(sock)
        sock.sent.append((data, "tcp"))
        if peer is not None and not peer.closed and data:
            self._receive(peer, data, sock.cookie)

    def _receive(self, sock: Socket, data: bytes, src: int) -> None:
        """Bytes arrive at ``sock``: through its stream parser and stream verdict when it
        has both (strparser: one verdict run per message), else through its sk_skb
        verdict program if it has one (sk_psock_verdict_recv: one run per segment; the
        stack sends each send as one segment)."""
        ps = sock.psock
        if ps is None or ps.skb_prog is None or self.runner is None:
            sock.rx.append(Delivery(data, src, "tcp"))
            return
        if ps.parser is not None and ps.stream:
            if ps.strp is None:
                ps.strp = self._strparser(sock, ps)
            ps.strp.data_ready(data)
            return
        self._skb_verdict(sock, ps, data, data, src)

    def _strparser(self, sock: Socket, ps: Psock) -> StrParser:
        """sk_psock_init_strp(): the parser program decides message lengths, the verdict
        runs on each message; an error is reported on the socket (SO_ERROR)."""
        runner = self.runner
        assert runner is not None

        def parse(head: bytes) -> int:
            ret = runner.skb(ps.parser, SkbCall(sock, head)) & 0xFFFFFFFF
            ret -= (ret & 0x80000000) << 1
            self.log.append(Event("sk_skb parser", sock.cookie, f"len {len(head)} -> {ret}"))
            return ret

        def rcv_msg(head: bytes, off: int, n: int) -> None:
            src = sock.peer.cookie if sock.peer is not None else 0
            self._skb_verdict(sock, ps, head, head[off:off + n], src)

        def abort(err: int) -> None:
            sock.sk_err = err
            self.log.append(Event("strparser", sock.cookie, f"error {err}"))

        return StrParser(parse, rcv_msg, abort)

    def _skb_verdict(self, sock: Socket, ps: Psock, skb: bytes, data: bytes, src: int) -> None:
        """Run the verdict program on ``skb``; its verdict applies to ``data`` (the message:
        strparser's offset and full_len within the skb, sk_psock_verdict_apply)."""
        assert self.runner is not None
        call = SkbCall(sock, skb)
        ret = self.runner.skb(ps.skb_prog, call) & 0xFFFFFFFF
        redir = call.sk_redir if ret == SK_PASS else None
        self.log.append(Event("sk_skb", sock.cookie, f"verdict {ret} len {len(data)}"))
        if ret != SK_PASS:
            sock.rx_dropped += len(data)
        elif redir is None:
            sock.rx.append(Delivery(data, src, "tcp"))
        elif call.flags & BPF_F_INGRESS:
            if not redir.closed:
                redir.rx.append(Delivery(data, src, "skb redirect"))
        else:
            self._push(redir, data)

    def _sendmsg_bpf(self, sock: Socket, ps: Psock, data: bytes) -> int:
        copied = len(data)
        ps.pending.append(data)
        if ps.cork_bytes:
            ps.cork_bytes = 0 if len(data) > ps.cork_bytes else ps.cork_bytes - len(data)
            if ps.cork_bytes:
                sock.sent.append((data, "corked"))
                return copied
            ps.eval = EVAL_NONE          # every corked byte is here: run the program again
        # tcp_bpf_send_verdict()
        while ps.pending.size:
            delta = 0
            if ps.eval == EVAL_NONE:
                ps.eval, delta = self._verdict(sock, ps)
            size = ps.pending.size
            if ps.msg_cork and ps.msg_cork > size:
                ps.cork_bytes = ps.msg_cork - size
                sock.sent.append((data, "corked"))
                return copied
            tosend = size
            if ps.apply_bytes and ps.apply_bytes < tosend:
                tosend = ps.apply_bytes
            chunk = ps.pending.consume(tosend)
            ev = ps.eval
            redir = ps.sk_redir
            ingress = ps.redir_ingress
            _apply(ps, tosend)
            if ev == EVAL_PASS:
                self._push(sock, chunk)
            elif ev == EVAL_REDIRECT:
                assert redir is not None
                if ingress:
                    sock.sent.append((chunk, f"redirect ingress {redir.cookie}"))
                    if not redir.closed:
                        redir.rx.append(Delivery(chunk, sock.cookie, "redirect"))
                else:
                    sock.sent.append((chunk, f"redirect egress {redir.cookie}"))
                    self._push(redir, chunk)
            else:
                ps.pending = SkMsgSg(b"")
                copied -= tosend + delta
                sock.sent.append((chunk, "dropped"))
                # the drop returns before the verdict is reset: it holds for later sends
                # too (tcp_bpf_send_verdict), as the kernel shows
                if copied <= 0:
                    raise PermissionError(E.EACCES, "the sk_msg program dropped the message")
                return copied
            if not ps.apply_bytes:
                ps.eval, ps.sk_redir = EVAL_NONE, None
        return copied

    def _verdict(self, sock: Socket, ps: Psock) -> tuple[int, int]:
        """sk_psock_msg_verdict(): run the program on the pending bytes."""
        size = ps.pending.size
        md = SHARED.add(Region(SK_MSG_MD.size, "sk_msg_md", writable=False))
        try:
            _fill_sk_msg(md, sock)
            call = MsgCall(sock, ps.pending, md)
            try:
                ret = self.runner(ps.msg_prog, md.start, call) & 0xFFFFFFFF
            finally:
                # what the program wrote, pushed and popped is the message now
                ps.pending = call.finish()
        finally:
            SHARED.remove(md)
        delta = size - ps.pending.size
        ps.apply_bytes = call.apply_bytes
        ps.msg_cork = call.cork_bytes
        if ret == SK_PASS and call.sk_redir is not None:
            ps.sk_redir, ps.redir_ingress = call.sk_redir, bool(call.flags & BPF_F_INGRESS)
            verdict = EVAL_REDIRECT
        elif ret == SK_PASS:
            verdict = EVAL_PASS
        else:
            verdict = EVAL_DROP
        self.log.append(Event("sk_msg", sock.cookie, f"verdict {verdict} size {size}"))
        return verdict, delta

    def recv(self, sock: Socket, n: int = 1 << 30) -> bytes:
        """Take up to ``n`` bytes from the receive queue (b"" when empty).

        A socket whose stream parser left bytes unread in the TCP receive queue (waiting
        for the rest of a message, or stopped by an error) raises ``EAGAIN`` even when
        messages are ready, as tcp_bpf_recvmsg_parser() does."""
        ps = sock.psock
        if ps is not None and ps.strp is not None and ps.strp.unread():
            raise BlockingIOError(E.EAGAIN, "the stream parser holds unread bytes")
        out = bytearray()
        while sock.rx and len(out) < n:
            d = sock.rx[0]
            take = d.data[:n - len(out)]
            out += take
            if len(take) == len(d.data):
                sock.rx.pop(0)
            else:
                sock.rx[0] = Delivery(d.data[len(take):], d.src_cookie, d.via)
        return bytes(out)

    def sendto(self, sock: Socket, data: bytes, addr: tuple[str, int]) -> int:
        if sock.is_tcp:
            raise OSError(E.EISCONN, "sendto on a TCP socket")
        if not sock.local[1]:
            self.bind(sock, ("127.0.0.1", 0))
        port = addr[1]
        dst = next((s for s in self.sockets if not s.is_tcp and not s.closed
                    and s.local[1] == port), None)
        sock.sent.append((bytes(data), "udp"))
        if dst is not None:
            dst.rx.append(Delivery(bytes(data), sock.cookie, "udp"))
        return len(data)

    def so_error(self, sock: Socket) -> int:
        """getsockopt(SO_ERROR): the socket's pending error (a stream parser's), cleared."""
        err, sock.sk_err = sock.sk_err, 0
        return err

    def close(self, sock: Socket) -> None:
        """close(): the socket leaves every map; a connected TCP socket runs the FIN
        exchange with its peer as loopback TCP does: the peer ACKs a FIN late (delayed ACK,
        pingpong mode), with its own next segment or when :meth:`delayed_acks` fires."""
        if sock.closed:
            return
        sock.closed = True              # sock_map_close(): out of every map first
        peer = sock.peer
        if sock.is_tcp and sock.state == TCP_ESTABLISHED and peer is not None:
            self._set_state(sock, TCP_FIN_WAIT1)
            if peer.state == TCP_ESTABLISHED:
                self._set_state(peer, TCP_CLOSE_WAIT)
                peer.ack_pending = True
            else:
                self._fin_acked(sock)
        elif sock.is_tcp and sock.state == TCP_CLOSE_WAIT and peer is not None:
            self._set_state(sock, TCP_LAST_ACK)
            self._ack(sock)                         # the FIN carries the late ACK
            if peer.state == TCP_FIN_WAIT2:
                self._set_state(peer, TCP_CLOSE)    # tcp_time_wait() -> tcp_done()
            self._fin_acked(sock)
            self._set_state(sock, TCP_CLOSE)
        elif sock.is_tcp and sock.state != TCP_CLOSE:
            self._set_state(sock, TCP_CLOSE)
        sock.closed = False
        sock.close()

    def _fin_acked(self, sock: Socket) -> None:
        sock.snd_cwnd += 1              # slow start: one more segment (the FIN) acked

    def _ack(self, sock: Socket) -> None:
        """``sock`` sends a segment: it carries the ACK of the peer's FIN if one is due."""
        peer = sock.peer
        if getattr(sock, "ack_pending", False) and peer is not None:
            sock.ack_pending = False
            self._fin_acked(peer)
            if peer.state == TCP_FIN_WAIT1:
                self._set_state(peer, TCP_FIN_WAIT2)

    def delayed_acks(self) -> None:
        """The delayed-ACK timers fire: every FIN received is acknowledged."""
        for s in self.sockets:
            if not s.closed:
                self._ack(s)

    def close_all(self) -> None:
        for s in list(self.sockets):
            self.close(s)


def _apply(ps: Psock, n: int) -> None:
    """sk_msg_apply_bytes()."""
    if ps.apply_bytes:
        ps.apply_bytes = 0 if ps.apply_bytes < n else ps.apply_bytes - n



def _norm(path: str) -> str:
    return "/" + path.strip("/")


def _under(path: str, cgroup: str) -> bool:
    return cgroup == "/" or path == cgroup or path.startswith(cgroup + "/")


def _ports(sock: Socket) -> tuple[bytes, int]:
    """remote_port as the kernel's conversion loads it (the be16 port in the upper half of
    a little-endian u32), local_port in host order."""
    rport = sock.remote[1] if sock.remote else 0
    return b"\0\0" + rport.to_bytes(2, "big"), sock.local[1]


def _fill_addrs(buf, sock: Socket, f4r: int, f4l: int, f6r: int, f6l: int, fam: int) -> None:
    struct.pack_into("<I", buf, fam, sock.family)
    if sock.family == AF_INET:
        buf[f4l:f4l + 4] = sock.local[0].packed
        if sock.remote:
            buf[f4r:f4r + 4] = sock.remote[0].packed
    else:
        buf[f6l:f6l + 16] = sock.local[0].packed
        if sock.remote:
            buf[f6r:f6r + 16] = sock.remote[0].packed


def _fill_sock_ops(region: Region, sock: Socket, op: int, args: tuple[int, ...],
                   fullsock: bool) -> None:
    b, o = region.buf, BPF_SOCK_OPS.offsetof
    struct.pack_into("<I", b, 0, op)
    for k, a in enumerate(args[:4]):
        struct.pack_into("<I", b, 4 + 4 * k, a & 0xFFFFFFFF)
    _fill_addrs(b, sock, o("remote_ip4"), o("local_ip4"), o("remote_ip6"), o("local_ip6"),
                o("family"))
    rport, lport = _ports(sock)
    b[o("remote_port"):o("remote_port") + 4] = rport
    struct.pack_into("<I", b, o("local_port"), lport)
    struct.pack_into("<I", b, o("is_fullsock"), int(fullsock))
    struct.pack_into("<I", b, o("state"), sock.state)
    if fullsock:        # the tcp_sock fields read 0 through a request socket
        struct.pack_into("<I", b, o("snd_cwnd"), sock.snd_cwnd)
        struct.pack_into("<I", b, o("snd_ssthresh"), TCP_INFINITE_SSTHRESH)
        struct.pack_into("<I", b, o("bpf_sock_ops_cb_flags"), sock.cb_flags)
        struct.pack_into("<Q", b, o("sk"), sock.addr)


def _fill_sk_msg(md: Region, sock: Socket) -> None:
    b, o = md.buf, SK_MSG_MD.offsetof
    _fill_addrs(b, sock, o("remote_ip4"), o("local_ip4"), o("remote_ip6"), o("local_ip6"),
                o("family"))
    rport, lport = _ports(sock)
    b[o("remote_port"):o("remote_port") + 4] = rport
    struct.pack_into("<I", b, o("local_port"), lport)
    struct.pack_into("<Q", b, o("sk"), sock.addr)


__all__ = ["Event", "MsgCall", "Psock", "Runner", "SkbCall", "SockOpsCall", "Stack", "link_psock",
           "redirect_allowed", "state_allowed", "suitable"]


