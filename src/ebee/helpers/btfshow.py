"""bpf_snprintf_btf and bpf_seq_printf_btf: a typed object rendered as text by the
kernel's btf_show() rules (``ebee.btf.show``), against the running kernel's BTF.

bpf_btf_printf_prepare() decides the errors before anything is read: flags outside
BTF_F_COMPACT|NONAME|PTR_RAW|ZERO or a ``struct btf_ptr`` size other than 16 are
-EINVAL, a type id of 0 -EINVAL, one the kernel's BTF lacks -ENOENT.  The object is
read as copy_from_kernel_nofault() reads it, so an unreadable address reports -EFAULT
(or -ERANGE for user and non-canonical addresses).
"""
from __future__ import annotations

import errno as E
import struct

from ..btf import BTF
from ..btf import show as btf_show
from ..uapi import BTF_F_COMPACT, BTF_F_NONAME, BTF_F_PTR_RAW, BTF_F_ZERO
from ..uapi import FuncId as F
from .mem import _try_read, _unreadable
from .registry import implements
from .seq import _seq

M64 = (1 << 64) - 1
BTF_F_ALL = BTF_F_COMPACT | BTF_F_NONAME | BTF_F_PTR_RAW | BTF_F_ZERO
#: struct btf_ptr { void *ptr; __u32 type_id; __u32 flags; }
BTF_PTR = struct.Struct("<QII")


def _kernel_btf() -> BTF | None:
    try:
        return BTF.load_vmlinux()
    except Exception:                   # no kernel BTF here: bpf_get_btf_vmlinux() fails
        return None


def _prepare(m, ptr: int, ptr_size: int, flags: int) -> tuple[BTF, int, int] | int:
    """bpf_btf_printf_prepare(): (btf, type id, object address) or a negative errno."""
    if flags & ~BTF_F_ALL & M64:
        return -E.EINVAL
    if ptr_size & 0xFFFFFFFF != BTF_PTR.size:
        return -E.EINVAL
    btf = _kernel_btf()
    if btf is None:
        return -E.EINVAL
    addr, type_id, _ = BTF_PTR.unpack(m.read(ptr, BTF_PTR.size))
    if type_id == 0:
        return -E.EINVAL
    if type_id >> 31 or type_id not in btf:       # s32 btf_id, btf_type_by_id()
        return -E.ENOENT
    return btf, type_id, addr


def _reader(m):
    def read(addr: int, size: int) -> bytes | int:
        data = _try_read(m, addr & M64, size)
        return _unreadable(addr & M64, True) if data is None else data
    return read


@implements(F.snprintf_btf)
def snprintf_btf(m, out, out_size, ptr, ptr_size, flags):
    got = _prepare(m, ptr, ptr_size, flags)
    if isinstance(got, int):
        return got & M64
    btf, type_id, addr = got
    size = out_size & 0xFFFFFFFF
    text, ret = btf_show.snprintf(btf, type_id, addr, flags, _reader(m), size)
    if text:
        m.write(out, text)
    return ret & M64


@implements(F.seq_printf_btf)
def seq_printf_btf(m, seq, ptr, ptr_size, flags, _):
    s = _seq(seq)
    got = _prepare(m, ptr, ptr_size, flags)
    if isinstance(got, int):
        return got & M64
    btf, type_id, addr = got
    # seq_vprintf() marks an overflow for bpf_seq_read() to see; the helper returns
    # only the copy status
    return btf_show.show(btf, type_id, addr, flags, _reader(m), s.put) & M64
