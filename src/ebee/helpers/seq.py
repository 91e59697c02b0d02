"""bpf_seq_printf and bpf_seq_write: what an iterator program (SEC("iter/...")) writes to
the seq_file its reader reads.

The iterator runtime (``ebee.testrun.iter``) makes a :class:`SeqFile` per read and puts
its address in the context's ``meta->seq``; these helpers find it by that address.  The
formats are bpf_bprintf_prepare()'s (those of bpf_trace_vprintk and bpf_snprintf).  A
seq_file's buffer grows as bpf_seq_read() lets a single object's output grow -- up to
eight pages, after which the kernel fails the read with E2BIG -- so the helpers return
-EOVERFLOW only past that.
"""
from __future__ import annotations

import errno as E
import threading

from ..errors import VMError
from ..memory import SHARED, Region
from ..uapi import FuncId as F
from .printk import FormatError, _data_args, _fmt_bytes, format_bprintf
from .registry import implements

M64 = (1 << 64) - 1
#: bpf_seq_read(): the buffer one object's output may grow to (PAGE_SIZE << 3)
SEQ_MAX = 4096 << 3


class SeqFile:
    """The seq_file of one iterator read: the text so far and the current object's part."""

    def __init__(self) -> None:
        self.region = SHARED.add(Region(8, "seq_file", writable=False))
        self.out = bytearray()
        self.object_start = 0
        self.overflowed = False
        with _LOCK:
            _BY_ADDR[self.region.start] = self

    @property
    def addr(self) -> int:
        return self.region.start

    def begin_object(self) -> None:
        self.object_start = len(self.out)
        self.overflowed = False

    def put(self, data: bytes) -> bool:
        """seq_write(): False (and nothing written) once the object's output is full."""
        if len(self.out) - self.object_start + len(data) > SEQ_MAX:
            self.overflowed = True
            return False
        self.out += data
        return True

    def close(self) -> None:
        with _LOCK:
            _BY_ADDR.pop(self.region.start, None)
        SHARED.remove(self.region)


_LOCK = threading.Lock()
_BY_ADDR: dict[int, SeqFile] = {}


def seq_at(addr: int) -> SeqFile | None:
    return _BY_ADDR.get(addr)


def _seq(addr: int) -> SeqFile:
    s = _BY_ADDR.get(addr)
    if s is None:
        # the verifier types the argument PTR_TO_BTF_ID seq_file: only an iterator's
        # context hands one out, and ebee's iterator runtime registers each
        raise VMError(f"{addr:#x} is not the seq_file of an iterator read")
    return s


@implements(F.seq_printf)
def seq_printf(m, seq, fmt, fmt_size, data, data_len):
    s = _seq(seq)
    args = _data_args(m, data, data_len & 0xFFFFFFFF)
    if args is None:
        return -E.EINVAL & M64
    try:
        text = format_bprintf(m, _fmt_bytes(m, fmt, fmt_size & 0xFFFFFFFF), args, len(args))
    except FormatError:
        return -E.EINVAL & M64
    return 0 if s.put(text.encode("latin-1")) else -E.EOVERFLOW & M64


@implements(F.seq_write)
def seq_write(m, seq, data, size, *_):
    s = _seq(seq)
    return 0 if s.put(m.read(data, size & 0xFFFFFFFF)) else -E.EOVERFLOW & M64
