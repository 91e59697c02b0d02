"""The flow hash skb_get_hash() computes (flow dissector + keyed hash).

Linux keys the hash with a random secret chosen at boot, so its values cannot
be reproduced outside that kernel; ebee keys it with a secret chosen per
process.  What programs can rely on holds: the same flow hashes the same, the
result is never 0, and l4_hash is set when ports were part of the key.
"""
from __future__ import annotations

import hashlib
import os
import struct

from ..uapi import ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP

_SECRET = os.urandom(16)


def flow_keys(l3: bytes, protocol: int) -> tuple[bytes, bool]:
    """(the hashed key bytes, whether ports were included) for an L3 packet."""
    ports = b""
    if protocol == ETH_P_IP and len(l3) >= 20:
        ihl = (l3[0] & 0x0F) * 4
        proto = l3[9]
        addrs = l3[12:20]
        frag = struct.unpack_from(">H", l3, 6)[0] & 0x3FFF
        if proto in (IPPROTO_TCP, IPPROTO_UDP) and not frag and len(l3) >= ihl + 4:
            ports = l3[ihl:ihl + 4]
        return bytes([proto]) + addrs + ports, bool(ports)
    if protocol == ETH_P_IPV6 and len(l3) >= 40:
        proto = l3[6]
        if proto in (IPPROTO_TCP, IPPROTO_UDP) and len(l3) >= 44:
            ports = l3[40:44]
        return bytes([proto]) + l3[8:40] + ports, bool(ports)
    return struct.pack(">H", protocol), False


def skb_flow_hash(skb) -> tuple[int, bool]:
    l3 = skb.read(skb.network_header - skb.data_off, skb.tail - skb.network_header)
    key, l4 = flow_keys(l3, skb.protocol)
    h = int.from_bytes(hashlib.blake2b(key, key=_SECRET, digest_size=4).digest(), "little")
    return h or 1, l4
