"""cgroup programs on a cgroup v2 directory.

A BPF link (LINK_CREATE with the cgroup's directory fd; Linux 5.7+) is used
where possible; otherwise PROG_ATTACH with BPF_F_ALLOW_MULTI, undone by
PROG_DETACH on detach or exit.
"""
from __future__ import annotations

import errno
import os

from ...uapi import BPF_F_ALLOW_MULTI, AttachType, Cmd
from ..attrs import ProgAttachAttr
from ..fs import mounts
from ..links import CallbackAttachment, Link
from ..syscall import bpf


def cgroup2_root() -> str | None:
    for mnt, typ in mounts():
        if typ == "cgroup2":
            return mnt
    return None


def cgroup_path(path: str) -> str:
    """An absolute cgroup v2 directory; relative paths are taken under the v2 root."""
    if not os.path.isabs(path):
        root = cgroup2_root()
        if root is None:
            raise OSError(errno.ENOENT, "no cgroup v2 hierarchy is mounted")
        path = os.path.join(root, path)
    if not os.path.isdir(path):
        raise OSError(errno.ENOENT, f"{path}: no such cgroup directory")
    return path


def cgroup(prog, path: str, attach_type: int | None = None, *, link: bool = True):
    """Attach a cgroup program (skb, sock, sock_addr, sysctl, sockopt, device) to ``path``."""
    at = AttachType(int(attach_type if attach_type is not None else prog.expected_attach_type))
    path = cgroup_path(path)
    target = f"cgroup/{at.name.lower()}:{path}"
    cg = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if link:
            try:
                made = Link.create(prog.fd, cg, at, program=prog, target=target)
                os.close(cg)        # the link holds the cgroup itself
                return made
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
        bpf(Cmd.PROG_ATTACH, ProgAttachAttr(target_fd=cg, attach_bpf_fd=prog.fd,
                                            attach_type=at, attach_flags=BPF_F_ALLOW_MULTI))
    except BaseException:
        os.close(cg)
        raise

    def undo():
        try:
            bpf(Cmd.PROG_DETACH, ProgAttachAttr(target_fd=cg, attach_bpf_fd=prog.fd,
                                                attach_type=at))
        finally:
            os.close(cg)
    return CallbackAttachment(undo, prog, target)
