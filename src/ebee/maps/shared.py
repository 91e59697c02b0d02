"""Map memory that several processes can share, as one kernel map is shared through bpffs.

A mappable map (ARRAY, PERCPU_ARRAY; HASH, PERCPU_HASH with their table) keeps its values in anonymous ``mmap`` pages
from the start.  Pinning it (or opening its pin in another process) replaces those
pages *in place* -- ``mmap(MAP_FIXED | MAP_SHARED)`` of the pin's file at the same
address -- so every pointer a loaded program or a JIT image already holds stays
valid and now reaches the shared bytes: no copy on a run, and a program's atomics
are the host's atomics on memory other processes see.

The file: one header page, a journal of ``round_up(stride, PAGE)`` bytes, then the
values.  User-space writes of a value go through the journal under ``flock`` (redo
log: data, then the valid word, then the copy, then the word cleared), so a process
killed in the middle of one leaves the old value or the new one, and the next
process to take the lock finishes it.  Stores by programs are the CPU's (8 bytes or
less each) and are never torn.

:data:`ATOMICS` are the host's atomic read-modify-writes (``libatomic``), for engines
that do not emit native code: the interpreter uses them on mmap'd memory so its
``BPF_ATOMIC`` operations are atomic against a JIT or another process.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import mmap
import os
import struct
import threading
import weakref
from typing import Callable

from ..memory import zeroed_pages

PAGE = mmap.PAGESIZE
MAGIC = b"EBEESHM1"
# magic, version, journal valid, journal offset, journal length, values size, stride, table
# size (version 2: a hash table's chains and free list, between the journal and the values;
# version 1 files, arrays', read it as 0)
_HEADER = struct.Struct("<8sIIQQQQQ")
_VALID_OFF = 12
_J_VALID = struct.Struct("<I")


def round_page(n: int) -> int:
    return (max(n, 1) + PAGE - 1) // PAGE * PAGE


def anonymous(size: int) -> mmap.mmap:
    """Page-aligned memory a pin can later replace with a file.  Private: a forked
    child gets its own copy of an unpinned map, as it would of a bytearray."""
    return zeroed_pages(size)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]


def _address(buf: mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


class SharedValues:
    """The file behind one shared map's values, mapped over the map's own pages."""

    def __init__(self, path: str, fd: int, head: mmap.mmap, jsize: int, stride: int,
                 tsize: int = 0):
        self.path, self.fd, self.head, self.jsize, self.stride = path, fd, head, jsize, stride
        self.tsize = tsize
        self.toff = PAGE + jsize
        self.voff = self.toff + (round_page(tsize) if tsize else 0)
        self.values: mmap.mmap | None = None
        # flock is per open file: threads of one process serialize here first
        self._tlock = threading.Lock()
        self._fin = weakref.finalize(self, _close_fd, fd)

    # -- creating and opening ------------------------------------------------------------

    @classmethod
    def create(cls, path: str, data: bytes, stride: int, table: bytes = b"") -> "SharedValues":
        """Write a new file holding ``data`` as the values and ``table`` as the table (by
        rename: whole or absent)."""
        jsize = round_page(stride)
        tpart = round_page(len(table)) if table else 0
        tmp = f"{path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, PAGE + jsize + tpart + round_page(len(data)))
            os.pwrite(fd, _HEADER.pack(MAGIC, 2, 0, 0, 0, len(data), stride, len(table)), 0)
            if table:
                os.pwrite(fd, table, PAGE + jsize)
            os.pwrite(fd, data, PAGE + jsize + tpart)
            os.fsync(fd)
            os.rename(tmp, path)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return cls._from_fd(path, fd)

    @classmethod
    def open(cls, path: str) -> "SharedValues":
        return cls._from_fd(path, os.open(path, os.O_RDWR))

    @classmethod
    def _from_fd(cls, path: str, fd: int) -> "SharedValues":
        try:
            head = mmap.mmap(fd, PAGE, flags=mmap.MAP_SHARED)
            magic, _ver, _v, _o, _l, size, stride, tsize = _HEADER.unpack_from(head, 0)
            if magic != MAGIC:
                raise OSError(22, f"{path}: not an ebee shared map file")
            jsize = round_page(stride)
            head.close()
            head = mmap.mmap(fd, PAGE + jsize, flags=mmap.MAP_SHARED)
        except BaseException:
            os.close(fd)
            raise
        sv = cls(path, fd, head, jsize, stride, tsize)
        sv.size = size
        return sv

    def attach(self, buf: mmap.mmap, table: mmap.mmap | None = None) -> None:
        """Map the file's values over ``buf`` (same address, same length) -- and its table
        over ``table`` -- replaying a write a killed process left half done."""
        if len(buf) != self.size:
            raise OSError(22, f"{self.path}: holds {self.size} bytes of values, the map {len(buf)}")
        if (len(table) if table is not None else 0) != self.tsize:
            raise OSError(22, f"{self.path}: holds a {self.tsize}-byte table, the map another")
        if table is not None:
            self._map_over(table, self.toff)
        self._map_over(buf, self.voff)
        self.values = buf
        with self:
            pass

    def _map_over(self, buf: mmap.mmap, off: int) -> None:
        addr = _address(buf)
        got = _libc.mmap(addr, round_page(len(buf)), mmap.PROT_READ | mmap.PROT_WRITE,
                         mmap.MAP_SHARED | 0x10, self.fd, off)          # 0x10: MAP_FIXED
        if got is None or got == ctypes.c_void_p(-1).value or got != addr:
            err = ctypes.get_errno()
            raise OSError(err, f"{self.path}: mmap: {os.strerror(err)}")

    # -- the lock and the journal ------------------------------------------------------------

    def __enter__(self) -> "SharedValues":
        self._tlock.acquire()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self._tlock.release()
            raise
        self._replay()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self._tlock.release()

    def _replay(self) -> None:
        h = self.head
        _m, _ver, valid, off, n, _s, _st, _t = _HEADER.unpack_from(h, 0)
        if valid and self.values is not None:
            self.values[off:off + n] = h[PAGE:PAGE + n]
            _J_VALID.pack_into(h, _VALID_OFF, 0)

    def write(self, off: int, data: bytes) -> None:
        """Replace ``len(data)`` bytes at ``off`` of the values as one step (call locked)."""
        h, n = self.head, len(data)
        if n > self.jsize or self.values is None:
            raise ValueError("write larger than the journal")
        h[PAGE:PAGE + n] = data
        struct.pack_into("<QQ", h, 16, off, n)
        _J_VALID.pack_into(h, _VALID_OFF, 1)
        self.values[off:off + n] = data
        _J_VALID.pack_into(h, _VALID_OFF, 0)

    def flush(self) -> None:
        """Push the values to the disk (what survives a power loss, not just a kill)."""
        if self.values is not None:
            self.values.flush()
            self.head.flush()

    def close(self) -> None:
        try:
            self.head.close()
        finally:
            self._fin()


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


# ---------------------------------------------------------------------------------
# the host's atomics
# ---------------------------------------------------------------------------------

_SEQ_CST = 5


def _load_atomics() -> dict[tuple[str, int], Callable[..., int]] | None:
    name = ctypes.util.find_library("atomic") or "libatomic.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    table: dict[tuple[str, int], Callable[..., int]] = {}
    for size, ct in ((4, ctypes.c_uint32), (8, ctypes.c_uint64)):
        for op, sym in (("add", "fetch_add"), ("or", "fetch_or"), ("and", "fetch_and"),
                        ("xor", "fetch_xor"), ("xchg", "exchange")):
            fn = getattr(lib, f"__atomic_{sym}_{size}")
            fn.restype = ct
            fn.argtypes = [ctypes.c_void_p, ct, ctypes.c_int]
            table[op, size] = (lambda f: lambda addr, v: f(addr, v, _SEQ_CST))(fn)
        cx = getattr(lib, f"__atomic_compare_exchange_{size}")
        cx.restype = ctypes.c_bool
        cx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ct, ctypes.c_bool, ctypes.c_int,
                       ctypes.c_int]

        def cmpxchg(addr: int, expect: int, new: int, _cx=cx, _ct=ct) -> int:
            e = _ct(expect)
            _cx(addr, ctypes.byref(e), new, False, _SEQ_CST, _SEQ_CST)
            return e.value       # the old value, whether or not it was replaced
        table["cmpxchg", size] = cmpxchg
    return table


#: (op, size) -> fn(addr, value) -> old; ("cmpxchg", size) -> fn(addr, expect, new) -> old.
#: None where the host has no libatomic (the interpreter's atomics are then atomic only
#: within the process).
ATOMICS = _load_atomics()
MMAP = mmap.mmap
