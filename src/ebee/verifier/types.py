"""The verifier's vocabulary: register types, their modifier flags, stack slot kinds.

Names and values follow Linux's ``enum bpf_reg_type`` and ``enum
bpf_type_flag`` (include/linux/bpf.h): a register type is a base type in the
low 8 bits plus modifier flags above (``PTR_TO_MAP_VALUE | PTR_MAYBE_NULL`` is
what the log calls ``map_value_or_null``).  Program types (ctx access rules)
and helper prototypes speak this vocabulary too.
"""
from __future__ import annotations

import enum


class RegType(enum.IntEnum):
    NOT_INIT = 0
    SCALAR_VALUE = 1
    PTR_TO_CTX = 2
    CONST_PTR_TO_MAP = 3
    PTR_TO_MAP_VALUE = 4
    PTR_TO_MAP_KEY = 5
    PTR_TO_STACK = 6
    PTR_TO_PACKET_META = 7
    PTR_TO_PACKET = 8
    PTR_TO_PACKET_END = 9
    PTR_TO_FLOW_KEYS = 10
    PTR_TO_SOCKET = 11
    PTR_TO_SOCK_COMMON = 12
    PTR_TO_TCP_SOCK = 13
    PTR_TO_TP_BUFFER = 14
    PTR_TO_XDP_SOCK = 15
    PTR_TO_BTF_ID = 16
    PTR_TO_MEM = 17
    PTR_TO_ARENA = 18
    PTR_TO_BUF = 19
    PTR_TO_FUNC = 20
    CONST_PTR_TO_DYNPTR = 21


BASE_TYPE_BITS = 8
BASE_MASK = (1 << BASE_TYPE_BITS) - 1

# enum bpf_type_flag
PTR_MAYBE_NULL = 1 << (0 + BASE_TYPE_BITS)
MEM_RDONLY = 1 << (1 + BASE_TYPE_BITS)
MEM_RINGBUF = 1 << (2 + BASE_TYPE_BITS)
MEM_USER = 1 << (3 + BASE_TYPE_BITS)
MEM_PERCPU = 1 << (4 + BASE_TYPE_BITS)
OBJ_RELEASE = 1 << (5 + BASE_TYPE_BITS)
PTR_UNTRUSTED = 1 << (6 + BASE_TYPE_BITS)
MEM_UNINIT = 1 << (7 + BASE_TYPE_BITS)
DYNPTR_TYPE_LOCAL = 1 << (8 + BASE_TYPE_BITS)
DYNPTR_TYPE_RINGBUF = 1 << (9 + BASE_TYPE_BITS)
MEM_FIXED_SIZE = 1 << (10 + BASE_TYPE_BITS)
MEM_ALLOC = 1 << (11 + BASE_TYPE_BITS)
PTR_TRUSTED = 1 << (12 + BASE_TYPE_BITS)
MEM_RCU = 1 << (13 + BASE_TYPE_BITS)
NON_OWN_REF = 1 << (14 + BASE_TYPE_BITS)
DYNPTR_TYPE_SKB = 1 << (15 + BASE_TYPE_BITS)
DYNPTR_TYPE_XDP = 1 << (16 + BASE_TYPE_BITS)
MEM_ALIGNED = 1 << (17 + BASE_TYPE_BITS)
MEM_WRITE = 1 << (18 + BASE_TYPE_BITS)

NOT_INIT = RegType.NOT_INIT
SCALAR_VALUE = RegType.SCALAR_VALUE
PTR_TO_CTX = RegType.PTR_TO_CTX
CONST_PTR_TO_MAP = RegType.CONST_PTR_TO_MAP
PTR_TO_MAP_VALUE = RegType.PTR_TO_MAP_VALUE
PTR_TO_MAP_KEY = RegType.PTR_TO_MAP_KEY
PTR_TO_STACK = RegType.PTR_TO_STACK
PTR_TO_PACKET_META = RegType.PTR_TO_PACKET_META
PTR_TO_PACKET = RegType.PTR_TO_PACKET
PTR_TO_PACKET_END = RegType.PTR_TO_PACKET_END
PTR_TO_FLOW_KEYS = RegType.PTR_TO_FLOW_KEYS
PTR_TO_SOCKET = RegType.PTR_TO_SOCKET
PTR_TO_SOCK_COMMON = RegType.PTR_TO_SOCK_COMMON
PTR_TO_TCP_SOCK = RegType.PTR_TO_TCP_SOCK
PTR_TO_TP_BUFFER = RegType.PTR_TO_TP_BUFFER
PTR_TO_XDP_SOCK = RegType.PTR_TO_XDP_SOCK
PTR_TO_BTF_ID = RegType.PTR_TO_BTF_ID
PTR_TO_MEM = RegType.PTR_TO_MEM
PTR_TO_ARENA = RegType.PTR_TO_ARENA
PTR_TO_BUF = RegType.PTR_TO_BUF
PTR_TO_FUNC = RegType.PTR_TO_FUNC
CONST_PTR_TO_DYNPTR = RegType.CONST_PTR_TO_DYNPTR

