"""Per-run state: where a packet was redirected, what a run printed.

Linux keeps this per CPU (``bpf_redirect_info``) for the program running on it;
ebee keeps one :class:`RunContext` on the :class:`~ebee.runtime.cpu.Cpu` for the
duration of a test run, and helpers record their outcome there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Redirect:
    """Where a program asked for the packet to go (bpf_redirect*, XDP_TX)."""
    kind: str                     # "ifindex", "map", "tx", "clone", "peer", "neigh"
    ifindex: int | None = None
    map_id: int | None = None
    map_name: str | None = None
    key: int | None = None
    flags: int = 0
    ingress: bool = False

    def describe(self) -> str:
        if self.kind == "map":
            return f"map {self.map_name or self.map_id}[{self.key}]"
        if self.kind == "tx":
            return "tx (same device)"
        d = f"ifindex {self.ifindex}"
        return d + (" ingress" if self.ingress else "") + (f" ({self.kind})" if self.kind != "ifindex" else "")


class RunContext:
    """What helpers reach through ``cpu.progctx`` while a test run is in progress.

    ``net`` is the modelled network the run sees (an ``ebee.packet.Network``: devices,
    routes, sockets) and ``ctx_obj`` the object behind the context pointer (an
    ``SkBuff``, ``XdpBuff``, ...); both are typed loosely because they live in the
    packet package, which sits beside this one, not below it.
    """

    def __init__(self, net: Any, prog_type: Any, ctx_obj: Any = None):
        self.net = net
        self.prog_type = prog_type
        self.ctx_obj = ctx_obj
        self.redirect: Redirect | None = None
        self.clones: list[Redirect] = []
        self.trace: list[str] = []
        # bpf_get_local_storage: the cgroup storage a test run allocates for each storage
        # map the program uses (map id -> address), fresh per run, kept across repeats
        self.local_storage: dict[int, int] = {}

    def reset(self) -> None:
        self.redirect = None
