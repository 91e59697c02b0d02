"""Programs in the kernel: BPF_PROG_LOAD with everything libbpf passes, and BPF_PROG_TEST_RUN."""
from __future__ import annotations

import ctypes
import errno
import os
import re
import struct
from dataclasses import dataclass
from typing import Sequence

from ..isa import Instruction, encode
from ..uapi import AttachType, Cmd, ProgType
from .attrs import ProgLoadAttr, TestRunAttr
from .syscall import PRIVILEGE_HINT, FdObject, addr, bpf, cbuf, privileged
from ..isa import make
from .info import prog_info
from .info import Kind, fd_by_id
from .pin import obj_get
from .info import prog_xlated
from .xlated import decode_xlated
from ..errors import DecodeError
from .info import prog_jited
from .pin import obj_pin
from ..testrun import RunResult, TestRunError
from .attach import attach

LOG_SIZE = 1 << 20          # first verifier-log buffer; grown on ENOSPC
LOG_SIZE_MAX = 1 << 30
_NAME_OK = re.compile(r"[^A-Za-z0-9_.]")


class KernelLoadError(OSError):
    """The kernel refused a program; ``log`` holds the verifier's output."""

    def __init__(self, errno_: int, log: str, what: str = "", detail: str = ""):
        self.log = log
        if detail:          # the loader's own reason, before any bpf() call
            super().__init__(errno_, f"{what}: {detail}" if what else detail)
            return
        last = next((ln for ln in reversed(log.splitlines()) if ln.strip()
                     and not ln.startswith(("processed ", "verification time", "stack depth"))), "")
        msg = f"{os.strerror(errno_)}: {last}" if last else os.strerror(errno_)
        if errno_ == errno.EPERM and not privileged():
            msg += f" ({PRIVILEGE_HINT})"
        elif errno_ == errno.EPERM and not log.strip():
            msg += " (refused before verification: this kernel does not allow this program " \
                   "type or attach target here)"
        super().__init__(errno_, f"{what}: {msg}" if what else msg)


DATA_OUT_SLACK = 4096 + 256   # room for a program to grow its packet (XDP tail + headroom)
CTX_OUT_MAX = 256             # larger than any test-run context (__sk_buff is 192 bytes)


@dataclass
class TestRun:
    __test__ = False
    retval: int
    duration_ns: int
    data_out: bytes
    ctx_out: bytes
    data_size_out: int = 0


def kernel_name(name: str) -> str:
    """A name the kernel accepts: 15 characters of [A-Za-z0-9_.] (libbpf truncates too)."""
    return _NAME_OK.sub("_", name)[:15]


def _fd(obj) -> int:
    if obj is None:
        return 0
    return obj if isinstance(obj, int) else obj.fd


def _records(recs, rec_size: int) -> bytes:
    """func_info/line_info as the kernel wants them: raw bytes, ctypes records, or
    tuples of u32 fields ((insn_off, type_id), (insn_off, file, line, line_col))."""
    if recs is None:
        return b""
    if isinstance(recs, (bytes, bytearray)):
        return bytes(recs)
    out = bytearray()
    for r in recs:
        out += bytes(r) if isinstance(r, ctypes.Structure) else struct.pack(f"={len(r)}I", *r)
    if len(out) % rec_size:
        raise ValueError(f"records are not a multiple of {rec_size} bytes")
    return bytes(out)


def prog_load(attr: ProgLoadAttr, *, what: str = "", log_level: int = 0,
              log_size: int = LOG_SIZE) -> tuple[int, str]:
    """PROG_LOAD with libbpf's retry rules; returns (fd, verifier log).

    Without a log level the load is tried quietly first and, if it fails,
    once more with a level-1 log so the error can say why.  A log buffer the
    kernel fills up (ENOSPC) is grown to the size it asks for.
    """
    level = log_level
    size = log_size
    while True:
        log = ctypes.create_string_buffer(size) if level else None
        attr.log_level, attr.log_size, attr.log_buf = level, size if level else 0, addr(log)
        attr.log_true_size = 0
        for _ in range(5):      # the kernel may ask to retry (EAGAIN) under memory pressure
            try:
                fd = bpf(Cmd.PROG_LOAD, attr)
                return fd, log.value.decode(errors="replace") if log is not None else ""
            except OSError as e:
                err = e
                if e.errno != errno.EAGAIN:
                    break
        if log is None:
            level = 1
            continue
        if err.errno == errno.ENOSPC and size < LOG_SIZE_MAX:
            size = max(size * 4, attr.log_true_size + 1) if attr.log_true_size else size * 4
            size = min(size, LOG_SIZE_MAX)
            continue
        raise KernelLoadError(err.errno, log.value.decode(errors="replace"), what) from None


