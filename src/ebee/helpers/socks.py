"""Socket helpers over the ``struct sock`` memory ebee models (``ebee.layouts.kernel.SOCK``):
cookies, owners, netns cookies and the pointer casts (bpf_sk_fullsock, bpf_tcp_sock,
bpf_skc_to_*).

ebee models one network namespace, this process's, which it takes as ``init_net``: its
cookie is the one Linux gives it (``SO_NETNS_COOKIE``).  A socket's cookie is made on
first use, as ``sock_gen_cookie`` makes it -- unique and never 0, though not the kernel's
number -- and kept in the socket's ``sk_cookie``.  A socket's owner (``sk_uid``) is 0
unless :func:`set_socket_uid` says otherwise, as for the socket a test run makes (it has
no ``struct socket``: ``sock_net_uid`` is root of the namespace).
"""
from __future__ import annotations

import itertools
import socket as _socket
import struct
import threading

from ..errors import VMError
from ..layouts.kernel import SOCK
from ..packet.skbuff import from_ctx
from ..uapi import AF_INET6, IPPROTO_TCP, IPPROTO_UDP, FuncId as F
from .cgroups import TCP_NEW_SYN_RECV, TCP_TIME_WAIT, socket_cgroup
from .registry import implements

M64 = (1 << 64) - 1
SO_NETNS_COOKIE = 71
OVERFLOWUID = 65534
AF_UNIX = 1
SOCK_STREAM, SOCK_DGRAM = 1, 2

_cookies = itertools.count(1)
_cookie_lock = threading.Lock()
_uids: dict[int, int] = {}
_netns: list[int] = []


def set_socket_uid(sk_addr: int, uid: int | None) -> None:
    """The owner of the socket at ``sk_addr`` (None: none, uid 0)."""
    if uid is None:
        _uids.pop(sk_addr, None)
    else:
        _uids[sk_addr] = uid


def netns_cookie() -> int:
    """The cookie of the network namespace ebee models (this process's)."""
    if not _netns:
        try:
            with _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM) as s:
                _netns.append(struct.unpack("<Q", s.getsockopt(_socket.SOL_SOCKET,
                                                               SO_NETNS_COOKIE, 8))[0])
        except OSError:          # a kernel before 5.14: init_net's first cookie
            _netns.append(1)
    return _netns[0]


def _u(m, sk: int, field: str) -> int:
    off = SOCK.off(field)
    size = SOCK.members[field][1]
    return int.from_bytes(m.read(sk + off, size), "little")


def _fullsock(m, sk: int) -> bool:
    return bool(sk) and _u(m, sk, "skc_state") not in (TCP_TIME_WAIT, TCP_NEW_SYN_RECV)


def _cookie(m, sk: int) -> int:
    c = _u(m, sk, "skc_cookie")
    if not c:
        with _cookie_lock:
            c = _u(m, sk, "skc_cookie")
            if not c:
                c = next(_cookies)
                m.write(sk + SOCK.off("skc_cookie"), struct.pack("<Q", c))
    return c


def _skb_sk(m, ctx: int) -> int:
    return from_ctx(ctx).sk_ptr


@implements(F.get_socket_cookie)
def get_socket_cookie(m, ctx, *_):
    # the skb variant (its socket's, 0 without) or the socket-pointer one
    try:
        sk = _skb_sk(m, ctx)
    except VMError:         # not an skb: a socket pointer
        sk = ctx
    return _cookie(m, sk) if sk else 0


@implements(F.get_netns_cookie)
def get_netns_cookie(m, *_):
    return netns_cookie()


@implements(F.get_socket_uid)
def get_socket_uid(m, ctx, *_):
    sk = _skb_sk(m, ctx)
    if not _fullsock(m, sk):
        return OVERFLOWUID
    return _uids.get(sk, 0)


@implements(F.skb_cgroup_classid)
def skb_cgroup_classid(m, ctx, *_):
    c = socket_cgroup(m, _skb_sk(m, ctx))
    return c.classid if c is not None else 0


@implements(F.sk_fullsock)
def sk_fullsock(m, sk, *_):
    return sk if _fullsock(m, sk) else 0


@implements(F.tcp_sock)
def tcp_sock(m, sk, *_):
    return sk if _fullsock(m, sk) and _u(m, sk, "sk_protocol") == IPPROTO_TCP else 0


@implements(F.skc_to_tcp_sock)
def skc_to_tcp_sock(m, sk, *_):
    return tcp_sock(m, sk)


@implements(F.skc_to_tcp6_sock)
def skc_to_tcp6_sock(m, sk, *_):
    ok = _fullsock(m, sk) and _u(m, sk, "sk_protocol") == IPPROTO_TCP and \
        _u(m, sk, "sk_type") == SOCK_STREAM and _u(m, sk, "skc_family") == AF_INET6
    return sk if ok else 0


@implements(F.skc_to_udp6_sock)
def skc_to_udp6_sock(m, sk, *_):
    ok = _fullsock(m, sk) and _u(m, sk, "sk_protocol") == IPPROTO_UDP and \
        _u(m, sk, "sk_type") == SOCK_DGRAM and _u(m, sk, "skc_family") == AF_INET6
    return sk if ok else 0


@implements(F.skc_to_unix_sock)
def skc_to_unix_sock(m, sk, *_):
    return sk if _fullsock(m, sk) and _u(m, sk, "skc_family") == AF_UNIX else 0


@implements(F.skc_to_tcp_timewait_sock)
def skc_to_tcp_timewait_sock(m, sk, *_):
    # a timewait socket is only a sock_common: ebee's are TCP's (it has no DCCP)
    return sk if sk and _u(m, sk, "skc_state") == TCP_TIME_WAIT else 0


@implements(F.skc_to_tcp_request_sock)
def skc_to_tcp_request_sock(m, sk, *_):
    return sk if sk and _u(m, sk, "skc_state") == TCP_NEW_SYN_RECV else 0


@implements(F.skc_to_mptcp_sock)
def skc_to_mptcp_sock(m, sk, *_):
    # the MPTCP socket of a subflow: ebee models no MPTCP, so no TCP socket is a subflow
    return 0


TCP_LISTEN = 10


@implements(F.get_listener_sock)
def get_listener_sock(m, sk, *_):
    # a TCP listener (hashed listeners are SOCK_RCU_FREE); a request socket's listener
    # is not modelled: NULL, as for any other socket
    ok = _fullsock(m, sk) and _u(m, sk, "skc_state") == TCP_LISTEN and \
        _u(m, sk, "sk_protocol") == IPPROTO_TCP
    return sk if ok else 0
