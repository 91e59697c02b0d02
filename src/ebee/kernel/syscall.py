"""The bpf(2) system call through ctypes: no libbpf, no C toolchain.

Each command's part of ``union bpf_attr`` is a ctypes structure laid out as in
include/uapi/linux/bpf.h.  Older kernels accept the newer, longer layouts as
long as the fields they do not know are zero, which is how the kernel's
``bpf_check_uarg_tail_zero`` is meant to be used.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from ..uapi import Cmd

c_u32, c_u64, c_s32 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "arm64": 280, "riscv64": 280, "ppc64le": 361,
            "s390x": 351, "i686": 357, "armv7l": 386, "loongarch64": 280}

_libc = None


def _syscall():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc.syscall


class ProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", c_u32), ("insn_cnt", c_u32), ("insns", c_u64), ("license", c_u64),
        ("log_level", c_u32), ("log_size", c_u32), ("log_buf", c_u64), ("kern_version", c_u32),
        ("prog_flags", c_u32), ("prog_name", ctypes.c_char * 16), ("prog_ifindex", c_u32),
        ("expected_attach_type", c_u32), ("prog_btf_fd", c_u32), ("func_info_rec_size", c_u32),
        ("func_info", c_u64), ("func_info_cnt", c_u32), ("line_info_rec_size", c_u32),
        ("line_info", c_u64), ("line_info_cnt", c_u32), ("attach_btf_id", c_u32),
        ("attach_prog_fd", c_u32), ("core_relo_cnt", c_u32), ("fd_array", c_u64),
        ("core_relos", c_u64), ("core_relo_rec_size", c_u32), ("log_true_size", c_u32),
    ]


class TestRunAttr(ctypes.Structure):
    _fields_ = [
        ("prog_fd", c_u32), ("retval", c_u32), ("data_size_in", c_u32), ("data_size_out", c_u32),
        ("data_in", c_u64), ("data_out", c_u64), ("repeat", c_u32), ("duration", c_u32),
        ("ctx_size_in", c_u32), ("ctx_size_out", c_u32), ("ctx_in", c_u64), ("ctx_out", c_u64),
        ("flags", c_u32), ("cpu", c_u32), ("batch_size", c_u32),
    ]


class MapCreateAttr(ctypes.Structure):
    _fields_ = [
        ("map_type", c_u32), ("key_size", c_u32), ("value_size", c_u32), ("max_entries", c_u32),
        ("map_flags", c_u32), ("inner_map_fd", c_u32), ("numa_node", c_u32),
        ("map_name", ctypes.c_char * 16), ("map_ifindex", c_u32), ("btf_fd", c_u32),
        ("btf_key_type_id", c_u32), ("btf_value_type_id", c_u32),
        ("btf_vmlinux_value_type_id", c_u32), ("map_extra", c_u64),
    ]


class MapElemAttr(ctypes.Structure):
    _fields_ = [("map_fd", c_u32), ("key", c_u64), ("value", c_u64), ("flags", c_u64)]


def bpf(cmd: Cmd | int, attr: ctypes.Structure) -> int:
    """Issue one bpf() command; returns its non-negative result or raises OSError."""
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise OSError(38, f"bpf(): unknown syscall number on {platform.machine()}")
    ret = _syscall()(ctypes.c_long(nr), ctypes.c_int(int(cmd)), ctypes.byref(attr),
                     ctypes.c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({Cmd(int(cmd)).name}): {os.strerror(err)}")
    return ret


def addr(buf) -> int:
    """Address of a ctypes object or buffer, as the u64 the kernel expects."""
    return ctypes.addressof(buf) if buf is not None else 0
