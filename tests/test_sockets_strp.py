"""sk_skb stream parser + stream verdict (strparser) on ebee's modelled sockets, compared
with the kernel: the same object (tests/data/sockets/strp_modes.c) attached to a SOCKMAP,
byte sequences that split and merge messages across sends, and per send what each end
can read and SO_ERROR, per run what the parser and the verdict saw (len, first and last
byte, return) -- equal in both backends."""
from __future__ import annotations

import contextlib
import select
import shutil
import socket
import struct
import subprocess
import time
import uuid

import pytest

import ebee
from ebee.testrun import sockets

SO = "tests/data/sockets/strp_modes.o"
ALL, PREFIX, FIXED, NEED, ERROR = range(5)
V_PASS, V_DROP, V_REDIRECT = range(3)
EAGAIN = -11


def _msg(n: int, tag: int) -> bytes:
    """A PREFIX-mode message: its length in byte 0."""
    return bytes([n]) + bytes([tag]) * (n - 1)


# name: (parser mode, arg, verdict mode, verdict arg, sends)
SCENARIOS = {
    "whole sends": (ALL, 0, V_PASS, 0, [b"abcdef", b"ghij"]),
    "prefix, three in one send": (PREFIX, 0, V_PASS, 0, [_msg(4, 65) + _msg(3, 66) + _msg(5, 67)]),
    "prefix split across sends": (PREFIX, 0, V_PASS, 0,
                                  [_msg(6, 65)[:2], _msg(6, 65)[2:] + _msg(3, 66)[:1],
                                   _msg(3, 66)[1:]]),
    "fixed 4 over 10 + 2": (FIXED, 4, V_PASS, 0, [b"abcdefghij", b"kl"]),
    "need 5 bytes first": (NEED, 5, V_PASS, 0, [b"ab", b"cd", b"efgh", b"ij", b"klmno"]),
    "need 100 of 50 + 60": (NEED, 100, V_PASS, 0, [b"x" * 50, b"y" * 60]),
    "fixed 10, rest waits": (FIXED, 10, V_PASS, 0, [b"ab", b"cdef", b"ghijkl", b"mnop"]),
    "fixed 10, queued sends": (FIXED, 10, V_PASS, 0, [b"ab", b"cd", b"ef", b"ghijklmn"]),
    "parser error": (ERROR, 22, V_PASS, 0, [b"abc", b"def"]),
    "longer than rcvbuf": (FIXED, 131073, V_PASS, 0, [b"abc"]),
    "as long as rcvbuf": (FIXED, 131072, V_PASS, 0, [b"abc"]),
    "drop each message": (FIXED, 3, V_DROP, 0, [b"abcdefg", b"hi"]),
    "redirect to the sender": (FIXED, 3, V_REDIRECT, 0, [b"abcdefg", b"hi"]),
    "redirect to ourselves": (FIXED, 3, V_REDIRECT, 1, [b"abcdefg", b"hi"]),
    "redirect to an empty slot": (FIXED, 3, V_REDIRECT, 3, [b"abcdefg", b"hi"]),
}


def _runs(bss) -> tuple[list, list]:
    def rows(arr, n):
        return [(x.len, x.first, x.last, x.ret) for x in list(arr)[:n]]
    return rows(bss.parses, bss.nparse), rows(bss.verdicts, bss.nverdict)


def _set(obj, mode, arg, vmode, varg, port) -> None:
    b = obj.bss
    b.mode, b.arg, b.vmode, b.varg, b.only_port = mode, arg, vmode, varg, port


def _pair(st, port: int):
    """A listener on ``port``, a client connected to it and the accepted peer."""
    srv = st.socket()
    st.bind(srv, ("127.0.0.1", port))
    st.listen(srv)
    c = st.socket()
    st.connect(c, ("127.0.0.1", port))
    return c, st.accept(srv)


def _ebee(mode, arg, vmode, varg, sends):
    obj = ebee.load(SO)
    st = sockets.stack()
    m = obj.maps["socks"]
    sockets.attach_sk_skb(obj.programs["strp_parse"], m)
    sockets.attach_sk_skb(obj.programs["strp_verdict"], m)
    c, p = _pair(st, 7200)
    m.update(0, c)
    m.update(1, p)
    _set(obj, mode, arg, vmode, varg, 7200)

    def rd(s):
        try:
            return st.recv(s) or EAGAIN
        except BlockingIOError:
            return EAGAIN
    steps = []
    for d in sends:
        steps.append((st.send(c, d), rd(p), rd(c), st.so_error(p)))
    return steps, _runs(obj.bss), p.rx_dropped