_BASE_STR = {
    NOT_INIT: "?", SCALAR_VALUE: "scalar", PTR_TO_CTX: "ctx", CONST_PTR_TO_MAP: "map_ptr",
    PTR_TO_MAP_VALUE: "map_value", PTR_TO_STACK: "fp", PTR_TO_PACKET: "pkt",
    PTR_TO_PACKET_META: "pkt_meta", PTR_TO_PACKET_END: "pkt_end", PTR_TO_FLOW_KEYS: "flow_keys",
    PTR_TO_SOCKET: "sock", PTR_TO_SOCK_COMMON: "sock_common", PTR_TO_TCP_SOCK: "tcp_sock",
    PTR_TO_TP_BUFFER: "tp_buffer", PTR_TO_XDP_SOCK: "xdp_sock", PTR_TO_BTF_ID: "ptr_",
    PTR_TO_MEM: "mem", PTR_TO_ARENA: "arena", PTR_TO_BUF: "buf", PTR_TO_FUNC: "func",
    PTR_TO_MAP_KEY: "map_key", CONST_PTR_TO_DYNPTR: "dynptr_ptr",
}
_PREFIX = ((MEM_RDONLY, "rdonly_"), (MEM_RINGBUF, "ringbuf_"), (MEM_USER, "user_"),
           (MEM_PERCPU, "percpu_"), (MEM_RCU, "rcu_"), (PTR_UNTRUSTED, "untrusted_"),
           (PTR_TRUSTED, "trusted_"))


def base_type(t: int) -> int:
    return t & BASE_MASK


def type_may_be_null(t: int) -> bool:
    return bool(t & PTR_MAYBE_NULL)


def reg_type_str(t: int) -> str:
    """Linux's reg_type_str(): ``map_value_or_null``, ``rdonly_mem``, ``ptr_or_null_``."""
    s = _TYPE_STR.get(t)
    if s is None:
        s = _TYPE_STR[t] = _reg_type_str(t)
    return s


_TYPE_STR: dict[int, str] = {}      # reg_type_str of each type seen (messages build it often)


def _reg_type_str(t: int) -> str:
    prefix = "".join(p for flag, p in _PREFIX if t & flag)
    post = ""
    if t & PTR_MAYBE_NULL:
        post = "or_null_" if base_type(t) == PTR_TO_BTF_ID else "_or_null"
    return prefix + _BASE_STR[RegType(base_type(t))] + post


def type_is_pkt_pointer(t: int) -> bool:
    t = base_type(t)
    return t == PTR_TO_PACKET or t == PTR_TO_PACKET_META


def type_is_sk_pointer(t: int) -> bool:
    return t in (PTR_TO_SOCKET, PTR_TO_SOCK_COMMON, PTR_TO_TCP_SOCK, PTR_TO_XDP_SOCK)


# stack slot byte kinds (enum bpf_stack_slot_type) and the log's letters
STACK_INVALID = "?"
STACK_SPILL = "r"
STACK_MISC = "m"
STACK_ZERO = "0"
STACK_DYNPTR = "d"
STACK_ITER = "i"
STACK_IRQ_FLAG = "f"

BPF_REG_SIZE = 8
BPF_MAX_VAR_OFF = 1 << 29        # include/linux/bpf_verifier.h: the largest variable offset
BPF_ADD_CONST = 1 << 31          # reg->id flag: "this reg = linked reg + off"

# packet range sentinels (reg->range) after comparisons against pkt_end
BEYOND_PKT_END = -2
AT_PKT_END = -1
