"""Modelled sockets (ebee.sockets) and the sockops + sk_msg bypass example
(examples/c/sockops_bypass.c): bytes reach the peer through the sk_msg redirect, in
ebee's loopback stack and in the kernel (a cgroup v2 directory and a network namespace
the test makes), with the same counters and map contents; SOCKMAP/SOCKHASH take
modelled sockets with the errnos Linux gives real ones."""
from __future__ import annotations

import errno
import os
import shutil
import socket
import struct
import subprocess
import uuid

import pytest

import ebee
from ebee.maps import Map, MapError
from ebee.sockets import STATE_NAMES
from ebee.testrun import sockets
from ebee.uapi import BPF_ANY, BPF_EXIST, BPF_NOEXIST, MapType

from kernel_helpers import EXAMPLES

EXAMPLE = EXAMPLES / "sockops_bypass.o"
STATS = ("active_established", "passive_established", "inserted", "insert_failed",
         "state_changes", "msgs", "msg_bytes", "redirected", "redirected_bytes", "passed",
         "first_msg_linear", "last_insert_err")
PING, PONG = b"hello world", b"x" * 10000


def _bss(raw: bytes) -> tuple[dict[str, int], list[int]]:
    """(stats, calls) from the example's .bss: calls[32] then struct stats."""
    calls = list(struct.unpack_from("<32I", raw, 0))
    vals = struct.unpack_from("<11Qq", raw, 128)
    return dict(zip(STATS, vals)), calls


def _key(raw: bytes) -> tuple[str, str, int, int]:
    sip, dip = socket.inet_ntoa(raw[0:4]), socket.inet_ntoa(raw[4:8])
    sport, dport = struct.unpack_from("<II", raw, 8)
    return sip, dip, sport, dport


def _ebee_run(cgroup: str = "/mesh", msg_prog: bool = True):
    obj = ebee.load(EXAMPLE)
    st = sockets.stack()
    st.attach_sockops(obj.programs["bypass_sockops"], cgroup)
    hmap = obj.maps["sock_ops_map"]
    if msg_prog:
        sockets.attach_sk_msg(obj.programs["bypass_sk_msg"], hmap)
    srv = st.socket(cgroup="/mesh")
    st.bind(srv, ("127.0.0.1", 8080))
    st.listen(srv)
    cli = st.socket(cgroup="/mesh")
    st.connect(cli, ("127.0.0.1", 8080))
    peer = st.accept(srv)
    keys = sorted(_key(bytes(k)) for k in hmap.keys())
    st.send(cli, PING)
    got_ping = list(peer.rx)
    st.recv(peer)
    st.send(peer, PONG)
    got_pong = st.recv(cli)
    ports = (cli.local[1], srv.local[1])
    for s in (cli, peer, srv):
        st.close(s)
    left = len(hmap)
    raw = bytes(obj.maps[".bss"].lookup(0))
    return obj, st, keys, ports, got_ping, got_pong, left, raw, (cli, peer)


def test_bypass_redirects_to_the_peer():
    obj, st, keys, (cport, sport), got_ping, got_pong, left, raw, (cli, peer) = _ebee_run()
    assert [(d.data, d.via, d.src_cookie) for d in got_ping] == [(PING, "redirect", cli.cookie)]
    assert got_pong == PONG
    assert cli.sent == [(PING, f"redirect ingress {peer.cookie}")]
    # the SOCKHASH held both ends under their 4-tuples until they closed
    assert keys == sorted([("127.0.0.1", "127.0.0.1", cport, sport),
                           ("127.0.0.1", "127.0.0.1", sport, cport)])
    assert left == 0
    stats, calls = _bss(raw)
    assert stats["inserted"] == 2 and stats["redirected"] == 2 and stats["passed"] == 0
    assert stats["redirected_bytes"] == len(PING) + len(PONG)
    # client FIN_WAIT1, FIN_WAIT2, CLOSE; server SYN_RECV->ESTABLISHED, CLOSE_WAIT, LAST_ACK,
    # CLOSE (the child asked for STATE_CB while still SYN_RECV)
    assert stats["state_changes"] == 7
    assert {i: n for i, n in enumerate(calls) if n} == st.calls


