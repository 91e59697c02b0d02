"""Packets as programs see them: socket buffers, XDP buffers, the modelled network, pcap files,
and builders of test frames (``udp_packet``, ``tcp_packet``, ``icmp_packet``)."""
from .build import as_bytes, icmp_packet, tcp_packet, udp_packet
from .net import NetDevice, Network, Route, Socket, TunnelKey
from .skbuff import SkBuff
from .xdpbuff import XdpBuff

__all__ = ["NetDevice", "Network", "Route", "SkBuff", "Socket", "TunnelKey", "XdpBuff", "as_bytes",
           "icmp_packet", "tcp_packet", "udp_packet"]
