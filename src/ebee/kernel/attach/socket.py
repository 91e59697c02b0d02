"""Socket filters on Python sockets: SO_ATTACH_BPF / SO_DETACH_BPF."""
from __future__ import annotations

import os
import socket as _socket

from ...uapi import SO_ATTACH_BPF, SO_DETACH_BPF
from ..links import CallbackAttachment


def socket_filter(prog, sock: _socket.socket | int):
    """Filter what ``sock`` receives with ``prog`` (a socket_filter program): its
    return value is how many bytes of each packet to keep, 0 drops it.

    The filter belongs to the socket and goes away with it; detaching before
    that removes it (only if the fd still names the same socket)."""
    fd = sock if isinstance(sock, int) else sock.fileno()
    ident = _ident(fd)
    _setsockopt(fd, SO_ATTACH_BPF, prog.fd)

    def undo():
        try:
            if _ident(fd) == ident:
                _setsockopt(fd, SO_DETACH_BPF, 0)
        except OSError:
            pass   # the socket was closed first: nothing left to detach
    return CallbackAttachment(undo, prog, f"socket/fd {fd}")


def _ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _setsockopt(fd: int, opt: int, value: int) -> None:
    s = _socket.socket(fileno=fd)
    try:
        s.setsockopt(_socket.SOL_SOCKET, opt, value)
    finally:
        s.detach()      # the fd stays the caller's