def test_strparser_frames_messages_in_ebee():
    steps, (parses, verdicts), _ = _ebee(*SCENARIOS["prefix, three in one send"])
    # the kernel's head skb is the whole segment: every parse reads byte 0 (4)
    assert parses == [(12, 4, 67, 4)] * 3 and len(verdicts) == 3
    assert steps == [(12, _msg(4, 65) + _msg(3, 66) + _msg(5, 67), EAGAIN, 0)]
    steps, (parses, verdicts), _ = _ebee(*SCENARIOS["need 5 bytes first"])
    assert [s[1] for s in steps] == [EAGAIN, EAGAIN, b"abcde", b"fghij", b"klmno"]
    assert [v[0] for v in verdicts] == [8, 6, 5]


def test_strparser_errors_in_ebee():
    steps, (parses, verdicts), _ = _ebee(*SCENARIOS["parser error"])
    assert steps == [(3, EAGAIN, EAGAIN, 22), (3, EAGAIN, EAGAIN, 0)]
    assert verdicts == [] and len(parses) == 1       # stopped: the second send is not parsed
    steps, _, _ = _ebee(*SCENARIOS["longer than rcvbuf"])
    assert steps[0][3] == 90                          # EMSGSIZE
    steps, (_, v), dropped = _ebee(*SCENARIOS["drop each message"])
    assert dropped == 9 and len(v) == 3


def test_stream_parser_alone_is_no_strparser():
    """sock_map_link(): a parser without a stream verdict starts nothing."""
    obj = ebee.load(SO)
    st = sockets.stack()
    m = obj.maps["socks"]
    sockets.attach_sk_skb(obj.programs["strp_parse"], m)
    c, p = _pair(st, 7201)
    m.update(1, p)
    _set(obj, FIXED, 3, V_PASS, 0, 7201)
    st.send(c, b"abcdefg")
    assert st.recv(p) == b"abcdefg" and obj.bss.nparse == 0


def test_one_kind_of_verdict_per_map():
    obj = ebee.load(SO)
    m = obj.maps["socks"]
    sockets.attach_sk_skb(obj.programs["strp_verdict"], m)
    from ebee.uapi import AttachType
    with pytest.raises(ValueError, match="EBUSY"):
        sockets.attach_sk_skb(obj.programs["strp_verdict"], m, AttachType.SK_SKB_VERDICT)


@contextlib.contextmanager
def _netns():
    from ebee.kernel import netns
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("needs iproute2")
    ns = f"ebee-strp{uuid.uuid4().hex[:6]}"
    subprocess.run([ip, "netns", "add", ns], check=True, capture_output=True)
    try:
        subprocess.run([ip, "-n", ns, "link", "set", "lo", "up"], check=True)
        with netns.enter(ns):
            yield
    finally:
        subprocess.run([ip, "netns", "del", ns], capture_output=True)


def _kernel(mode, arg, vmode, varg, sends):
    from ebee.kernel.links import Link
    from ebee.uapi import AttachType

    def rd(s):
        if not select.select([s], [], [], 0.05)[0]:
            return EAGAIN
        try:
            return s.recv(1 << 18, socket.MSG_DONTWAIT) or EAGAIN
        except BlockingIOError:
            return EAGAIN
    obj = ebee.load(SO)
    with obj.load_kernel() as k:
        m, bss = k.maps["socks"], k.maps[".bss"]
        links = [Link.create(k.programs["strp_parse"].fd, m.fd, AttachType.SK_SKB_STREAM_PARSER),
                 Link.create(k.programs["strp_verdict"].fd, m.fd,
                             AttachType.SK_SKB_STREAM_VERDICT)]
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        c = socket.socket()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.connect(srv.getsockname())
        p, _ = srv.accept()
        try:
            m.update(struct.pack("<I", 0), struct.pack("<Q", c.fileno()))
            m.update(struct.pack("<I", 1), struct.pack("<Q", p.fileno()))
            _set(obj, mode, arg, vmode, varg, srv.getsockname()[1])
            bss.update(0, bytes(obj.maps[".bss"].lookup(0)))
            steps = []
            for d in sends:
                n = c.send(d)
                time.sleep(0.02)     # each send is one segment, parsed before the next
                steps.append((n, rd(p), rd(c),
                              p.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
            obj.maps[".bss"].update(0, bytes(bss.lookup(0)))
        finally:
            for ln in links:
                ln.detach()
            for x in (c, p, srv):
                x.close()
    return steps, _runs(obj.bss)


@pytest.mark.kernel
def test_strparser_matches_the_kernel(kernel):
    got, want = {}, {}
    with _netns():
        for name, sc in SCENARIOS.items():
            got[name] = _kernel(*sc)
    for name, sc in SCENARIOS.items():
        want[name] = _ebee(*sc)[:2]
    assert got == want
