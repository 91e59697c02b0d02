"""The kernel's pseudo-filesystems the backend uses: bpffs (pins) and tracefs (events, trace_pipe).

Both are found through /proc/self/mounts.  When one is missing it is mounted
at its usual place, as bpftool does, unless mounting is not allowed
(``EBEE_NO_MOUNT=1``, or ``mount=False``) — then the error says what to run.
"""
from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from .syscall import libc

BPFFS_DEFAULT = "/sys/fs/bpf"
TRACEFS_DEFAULT = "/sys/kernel/tracing"
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"


class MountError(OSError):
    """A filesystem the operation needs is not mounted and could not be."""


def mounts() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount this process sees."""
    out = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    out.append((parts[1].replace("\\040", " "), parts[2]))
    except OSError:
        pass
    return out


def fs_type(path: str | os.PathLike) -> str | None:
    """The filesystem type holding ``path`` (longest matching mount point)."""
    p = os.path.realpath(path)
    best, best_type = "", None
    for mnt, typ in mounts():
        if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, best_type = mnt, typ
    return best_type


def mount_allowed(mount: bool | None = None) -> bool:
    if mount is not None:
        return mount
    return os.environ.get("EBEE_NO_MOUNT", "") not in ("1", "yes", "true")


def _mount(source: str, target: str, fstype: str) -> None:
    os.makedirs(target, exist_ok=True)
    if libc().mount(source.encode(), target.encode(), fstype.encode(), 0, None) != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"mount -t {fstype} {source} {target}: {os.strerror(err)}")


def ensure_bpffs(path: str | os.PathLike = BPFFS_DEFAULT, *, mount: bool | None = None) -> Path:
    """Make sure ``path`` lies on a bpffs; returns it.  Mounts one at /sys/fs/bpf if needed."""
    path = Path(path)
    if fs_type(path) == "bpf":
        return path
    if fs_type(BPFFS_DEFAULT) != "bpf" and str(path).startswith(BPFFS_DEFAULT):
        if not mount_allowed(mount):
            raise MountError(errno.ENOENT, f"{path}: no bpf filesystem is mounted; run "
                                           f"'mount -t bpf bpf {BPFFS_DEFAULT}' (or allow "
                                           f"ebee to, without EBEE_NO_MOUNT)")
        _mount("bpf", BPFFS_DEFAULT, "bpf")
        return path
    raise MountError(errno.EINVAL, f"{path}: not on a bpf filesystem (pins live under a "
                                   f"bpffs mount such as {BPFFS_DEFAULT})")


def tracefs(*, mount: bool | None = None) -> Path:
    """The tracefs root (events/, trace_pipe ...), mounting it if needed and allowed."""
    for mnt, typ in mounts():
        if typ == "tracefs":
            return Path(mnt)
    if Path(DEBUGFS_TRACING, "events").is_dir():   # auto-mounted below debugfs
        return Path(DEBUGFS_TRACING)
    if not mount_allowed(mount):
        raise MountError(errno.ENOENT, f"tracefs is not mounted; run 'mount -t tracefs tracefs "
                                       f"{TRACEFS_DEFAULT}' (or allow ebee to, without "
                                       f"EBEE_NO_MOUNT)")
    try:
        _mount("tracefs", TRACEFS_DEFAULT, "tracefs")
    except MountError as e:
        raise MountError(e.errno, f"tracefs is not mounted and mounting it failed ({e.strerror}); "
                                  f"run 'mount -t tracefs tracefs {TRACEFS_DEFAULT}' as root") from None
    return Path(TRACEFS_DEFAULT)
