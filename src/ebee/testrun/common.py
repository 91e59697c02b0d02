"""What every test run shares: the run's arguments, limits, and bpf_test_run's checks.

Mirrors net/bpf/test_run.c of Linux 6.18: ``bpf_test_init`` limits,
``bpf_ctx_init``'s tail-zero rule (E2BIG), ``bpf_test_finish``'s ENOSPC.
"""
from __future__ import annotations

import errno
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..engines import Bound, Machine
from ..isa import Instruction
from ..layouts.kernel import SKB_SHARED_INFO
from ..packet.net import Network
from ..packet.skbuff import ETH_HLEN
from ..progtypes import ProgTypeInfo
from ..progtypes.verdicts import is_redirect, verdict_name
from ..runtime import Executable, Redirect, RunContext
from ..uapi import ProgType as P

PAGE_SIZE = 4096
U16_MAX = 0xFFFF
U32_MAX = 0xFFFFFFFF
TEST_XDP_MAX_BATCH = 256
SKB_TAILROOM = (SKB_SHARED_INFO.size + 63) & ~63


class TestRunError(OSError):
    """BPF_PROG_TEST_RUN failed: ``errno`` is what the kernel returns, with its reason."""

    __test__ = False   # not a pytest test class

    def __init__(self, err: int, reason: str):
        self.reason = reason
        super().__init__(err, reason)


@dataclass
class RunResult:
    """The outcome of a test run, as BPF_PROG_TEST_RUN reports it (plus what ebee saw)."""
    retval: int
    data_out: bytes = b""
    ctx_out: bytes | None = None
    duration_ns: int = 0
    redirect: Redirect | None = None
    trace_output: list[str] = field(default_factory=list)
    data_size_out: int = 0        # the full output size even when data_out was cut (ENOSPC)
    insns: int = 0                # instructions executed by the last repetition
    prog_type: P | None = None
    clones: list[Redirect] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """The return value named for the program type (``XDP_DROP``, ``TC_ACT_OK``...)."""
        return verdict_name(self.prog_type, self.retval)


class TestTarget(Protocol):
    """What a test run needs of a program (``ebee.program.Program``)."""

    name: str
    type: P
    attach_target: str | None
    btf: Any

    @property
    def info(self) -> ProgTypeInfo: ...

    def executable(self, *, evidence: bool = True) -> Executable: ...


@dataclass
class TestRun:
    """One BPF_PROG_TEST_RUN: the program bound to a CPU, and the attr's fields."""
    target: TestTarget
    info: ProgTypeInfo
    insns: list[Instruction]       # as they run (context accesses rewritten)
    machine: Machine
    bound: Bound
    net: Network
    data: bytes = b""
    ctx_in: bytes | None = None
    repeat: int = 0
    flags: int = 0
    cpu: int = 0
    batch_size: int = 0
    data_size_out: int | None = None
    ctx_size_out: int | None = None
    want_ctx_out: bool = False
    link_layer: bool = False
    # a Runner keeps one XDP frame for all its runs (None: each run makes its own)
    frames: Any = None
    keep_frames: bool = False

    def unpack(self):
        return (self, self.machine, self.bound, self.data, self.ctx_in, self.repeat, self.flags,
                self.cpu, self.batch_size, self.data_size_out, self.ctx_size_out,
                self.want_ctx_out, self.net)


def native_batch(bound: Bound, *args):
    """``repeat`` runs in one engine loop (no Python call per run)."""
    return lambda n: bound.run_batch(n, *args)


def timed(fn, repeat: int, batch=None) -> tuple[Any, int]:
    repeat = repeat or 1
    if batch is not None and repeat > 1:     # no Python call per run (the JIT's batch loop)
        out, total = batch(repeat)
        return out, min(total // repeat, U32_MAX)
    t0 = time.perf_counter_ns()
    out = None
    for _ in range(repeat):
        out = fn()
    spent = (time.perf_counter_ns() - t0) // repeat
    return out, min(spent, U32_MAX)


def check_tail_zero(buf: bytes, max_size: int) -> None:
    """bpf_check_uarg_tail_zero(): a longer struct is fine if the extra bytes are zero."""
    if len(buf) > max_size and any(buf[max_size:]):
        raise TestRunError(errno.E2BIG, f"ctx_in is {len(buf)} bytes; bytes past "
                                        f"{max_size} must be zero")


def ctx_init(ctx_in: bytes | None, want_ctx_out: bool, max_size: int) -> bytearray | None:
    """bpf_ctx_init(): None when neither ctx_in nor ctx_out was given."""
    if ctx_in is None and not want_ctx_out:
        return None
    data = bytearray(max_size)
    if ctx_in is not None:
        check_tail_zero(ctx_in, max_size)
        n = min(len(ctx_in), max_size)
        data[:n] = ctx_in[:n]
    return data


def finish_data(data: bytes, data_size_out: int | None) -> tuple[bytes, int, int | None]:
    """bpf_test_finish(): (bytes copied out, full size, errno or None)."""
    size = len(data)
    if data_size_out and size > data_size_out:
        return data[:data_size_out], size, errno.ENOSPC
    return data, size, None


def finish_ctx(ctx: bytearray | None, ctx_size_out: int | None) -> tuple[bytes | None, int | None]:
    if ctx is None:
        return None, None
    if ctx_size_out is not None and len(ctx) > ctx_size_out:
        return bytes(ctx[:ctx_size_out]), errno.ENOSPC
    return bytes(ctx), None


def range_zero(buf: bytearray, lo: int, hi: int) -> bool:
    return not any(buf[lo:hi])


def u32(b, off):
    return struct.unpack_from("<I", b, off)[0]


def test_init(user_size: int, size: int, headroom: int, tailroom: int) -> None:
    """bpf_test_init()'s checks: the buffer (``size``) and what is copied into it."""
    if size < ETH_HLEN or size > PAGE_SIZE - headroom - tailroom:
        raise TestRunError(errno.EINVAL, f"data_in is {size} bytes; must be {ETH_HLEN}.."
                                         f"{PAGE_SIZE - headroom - tailroom}")
    if user_size > size:
        raise TestRunError(errno.EMSGSIZE, "data_in is larger than the buffer")


def redirect_outcome(pt: P, retval: int, rc: RunContext) -> Redirect | None:
    if pt is P.XDP and retval == 3:          # XDP_TX: back out of the receiving device
        return Redirect("tx", ifindex=rc.ctx_obj.dev.ifindex if rc.ctx_obj else None)
    if is_redirect(pt, retval):
        return rc.redirect
    return None
