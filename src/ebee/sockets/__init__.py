"""Modelled sockets: TCP and UDP sockets with 4-tuples, states, cgroups and queues
(:class:`Socket`), and a loopback stack (:class:`Stack`) that calls sockops and sk_msg
programs where Linux does.  See docs/sockets.md."""
from .socket import STATE_NAMES, Delivery, Socket, by_addr
from .stack import (Event, MsgCall, Psock, SkbCall, SockOpsCall, Stack, link_psock, redirect_allowed,
                    state_allowed, suitable)

__all__ = ["Delivery", "Event", "MsgCall", "Psock", "STATE_NAMES", "SkbCall", "SockOpsCall", "Socket",
           "Stack", "by_addr", "link_psock", "redirect_allowed", "state_allowed", "suitable"]
