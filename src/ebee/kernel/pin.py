"""OBJ_PIN / OBJ_GET: naming programs, maps and links in the real bpffs."""
from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from ..uapi import BPF_F_RDONLY, BPF_F_WRONLY, Cmd
from .attrs import ObjAttr
from .fs import ensure_bpffs, mounts
from .info import link_info
from .syscall import addr, bpf
from .ledger import record


def obj_pin(fd: int, path: str | os.PathLike, *, mount: bool | None = None) -> Path:
    """Pin the object behind ``fd`` at ``path`` (on a bpffs); returns the path."""
    path = Path(path)
    ensure_bpffs(path.parent, mount=mount)
    name = ctypes.create_string_buffer(os.fsencode(path))
    try:
        bpf(Cmd.OBJ_PIN, ObjAttr(pathname=addr(name), bpf_fd=fd))
    except OSError as e:
        raise OSError(e.errno, f"pin {path}: {os.strerror(e.errno)}") from None
    record("pin", path=str(path))
    return path


def obj_get(path: str | os.PathLike, *, read_only: bool = False,
            write_only: bool = False) -> int:
    """A new fd for the object pinned at ``path`` (the caller closes it)."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    flags = (BPF_F_RDONLY if read_only else 0) | (BPF_F_WRONLY if write_only else 0)
    try:
        return bpf(Cmd.OBJ_GET, ObjAttr(pathname=addr(name), file_flags=flags))
    except OSError as e:
        what = "nothing pinned there" if e.errno == errno.ENOENT else os.strerror(e.errno)
        raise OSError(e.errno, f"{path}: {what}") from None


def unpin(path: str | os.PathLike) -> None:
    """Remove a pin (the object lives on while something else holds it)."""
    os.unlink(path)


def link_pins() -> dict[int, list[str]]:
    """Link id -> the paths pinning it, under every mounted bpffs."""
    out: dict[int, list[str]] = {}
    for mnt, typ in mounts():
        if typ != "bpf":
            continue
        for root, _, files in os.walk(mnt):
            for f in files:
                path = os.path.join(root, f)
                try:
                    fd = obj_get(path)
                except OSError:
                    continue
                try:
                    out.setdefault(link_info(fd).id, []).append(path)
                except OSError:
                    pass            # not a link
                finally:
                    os.close(fd)
    return out
