"""Memory and string helpers: probe_read*, strncmp, strtol/strtoul, csum_diff, kptr_xchg,
spin locks.

``probe_read*`` read "kernel" or "user" memory: in ebee both are the live
regions of the machine's address space (stack, context, packet, map values,
the simulated task); an address outside them is a fault, reported as -EFAULT
with the destination zeroed, exactly as the kernel's nofault copies report --
except that the kernel variants first refuse, with -ERANGE, what x86-64's
copy_from_kernel_nofault_allowed() refuses: user addresses, the vsyscall
page and non-canonical addresses.
"""
from __future__ import annotations

import errno as E
import functools
import platform
import re
import threading
import time

from ..errors import VMError
from ..uapi import FuncId
from .registry import implements
from .printk import read_cstr
from .task import current_task

M64 = (1 << 64) - 1
SPIN_TIMEOUT = 1.0
CSUM_DIFF_MAX = 512


# x86-64 with 4-level paging: user space ends at TASK_SIZE_MAX + PAGE_SIZE
USER_END = 1 << 47
VSYSCALL_PAGE = 0xFFFFFFFFFF600000


@functools.cache
def _virt_bits() -> int:
    """boot_cpu_data.x86_virt_bits: the CPU's linear-address width (CPUID), which
    decides what is canonical -- 57 on CPUs that could do 5-level paging."""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"address sizes\s*:.*?(\d+) bits virtual", f.read())
        return int(m.group(1)) if m else 48
    except OSError:
        return 48


def kernel_read_allowed(addr: int) -> bool:
    """copy_from_kernel_nofault_allowed() on x86-64 (other architectures allow all)."""
    if platform.machine() != "x86_64":
        return True
    if addr < USER_END or addr & ~0xFFF == VSYSCALL_PAGE:
        return False
    bits = _virt_bits()
    top = addr >> (bits - 1)          # canonical: the bits above the width all equal
    return top in (0, (1 << (65 - bits)) - 1)


def _try_read(m, addr: int, size: int) -> bytes | None:
    if size == 0:
        return b""
    r = m.find(addr, size) if 0 < addr <= M64 else None
    if r is None:
        return None
    off = addr - r.start
    return bytes(r.buf[off:off + size])


def _unreadable(src: int, kernel: bool) -> int:
    return -E.ERANGE if kernel and not kernel_read_allowed(src) else -E.EFAULT


def _probe_read(m, dst, size, src, kernel: bool):
    size &= 0xFFFFFFFF                  # u32 size
    src &= M64
    data = _try_read(m, src, size) if size else \
        (b"" if m.find(src, 1) or not kernel or kernel_read_allowed(src) else None)
    if data is None:
        m.zero(dst, size)
        return _unreadable(src, kernel)
    m.write(dst, data)
    return 0


def _probe_read_str(m, dst, size, src, kernel: bool):
    size &= 0xFFFFFFFF                  # u32 size
    src &= M64
    if size == 0:
        return 0
    r = m.find(src, 1) if 0 < src else None
    if r is None:
        m.zero(dst, size)
        return _unreadable(src, kernel)
    off = src - r.start
    chunk = bytes(r.buf[off:min(off + size - 1, m.live_end(r) - r.start)])
    nul = chunk.find(b"\0")
    if nul >= 0:
        chunk = chunk[:nul]
    elif len(chunk) < size - 1:      # the string runs off the readable memory
        m.zero(dst, size)
        return -E.EFAULT
    m.write(dst, chunk + b"\0")
    return len(chunk) + 1


def _variant(fn, kernel):
    """``kernel``: True (the _kernel helpers), False (_user) or None (the compat
    bpf_probe_read: user addresses as _user, the rest as _kernel)."""
    def impl(m, dst, size, src, *_):
        return fn(m, dst, size, src, kernel if kernel is not None else
                  (src & M64) >= USER_END)
    return impl


for _fid, _k in ((FuncId.probe_read, None), (FuncId.probe_read_kernel, True),
                 (FuncId.probe_read_user, False)):
    implements(_fid)(_variant(_probe_read, _k))
for _fid, _k in ((FuncId.probe_read_str, None), (FuncId.probe_read_kernel_str, True),
                 (FuncId.probe_read_user_str, False)):
    implements(_fid)(_variant(_probe_read_str, _k))


@implements(FuncId.probe_write_user)
def probe_write_user(m, dst, src, size, *_):
    # bpf_probe_write_user_common(): never from a kernel thread; copy_to_user_nofault()
    # into writable user memory (the machine's writable regions), else -EFAULT
    from_task = current_task(m)
    if from_task.kthread:
        return -E.EPERM
    size &= 0xFFFFFFFF
    data = m.read(src, size) if size else b""
    r = m.memory.find(dst, size) if size and 0 < dst <= M64 else None
    if size and (r is None or not r.writable):
        return -E.EFAULT
    if size:
        m.write(dst, data)
    return 0


@implements(FuncId.copy_from_user)
def copy_from_user(m, dst, size, user_ptr, *_):
    # copy_from_user(): any byte it cannot copy zeroes the whole destination, -EFAULT
    return _probe_read(m, dst, size & 0xFFFFFFFF, user_ptr, False)


@implements(FuncId.copy_from_user_task)
def copy_from_user_task(m, dst, size, user_ptr, task, flags):
    # every task's user memory is the machine's address space here (access_process_vm)
    if flags:
        return -E.EINVAL
    size &= 0xFFFFFFFF
    if not size:
        return 0
    return _probe_read(m, dst, size, user_ptr, False)


