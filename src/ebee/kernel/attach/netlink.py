"""rtnetlink, just enough for XDP on a device and tc's clsact qdisc and bpf filters.

Requests carry NLM_F_ACK and the socket asks for extended acks, so a refusal
comes back with the kernel's own explanation ("Native and generic XDP can't be
active at the same time.") as the OSError's message.
"""
from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from dataclasses import dataclass

from ...uapi import (ETH_P_ALL, IFLA_IFNAME, IFLA_XDP, IFLA_XDP_ATTACHED, IFLA_XDP_DRV_PROG_ID,
                     IFLA_XDP_EXPECTED_FD, IFLA_XDP_FD, IFLA_XDP_FLAGS, IFLA_XDP_HW_PROG_ID,
                     IFLA_XDP_PROG_ID, IFLA_XDP_SKB_PROG_ID, NETLINK_EXT_ACK, NETLINK_ROUTE,
                     NLA_ALIGNTO, NLA_F_NESTED, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE,
                     NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR,
                     NLMSGERR_ATTR_MSG, RTM_DELQDISC, RTM_DELTFILTER, RTM_GETLINK,
                     RTM_GETTFILTER, RTM_NEWQDISC, RTM_NEWTFILTER, RTM_SETLINK, SOL_NETLINK,
                     TCA_BPF_FD, TCA_BPF_FLAG_ACT_DIRECT, TCA_BPF_FLAGS, TCA_BPF_ID, TCA_BPF_NAME,
                     TCA_KIND, TCA_OPTIONS, XDP_FLAGS_REPLACE)
from ...uapi import TC_H_CLSACT

_NLMSGHDR = struct.Struct("=IHHII")        # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")      # family, type, index, flags, change
_TCMSG = struct.Struct("=BxxxiIII")        # family, ifindex, handle, parent, info
_RTATTR = struct.Struct("=HH")
_seq = itertools.count(int.from_bytes(os.urandom(2), "little"))


def _align(n: int) -> int:
    return (n + NLA_ALIGNTO - 1) & ~(NLA_ALIGNTO - 1)


def attr(type_: int, payload: bytes) -> bytes:
    body = _RTATTR.pack(_RTATTR.size + len(payload), type_) + payload
    return body + b"\0" * (_align(len(body)) - len(body))


def nested(type_: int, *attrs: bytes) -> bytes:
    return attr(type_ | NLA_F_NESTED, b"".join(attrs))


def u32(v: int) -> bytes:
    return struct.pack("=I", v & 0xFFFFFFFF)


def s32(v: int) -> bytes:
    return struct.pack("=i", v)


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def parse_attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    off = 0
    while off + _RTATTR.size <= len(data):
        ln, typ = _RTATTR.unpack_from(data, off)
        if ln < _RTATTR.size:
            break
        out[typ & ~NLA_F_NESTED] = data[off + _RTATTR.size:off + ln]
        off += _align(ln)
    return out


