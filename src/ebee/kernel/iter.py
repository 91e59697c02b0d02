"""BPF iterators in the kernel: the iterator link (BPF_LINK_CREATE, attach type
TRACE_ITER, ``iter_info`` naming the map for bpf_map_elem / bpf_sk_storage_map), an
iterator fd from it (BPF_ITER_CREATE) and its text read to EOF, as ``cat`` of a pinned
iterator reads it."""
from __future__ import annotations

import ctypes
import os

from ..uapi import AttachType, Cmd
from .attrs import IterCreateAttr
from .links import Link
from .syscall import addr, bpf


class _LinkInfo(ctypes.Structure):
    # union bpf_iter_link_info: .map.map_fd is the first u32; .task is {tid, pid, pid_fd}
    _fields_ = [("map_fd", ctypes.c_uint32), ("pid", ctypes.c_uint32),
                ("pad", ctypes.c_uint32 * 4)]


def iter_link(prog, *, map_fd: int | None = None, tid: int | None = None,
              pid: int | None = None) -> Link:
    """The iterator link of iterator program ``prog`` (a loaded KernelProgram); task
    iterators walk one thread (``tid``) or one process's threads (``pid``) if given."""
    kw = {}
    info = None
    if map_fd is not None or tid is not None or pid is not None:
        info = _LinkInfo(map_fd=map_fd if map_fd is not None else tid or 0, pid=pid or 0)
        kw["iter"] = {"iter_info": addr(info), "iter_info_len": ctypes.sizeof(info)}
    target = f"iter/{getattr(prog, 'attach_target', '') or ''}"
    link = Link.create(prog.fd, 0, AttachType.TRACE_ITER, program=prog, target=target, **kw)
    del info
    return link


def read_link(link: Link) -> bytes:
    """A new iterator on ``link``, read to EOF."""
    fd = bpf(Cmd.ITER_CREATE, IterCreateAttr(link_fd=link.fileno()))
    out = bytearray()
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return bytes(out)
            out += chunk
    finally:
        os.close(fd)


def read_iter(prog, *, map_fd: int | None = None, tid: int | None = None,
              pid: int | None = None) -> bytes:
    """Link ``prog``, read one iterator to EOF, detach."""
    with iter_link(prog, map_fd=map_fd, tid=tid, pid=pid) as link:
        return read_link(link)
