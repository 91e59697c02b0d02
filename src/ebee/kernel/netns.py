"""Working inside a network namespace (as ``ip netns exec`` does, for this thread).

Interface names and indexes, XDP/tc attachments and sockets belong to the
network namespace of the thread that makes them::

    with netns.enter("blue"):
        link = attach.xdp(prog, "veth1")      # veth1 of namespace "blue"
        sock = socket.socket(...)             # a socket living in "blue"
"""
from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

from ..uapi import CLONE_NEWNET
from .syscall import libc

NETNS_RUN_DIR = Path("/run/netns")      # where ``ip netns add`` mounts named namespaces


def _setns(fd: int) -> None:
    if libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def enter(name_or_path: str):
    """Run the body in the named network namespace (``ip netns`` name or an nsfs path)."""
    path = Path(name_or_path) if os.sep in name_or_path else NETNS_RUN_DIR / name_or_path
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OSError(2, f"no network namespace {name_or_path!r} ({path})") from None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield path
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


class Pinned:
    """Holds the calling thread's network namespace so later work (a detach at exit)
    can run in it again; ``close()`` lets the namespace go."""

    def __init__(self):
        self.fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    @contextlib.contextmanager
    def entered(self):
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            same = os.fstat(home).st_ino == os.fstat(self.fd).st_ino
            if not same:
                _setns(self.fd)
            try:
                yield
            finally:
                if not same:
                    _setns(home)
        finally:
            os.close(home)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
