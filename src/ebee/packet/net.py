"""The modelled network a packet program runs in: devices, FIB, tunnels, sockets.

Linux's test runs use the caller's network namespace (its loopback device,
routes and sockets).  ebee's runs use a :class:`Network` the user configures:
devices by ifindex (``lo`` is ifindex 1, as in every namespace), a FIB for
``bpf_fib_lookup``, a tunnel endpoint for ``bpf_skb_get/set_tunnel_key`` and a
socket table for ``bpf_sk_lookup_tcp/udp`` and SK_LOOKUP programs.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from ..layouts.kernel import NET_DEVICE
from ..memory import SHARED, Memory, Region
from ..sockets.socket import Socket

from ..uapi import AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP  # noqa: F401


def _mac(value: str | bytes) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 6:
            raise ValueError(f"a MAC address has 6 bytes, not {len(value)}")
        return bytes(value)
    parts = value.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {value!r}")
    return bytes(int(p, 16) for p in parts)


class NetDevice:
    """A network interface; its ``net_device`` region is what ``skb->dev`` points at."""

    def __init__(self, ifindex: int, name: str, mac: str | bytes = b"\0" * 6, *, mtu: int = 1500,
                 rx_queues: int = 1, memory: Memory = SHARED):
        self.ifindex = ifindex
        self.name = name
        self.mac = _mac(mac)
        # the loopback device's broadcast address is all zeroes (loopback_setup())
        self.broadcast = b"\0" * 6 if ifindex == 1 else b"\xff" * 6
        self.mtu = mtu
        self.rx_queues = rx_queues
        self._memory = memory
        self.region = memory.add(Region(NET_DEVICE.size, f"net_device {name}", writable=False))
        struct.pack_into("<i", self.region.buf, NET_DEVICE.off("ifindex"), ifindex)
        struct.pack_into("<I", self.region.buf, NET_DEVICE.off("mtu"), mtu)

    @property
    def addr(self) -> int:
        return self.region.start

    def close(self) -> None:
        self._memory.remove(self.region)

    def __repr__(self) -> str:
        return f"<NetDevice {self.ifindex}: {self.name} {self.mac.hex(':')}>"


@dataclass
class Route:
    """One FIB entry: a prefix, its output device, and the next hop (None: on-link)."""
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    ifindex: int
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    blackhole: bool = False
    unreachable: bool = False
    prohibit: bool = False


@dataclass
class Neighbour:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    mac: bytes
    ifindex: int


@dataclass
class TunnelKey:
    """What ``struct bpf_tunnel_key`` carries (addresses in host order as ints)."""
    tunnel_id: int = 0
    remote_ipv4: int = 0
    remote_ipv6: bytes = b"\0" * 16
    tunnel_tos: int = 0
    tunnel_ttl: int = 0
    tunnel_label: int = 0
    local_ipv4: int = 0
    local_ipv6: bytes = b"\0" * 16
    ipv6: bool = False
    # tunnel options (bpf_skb_set_tunnel_opt: Geneve/VXLAN/ERSPAN/... option bytes) and
    # whether the *_OPT flags say they are there
    options: bytes = b""
    options_present: bool = False


@dataclass
class Network:
    """Devices, routes, neighbours, a tunnel endpoint and sockets, as one namespace."""
    devices: dict[int, NetDevice] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)
    sockets: list[Socket] = field(default_factory=list)
    tunnel: TunnelKey | None = None           # what a received packet's tunnel metadata says

    def __post_init__(self) -> None:
        if 1 not in self.devices:
            self.devices[1] = NetDevice(1, "lo", mtu=65536)

    @property
    def loopback(self) -> NetDevice:
        return self.devices[1]

    def add_device(self, name: str, mac: str | bytes = b"\0" * 6, *, ifindex: int | None = None,
                   mtu: int = 1500, rx_queues: int = 1) -> NetDevice:
        idx = ifindex if ifindex is not None else max(self.devices) + 1
        if idx in self.devices:
            raise ValueError(f"ifindex {idx} is already {self.devices[idx].name}")
        dev = self.devices[idx] = NetDevice(idx, name, mac, mtu=mtu, rx_queues=rx_queues)
        return dev

    def add_route(self, prefix: str, dev: str | int, via: str | None = None, **kind) -> Route:
        ifindex = self.device(dev).ifindex
        r = Route(ipaddress.ip_network(prefix, strict=False), ifindex,
                  ipaddress.ip_address(via) if via else None, **kind)
        self.routes.append(r)
        return r

    def add_neighbour(self, ip: str, mac: str | bytes, dev: str | int) -> Neighbour:
        n = Neighbour(ipaddress.ip_address(ip), _mac(mac), self.device(dev).ifindex)
        self.neighbours.append(n)
        return n

    def add_socket(self, family: int, protocol: int, local: tuple[str, int],
                   remote: tuple[str, int] | None = None, **kw) -> Socket:
        s = Socket(family, protocol, local, remote, **kw)
        self.sockets.append(s)
        return s

    def device(self, dev: str | int) -> NetDevice:
        if isinstance(dev, int):
            if dev in self.devices:
                return self.devices[dev]
        else:
            for d in self.devices.values():
                if d.name == dev:
                    return d
        raise KeyError(f"no device {dev!r}")

    def route(self, dst) -> Route | None:
        """Longest-prefix match."""
        best = None
        for r in self.routes:
            if r.prefix.version == dst.version and dst in r.prefix:
                if best is None or r.prefix.prefixlen > best.prefix.prefixlen:
                    best = r
        return best

    def neighbour(self, ip, ifindex: int) -> Neighbour | None:
        for n in self.neighbours:
            if n.ip == ip and n.ifindex == ifindex:
                return n
        return None

    def close(self) -> None:
        for d in self.devices.values():
            d.close()
        for s in self.sockets:
            s.close()
