"""sockops and sk_msg programs on ebee's modelled sockets (``ebee.sockets``).

::

    obj = ebee.load("sockops_bypass.o")
    st = sockets.stack()
    st.attach_sockops(obj.programs["bypass_sockops"], "/mesh")
    sockets.attach_sk_msg(obj.programs["bypass_sk_msg"], obj.maps["sock_ops_map"])
    srv = st.socket(cgroup="/mesh"); st.bind(srv, ("127.0.0.1", 8080)); st.listen(srv)
    cli = st.socket(cgroup="/mesh"); st.connect(cli, ("127.0.0.1", 8080))
    peer = st.accept(srv)
    st.send(cli, b"hi"); peer.rx   # [Delivery(b"hi", cli.cookie, "redirect")]

Each program is verified (when its object asks) and compiled once, then run by the
stack on the context it lays out; helpers reach the socket through the run's context
object.  A socket's cgroup path is also entered in the helpers' cgroup tree, so
``bpf_sk_cgroup_id`` and friends see it.
"""
from __future__ import annotations

from typing import Any

from ..engines import Machine, select_engine
from ..helpers import RUNTIME
from ..helpers.cgroups import set_socket_cgroup, tree
from ..maps import SockHash, SockMap
from ..packet.net import Network
from ..packet.skbuff import SkBuff
from ..runtime import RunContext
from ..sockets import SkbCall, Socket, Stack
from ..uapi import AttachType as A, ProgType as P


class ProgramRunner:
    """Runs programs for a :class:`Stack`: compiled once per program, one machine."""

    def __init__(self, engine: str | None = None):
        self.engine = engine
        self.machine = Machine()
        self.net = Network()
        self._bound: dict[int, tuple[Any, Any]] = {}
        self.runs: dict[str, int] = {}

    def _compiled(self, prog: Any) -> Any:
        b = self._bound.get(id(prog))
        if b is None:
            if prog.type not in (P.SOCK_OPS, P.SK_MSG, P.SK_SKB):
                raise ValueError(f"{prog.name}: a {prog.type.name.lower()} program does not "
                                 f"run on socket events")
            if getattr(prog, "btf", None) is not None:
                self.machine.btf = prog.btf
            exe = prog.executable(evidence=self.engine != "interp")
            bound = select_engine(self.engine, exe.evidence).compile(
                exe.insns, exe.evidence).bind(self.machine, RUNTIME)
            b = self._bound[id(prog)] = (prog, bound)
        return b[1]

    def __call__(self, prog: Any, ctx_addr: int, ctx_obj: Any) -> int:
        bound = self._compiled(prog)
        self.machine.progctx = RunContext(self.net, prog.type, ctx_obj)
        try:
            self.runs[prog.name] = self.runs.get(prog.name, 0) + 1
            return bound.run(ctx_addr).retval
        finally:
            self.machine.progctx = None

    def skb(self, prog: Any, call: SkbCall) -> int:
        """An sk_skb verdict run: an skb of the received bytes (``data`` at the TCP
        payload, as tcp_read_skb hands it over) owned by the receiving socket."""
        bound = self._compiled(prog)
        skb = SkBuff(call.data, dev=self.net.loopback)
        skb.sk_ptr = call.sock.addr
        self.machine.progctx = RunContext(self.net, prog.type, call)
        try:
            self.runs[prog.name] = self.runs.get(prog.name, 0) + 1
            return bound.run(skb.addr).retval
        finally:
            self.machine.progctx = None
            skb.close()

    def close(self) -> None:
        self.machine.close()


class ProgramStack(Stack):
    """A :class:`Stack` whose programs run in ebee; sockets enter the helpers' cgroup
    tree."""

    def __init__(self, engine: str | None = None):
        super().__init__(ProgramRunner(engine))

    def attach_sockops(self, prog: Any, cgroup: str) -> None:
        if prog.type is not P.SOCK_OPS:
            raise ValueError(f"{prog.name} is not a sockops program")
        super().attach_sockops(prog, cgroup)

    def socket(self, *a, **kw) -> Socket:
        s = super().socket(*a, **kw)
        if s.cgroup != "/":
            cg = tree().by_path(s.cgroup) or tree().add(s.cgroup)
            set_socket_cgroup(s.addr, cg.id)
        return s

    def close_all(self) -> None:
        super().close_all()
        self.runner.close()


def stack(engine: str | None = None) -> ProgramStack:
    """A modelled loopback stack running sockops/sk_msg programs with ``engine``."""
    return ProgramStack(engine)


def attach_sk_msg(prog: Any, sockmap: SockMap | SockHash) -> None:
    """BPF_SK_MSG_VERDICT: sockets that join ``sockmap`` from now on run ``prog`` on every
    send (those already in it keep what they had, as in Linux)."""
    if prog.type is not P.SK_MSG:
        raise ValueError(f"{prog.name} is not an sk_msg program")
    if not isinstance(sockmap, (SockMap, SockHash)):
        raise ValueError("sk_msg programs attach to a SOCKMAP or SOCKHASH")
    sockmap.progs["msg_verdict"] = prog


#: the sk_skb attach types and the map's program slots they fill
_SKB_SLOTS = {A.SK_SKB_VERDICT: "skb_verdict", A.SK_SKB_STREAM_VERDICT: "stream_verdict",
              A.SK_SKB_STREAM_PARSER: "stream_parser"}


def attach_sk_skb(prog: Any, sockmap: SockMap | SockHash,
                  attach_type: A | None = None) -> None:
    """Attach an sk_skb program to ``sockmap`` for the sockets that join it from now on:
    BPF_SK_SKB_VERDICT (a run per received segment), BPF_SK_SKB_STREAM_PARSER and
    BPF_SK_SKB_STREAM_VERDICT (with both, strparser: the parser frames the byte stream,
    the verdict runs once per message; a stream verdict alone acts as a plain verdict).
    ``attach_type`` defaults to the program's (its SEC()), else BPF_SK_SKB_VERDICT."""
    if prog.type is not P.SK_SKB:
        raise ValueError(f"{prog.name} is not an sk_skb program")
    if not isinstance(sockmap, (SockMap, SockHash)):
        raise ValueError("sk_skb programs attach to a SOCKMAP or SOCKHASH")
    at = attach_type if attach_type is not None else prog.expected_attach_type
    slot = _SKB_SLOTS.get(at, "skb_verdict") if at else "skb_verdict"
    other = {"skb_verdict": "stream_verdict", "stream_verdict": "skb_verdict"}.get(slot)
    if other is not None and sockmap.progs.get(other) is not None:
        # sock_map_prog_link_lookup(): one kind of verdict per map
        raise ValueError(f"EBUSY: the map has a {other.replace('_', ' ')} program")
    sockmap.progs[slot] = prog
