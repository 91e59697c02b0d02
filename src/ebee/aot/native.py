"""The C runtime's API from Python (ctypes): open a built .so, fill maps, run, read results.

What the differential tests and bench/aot.py drive an ``ebee aot ... --runtime -o X.so``
library with; an application in C calls the same functions (docs/aot.md).
"""
from __future__ import annotations

import ctypes as C
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .. import uapi as U
from . import cgen

_PERCPU = (U.MapType.PERCPU_ARRAY, U.MapType.PERCPU_HASH, U.MapType.LRU_PERCPU_HASH)


class _Result(C.Structure):
    _fields_ = [("retval", C.c_uint64), ("status", C.c_int), ("fault_pc", C.c_uint64),
                ("fault_msg", C.c_char_p), ("data_len", C.c_uint32)]


_SIGS = {
    "ebee_obj_new": (C.c_void_p, [C.c_void_p, C.c_uint32]),
    "ebee_obj_free": (None, [C.c_void_p]),
    "ebee_obj_map": (C.c_void_p, [C.c_void_p, C.c_char_p]),
    "ebee_obj_prog": (C.c_int, [C.c_void_p, C.c_char_p]),
    "ebee_map_lookup": (C.c_int, [C.c_void_p, C.c_char_p, C.c_char_p]),
    "ebee_map_update": (C.c_int, [C.c_void_p, C.c_char_p, C.c_char_p, C.c_uint64]),
    "ebee_map_delete": (C.c_int, [C.c_void_p, C.c_char_p]),
    "ebee_map_next_key": (C.c_int, [C.c_void_p, C.c_char_p, C.c_char_p]),
    "ebee_map_type": (C.c_uint32, [C.c_void_p]),
    "ebee_map_key_size": (C.c_uint32, [C.c_void_p]),
    "ebee_map_value_size": (C.c_uint32, [C.c_void_p]),
    "ebee_map_max_entries": (C.c_uint32, [C.c_void_p]),
    "ebee_run_xdp": (C.c_int, [C.c_void_p, C.c_int, C.c_uint32, C.c_char_p, C.c_uint32,
                               C.c_char_p, C.c_uint32, C.POINTER(_Result)]),
    "ebee_run_xdp_repeat": (C.c_int, [C.c_void_p, C.c_int, C.c_uint32, C.c_char_p, C.c_uint32,
                                      C.c_char_p, C.c_uint32, C.c_uint32, C.POINTER(_Result),
                                      C.POINTER(C.c_uint64)]),
    "ebee_run_mem": (C.c_int, [C.c_void_p, C.c_int, C.c_uint32, C.c_char_p, C.c_uint64,
                               C.POINTER(_Result)]),
    "ebee_set_seed": (None, [C.c_uint64]),
}


@dataclass
class NativeResult:
    retval: int
    status: int              # 0: EXIT; else EBEE_FAULT_*
    data_out: bytes
    fault_pc: int = 0


class NativeMap:
    def __init__(self, obj: "NativeObject", ptr: int):
        self.lib = obj.lib
        self.ptr = ptr
        self.ncpus = obj.ncpus
        self.type = self.lib.ebee_map_type(ptr)
        self.key_size = self.lib.ebee_map_key_size(ptr)
        self.value_size = self.lib.ebee_map_value_size(ptr)

    def _vlen(self) -> int:
        percpu = self.type in _PERCPU
        return ((self.value_size + 7) // 8 * 8) * self.ncpus if percpu else self.value_size

    def lookup(self, key: bytes) -> bytes | None:
        buf = C.create_string_buffer(max(self._vlen(), 1))
        rc = self.lib.ebee_map_lookup(self.ptr, key, buf)
        return None if rc else buf.raw[:self._vlen()]

    def update(self, key: bytes, value: bytes, flags: int = 0) -> int:
        return self.lib.ebee_map_update(self.ptr, key, value, flags)

    def keys(self) -> Iterator[bytes]:
        cur: bytes | None = None
        nxt = C.create_string_buffer(max(self.key_size, 1))
        while self.lib.ebee_map_next_key(self.ptr, cur, nxt) == 0:
            cur = nxt.raw[:self.key_size]
            yield cur

    def items(self) -> dict[bytes, bytes | None]:
        return {k: self.lookup(k) for k in self.keys()}


class NativeObject:
    """One ``struct ebee_object_def`` of a shared library built with the runtime linked in."""

    def __init__(self, so: str | Path, object_name: str, *, ncpus: int = 1):
        self.lib = C.CDLL(str(Path(so).resolve()))
        for name, (res, args) in _SIGS.items():
            fn = getattr(self.lib, name)
            fn.restype, fn.argtypes = res, args
        sym = C.c_void_p.in_dll(self.lib, cgen.ident(object_name))
        self.ncpus = ncpus
        self.ptr = self.lib.ebee_obj_new(C.addressof(sym), ncpus)
        if not self.ptr:
            raise MemoryError("ebee_obj_new failed")
        self._out = C.create_string_buffer(4096)

    def close(self) -> None:
        if self.ptr:
            self.lib.ebee_obj_free(self.ptr)
            self.ptr = None

    def __enter__(self) -> "NativeObject":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def prog(self, name: str) -> int:
        k = self.lib.ebee_obj_prog(self.ptr, name.encode())
        if k < 0:
            raise KeyError(name)
        return k

    def map(self, name: str) -> NativeMap:
        p = self.lib.ebee_obj_map(self.ptr, name.encode())
        if not p:
            raise KeyError(name)
        return NativeMap(self, p)

    def run_xdp(self, prog: int | str, data: bytes, *, cpu: int = 0) -> NativeResult:
        k = self.prog(prog) if isinstance(prog, str) else prog
        res = _Result()
        rc = self.lib.ebee_run_xdp(self.ptr, k, cpu, data, len(data), self._out, len(self._out),
                                   C.byref(res))
        if rc:
            raise ValueError(f"ebee_run_xdp: error {rc}")
        return NativeResult(res.retval, res.status, self._out.raw[:res.data_len], res.fault_pc)

    def time_xdp(self, prog: int | str, data: bytes, repeat: int, *, cpu: int = 0) -> float:
        """Average ns per run of ``repeat`` runs looped in C (BPF_PROG_TEST_RUN's repeat)."""
        k = self.prog(prog) if isinstance(prog, str) else prog
        res, ns = _Result(), C.c_uint64()
        rc = self.lib.ebee_run_xdp_repeat(self.ptr, k, cpu, data, len(data), self._out,
                                          len(self._out), repeat, C.byref(res), C.byref(ns))
        if rc:
            raise ValueError(f"ebee_run_xdp_repeat: error {rc}")
        return ns.value / max(repeat, 1)