@implements(FuncId.strncmp)
def strncmp(m, s1, s1_sz, s2, *_):
    a = m.read(s1, s1_sz)
    b = read_cstr(m, s2, s1_sz + 1) or b""
    for i in range(s1_sz):
        c1 = a[i]
        c2 = b[i] if i < len(b) else 0
        if c1 != c2:
            return -1 & M64 if c1 < c2 else 1
        if not c1:
            break
    return 0


def _strtoull(text: bytes, flags: int) -> tuple[int, int, bool] | int:
    """__bpf_strtoull(): (consumed, value, negative) or a negative errno."""
    base = flags & 0x1F
    if not text or base not in (0, 8, 10, 16) or flags & ~0x1F:
        return -E.EINVAL
    i = 0
    while i < len(text) and chr(text[i]) in " \t\n\v\f\r":
        i += 1
    neg = i < len(text) and text[i] == 0x2D
    if neg:
        i += 1
    if i == len(text):
        return -E.EINVAL
    s = text[i:i + 63].split(b"\0")[0] + b"\0"
    j = 0
    if base == 0:
        if s[0] == 0x30:
            base = 16 if s[1] in b"xX" and chr(s[2]) in "0123456789abcdefABCDEF" else 8
        else:
            base = 10
    if base == 16 and s[0] == 0x30 and s[1] in b"xX":
        j = 2
    val, start, overflow = 0, j, False
    while True:
        c = chr(s[j]).lower()
        d = ord(c) - 48 if "0" <= c <= "9" else ord(c) - 87 if "a" <= c <= "f" else 99
        if d >= base:
            break
        val = val * base + d
        if val > M64:
            overflow = True
            val &= M64
        j += 1
    if overflow:
        return -E.ERANGE
    if j == start:
        return -E.EINVAL
    return i + j, val, neg


@implements(FuncId.strtol)
def strtol(m, buf, buf_len, flags, res, _):
    r = _strtoull(m.read(buf, buf_len), flags)
    if isinstance(r, int):
        return r & M64
    n, v, neg = r
    if neg:
        if v and v <= 1 << 63:
            v = -v
        elif v:
            return -E.ERANGE & M64
    elif v >= 1 << 63:
        return -E.ERANGE & M64
    m.write(res, (v & M64).to_bytes(8, "little"))
    return n


@implements(FuncId.strtoul)
def strtoul(m, buf, buf_len, flags, res, _):
    r = _strtoull(m.read(buf, buf_len), flags)
    if isinstance(r, int):
        return r & M64
    n, v, neg = r
    if neg:
        return -E.EINVAL & M64
    m.write(res, v.to_bytes(8, "little"))
    return n


def csum_partial(data: bytes, seed: int) -> int:
    """x86-64 csum_partial(): 32-bit ones' complement sum of little-endian words."""
    s = seed & 0xFFFFFFFF
    for k in range(0, len(data) - 3, 4):
        s += int.from_bytes(data[k:k + 4], "little")
    while s >> 32:
        s = (s & 0xFFFFFFFF) + (s >> 32)
    return s


def _csum_add(a: int, b: int) -> int:
    s = a + b
    return (s & 0xFFFFFFFF) + (s >> 32)


def _from32to16(x: int) -> int:
    x = (x & 0xFFFF) + (x >> 16)
    return (x & 0xFFFF) + (x >> 16)


@implements(FuncId.csum_diff)
def csum_diff(m, frm, from_size, to, to_size, seed):
    """Linux 6.12+: the same 16-bit folded result on every architecture."""
    from_size &= 0xFFFFFFFF             # u32 sizes
    to_size &= 0xFFFFFFFF
    # the kernel's per-CPU scratch diff buffer holds 128 words
    if (from_size | to_size) & 3 or from_size + to_size > CSUM_DIFF_MAX:
        return -E.EINVAL & M64
    a = m.read(frm, from_size) if from_size else b""
    b = m.read(to, to_size) if to_size else b""
    seed &= 0xFFFFFFFF
    if not from_size:
        ret = csum_partial(b, seed)
    elif not to_size:
        ret = ~csum_partial(a, ~seed & 0xFFFFFFFF) & 0xFFFFFFFF
    else:
        ret = _csum_add(csum_partial(b, seed), ~csum_partial(a, 0) & 0xFFFFFFFF)
    return _from32to16(ret)


@implements(FuncId.kptr_xchg)
def kptr_xchg(m, dst, ptr, *_):
    old = int.from_bytes(m.read(dst, 8), "little")
    m.write(dst, (ptr & M64).to_bytes(8, "little"))
    return old


# lock address -> the thread holding it: a thread that takes a lock it holds would spin
# forever (Linux: a deadlock the verifier prevents), so it is stopped at once
_holders: dict[int, int] = {}


@implements(FuncId.spin_lock)
def spin_lock(m, lock, *_):
    deadline = None
    me = threading.get_ident()
    while True:
        word = m.read(lock, 4)
        if word == b"\0\0\0\0":
            m.write(lock, b"\1\0\0\0")
            _holders[lock] = me
            return 0
        if word != b"\1\0\0\0":        # no bpf_spin_lock took it: nothing will release it
            raise VMError(f"bpf_spin_lock at {lock:#x}: the word holds "
                          f"{int.from_bytes(word, 'little'):#x}, not a lock")
        if _holders.get(lock) == me:
            raise VMError(f"bpf_spin_lock at {lock:#x} is already held by this program "
                          f"(deadlock)")
        if deadline is None:
            deadline = time.monotonic() + SPIN_TIMEOUT
        elif time.monotonic() > deadline:
            raise VMError(f"bpf_spin_lock at {lock:#x} is held and never released (deadlock)")
        time.sleep(0)


@implements(FuncId.spin_unlock)
def spin_unlock(m, lock, *_):
    m.write(lock, b"\0\0\0\0")
    _holders.pop(lock, None)
    return 0