class KernelProgram(FdObject):
    """A program loaded into the kernel; close() (or ``with``) releases it.

    The keyword arguments are PROG_LOAD's: ``btf`` (a loaded BTF object or
    fd) with ``func_info``/``line_info`` records (bytes, or tuples of u32
    fields), ``attach_btf_id`` (+ ``attach_btf_obj_fd`` for module BTF, or
    ``attach_prog_fd`` for a BPF target) for fentry/fexit/tp_btf/lsm,
    ``fd_array`` for kfuncs in module BTF, and the verifier ``log_level``
    (1, 2, 4 or a combination); ``log`` holds the verifier's output.
    """
    kind = "program"

    def __init__(self, insns: list[Instruction] | bytes, prog_type: ProgType = ProgType.SOCKET_FILTER,
                 *, license: str = "GPL", log_level: int = 0, name: str = "ebee",
                 expected_attach_type: int = 0, prog_flags: int = 0, btf=None,
                 func_info=None, func_info_rec_size: int = 8, line_info=None,
                 line_info_rec_size: int = 16, attach_btf_id: int = 0,
                 attach_btf_obj_fd=0, attach_prog_fd=0, fd_array: Sequence[int] | None = None,
                 kern_version: int = 0, ifindex: int = 0, log_size: int = LOG_SIZE):
        super().__init__(-1)
        image = bytes(insns) if isinstance(insns, (bytes, bytearray)) else encode(insns)
        self._keep = keep = []      # buffers the kernel reads during the call
        buf = cbuf(image)
        lic = ctypes.create_string_buffer(license.encode())
        fi = cbuf(_records(func_info, func_info_rec_size))
        li = cbuf(_records(line_info, line_info_rec_size))
        fda = (ctypes.c_int32 * len(fd_array))(*fd_array) if fd_array else None
        keep += [buf, lic, fi, li, fda]
        attr = ProgLoadAttr(
            prog_type=int(prog_type), insn_cnt=len(image) // 8, insns=addr(buf),
            license=addr(lic), kern_version=kern_version, prog_flags=prog_flags,
            prog_name=kernel_name(name).encode(), prog_ifindex=ifindex,
            expected_attach_type=int(expected_attach_type or 0), prog_btf_fd=_fd(btf),
            func_info_rec_size=func_info_rec_size if fi is not None else 0, func_info=addr(fi),
            func_info_cnt=len(fi.raw) // func_info_rec_size if fi is not None else 0,
            line_info_rec_size=line_info_rec_size if li is not None else 0, line_info=addr(li),
            line_info_cnt=len(li.raw) // line_info_rec_size if li is not None else 0,
            attach_btf_id=attach_btf_id,
            attach_prog_fd=_fd(attach_prog_fd) or _fd(attach_btf_obj_fd),
            fd_array=addr(fda))
        self.section = self.attach_target = self.sec_def = self.object = None
        self.fd, self.log = prog_load(attr, what=name, log_level=log_level, log_size=log_size)
        self._keep = None
        self.type = ProgType(int(prog_type))
        self.name = name
        self.expected_attach_type = expected_attach_type
        self.insn_cnt = len(image) // 8

    # --- opening existing programs --------------------------------------------------------
    @classmethod
    def from_fd(cls, fd: int, *, name: str | None = None) -> "KernelProgram":
        """Adopt an fd (the handle owns and closes it)."""
        self = cls.__new__(cls)
        FdObject.__init__(self, fd)
        info = prog_info(fd, map_ids=False)
        self.type, self.log, self.insn_cnt = info.type, "", info.xlated_prog_len // 8
        self.section = self.attach_target = self.sec_def = self.object = None
        self.name = name or info.name
        self.expected_attach_type = 0
        return self

    @classmethod
    def from_id(cls, prog_id: int) -> "KernelProgram":
        return cls.from_fd(fd_by_id(Kind.PROG, prog_id))

    @classmethod
    def from_pinned(cls, path) -> "KernelProgram":
        return cls.from_fd(obj_get(path))

    # --- what the kernel says about it ------------------------------------------------------
    def info(self, *, map_ids: bool = True):
        return prog_info(self.fileno(), map_ids=map_ids)

    @property
    def id(self) -> int:
        return self.info(map_ids=False).id

    @property
    def tag(self) -> str:
        return self.info(map_ids=False).tag

    def xlated(self) -> list[Instruction]:
        """The instructions as the kernel rewrote them (``bpftool prog dump xlated``)."""
        out = []
        for x in decode_xlated(prog_xlated(self.fileno())):
            if x.insn is None:
                raise DecodeError(f"insn {x.pc}: {x.text}", pc=x.pc)
            out.append(x.insn)
        return out

    def jited(self):
        return prog_jited(self.fileno())

    def pin(self, path) -> None:
        obj_pin(self.fileno(), path)

    # --- BPF_PROG_TEST_RUN --------------------------------------------------------------------
    def test_run(self, data: bytes = b"", *, ctx: bytes | None = None, repeat: int = 1,
                 data_out_size: int | None = None, ctx_out_size: int | None = None,
                 flags: int = 0, cpu: int = 0, batch_size: int = 0) -> TestRun:
        din = cbuf(data)
        osize = data_out_size if data_out_size is not None else (len(data) + 256 if data else 0)
        dout = ctypes.create_string_buffer(osize) if osize else None
        cin = cbuf(ctx)
        csize = ctx_out_size if ctx_out_size is not None else (len(ctx) if ctx else 0)
        cout = ctypes.create_string_buffer(csize) if csize else None
        attr = TestRunAttr(prog_fd=self.fileno(), data_size_in=len(data), data_in=addr(din),
                           data_size_out=osize, data_out=addr(dout), repeat=repeat,
                           ctx_size_in=len(ctx) if ctx else 0, ctx_in=addr(cin),
                           ctx_size_out=csize, ctx_out=addr(cout), flags=flags, cpu=cpu,
                           batch_size=batch_size)
        bpf(Cmd.PROG_TEST_RUN, attr)
        return TestRun(attr.retval, attr.duration,
                       dout.raw[:attr.data_size_out] if dout is not None else b"",
                       cout.raw[:attr.ctx_size_out] if cout is not None else b"",
                       attr.data_size_out)

    # --- the API user-space programs have ------------------------------------------------------
    def run(self, data: bytes | None = None, *, ctx: bytes | None = None, repeat: int = 0,
            flags: int = 0, cpu: int = 0, batch_size: int = 0, data_size_out: int | None = None,
            ctx_size_out: int | None = None, ctx_out: bool = False, engine: str | None = None):
        """BPF_PROG_TEST_RUN with ``ebee.Program.run``'s arguments; returns the same
        ``RunResult`` and raises the same ``TestRunError`` (with the kernel's errno)."""
        if engine not in (None, "kernel"):
            raise ValueError(f"engine {engine!r}: a kernel program runs in the kernel")
        data = bytes(data or b"")
        want_ctx = ctx is not None or ctx_out
        csize = ctx_size_out if ctx_size_out is not None else \
            (max(len(ctx or b""), CTX_OUT_MAX) if want_ctx else 0)
        try:
            r = self.test_run(data, ctx=ctx, repeat=repeat, flags=flags, cpu=cpu,
                              batch_size=batch_size,
                              data_out_size=data_size_out if data_size_out is not None else
                              (len(data) + DATA_OUT_SLACK if data else 0),
                              ctx_out_size=csize)
        except OSError as e:
            raise TestRunError(e.errno, f"BPF_PROG_TEST_RUN: {os.strerror(e.errno)}") from None
        return RunResult(r.retval, r.data_out, r.ctx_out if want_ctx else None, r.duration_ns,
                         None, [], r.data_size_out, 0, self.type)

    def attach(self, target=None, **kw):
        """Attach where the program's section says, or to ``target`` (an interface, cgroup,
        socket...); see :func:`ebee.kernel.attach.attach`.  Detached by ``detach()`` on
        the result, by closing the program, or at exit."""
        a = attach(self, target, section=self.section, **kw)
        self.attachments.append(a)
        return a

    def close(self) -> None:
        for a in self.__dict__.get("attachments", ()):
            try:
                a.detach()
            except Exception:
                pass
        self.__dict__["attachments"] = []
        FdObject.close(self)

    @property
    def attachments(self) -> list:
        return self.__dict__.setdefault("attachments", [])

    def __repr__(self) -> str:
        state = f"fd={self.fd}" if self.fd >= 0 else "closed"
        return f"<KernelProgram {self.name!r} {self.type.name.lower()} {state}>"


def bpf_available() -> str | None:
    """None if this process can load programs, else the reason it cannot."""
    try:
        with KernelProgram([make("mov", dst=0, imm=0, use_reg=False), make("exit")]):
            return None
    except OSError as e:
        return f"bpf() unavailable: {e.strerror or e}"
    except Exception as e:  # pragma: no cover - e.g. no libc on this platform
        return f"bpf() unavailable: {e}"


__all__ = ["KernelLoadError", "KernelProgram", "TestRun", "bpf_available", "kernel_name",
           "prog_load", "AttachType"]