class Netlink:
    """One NETLINK_ROUTE socket, used for request/ack exchanges."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        try:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        except OSError:
            pass
        self.sock.bind((0, 0))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, msg_type: int, flags: int, payload: bytes, what: str) -> list[tuple[int, bytes]]:
        """Send one request; return the (type, payload) replies before the ack/DONE."""
        seq = next(_seq) & 0xFFFFFFFF
        msg = _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type,
                             flags | NLM_F_REQUEST | NLM_F_ACK, seq, 0) + payload
        self.sock.send(msg)
        replies = []
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                ln, typ, fl, rseq, _ = _NLMSGHDR.unpack_from(data, off)
                body = data[off + _NLMSGHDR.size:off + ln]
                off += _align(ln)
                if rseq != seq:
                    continue
                if typ == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", body)[0]
                    if err == 0:
                        return replies
                    raise OSError(err, f"{what}: {self._ext_ack(body, fl) or os.strerror(err)}")
                if typ == NLMSG_DONE:
                    return replies
                replies.append((typ, body))

    @staticmethod
    def _ext_ack(body: bytes, flags: int) -> str:
        if not flags & NLM_F_ACK_TLVS:
            return ""
        # error code, then the original header (and its payload unless the ack was capped)
        inner_len = _NLMSGHDR.unpack_from(body, 4)[0]
        capped = flags & NLM_F_CAPPED
        tlvs = body[4 + (_NLMSGHDR.size if capped else _align(inner_len)):]
        msg = parse_attrs(tlvs).get(NLMSGERR_ATTR_MSG, b"")
        return msg.rstrip(b"\0").decode(errors="replace")


def ifindex(iface: str | int) -> int:
    if isinstance(iface, int):
        return iface
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise OSError(errno.ENODEV, f"no network interface {iface!r}") from None


# --- XDP ---------------------------------------------------------------------------------------

@dataclass
class XdpState:
    """What IFLA_XDP reports for a device."""
    attached: int          # XDP_ATTACHED_*
    prog_id: int
    drv_prog_id: int
    skb_prog_id: int
    hw_prog_id: int


def xdp_set(iface: str | int, prog_fd: int, flags: int = 0, *, expected_fd: int = -1) -> None:
    """Attach (prog_fd >= 0) or detach (-1) XDP through netlink (RTM_SETLINK / IFLA_XDP)."""
    idx = ifindex(iface)
    xattrs = [attr(IFLA_XDP_FD, s32(prog_fd))]
    if flags:
        xattrs.append(attr(IFLA_XDP_FLAGS, u32(flags)))
    if expected_fd >= 0:
        xattrs.append(attr(IFLA_XDP_EXPECTED_FD, s32(expected_fd)))
    payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, idx, 0, 0) + nested(IFLA_XDP, *xattrs)
    with Netlink() as nl:
        nl.request(RTM_SETLINK, 0, payload, f"XDP on {iface}")


def xdp_query(iface: str | int) -> XdpState:
    idx = ifindex(iface)
    payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, idx, 0, 0)
    with Netlink() as nl:
        replies = nl.request(RTM_GETLINK, 0, payload, f"query {iface}")
    for _, body in replies:
        attrs = parse_attrs(body[_IFINFOMSG.size:])
        x = parse_attrs(attrs.get(IFLA_XDP, b""))

        def get(k, fmt="=I"):
            return struct.unpack(fmt, x[k][:4])[0] if k in x else 0
        return XdpState(get(IFLA_XDP_ATTACHED, "=B") if IFLA_XDP_ATTACHED in x and
                        len(x[IFLA_XDP_ATTACHED]) == 1 else get(IFLA_XDP_ATTACHED),
                        get(IFLA_XDP_PROG_ID), get(IFLA_XDP_DRV_PROG_ID),
                        get(IFLA_XDP_SKB_PROG_ID), get(IFLA_XDP_HW_PROG_ID))
    return XdpState(0, 0, 0, 0, 0)


def interfaces() -> dict[int, str]:
    """ifindex -> name for every device in this network namespace."""
    with Netlink() as nl:
        replies = nl.request(RTM_GETLINK, NLM_F_DUMP,
                             _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), "list links")
    out = {}
    for _, body in replies:
        idx = _IFINFOMSG.unpack_from(body)[2]
        name = parse_attrs(body[_IFINFOMSG.size:]).get(IFLA_IFNAME, b"").rstrip(b"\0")
        out[idx] = name.decode(errors="replace")
    return out


# --- tc: clsact qdisc and bpf filters ----------------------------------------------------------

def tc_handle(major: int, minor: int) -> int:
    return ((major << 16) & 0xFFFF0000) | (minor & 0xFFFF)


def qdisc_clsact(iface: str | int, *, create: bool) -> bool:
    """Add (create=True) or delete the clsact qdisc; returns False if it already
    existed (add) or was not there (delete)."""
    idx = ifindex(iface)
    payload = _TCMSG.pack(socket.AF_UNSPEC, idx, TC_H_CLSACT & 0xFFFF0000, TC_H_CLSACT, 0) + \
        attr(TCA_KIND, cstr("clsact"))
    with Netlink() as nl:
        try:
            if create:
                nl.request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, payload, f"clsact on {iface}")
            else:
                nl.request(RTM_DELQDISC, 0, payload, f"clsact on {iface}")
        except OSError as e:
            if (create and e.errno == errno.EEXIST) or (not create and e.errno in
                                                         (errno.ENOENT, errno.EINVAL)):
                return False
            raise
    return True


@dataclass(frozen=True)
class TcFilter:
    ifindex: int
    parent: int
    handle: int
    priority: int
    protocol: int


def tc_filter_add(iface: str | int, parent: int, prog_fd: int, name: str, *,
                  priority: int = 0, handle: int = 0, direct_action: bool = True) -> TcFilter:
    """A cls_bpf filter (direct-action) under ``parent``; the kernel picks priority and
    handle when they are 0 and tells us through NLM_F_ECHO."""
    idx = ifindex(iface)
    proto = socket.htons(ETH_P_ALL)
    opts = [attr(TCA_BPF_FD, u32(prog_fd)), attr(TCA_BPF_NAME, cstr(name))]
    if direct_action:
        opts.append(attr(TCA_BPF_FLAGS, u32(TCA_BPF_FLAG_ACT_DIRECT)))
    payload = _TCMSG.pack(socket.AF_UNSPEC, idx, handle, parent, tc_handle(priority, proto)) + \
        attr(TCA_KIND, cstr("bpf")) + nested(TCA_OPTIONS, *opts)
    with Netlink() as nl:
        replies = nl.request(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO, payload,
                             f"tc filter on {iface}")
    for typ, body in replies:
        if typ == RTM_NEWTFILTER:
            _, _, h, p, info = _TCMSG.unpack_from(body)
            return TcFilter(idx, p, h, info >> 16, info & 0xFFFF)
    if handle and priority:
        return TcFilter(idx, parent, handle, priority, proto)
    raise OSError(errno.EPROTO, f"tc filter on {iface}: the kernel did not echo the filter")


def tc_filter_del(f: TcFilter) -> None:
    payload = _TCMSG.pack(socket.AF_UNSPEC, f.ifindex, f.handle, f.parent,
                          tc_handle(f.priority, f.protocol)) + attr(TCA_KIND, cstr("bpf"))
    with Netlink() as nl:
        nl.request(RTM_DELTFILTER, 0, payload, "delete tc filter")


def tc_filters(iface: str | int, parent: int) -> list[tuple[TcFilter, int]]:
    """The bpf filters under ``parent``: (filter, program id)."""
    idx = ifindex(iface)
    payload = _TCMSG.pack(socket.AF_UNSPEC, idx, 0, parent, 0)
    with Netlink() as nl:
        replies = nl.request(RTM_GETTFILTER, NLM_F_DUMP, payload, f"list tc filters on {iface}")
    out = []
    for typ, body in replies:
        _, i, h, p, info = _TCMSG.unpack_from(body)
        attrs = parse_attrs(body[_TCMSG.size:])
        opts = parse_attrs(attrs.get(TCA_OPTIONS, b""))
        if TCA_BPF_ID in opts:
            out.append((TcFilter(i, p, h, info >> 16, info & 0xFFFF),
                        struct.unpack("=I", opts[TCA_BPF_ID][:4])[0]))
    return out


__all__ = ["Netlink", "XdpState", "xdp_set", "xdp_query", "interfaces", "qdisc_clsact",
           "TcFilter", "tc_filter_add", "tc_filter_del", "tc_filters", "ifindex",
           "XDP_FLAGS_REPLACE"]
