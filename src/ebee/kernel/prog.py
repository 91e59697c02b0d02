"""Loading raw instructions into the kernel and running them with BPF_PROG_TEST_RUN."""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from ..isa import Instruction, encode
from ..uapi import Cmd, ProgType
from .syscall import ProgLoadAttr, TestRunAttr, addr, bpf

LOG_SIZE = 1 << 20


class KernelLoadError(OSError):
    """The kernel refused a program; ``log`` holds the verifier's output."""

    def __init__(self, errno_: int, log: str):
        self.log = log
        last = next((ln for ln in reversed(log.splitlines()) if ln.strip()
                     and not ln.startswith(("processed ", "verification time", "stack depth"))), "")
        super().__init__(errno_, f"{os.strerror(errno_)}: {last}" if last else os.strerror(errno_))


@dataclass
class TestRun:
    retval: int
    duration_ns: int
    data_out: bytes
    ctx_out: bytes


class KernelProgram:
    """A program loaded into the kernel; close() (or ``with``) releases it."""

    def __init__(self, insns: list[Instruction] | bytes, prog_type: ProgType = ProgType.SOCKET_FILTER,
                 *, license: str = "GPL", log_level: int = 0, name: str = "ebee",
                 expected_attach_type: int = 0, prog_flags: int = 0):
        image = insns if isinstance(insns, (bytes, bytearray)) else encode(insns)
        buf = ctypes.create_string_buffer(bytes(image), len(image))
        lic = ctypes.create_string_buffer(license.encode())
        log = ctypes.create_string_buffer(LOG_SIZE) if log_level else None
        attr = ProgLoadAttr(prog_type=int(prog_type), insn_cnt=len(image) // 8, insns=addr(buf),
                            license=addr(lic), log_level=log_level,
                            log_size=LOG_SIZE if log_level else 0, log_buf=addr(log),
                            prog_name=name.encode()[:15], expected_attach_type=expected_attach_type,
                            prog_flags=prog_flags)
        try:
            self.fd = bpf(Cmd.PROG_LOAD, attr)
        except OSError as e:
            if log is None:   # reload with a log so the error says why
                log = ctypes.create_string_buffer(LOG_SIZE)
                attr.log_level, attr.log_size, attr.log_buf = 1, LOG_SIZE, addr(log)
                try:
                    self.fd = bpf(Cmd.PROG_LOAD, attr)
                except OSError as e2:
                    raise KernelLoadError(e2.errno, log.value.decode(errors="replace")) from None
                else:
                    self.log = log.value.decode(errors="replace")
                    return
            raise KernelLoadError(e.errno, log.value.decode(errors="replace")) from None
        self.log = log.value.decode(errors="replace") if log is not None else ""

    def test_run(self, data: bytes = b"", *, ctx: bytes | None = None, repeat: int = 1,
                 data_out_size: int | None = None, ctx_out_size: int | None = None,
                 flags: int = 0) -> TestRun:
        din = ctypes.create_string_buffer(bytes(data), len(data)) if data else None
        osize = data_out_size if data_out_size is not None else len(data) + 256
        dout = ctypes.create_string_buffer(osize) if osize else None
        cin = ctypes.create_string_buffer(bytes(ctx), len(ctx)) if ctx else None
        csize = ctx_out_size if ctx_out_size is not None else (len(ctx) if ctx else 0)
        cout = ctypes.create_string_buffer(csize) if csize else None
        attr = TestRunAttr(prog_fd=self.fd, data_size_in=len(data), data_in=addr(din),
                           data_size_out=osize, data_out=addr(dout), repeat=repeat,
                           ctx_size_in=len(ctx) if ctx else 0, ctx_in=addr(cin),
                           ctx_size_out=csize, ctx_out=addr(cout), flags=flags)
        bpf(Cmd.PROG_TEST_RUN, attr)
        return TestRun(attr.retval, attr.duration,
                       dout.raw[:attr.data_size_out] if dout is not None else b"",
                       cout.raw[:attr.ctx_size_out] if cout is not None else b"")

    def close(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "KernelProgram":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def bpf_available() -> str | None:
    """None if this process can load programs, else the reason it cannot."""
    from ..isa import make
    try:
        with KernelProgram([make("mov", dst=0, imm=0, use_reg=False), make("exit")]):
            return None
    except OSError as e:
        return f"bpf() unavailable: {e.strerror or e}"
    except Exception as e:  # pragma: no cover - e.g. no libc on this platform
        return f"bpf() unavailable: {e}"