def test_without_sk_msg_bytes_take_tcp():
    _, st, keys, _, got_ping, got_pong, left, raw, _ = _ebee_run(msg_prog=False)
    assert [d.via for d in got_ping] == ["tcp"] and got_pong == PONG
    stats, _ = _bss(raw)
    assert stats["inserted"] == 2 and stats["msgs"] == 0 and len(keys) == 2


def test_other_cgroups_run_no_sockops():
    _, st, keys, _, got_ping, _, _, raw, _ = _ebee_run(cgroup="/elsewhere")
    assert keys == [] and st.calls == {} and [d.via for d in got_ping] == ["tcp"]
    assert _bss(raw)[0]["inserted"] == 0


def test_states_and_log():
    st = sockets.stack()
    srv = st.socket()
    st.bind(srv, ("127.0.0.1", 9000))
    st.listen(srv)
    c = st.socket()
    st.connect(c, ("127.0.0.1", 9000))
    p = st.accept(srv)
    assert STATE_NAMES[c.state] == STATE_NAMES[p.state] == "TCP_ESTABLISHED"
    assert (c.remote[1], p.remote[1]) == (9000, c.local[1])
    with pytest.raises(ConnectionRefusedError):
        st.connect(st.socket(), ("127.0.0.1", 9001))
    st.close(c)
    assert STATE_NAMES[p.state] == "TCP_CLOSE_WAIT"
    with pytest.raises(BrokenPipeError):
        st.send(c, b"late")


# --- SOCKMAP / SOCKHASH insertion rules, against the kernel's for real sockets -----------

def _modelled(kind: str, st):
    if kind == "tcp_unconnected":
        return st.socket()
    if kind == "tcp_listen":
        s = st.socket()
        st.bind(s, ("127.0.0.1", 0))
        st.listen(s)
        return s
    if kind == "tcp_established":
        srv = _modelled("tcp_listen", st)
        c = st.socket()
        st.connect(c, ("127.0.0.1", srv.local[1]))
        return c
    if kind == "udp_unbound":
        return st.socket(type=socket.SOCK_DGRAM)
    s = st.socket(type=socket.SOCK_DGRAM)
    st.bind(s, ("127.0.0.1", 0))
    return s


