"""A modelled socket: its ``struct sock`` region (what programs point at), its
4-tuple, family, protocol, TCP state, cgroup, and send/receive queues."""
from __future__ import annotations

import ipaddress
import itertools
import struct
import weakref
from dataclasses import dataclass
from typing import Any

from ..layouts.kernel import SOCK
from ..memory import SHARED, Memory, Region
from ..uapi import AF_INET, IPPROTO_TCP

# include/net/tcp_states.h
TCP_ESTABLISHED, TCP_SYN_SENT, TCP_SYN_RECV, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_TIME_WAIT, \
    TCP_CLOSE, TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_LISTEN, TCP_CLOSING, TCP_NEW_SYN_RECV = \
    range(1, 13)
STATE_NAMES = {v: k for k, v in globals().items() if k.startswith("TCP_") and isinstance(v, int)}

_cookies = itertools.count(0x1000)
#: live modelled sockets by the address of their ``struct sock`` (helpers get pointers)
_by_addr: "weakref.WeakValueDictionary[int, Socket]" = weakref.WeakValueDictionary()


def by_addr(addr: int) -> "Socket | None":
    """The live modelled socket whose ``struct sock`` is at ``addr``."""
    return _by_addr.get(addr)


@dataclass(frozen=True)
class Delivery:
    """Bytes that reached a socket's receive queue: from which socket, and how
    (``"tcp"``: through the modelled TCP/IP path; ``"redirect"``: an sk_msg redirect
    to ingress; ``"udp"``)."""
    data: bytes
    src_cookie: int
    via: str


class Socket:
    """A socket in the modelled socket table; its ``sock`` region is what programs point at.

    ``state`` is the TCP state (TCP_LISTEN by default, as a socket a lookup finds);
    ``cgroup`` the cgroup v2 path of the task that made it.
    """

    def __init__(self, family: int, protocol: int, local: tuple[str, int],
                 remote: tuple[str, int] | None = None, *, state: int = TCP_LISTEN,
                 reuseport: bool = False, mark: int = 0, priority: int = 0,
                 bound_dev_if: int = 0, cgroup: str = "/", memory: Memory = SHARED):
        self.family = family
        self.protocol = protocol
        self.reuseport = reuseport
        self.cookie = next(_cookies)
        self.cgroup = cgroup
        self.closed = False
        self.rx: list[Delivery] = []       # receive queue, in arrival order
        self.sent: list[tuple[bytes, str]] = []   # what each send did: (bytes, where)
        self.peer: Socket | None = None     # the other end of a modelled TCP connection
        self.cb_flags = 0                   # tcp_sock.bpf_sock_ops_cb_flags
        self.snd_cwnd = 10                  # TCP_INIT_CWND; +1 per acked FIN (slow start)
        self.ack_pending = False            # a FIN received, its ACK delayed
        self.rx_dropped = 0                 # bytes an sk_skb verdict dropped
        self.sk_err = 0                     # pending error (SO_ERROR), e.g. a stream parser's
        self.psock: Any = None              # sockmap state (ebee.sockets.psock.Psock)
        self._memory = memory
        self.region = memory.add(Region(SOCK.size, "sock"))
        _by_addr[self.region.start] = self
        b = self.region.buf
        m = SOCK.members
        struct.pack_into("<H", b, m["skc_family"][0], family)
        struct.pack_into("<i", b, m["skc_bound_dev_if"][0], bound_dev_if)
        struct.pack_into("<H", b, m["sk_protocol"][0], protocol)
        struct.pack_into("<H", b, m["sk_type"][0], 1 if protocol == IPPROTO_TCP else 2)
        struct.pack_into("<I", b, m["sk_mark"][0], mark)
        struct.pack_into("<I", b, m["sk_priority"][0], priority)
        struct.pack_into("<Q", b, m["skc_cookie"][0], self.cookie)
        struct.pack_into("<H", b, m["skc_rx_queue_mapping"][0], 0xFFFF)
        self.state = state
        self.set_local(local)
        self.set_remote(remote)

    # -- the fields programs read --------------------------------------------------------

    @property
    def state(self) -> int:
        return self.region.buf[SOCK.off("skc_state")]

    @state.setter
    def state(self, value: int) -> None:
        self.region.buf[SOCK.off("skc_state")] = value

    def set_local(self, local: tuple[str, int]) -> None:
        self.local = (ipaddress.ip_address(local[0]), local[1])
        b, m = self.region.buf, SOCK.members
        struct.pack_into("<H", b, m["skc_num"][0], self.local[1])
        if self.family == AF_INET:
            b[4:8] = self.local[0].packed
        else:
            o = m["skc_v6_rcv_saddr"][0]
            b[o:o + 16] = self.local[0].packed

    def set_remote(self, remote: tuple[str, int] | None) -> None:
        self.remote = (ipaddress.ip_address(remote[0]), remote[1]) if remote else None
        b, m = self.region.buf, SOCK.members
        ip = self.remote[0].packed if self.remote else None
        if self.family == AF_INET:
            b[0:4] = ip or b"\0" * 4
        else:
            o = m["skc_v6_daddr"][0]
            b[o:o + 16] = ip or b"\0" * 16
        struct.pack_into(">H", b, m["skc_dport"][0], self.remote[1] if self.remote else 0)

    @property
    def addr(self) -> int:
        return self.region.start

    @property
    def is_tcp(self) -> bool:
        return self.protocol == IPPROTO_TCP

    def alive(self) -> bool:
        """Not closed (a closed socket left every sockmap: sock_map_close)."""
        return not self.closed

    def received(self) -> bytes:
        """Everything in the receive queue, not consumed."""
        return b"".join(d.data for d in self.rx)

    def close(self) -> None:
        """Free the ``struct sock`` (a stack's ``close`` runs TCP's state changes first)."""
        if not self.closed:
            self.closed = True
            self._memory.remove(self.region)

    def __repr__(self) -> str:
        r = f" -> {self.remote[0]}:{self.remote[1]}" if self.remote else ""
        st = STATE_NAMES.get(self.state, str(self.state)) if self.is_tcp else "udp"
        return f"<Socket {self.local[0]}:{self.local[1]}{r} {st}>"
