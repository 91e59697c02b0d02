"""Loads through socket pointers (check_sock_access).

Which fields of ``struct bpf_sock`` (and friends) a program may read is the
kernel's bpf_sock_is_valid_access & co; the layout comes from the kernel's
BTF for the uapi structures.
"""
from __future__ import annotations

from ..btf import BTF
from .env import Env
from .types import (PTR_TO_SOCK_COMMON, PTR_TO_SOCKET, PTR_TO_TCP_SOCK, PTR_TO_XDP_SOCK,
                    reg_type_str)

_STRUCT = {PTR_TO_SOCKET: "bpf_sock", PTR_TO_SOCK_COMMON: "bpf_sock",
           PTR_TO_TCP_SOCK: "bpf_tcp_sock", PTR_TO_XDP_SOCK: "bpf_xdp_sock"}


def _valid(env: Env, rt: int, off: int, size: int) -> bool:
    try:
        btf = BTF.load_vmlinux()
        s = btf.find(_STRUCT[rt], "STRUCT")
    except Exception:
        return False
    if off < 0 or off >= s.size or off % size:
        return False
    for m in s.members:
        moff = m.bits_offset // 8
        msz = btf.sizeof(btf.resolve(m.type_id))
        if moff <= off < moff + msz:
            if rt == PTR_TO_XDP_SOCK:
                return m.name == "queue_id" and off == moff and size == 4
            if rt == PTR_TO_SOCK_COMMON and m.name in ("type", "protocol", "mark", "priority"):
                # bpf_sock_common_is_valid_access: type..priority live in the full
                # socket only, not in a request or time-wait socket's sock_common
                return False
            if rt == PTR_TO_TCP_SOCK:
                return off == moff and size == msz
            if m.name == "dst_port":
                # narrow loads of the 16-bit port; a word load at its offset
                return size in (1, 2) or (size == 4 and off == moff)
            if msz > 4 and m.name.endswith("ip6"):
                return size <= 4
            if off == moff and size == msz:
                return True
            return size < msz and m.name in ("state", "family", "type", "protocol", "src_port",
                                             "rx_queue_mapping", "src_ip4", "dst_ip4")
        if moff > off:
            break
    return False


def check_sock_access(env: Env, insn_idx: int, regno: int, off: int, size: int, t: int) -> None:
    reg = env.cur_regs()[regno]
    if reg.bounds.smin_value < 0:
        raise env.reject(f"R{regno} min value is negative, either use unsigned index or do a "
                         f"if (index >=0) check.")
    if not _valid(env, reg.type, off, size):
        raise env.reject(f"R{regno} invalid {reg_type_str(reg.type)} access off={off} "
                         f"size={size}")
