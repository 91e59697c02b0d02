"""A record of the links and pins this process (and its children) made in the kernel.

When ``EBEE_KERNEL_LEDGER`` names a file, every BPF link created and every
path pinned through ebee is appended to it as one JSON line.  A test suite
sets it for its whole session (subprocesses inherit it) and, at the end,
asks :func:`leftovers` which of those are still there: precisely what the
suite left attached or pinned, whatever else the machine is running.
"""
from __future__ import annotations

import errno
import json
import os
import time

from .info import Kind, fd_by_id, link_info

LEDGER_ENV = "EBEE_KERNEL_LEDGER"
#: seconds a link released by its last close may stay visible: the kernel frees links
#: dropped from bpffs or detached from a workqueue (bpf_link_put_deferred)
RELEASE_GRACE = 2.0


def record(kind: str, **data) -> None:
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    line = json.dumps({"kind": kind, "pid": os.getpid(), **data}) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def entries(path: str) -> list[dict]:
    try:
        with open(path) as f:
            return [json.loads(ln) for ln in f if ln.strip()]
    except FileNotFoundError:
        return []


def leftovers(path: str) -> list[str]:
    """What the ledger's links and pins left behind, one description per item."""
    out = []
    deadline = time.monotonic() + RELEASE_GRACE
    for e in entries(path):
        if e["kind"] == "link":
            try:
                fd = _live_link(e["id"], deadline)
            except OSError as err:
                if err.errno == errno.ENOENT:
                    continue
                raise
            try:
                info = link_info(fd)
            finally:
                os.close(fd)
            out.append(f"link {e['id']} ({e.get('target', '')}, prog {info.prog_id}, "
                       f"made by pid {e['pid']}) still exists")
        elif e["kind"] == "pin" and os.path.lexists(e["path"]):
            out.append(f"pin {e['path']} (made by pid {e['pid']}) is still there")
    return out


def _live_link(link_id: int, deadline: float) -> int:
    """An fd of link ``link_id`` if it is still there after the grace period (ENOENT if not)."""
    while True:
        fd = fd_by_id(Kind.LINK, link_id)
        if time.monotonic() > deadline:
            return fd
        os.close(fd)
        time.sleep(0.02)
