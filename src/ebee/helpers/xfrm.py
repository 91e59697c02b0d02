"""bpf_skb_get_xfrm_state: the IPsec states a received packet was decrypted with, from a
modelled security association table.

Linux keeps, on a packet IPsec has processed, its ``sec_path``: the ``xfrm_state`` of each
transform applied.  In ebee a packet's sec path is what :func:`set_sec_path` gave it (a
packet without one, as a test run's, has none: -EINVAL)::

    sa = XfrmState(reqid=1, spi=0x1000, remote="192.0.2.1")
    set_sec_path(skb, [sa])
"""
from __future__ import annotations

import errno
import ipaddress
import struct
import weakref
from dataclasses import dataclass

from ..packet.skbuff import SkBuff, from_ctx
from ..uapi import AF_INET, AF_INET6, FuncId as F
from .registry import implements

M64 = (1 << 64) - 1
BPF_XFRM_STATE_SIZE = 28

_sec_paths: "weakref.WeakKeyDictionary[SkBuff, list[XfrmState]]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class XfrmState:
    """One security association: its request id, SPI (host order) and the peer's address."""
    reqid: int
    spi: int
    remote: str

    @property
    def family(self) -> int:
        return AF_INET6 if ipaddress.ip_address(self.remote).version == 6 else AF_INET


def set_sec_path(skb: SkBuff, states: list[XfrmState] | None) -> None:
    """The transforms ``skb`` went through, outermost first (None: none)."""
    if states is None:
        _sec_paths.pop(skb, None)
    else:
        _sec_paths[skb] = list(states)


@implements(F.skb_get_xfrm_state)
def skb_get_xfrm_state(m, ctx, index, to, size, flags):
    sp = _sec_paths.get(from_ctx(ctx))
    index &= 0xFFFFFFFF
    size &= 0xFFFFFFFF
    if not sp or index >= len(sp) or flags or size != BPF_XFRM_STATE_SIZE:
        m.write(to, bytes(size))
        return -errno.EINVAL & M64
    x = sp[index]
    addr = ipaddress.ip_address(x.remote).packed
    m.write(to, struct.pack("<I", x.reqid & 0xFFFFFFFF) + struct.pack(">I", x.spi & 0xFFFFFFFF)
            + struct.pack("<HH", x.family, 0) + addr + bytes(16 - len(addr)))
    return 0
