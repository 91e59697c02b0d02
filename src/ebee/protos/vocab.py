"""The words helper prototypes are written in: include/linux/bpf.h's enum bpf_arg_type,
enum bpf_return_type and enum bpf_type_flag.

A prototype's argument or return type is, as in the kernel, a base type and type flags
(``ARG_PTR_TO_MEM | MEM_RDONLY``); the kernel's shorthands (``ARG_PTR_TO_UNINIT_MEM``,
``RET_PTR_TO_MAP_VALUE_OR_NULL``) are spelled out.  The values are the kernel's: the base
types' enum order, the flags' bit order (the kernel shifts them above the base-type bits,
``BPF_BASE_TYPE_BITS``), so the verifier and the kernel number them alike.
"""
from __future__ import annotations

import enum


class Arg(enum.IntEnum):
    """enum bpf_arg_type (base types)."""
    DONTCARE = 0
    CONST_MAP_PTR = 1
    PTR_TO_MAP_KEY = 2
    PTR_TO_MAP_VALUE = 3
    PTR_TO_MEM = 4
    PTR_TO_ARENA = 5
    CONST_SIZE = 6
    CONST_SIZE_OR_ZERO = 7
    PTR_TO_CTX = 8
    ANYTHING = 9
    PTR_TO_SPIN_LOCK = 10
    PTR_TO_SOCK_COMMON = 11
    PTR_TO_SOCKET = 12
    PTR_TO_BTF_ID = 13
    PTR_TO_RINGBUF_MEM = 14
    CONST_ALLOC_SIZE_OR_ZERO = 15
    PTR_TO_BTF_ID_SOCK_COMMON = 16
    PTR_TO_PERCPU_BTF_ID = 17
    PTR_TO_FUNC = 18
    PTR_TO_STACK = 19
    PTR_TO_CONST_STR = 20
    PTR_TO_TIMER = 21
    KPTR_XCHG_DEST = 22
    PTR_TO_DYNPTR = 23


class Ret(enum.IntEnum):
    """enum bpf_return_type (base types)."""
    INTEGER = 0
    VOID = 1
    PTR_TO_MAP_VALUE = 2
    PTR_TO_SOCKET = 3
    PTR_TO_TCP_SOCK = 4
    PTR_TO_SOCK_COMMON = 5
    PTR_TO_MEM = 6
    PTR_TO_MEM_OR_BTF_ID = 7
    PTR_TO_BTF_ID = 8


class Flag(enum.IntFlag):
    """enum bpf_type_flag, as bit numbers above BPF_BASE_TYPE_BITS (``value << 8`` is the
    kernel's value)."""
    PTR_MAYBE_NULL = 1 << 0
    MEM_RDONLY = 1 << 1
    MEM_RINGBUF = 1 << 2
    MEM_USER = 1 << 3
    MEM_PERCPU = 1 << 4
    OBJ_RELEASE = 1 << 5
    PTR_UNTRUSTED = 1 << 6
    MEM_UNINIT = 1 << 7
    DYNPTR_TYPE_LOCAL = 1 << 8
    DYNPTR_TYPE_RINGBUF = 1 << 9
    MEM_FIXED_SIZE = 1 << 10
    MEM_ALLOC = 1 << 11
    PTR_TRUSTED = 1 << 12
    MEM_RCU = 1 << 13
    NON_OWN_REF = 1 << 14
    DYNPTR_TYPE_SKB = 1 << 15
    DYNPTR_TYPE_XDP = 1 << 16
    MEM_ALIGNED = 1 << 17
    MEM_WRITE = 1 << 18
    DYNPTR_TYPE_SKB_META = 1 << 19     # Linux 6.18; no helper prototype of 6.12 has it


BPF_BASE_TYPE_BITS = 8
