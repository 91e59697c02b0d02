"""Packets as programs see them: socket buffers, XDP buffers, the modelled network, pcap files."""
from .net import NetDevice, Network, Route, Socket, TunnelKey
from .skbuff import SkBuff
from .xdpbuff import XdpBuff

__all__ = ["NetDevice", "Network", "Route", "SkBuff", "Socket", "TunnelKey", "XdpBuff"]