def _real(kind: str, keep: list):
    if kind.startswith("udp"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if kind == "udp_bound":
            s.bind(("127.0.0.1", 0))
        keep.append(s)
        return s
    s = socket.socket()
    keep.append(s)
    if kind == "tcp_listen":
        s.bind(("127.0.0.1", 0))
        s.listen()
    elif kind == "tcp_established":
        s.bind(("127.0.0.1", 0))
        s.listen()
        c = socket.socket()
        c.connect(s.getsockname())
        keep.append(c)
        keep.append(s.accept()[0])
        return c
    return s


KINDS = ("tcp_unconnected", "tcp_listen", "tcp_established", "udp_unbound", "udp_bound")
# (key index, flags) in order, each on a fresh map with one socket of the kind
STEPS = ((0, BPF_ANY), (0, BPF_NOEXIST), (0, BPF_EXIST), (1, BPF_EXIST), (1, 4), (9, BPF_ANY))


def _errno_of(fn) -> int:
    try:
        fn()
        return 0
    except (MapError, OSError) as e:
        return e.errno


def _outcomes(make_map, sock) -> list[int]:
    m = make_map()
    out = []
    for idx, flags in STEPS:
        key = struct.pack("<I" if m.key_size == 4 else "<Q", idx)
        out.append(_errno_of(lambda: m.update(key, sock, flags)))
    out.append(_errno_of(lambda: m.delete(struct.pack("<I" if m.key_size == 4 else "<Q", 3))))
    return out


def _ebee_outcomes(mt, kind):
    st = sockets.stack()
    sock = _modelled(kind, st)
    return _outcomes(lambda: Map(mt, 4 if mt is MapType.SOCKMAP else 8, 8, 4), sock)


def test_modelled_insertion_rules():
    est = _ebee_outcomes(MapType.SOCKHASH, "tcp_established")
    assert est == [0, errno.EEXIST, 0, errno.ENOENT, errno.EINVAL, 0, errno.ENOENT]
    assert _ebee_outcomes(MapType.SOCKMAP, "tcp_unconnected")[0] == errno.EOPNOTSUPP
    assert _ebee_outcomes(MapType.SOCKMAP, "tcp_established")[5] == errno.E2BIG


@pytest.mark.kernel
@pytest.mark.parametrize("mt", [MapType.SOCKMAP, MapType.SOCKHASH])
def test_insertion_rules_match_the_kernel(kernel, mt):
    from ebee.kernel.maps import KernelMap
    keep: list = []
    try:
        for kind in KINDS:
            real = _real(kind, keep)
            ks = _outcomes(lambda: KernelMap(mt, 4 if mt is MapType.SOCKMAP else 8, 8, 4),
                           struct.pack("<Q", real.fileno()))
            assert _ebee_outcomes(mt, kind) == ks, kind
    finally:
        for s in keep:
            s.close()


def test_a_socket_joins_one_map_with_an_sk_msg_program():
    obj = ebee.load(EXAMPLE)
    st = sockets.stack()
    hmap = obj.maps["sock_ops_map"]
    sockets.attach_sk_msg(obj.programs["bypass_sk_msg"], hmap)
    c = _modelled("tcp_established", st)
    k1, k2 = bytes(16), b"\1" + bytes(15)
    assert [_errno_of(lambda: hmap.update(k, c)) for k in (k1, k2, k1)] == \
        [0, errno.EBUSY, errno.EBUSY]
    hmap.delete(k1)
    assert _errno_of(lambda: hmap.update(k2, c)) == 0


@pytest.mark.kernel
def test_a_socket_joins_one_map_with_an_sk_msg_program_kernel(kernel):
    from ebee.kernel.links import Link
    from ebee.uapi import AttachType
    obj = ebee.load(EXAMPLE)
    keep: list = []
    with obj.load_kernel() as k:
        m = k.maps["sock_ops_map"]
        link = Link.create(k.programs["bypass_sk_msg"].fd, m.fd, AttachType.SK_MSG_VERDICT)
        try:
            c = _real("tcp_established", keep)
            k1, k2 = bytes(16), b"\1" + bytes(15)
            assert [_errno_of(lambda: m.update(kk, c.fileno())) for kk in (k1, k2, k1)] == \
                [0, errno.EBUSY, errno.EBUSY]
            m.delete(k1)
            assert _errno_of(lambda: m.update(k2, c.fileno())) == 0
        finally:
            link.detach()
            for s in keep:
                s.close()


# --- the kernel: the same example on real loopback connections ---------------------------

def _cgroup2_root() -> str | None:
    from ebee.kernel.attach.cgroup import cgroup2_root
    return cgroup2_root()


import contextlib  # noqa: E402


@contextlib.contextmanager
def _cgroup_and_netns():
    """A cgroup v2 directory (its path yielded) that this process is moved into, and a
    network namespace with loopback up that the body runs in; both removed after."""
    from ebee.kernel import netns
    root, ip = _cgroup2_root(), shutil.which("ip")
    if root is None or ip is None:
        pytest.skip("needs a cgroup v2 hierarchy and iproute2")
    tag = uuid.uuid4().hex[:6]
    cg, ns = os.path.join(root, f"ebee-sk{tag}"), f"ebee-sk{tag}"
    home = next(ln.split("::", 1)[1].strip() for ln in open("/proc/self/cgroup")
                if ln.startswith("0::"))
    os.mkdir(cg)
    try:
        subprocess.run([ip, "netns", "add", ns], check=True, capture_output=True)
        try:
            subprocess.run([ip, "-n", ns, "link", "set", "lo", "up"], check=True)
            entered: list = []

            @contextlib.contextmanager
            def inside():
                with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
                try:
                    with netns.enter(ns):
                        yield
                finally:
                    with open(os.path.join(root, home.lstrip("/"), "cgroup.procs"), "w") as f:
                        f.write(str(os.getpid()))
            entered.append(inside)
            yield cg, inside
        finally:
            subprocess.run([ip, "netns", "del", ns], capture_output=True)
    finally:
        os.rmdir(cg)


@pytest.mark.kernel
def test_bypass_in_the_kernel_matches_ebee(kernel):
    from ebee.kernel.links import Link
    from ebee.uapi import AttachType
    obj = ebee.load(EXAMPLE)
    with _cgroup_and_netns() as (cg, inside), obj.load_kernel() as k:
        k.attach("bypass_sockops", cg)
        m = k.maps["sock_ops_map"]
        link = Link.create(k.programs["bypass_sk_msg"].fd, m.fd, AttachType.SK_MSG_VERDICT)
        with inside():
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen()
            c = socket.socket()
            c.connect(srv.getsockname())
            s, _ = srv.accept()
            cport, sport = c.getsockname()[1], srv.getsockname()[1]
            kkeys = sorted(_key(bytes(x)) for x in m.keys())
            c.sendall(PING)
            kping = s.recv(100)
            s.sendall(PONG)
            got = b""
            while len(got) < len(PONG):
                got += c.recv(1 << 16)
            for x in (c, s, srv):
                x.close()
        kraw = bytes(k.maps[".bss"].lookup(0))
        link.detach()
    assert kping == PING and got == PONG
    assert kkeys == sorted([("127.0.0.1", "127.0.0.1", cport, sport),
                            ("127.0.0.1", "127.0.0.1", sport, cport)])
    _, st, ekeys, (ecport, esport), _, _, _, eraw, _ = _ebee_run()
    assert ekeys == sorted([("127.0.0.1", "127.0.0.1", ecport, esport),
                            ("127.0.0.1", "127.0.0.1", esport, ecport)])
    kstats, kcalls = _bss(kraw)
    estats, ecalls = _bss(eraw)
    assert kstats["redirected"] == 2 and kstats["redirected_bytes"] == len(PING) + len(PONG)
    assert estats == kstats
    assert ecalls == kcalls
    assert kraw == eraw


# --- sockops callbacks in order ------------------------------------------------------------

LOG = "tests/data/sockets/sockops_log.o"


def _events(obj, sport: int) -> list[tuple]:
    b = obj.bss
    out = []
    for e in list(b.events)[:b.nevents]:
        role = {sport: "S"}
        out.append((e.op, e.args0, e.args1, e.state, e.is_fullsock,
                    role.get(e.local_port, "C"), role.get(e.remote_port, "C"), e.cb_flags,
                    e.sock_map_ret, e.snd_cwnd, e.has_sk))
    return out


def _log_ebee():
    obj = ebee.load(LOG)
    st = sockets.stack()
    st.attach_sockops(obj.programs["sockops_log"], "/t")
    obj.bss.server_port = 8080
    srv = st.socket(cgroup="/t")
    st.bind(srv, ("127.0.0.1", 8080))
    st.listen(srv)
    c = st.socket(cgroup="/t")
    st.connect(c, ("127.0.0.1", 8080))
    s = st.accept(srv)
    for x in (c, s, srv):
        st.close(x)
    return _events(obj, 8080)


def test_sockops_callbacks_in_ebee():
    ev = _log_ebee()
    ops = [e[0] for e in ev]
    assert ops[0] == 11 and 4 in ops and 5 in ops          # listen, active, passive
    assert ops.index(3) < ops.index(4) < ops.index(5)      # connect before established
    # bpf_sock_map_update: fine at the established and listen callbacks, EOPNOTSUPP
    # elsewhere (sock_map_op_okay)
    assert {e[8] for e in ev if e[0] in (4, 5, 11)} == {0}
    # the child inherits the listener's callback flags; both ends see their close
    assert [(e[1], e[2]) for e in ev if e[0] == 10] == [
        (3, 1), (1, 4), (1, 8), (8, 9), (4, 5), (5, 7), (9, 7), (10, 7)]
    assert {e[8] for e in ev if e[0] == 1} == {-errno.EOPNOTSUPP}


@pytest.mark.kernel
def test_sockops_callbacks_match_the_kernel(kernel):
    expect = _log_ebee()
    obj = ebee.load(LOG)
    with _cgroup_and_netns() as (cg, inside), obj.load_kernel() as k:
        k.attach("sockops_log", cg)
        with inside():
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            sport = srv.getsockname()[1]
            obj.bss.server_port = sport
            k.maps[".bss"].update(0, bytes(obj.maps[".bss"].lookup(0)))
            srv.listen()
            c = socket.socket()
            c.connect(srv.getsockname())
            s, _ = srv.accept()
            for x in (c, s, srv):
                x.close()
        obj.maps[".bss"].update(0, bytes(k.maps[".bss"].lookup(0)))
    got = _events(obj, sport)
    assert got == expect


# --- sk_msg verdicts: apply_bytes, cork_bytes, pull_data, drop, redirects -----------------

MODES = "tests/data/sockets/msg_modes.o"
PASS, DROP, REDIRECT, APPLY, CORK, PULL, REDIRECT_EGRESS = range(7)
D10 = b"0123456789"
#: (name, mode, arg, arg2, sends): each scenario on a fresh connection whose two ends are
#: socks[0] (the sender) and socks[1] (its peer)
SCENARIOS = [
    ("pass", PASS, 0, 0, [D10]),
    ("drop", DROP, 0, 0, [D10, D10]),
    ("redirect to the peer's ingress", REDIRECT, 1, 0, [D10]),
    ("redirect to our own ingress", REDIRECT, 0, 0, [D10]),
    ("redirect out of the peer", REDIRECT_EGRESS, 1, 0, [D10]),
    ("redirect to an empty slot", REDIRECT, 3, 0, [D10]),
    ("apply_bytes", APPLY, 25, 0, [D10, D10, D10]),
    ("apply_bytes inside one message", APPLY, 4, 0, [D10]),
    ("cork_bytes", CORK, 25, 0, [D10, D10, D10]),
    ("pull_data", PULL, 2, 6, [D10]),
    ("pull_data past the end", PULL, 2, 20, [D10]),
    ("pull_data, empty window", PULL, 6, 6, [D10]),
]


def _runs(obj) -> list[tuple[int, int, int, int]]:
    b = obj.bss
    return [(r.size, r.linear, r.ret, r.first) for r in list(b.runs)[:b.nruns]]


def _scenario_ebee(obj, mode, arg, arg2, sends):
    st = sockets.stack()
    m = obj.maps["socks"]
    sockets.attach_sk_msg(obj.programs["msg_modes"], m)
    srv = st.socket()
    st.bind(srv, ("127.0.0.1", 7000))
    st.listen(srv)
    c = st.socket()
    st.connect(c, ("127.0.0.1", 7000))
    p = st.accept(srv)
    m.update(0, c)
    m.update(1, p)
    obj.bss.mode, obj.bss.arg, obj.bss.arg2, obj.bss.nruns = mode, arg, arg2, 0
    out = []
    for data in sends:
        try:
            r = st.send(c, data)
        except OSError as e:
            r = -e.errno
        out.append((r, st.recv(p), st.recv(c)))
    return out, _runs(obj)


def _drain(s, want: int) -> bytes:
    """What arrived: waits (boundedly) for the ``want`` bytes ebee delivered, then takes
    whatever else is already there."""
    import select
    got = b""
    while select.select([s], [], [], 1.0 if len(got) < want else 0)[0]:
        b = s.recv(1 << 16)
        if not b:
            break
        got += b
    return got


def test_msg_verdicts_in_ebee():
    obj = ebee.load(MODES)
    res = {name: _scenario_ebee(obj, mo, a, a2, sends) for name, mo, a, a2, sends in SCENARIOS}
    assert res["pass"] == ([(10, D10, b"")], [(10, 10, 0, ord("0"))])
    assert res["drop"][0] == [(-errno.EACCES, b"", b"")] * 2
    assert res["redirect to the peer's ingress"][0] == [(10, D10, b"")]
    assert res["redirect to our own ingress"][0] == [(10, b"", D10)]
    assert res["redirect out of the peer"][0] == [(10, b"", D10)]
    # apply_bytes 25 over three 10-byte sends: the verdict holds for 25 bytes, then the
    # program runs again on the last 5
    assert [r[0] for r in res["apply_bytes"][1]] == [10, 5]
    # apply_bytes 4 on 10 bytes: 4 go, the program runs on the 6 left (and applies 4), 2
    assert [r[0] for r in res["apply_bytes inside one message"][1]] == [10, 6, 2]
    # a drop verdict sticks: the second send is dropped without a run
    assert len(res["drop"][1]) == 1
    # cork_bytes 25: nothing goes until 25 bytes are there, then one run on all 30
    assert res["cork_bytes"][0] == [(10, b"", b""), (10, b"", b""), (10, D10 * 3, b"")]
    assert [r[0] for r in res["cork_bytes"][1]] == [10, 30]
    assert res["pull_data"][1] == [(10, 4, 0, ord("2"))]
    assert res["pull_data past the end"][1] == [(10, 10, -errno.EINVAL, ord("0"))]


@pytest.mark.kernel
def test_msg_verdicts_match_the_kernel(kernel):
    from ebee.kernel.links import Link
    from ebee.uapi import AttachType
    ours = ebee.load(MODES)
    expect = {name: _scenario_ebee(ours, mo, a, a2, sends)
              for name, mo, a, a2, sends in SCENARIOS}
    obj = ebee.load(MODES)
    got = {}
    with obj.load_kernel() as k:
        m, bss = k.maps["socks"], k.maps[".bss"]
        link = Link.create(k.programs["msg_modes"].fd, m.fd, AttachType.SK_MSG_VERDICT)
        try:
            for name, mode, arg, arg2, sends in SCENARIOS:
                srv = socket.socket()
                srv.bind(("127.0.0.1", 0))
                srv.listen()
                c = socket.socket()
                c.connect(srv.getsockname())
                p, _ = srv.accept()
                m.update(struct.pack("<I", 0), struct.pack("<Q", c.fileno()))
                m.update(struct.pack("<I", 1), struct.pack("<Q", p.fileno()))
                obj.bss.mode, obj.bss.arg, obj.bss.arg2, obj.bss.nruns = mode, arg, arg2, 0
                bss.update(0, bytes(obj.maps[".bss"].lookup(0)))
                out = []
                for i, data in enumerate(sends):
                    try:
                        r = c.send(data)
                    except OSError as e:
                        r = -e.errno
                    _, to_p, to_c = expect[name][0][i]
                    out.append((r, _drain(p, len(to_p)), _drain(c, len(to_c))))
                obj.maps[".bss"].update(0, bytes(bss.lookup(0)))
                got[name] = (out, _runs(obj))
                for s in (c, p, srv):
                    s.close()
        finally:
            link.detach()
    assert got == expect


# --- bpf_map_update_elem with a socket pointer (tc, after bpf_sk_lookup_tcp) --------------

TCMAP = "tests/data/sockets/tc_sockmap.o"
PKT = bytes(64)
#: (what to look up, slot, flags)
TC_STEPS = [("established", 0, BPF_ANY), ("listener", 1, BPF_ANY),
            ("established", 0, BPF_NOEXIST), ("listener", 1, BPF_EXIST), ("established", 9, 0),
            ("nothing", 2, 0), ("established", 2, 7)]


def _tc_set(obj, tup, slot, flags) -> None:
    b = obj.bss
    (sa, sp), (da, dp) = tup
    b.saddr = struct.unpack("<I", socket.inet_aton(sa))[0]
    b.daddr = struct.unpack("<I", socket.inet_aton(da))[0]
    b.sport, b.dport = socket.htons(sp), socket.htons(dp)
    b.slot, b.flags, b.found, b.update_ret = slot, flags, 0, 0


def test_tc_stores_a_looked_up_socket_in_ebee():
    from ebee.packet import Network
    net = Network()
    lst = net.add_socket(2, 6, ("127.0.0.1", 7000))
    est = net.add_socket(2, 6, ("127.0.0.1", 7000), ("127.0.0.1", 40001), state=1)
    obj = ebee.load(TCMAP)
    res = _tc_run_ebee(obj, net, lst, est)
    assert res == [(1, 0), (1, 0), (1, -errno.EEXIST), (1, 0), (1, -errno.E2BIG), (0, 0),
                   (1, -errno.EINVAL)]
    # user space reads the socket's cookie back
    assert bytes(obj.maps["socks"].lookup(0)) == est.cookie.to_bytes(8, "little")
    assert bytes(obj.maps["socks"].lookup(1)) == lst.cookie.to_bytes(8, "little")
    net.close()


def _tc_tuples(lport: int, cport: int):
    return {"established": (("127.0.0.1", cport), ("127.0.0.1", lport)),
            "listener": (("127.0.0.1", 1), ("127.0.0.1", lport)),
            "nothing": (("127.0.0.1", 1), ("127.0.0.1", 9))}


def _tc_run_ebee(obj, net, lst, est):
    from ebee import testrun
    tups = _tc_tuples(lst.local[1], est.remote[1])
    out = []
    for what, slot, flags in TC_STEPS:
        _tc_set(obj, tups[what], slot, flags)
        testrun.run(obj.programs["tc_sockmap"], PKT, net=net)
        out.append((obj.bss.found, obj.bss.update_ret))
    return out


@pytest.mark.kernel
def test_tc_stores_a_looked_up_socket_like_the_kernel(kernel):
    from ebee.packet import Network
    net = Network()
    lst = net.add_socket(2, 6, ("127.0.0.1", 7000))
    est = net.add_socket(2, 6, ("127.0.0.1", 7000), ("127.0.0.1", 40001), state=1)
    expect = _tc_run_ebee(ebee.load(TCMAP), net, lst, est)
    net.close()
    obj = ebee.load(TCMAP)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    c = socket.socket()
    c.connect(srv.getsockname())
    s, _ = srv.accept()
    tups = _tc_tuples(srv.getsockname()[1], c.getsockname()[1])
    got = []
    try:
        with obj.load_kernel() as k:
            bss = k.maps[".bss"]
            for what, slot, flags in TC_STEPS:
                _tc_set(obj, tups[what], slot, flags)
                bss.update(0, bytes(obj.maps[".bss"].lookup(0)))
                k.programs["tc_sockmap"].test_run(PKT)
                obj.maps[".bss"].update(0, bytes(bss.lookup(0)))
                got.append((obj.bss.found, obj.bss.update_ret))
    finally:
        for x in (c, s, srv):
            x.close()
    assert got == expect


# --- sk_skb verdicts on receive -----------------------------------------------------------

SKB = "tests/data/sockets/skb_modes.o"
SKB_SCENARIOS = [("pass", 0, 0), ("drop", 1, 0), ("redirect to the sender's ingress", 2, 0),
                 ("redirect to our own ingress", 2, 1), ("redirect out of us", 3, 1),
                 ("redirect to an empty slot", 2, 3)]


def _skb_runs(obj, sport: int) -> list[tuple]:
    b = obj.bss
    return [(r.len, r.first, r.local_port == sport, socket.ntohs(r.remote_port) != sport,
             r.verdict) for r in list(b.runs)[:b.nruns]]


def _skb_ebee() -> dict:
    out = {}
    for name, mode, arg in SKB_SCENARIOS:
        obj = ebee.load(SKB)
        st = sockets.stack()
        m = obj.maps["socks"]
        sockets.attach_sk_skb(obj.programs["skb_modes"], m)
        srv = st.socket()
        st.bind(srv, ("127.0.0.1", 7100))
        st.listen(srv)
        c = st.socket()
        st.connect(c, ("127.0.0.1", 7100))
        p = st.accept(srv)
        m.update(0, c)
        m.update(1, p)
        obj.bss.mode, obj.bss.arg, obj.bss.only_port = mode, arg, 7100
        sent = st.send(c, D10)
        out[name] = (sent, st.recv(p), st.recv(c), _skb_runs(obj, 7100))
    return out


def test_skb_verdicts_in_ebee():
    r = _skb_ebee()
    assert r["pass"][:3] == (10, D10, b"")
    assert r["drop"][:3] == (10, b"", b"")
    assert r["redirect to the sender's ingress"][:3] == (10, b"", D10)
    assert r["redirect to our own ingress"][:3] == (10, D10, b"")
    assert r["redirect out of us"][:3] == (10, b"", D10)
    assert r["redirect to an empty slot"][:3] == (10, b"", b"")
    assert r["pass"][3] == [(10, ord("0"), True, True, 1)]


@pytest.mark.kernel
def test_skb_verdicts_match_the_kernel(kernel):
    from ebee.kernel.links import Link
    from ebee.uapi import AttachType
    expect = _skb_ebee()
    got = {}
    for name, mode, arg in SKB_SCENARIOS:
        obj = ebee.load(SKB)
        with obj.load_kernel() as k:
            m, bss = k.maps["socks"], k.maps[".bss"]
            link = Link.create(k.programs["skb_modes"].fd, m.fd, AttachType.SK_SKB_VERDICT)
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen()
            sport = srv.getsockname()[1]
            c = socket.socket()
            c.connect(srv.getsockname())
            p, _ = srv.accept()
            try:
                m.update(struct.pack("<I", 0), struct.pack("<Q", c.fileno()))
                m.update(struct.pack("<I", 1), struct.pack("<Q", p.fileno()))
                obj.bss.mode, obj.bss.arg, obj.bss.only_port = mode, arg, sport
                bss.update(0, bytes(obj.maps[".bss"].lookup(0)))
                sent = c.send(D10)
                _, to_p, to_c, _ = expect[name]
                rp, rc = _drain(p, len(to_p)), _drain(c, len(to_c))
                obj.maps[".bss"].update(0, bytes(bss.lookup(0)))
                got[name] = (sent, rp, rc, _skb_runs(obj, sport))
            finally:
                link.detach()
                for x in (c, p, srv):
                    x.close()

    def no_window(r):
        return {n: (a, b, c, [(x[0],) + x[2:] for x in runs]) for n, (a, b, c, runs) in r.items()}
    assert no_window(got) == no_window(expect)
    # a known difference (docs/sockets.md): on loopback the kernel's skb holds the
    # payload in page fragments, so data..data_end is empty; ebee's is linear
    assert {x[1] for v in got.values() for x in v[3]} == {0xFFFF}
    assert {x[1] for v in expect.values() for x in v[3]} == {ord("0")}
