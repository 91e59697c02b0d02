"""SYN cookies: bpf_tcp_raw_gen_syncookie_ipv4/ipv6 and bpf_tcp_raw_check_syncookie_ipv4/ipv6,
with Linux's arithmetic (net/ipv4/syncookies.c, net/ipv6/syncookies.c).

A cookie is ``hash(addrs, ports, 0, secret0) + client seq + (minute << 24) +
((hash(addrs, ports, minute, secret1) + mss index) & 0xffffff)``, the hashes SipHash-2-4
with secrets drawn once per boot -- ebee's own, so the cookies are Linux's function of the
packet and the time but not the numbers this kernel would give; a cookie ebee made checks
as valid in ebee for two minutes, as Linux's do.  The minute is jiffies64 / (60 * HZ).
"""
from __future__ import annotations

import errno
import secrets
import struct

from ..uapi import FuncId as F
from .base import jiffies64, _HZ
from .registry import implements

M64 = (1 << 64) - 1
COOKIEBITS = 24
COOKIEMASK = (1 << COOKIEBITS) - 1
MAX_SYNCOOKIE_AGE = 2
MSSTAB4 = (536, 1300, 1440, 1460)
MSSTAB6 = (1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60)
TCP_MSS_DEFAULT = 536
IPV6_MSS_CLAMP = 1280 - 20 - 40          # IPV6_MIN_MTU - tcphdr - ipv6hdr
TCPHDR_LEN = 20

_secret4 = (secrets.token_bytes(16), secrets.token_bytes(16))
_secret6 = (secrets.token_bytes(16), secrets.token_bytes(16))


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & M64


def siphash(data: bytes, key: bytes) -> int:
    """SipHash-2-4 (lib/siphash.c's siphash())."""
    k0, k1 = struct.unpack("<QQ", key)
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573

    def rounds(n):
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & M64
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & M64
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & M64
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & M64
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)
    full = len(data) - len(data) % 8
    for i in range(0, full, 8):
        mword = struct.unpack_from("<Q", data, i)[0]
        v3 ^= mword
        rounds(2)
        v0 ^= mword
    b = (len(data) << 56) & M64
    b |= int.from_bytes(data[full:], "little")
    v3 ^= b
    rounds(2)
    v0 ^= b
    v2 ^= 0xFF
    rounds(4)
    return v0 ^ v1 ^ v2 ^ v3


def _minute(m) -> int:
    return (jiffies64(m) // (60 * _HZ)) & 0xFFFFFFFF


def _hash4(ip: bytes, ports: bytes, count: int, c: int) -> int:
    # siphash_4u32(saddr, daddr, sport << 16 | dport, count): the words as they sit in
    # memory (network order), then the count
    saddr, daddr = struct.unpack_from("<II", ip, 12)
    sport, dport = struct.unpack_from("<HH", ports, 0)
    return siphash(struct.pack("<IIII", saddr, daddr, (sport << 16 | dport) & 0xFFFFFFFF,
                               count & 0xFFFFFFFF), _secret4[c]) & 0xFFFFFFFF


def _hash6(ip: bytes, ports: bytes, count: int, c: int) -> int:
    # struct { saddr; daddr; u32 count; __be16 sport; __be16 dport; }
    return siphash(ip[8:40] + struct.pack("<I", count & 0xFFFFFFFF) + ports[0:4],
                   _secret6[c]) & 0xFFFFFFFF


def _cookie(h, ip: bytes, th: bytes, sseq: int, data: int, count: int) -> int:
    return (h(ip, th, 0, 0) + sseq + (count << COOKIEBITS) +
            ((h(ip, th, count, 1) + data) & COOKIEMASK)) & 0xFFFFFFFF


def _check(h, ip: bytes, th: bytes, count: int) -> int:
    """check_tcp_syn_cookie(): the mss index, or 0xffffffff for a stale cookie."""
    cookie = (struct.unpack_from(">I", th, 8)[0] - 1) & 0xFFFFFFFF
    sseq = (struct.unpack_from(">I", th, 4)[0] - 1) & 0xFFFFFFFF
    cookie = (cookie - (h(ip, th, 0, 0) + sseq)) & 0xFFFFFFFF
    diff = (count - (cookie >> COOKIEBITS)) & (0xFFFFFFFF >> COOKIEBITS)
    if diff >= MAX_SYNCOOKIE_AGE:
        return 0xFFFFFFFF
    return (cookie - h(ip, th, count - diff, 1)) & COOKIEMASK


def _parse_mss(th: bytes) -> int:
    """tcp_parse_mss_option(th, 0)."""
    length = (th[12] >> 4) * 4 - TCPHDR_LEN
    i = TCPHDR_LEN
    mss = 0
    while length > 0:
        op = th[i]
        i += 1
        if op == 0:                       # TCPOPT_EOL
            return mss
        if op == 1:                       # TCPOPT_NOP
            length -= 1
            continue
        if length < 2:
            return mss
        size = th[i]
        i += 1
        if size < 2 or size > length:
            return mss
        if op == 2 and size == 4:         # TCPOPT_MSS
            v = struct.unpack_from(">H", th, i)[0]
            if v:
                mss = v
        i += size - 2
        length -= size
    return mss


def _gen(m, iph: int, th: int, th_len: int, v6: bool) -> int:
    th_len &= 0xFFFFFFFF
    if th_len < TCPHDR_LEN:
        return -errno.EINVAL & M64
    hdr = m.read(th, th_len)
    if th_len != (hdr[12] >> 4) * 4:
        return -errno.EINVAL & M64
    tab, h = (MSSTAB6, _hash6) if v6 else (MSSTAB4, _hash4)
    mss = _parse_mss(hdr) or (IPV6_MSS_CLAMP if v6 else TCP_MSS_DEFAULT)
    idx = len(tab) - 1
    while idx and mss < tab[idx]:
        idx -= 1
    ip = m.read(iph, 40 if v6 else 20)
    cookie = _cookie(h, ip, hdr, struct.unpack_from(">I", hdr, 4)[0], idx, _minute(m))
    return cookie | (tab[idx] << 32)


def _check_raw(m, iph: int, th: int, v6: bool) -> int:
    tab, h = (MSSTAB6, _hash6) if v6 else (MSSTAB4, _hash4)
    idx = _check(h, m.read(iph, 40 if v6 else 20), m.read(th, TCPHDR_LEN), _minute(m))
    return 0 if idx < len(tab) else -errno.EACCES & M64


@implements(F.tcp_raw_gen_syncookie_ipv4)
def tcp_raw_gen_syncookie_ipv4(m, iph, th, th_len, *_):
    return _gen(m, iph, th, th_len, False)


@implements(F.tcp_raw_gen_syncookie_ipv6)
def tcp_raw_gen_syncookie_ipv6(m, iph, th, th_len, *_):
    return _gen(m, iph, th, th_len, True)


@implements(F.tcp_raw_check_syncookie_ipv4)
def tcp_raw_check_syncookie_ipv4(m, iph, th, *_):
    return _check_raw(m, iph, th, False)


@implements(F.tcp_raw_check_syncookie_ipv6)
def tcp_raw_check_syncookie_ipv6(m, iph, th, *_):
    return _check_raw(m, iph, th, True)
