"""Attachments, and the guarantee that nothing stays attached behind us.

Every way of attaching a program ends in an :class:`Attachment`: a BPF link
(:class:`Link`), a perf event, an XDP program or tc filter set through
netlink, a cgroup/sockmap PROG_ATTACH, a socket filter.  ``detach()`` undoes
it; ``with`` blocks, garbage collection, interpreter exit (including after
Ctrl-C) and SIGTERM/SIGHUP all detach whatever is still attached.

BPF links and perf events die with their file descriptors even if the process
is killed outright.  Netlink and PROG_ATTACH attachments do not, so those are
the ones the exit hooks exist for; prefer links (the default wherever the
kernel has them).  A link you pin is yours: it stays after exit until you
unpin it.
"""
from __future__ import annotations

import atexit
import os
import signal
import threading
import weakref

from ..uapi import Cmd
from .attrs import LinkCreateAttr, LinkDetachAttr, LinkUpdateAttr
from .syscall import FdObject, bpf
from . import ledger
from .info import link_info
from .info import Kind, fd_by_id
from .pin import obj_get
from ..uapi import BPF_F_REPLACE
from .pin import obj_pin


class Attachment:
    """A program attached somewhere; ``detach()`` (idempotent) undoes it."""
    kind = "attachment"

    def __init__(self, program=None, target: str = ""):
        self.program = program      # keeps the program alive while attached
        self.target = target
        self.attached = True
        self._pid = os.getpid()
        _register(self)

    def _detach(self) -> None:
        raise NotImplementedError

    def detach(self) -> None:
        if not self.attached:
            return
        self.attached = False
        _live.discard(self)
        if os.getpid() != self._pid:    # a forked child does not own its parent's attachments
            return
        self._detach()

    close = detach

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def __del__(self) -> None:
        try:
            self.detach()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        prog = self.program.name if self.program is not None else ""
        return f"<{type(self).__name__} {prog} -> {self.target} {state}>"


class Link(Attachment, FdObject):
    """A BPF link: the attachment is the file descriptor."""
    kind = "link"

    def __init__(self, fd: int, program=None, target: str = "", *, owned: bool = True):
        FdObject.__init__(self, fd)
        self.pinned_at: str | None = None
        self.owned = owned
        if owned:
            Attachment.__init__(self, program, target)
            _record_link(fd, target)
        else:   # opened by id or pin: detached only when asked, never at exit or by GC
            self.program, self.target, self.attached = program, target, True
            self._pid = os.getpid()

    @classmethod
    def create(cls, prog_fd: int, target_fd: int, attach_type: int, *, flags: int = 0,
               program=None, target: str = "", **union) -> "Link":
        """BPF_LINK_CREATE; ``union`` fills the per-type part (e.g. ``target_btf_id=``,
        ``perf_event_cookie=``, ``tcx=dict(relative_fd=..)``)."""
        attr = LinkCreateAttr(prog_fd=prog_fd, target_fd=target_fd, attach_type=int(attach_type),
                              flags=flags)
        for k, v in union.items():
            if isinstance(v, dict):
                sub = getattr(attr.u, k)
                for kk, vv in v.items():
                    setattr(sub, kk, vv)
            else:
                setattr(attr.u, k, v)
        return cls(bpf(Cmd.LINK_CREATE, attr), program, target)

    @classmethod
    def from_id(cls, link_id: int) -> "Link":
        return cls(fd_by_id(Kind.LINK, link_id), owned=False)

    @classmethod
    def from_pinned(cls, path) -> "Link":
        self = cls(obj_get(path), owned=False)
        self.pinned_at = str(path)
        return self

    def info(self):
        return link_info(self.fileno())

    @property
    def id(self) -> int:
        return self.info().id

    def update(self, new_program, *, old_program=None) -> None:
        """LINK_UPDATE: swap the program atomically (``old_program`` must match if given)."""
        old_fd = old_program.fd if old_program is not None else 0
        bpf(Cmd.LINK_UPDATE, LinkUpdateAttr(link_fd=self.fileno(), new_prog_fd=new_program.fd,
                                            flags=BPF_F_REPLACE if old_fd else 0,
                                            old_prog_fd=old_fd))
        self.program = new_program

    def pin(self, path) -> None:
        """Pin the link: it then outlives this process (``unpin`` to let it go)."""
        obj_pin(self.fileno(), path)
        self.pinned_at = str(path)
        self.owned = False          # pinned links are the user's to keep
        _live.discard(self)

    def unpin(self) -> None:
        if self.pinned_at:
            os.unlink(self.pinned_at)
            self.pinned_at = None

    def _detach(self) -> None:
        if self.fd < 0:
            return
        try:   # LINK_DETACH: other fds to the link (dup, fork, pins) must not keep it attached
            bpf(Cmd.LINK_DETACH, LinkDetachAttr(link_fd=self.fd))
        except OSError:
            pass   # link types without detach (tracing, perf) go away with the last fd
        FdObject.close(self)

    def close(self) -> None:
        """Close our fd: that detaches the link unless it is pinned or held elsewhere."""
        self.attached = False
        _live.discard(self)
        FdObject.close(self)

    def __del__(self) -> None:
        try:
            if self.owned:
                Attachment.detach(self)
            FdObject.close(self)
        except Exception:
            pass


class FdAttachment(Attachment):
    """An attachment that lasts while some fds stay open (perf events + optional link)."""

    def __init__(self, fds: list[int], program=None, target: str = "", *, links=(),
                 on_detach=None):
        self.fds = list(fds)
        self.links = list(links)
        self.on_detach = on_detach
        super().__init__(program, target)

    def _detach(self) -> None:
        for link in self.links:
            link.detach()
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []
        if self.on_detach is not None:
            self.on_detach()


class CallbackAttachment(Attachment):
    """An attachment undone by a function call (netlink, PROG_DETACH, SO_DETACH_BPF)."""

    def __init__(self, undo, program=None, target: str = "", *, keep=()):
        self._undo = undo
        self._keep = keep           # objects the attachment needs alive (sockets, fds)
        super().__init__(program, target)

    def _detach(self) -> None:
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()


def _record_link(fd: int, target: str) -> None:
    if os.environ.get(ledger.LEDGER_ENV):
        try:
            ledger.record("link", id=link_info(fd).id, target=target)
        except OSError:
            pass


# --- the registry of live attachments, and the exit hooks ---------------------------------

_live: "weakref.WeakSet[Attachment]" = weakref.WeakSet()
_hooks_installed = False
_lock = threading.Lock()


def _register(a: Attachment) -> None:
    global _hooks_installed
    _live.add(a)
    if not _hooks_installed:
        with _lock:
            if not _hooks_installed:
                atexit.register(detach_all)
                _install_signal_hooks()
                _hooks_installed = True


def live_attachments() -> list[Attachment]:
    return [a for a in list(_live) if a.attached]


def detach_all() -> int:
    """Detach everything this process attached and still holds; returns how many."""
    n = 0
    for a in live_attachments():
        try:
            a.detach()
            n += 1
        except Exception:
            pass
    return n


def _install_signal_hooks() -> None:
    """SIGTERM/SIGHUP would end the process without running atexit: turn them into
    SystemExit (only where nobody installed a handler, and only from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _on_signal)
        except (ValueError, OSError):
            pass


def _on_signal(signum, frame):
    detach_all()
    signal.signal(signum, signal.SIG_DFL)
    raise SystemExit(128 + signum)

