"""BTF-based tracing and raw tracepoints: fentry/fexit/fmod_ret, lsm, tp_btf, raw_tp.

Their target is fixed when the program is loaded (``attach_btf_id``) except for
raw_tp, whose tracepoint is named at attach time.  All of them attach as BPF
links, which detach when the last fd closes.
"""
from __future__ import annotations

import ctypes
import errno

from ...uapi import AttachType, Cmd, ProgType
from ..attrs import RawTracepointAttr
from ..links import Link
from ..syscall import addr, bpf


def raw_tracepoint(prog, name: str, *, cookie: int = 0) -> Link:
    """Attach a raw_tp program to the kernel tracepoint ``name`` (``sys_enter``)."""
    buf = ctypes.create_string_buffer(name.encode())
    try:
        fd = bpf(Cmd.RAW_TRACEPOINT_OPEN, RawTracepointAttr(name=addr(buf), prog_fd=prog.fd,
                                                             cookie=cookie))
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise OSError(e.errno, f"no raw tracepoint {name!r}") from None
        raise
    return Link(fd, prog, f"raw_tp/{name}")


def tracing(prog, *, cookie: int = 0) -> Link:
    """Attach a fentry/fexit/fmod_ret/lsm/tp_btf program at the target it was loaded for."""
    attach_type = AttachType(int(prog.expected_attach_type))
    target = prog.attach_target or ""
    what = f"{attach_type.name.lower()}/{target}".rstrip("/")
    if prog.type == ProgType.LSM or attach_type in (AttachType.TRACE_FENTRY,
                                                     AttachType.TRACE_FEXIT,
                                                     AttachType.MODIFY_RETURN,
                                                     AttachType.TRACE_RAW_TP):
        try:
            kw = {"tracing": {"cookie": cookie}} if cookie else {}
            return Link.create(prog.fd, 0, attach_type, program=prog, target=what, **kw)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
    # older kernels: the same link through RAW_TRACEPOINT_OPEN without a name
    fd = bpf(Cmd.RAW_TRACEPOINT_OPEN, RawTracepointAttr(name=0, prog_fd=prog.fd))
    return Link(fd, prog, what)
