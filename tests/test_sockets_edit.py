"""bpf_msg_push_data, bpf_msg_pop_data and bpf_msg_pull_data on sk_msg messages
(ebee.sockets.skmsg): a script of edits (tests/data/sockets/msg_edit.c) runs on real
loopback TCP in the kernel and on ebee's modelled stack; what each edit returns, the
message's size and data_end - data after it (the scatterlist's shape), what sendmsg
returns and the bytes each end receives must agree."""
from __future__ import annotations

import errno
import select
import socket
import struct

import pytest

import ebee
from ebee.sockets.skmsg import MAX_MSG_FRAGS, SkMsgSg
from ebee.testrun import sockets

OBJ = "tests/data/sockets/msg_edit.o"
PUSH, POP, PULL = 1, 2, 3
PASS, DROP, REDIRECT, APPLY = range(4)
D10 = b"0123456789"
MB8 = 8 << 20


def push(start, n, flags=0, fill=0):
    return (PUSH, start, n, flags, fill)


def pop(start, n, flags=0):
    return (POP, start, n, flags, 0)


def pull(start, n, flags=0):
    return (PULL, start, n, flags, 0)


#: (name, edits, verdict, verdict arg, sends); every scenario on a fresh connection whose
#: ends are socks[0] (the sender) and socks[1]
SCENARIOS = [
    ("push a header", [push(0, 4, fill=ord("H"))], PASS, 0, [D10]),
    ("push inside", [push(5, 3, fill=ord("M"))], PASS, 0, [D10]),
    ("push at the end", [push(10, 2, fill=ord("T"))], PASS, 0, [D10]),
    ("push past the end", [push(11, 2)], PASS, 0, [D10]),
    ("push with flags", [push(0, 2, flags=1)], PASS, 0, [D10]),
    ("push nothing", [push(3, 0)], PASS, 0, [D10]),
    ("push too much", [push(0, MB8)], PASS, 0, [D10]),
    ("pop the front", [pop(0, 3)], PASS, 0, [D10]),
    ("pop inside", [pop(4, 3)], PASS, 0, [D10]),
    ("pop to the end", [pop(6, 4)], PASS, 0, [D10]),
    ("pop past the end", [pop(8, 5)], PASS, 0, [D10]),
    ("pop at the end", [pop(10, 1)], PASS, 0, [D10]),
    ("pop with flags", [pop(0, 1, flags=2)], PASS, 0, [D10]),
    ("pop across elements", [push(0, 4, fill=ord("a")), pop(2, 4)], PASS, 0, [D10]),
    ("pop a whole element", [push(4, 3, fill=ord("b")), pop(4, 3)], PASS, 0, [D10]),
    ("pop from an inner element", [push(4, 3, fill=ord("c")), pop(5, 1)], PASS, 0, [D10]),
    ("pull across elements", [push(4, 3, fill=ord("d")), pull(2, 6)], PASS, 0, [D10]),
    ("pull past the end", [push(4, 3, fill=ord("e")), pull(2, 20)], PASS, 0, [D10]),
    ("push until the ring is full",
     [push(0, 1, fill=ord("A") + k) for k in range(MAX_MSG_FRAGS + 2)], PASS, 0, [D10]),
    ("push inside until the ring is full",
     [push(1, 1, fill=ord("a") + k) for k in range(MAX_MSG_FRAGS + 1)], PASS, 0, [D10]),
    ("pop inside a full ring",
     [push(0, 1, fill=ord("A") + k) for k in range(MAX_MSG_FRAGS - 1)] +
     [pop(MAX_MSG_FRAGS + 1, 2)], PASS, 0, [D10]),
    ("push then drop", [push(0, 4, fill=1)], DROP, 0, [D10]),
    ("pop then drop", [pop(0, 4)], DROP, 0, [D10]),
    ("push, redirect to the peer", [push(2, 2, fill=ord("R"))], REDIRECT, 1, [D10]),
    ("pop, redirect to our ingress", [pop(0, 5)], REDIRECT, 0, [D10]),
    ("push, apply_bytes", [push(0, 6, fill=ord("x"))], APPLY, 8, [D10]),
]


def _set(obj, edits, verdict, arg) -> None:
    b = obj.bss
    raw = b"".join(struct.pack("<5I", *e) for e in edits)
    b.ops = raw + bytes(24 * 20 - len(raw))
    b.after = bytes(24 * 16)
    b.runs = bytes(8 * 16)
    b.nops, b.verdict, b.arg, b.nruns = len(edits), verdict, arg, 0


def _seen(obj, n: int):
    b = obj.bss
    after = [(s.ret, s.size, s.linear, s.first) for s in list(b.after)[:n]]
    runs = [(s.size, s.linear, s.first) for s in list(b.runs)[:min(b.nruns, 8)]]
    return after, runs


def _ebee() -> dict:
    obj = ebee.load(OBJ)
    out = {}
    for name, edits, verdict, arg, sends in SCENARIOS:
        st = sockets.stack()
        m = obj.maps["socks"]
        sockets.attach_sk_msg(obj.programs["msg_edit"], m)
        srv = st.socket()
        st.bind(srv, ("127.0.0.1", 7200))
        st.listen(srv)
        c = st.socket()
        st.connect(c, ("127.0.0.1", 7200))
        p = st.accept(srv)
        m.update(0, c)
        m.update(1, p)
        _set(obj, edits, verdict, arg)
        res = []
        for data in sends:
            try:
                r = st.send(c, data)
            except OSError as e:
                r = -e.errno
            res.append((r, st.recv(p), st.recv(c)))
        out[name] = (res, _seen(obj, len(edits)))
        st.close_all()
    return out


def test_edits_in_ebee():
    r = _ebee()

    def got(name):
        return r[name][0][0]

    def after(name):
        return r[name][1][0]
    hdr = bytes(range(ord("H"), ord("H") + 4))
    assert got("push a header") == (10, hdr + D10, b"")
    assert after("push a header") == [(0, 14, 4, ord("H"))]
    assert got("push inside")[1] == b"01234MNO56789"
    # a push inside the first element splits it: the window is its front part
    assert after("push inside")[0][:3] == (0, 13, 5)
    assert got("push at the end")[1] == D10 + b"TU"
    assert after("push past the end")[0][0] == -errno.EINVAL
    assert after("push with flags")[0][0] == -errno.EINVAL
    assert after("push nothing") == [(0, 10, 10, ord("0"))]
    assert after("push too much")[0][0] == -errno.ENOMEM
    assert got("pop the front")[1] == b"3456789"
    assert got("pop inside")[1] == b"0123789"
    assert after("pop inside")[0] == (0, 7, 4, ord("0"))
    assert got("pop to the end")[1] == b"012345"
    assert [a[0] for a in after("pop past the end") + after("pop at the end") +
            after("pop with flags")] == [-errno.EINVAL] * 3
    assert got("pop across elements")[1] == b"ab" + D10[2:]
    assert got("pull across elements")[1] == b"0123def456789"
    assert after("pull across elements")[1] == (0, 13, 6, ord("2"))
    assert after("pull past the end")[1][0] == -errno.EINVAL
    # 17 elements at most: pushes then copy into the first element
    full = after("push until the ring is full")
    assert [a[2] for a in full] == [1] * (MAX_MSG_FRAGS - 1) + [2, 3, 4]
    assert got("push then drop")[0] == -errno.EACCES
    assert got("pop then drop")[0] == -errno.EACCES
    assert got("push, redirect to the peer")[1] == b"01RS23456789"
    assert got("pop, redirect to our ingress") == (10, b"", b"56789")
    # runs log the message as it comes: after apply_bytes 8 of the 16, the rest of the
    # second element is left
    assert r["push, apply_bytes"][1][1] == [(10, 10, ord("0")), (8, 8, ord("2"))]


def test_sg_model_keeps_bytes_and_lengths():
    sg = SkMsgSg(b"abcdef")
    assert sg.push(3, 2, 0) == 0 and sg.lens == [3, 2, 3] and sg.win == (0, 3)
    assert sg.pop(2, 3, 0) == 0 and sg.lens == [2, 3] and bytes(sg.data) == b"abdef"
    assert sg.pull(1, 3, 0) == 0 and sg.lens == [5] and sg.win == (1, 2)
    assert sg.consume(3) == b"abd" and sg.lens == [2]


def _drain(s, want: int) -> bytes:
    got = b""
    while select.select([s], [], [], 1.0 if len(got) < want else 0)[0]:
        b = s.recv(1 << 16)
        if not b:
            break
        got += b
    return got


@pytest.mark.kernel
def test_edits_match_the_kernel(kernel):
    from ebee.kernel.links import Link
    from ebee.uapi import AttachType
    expect = _ebee()
    obj = ebee.load(OBJ)
    got = {}
    with obj.load_kernel() as k:
        m, bss = k.maps["socks"], k.maps[".bss"]
        link = Link.create(k.programs["msg_edit"].fd, m.fd, AttachType.SK_MSG_VERDICT)
        try:
            for name, edits, verdict, arg, sends in SCENARIOS:
                srv = socket.socket()
                srv.bind(("127.0.0.1", 0))
                srv.listen()
                c = socket.socket()
                c.connect(srv.getsockname())
                p, _ = srv.accept()
                m.update(struct.pack("<I", 0), struct.pack("<Q", c.fileno()))
                m.update(struct.pack("<I", 1), struct.pack("<Q", p.fileno()))
                _set(obj, edits, verdict, arg)
                bss.update(0, bytes(obj.maps[".bss"].lookup(0)))
                res = []
                for i, data in enumerate(sends):
                    try:
                        r = c.send(data)
                    except OSError as e:
                        r = -e.errno
                    _, to_p, to_c = expect[name][0][i]
                    res.append((r, _drain(p, len(to_p)), _drain(c, len(to_c))))
                obj.maps[".bss"].update(0, bytes(bss.lookup(0)))
                got[name] = (res, _seen(obj, len(edits)))
                for s in (c, p, srv):
                    s.close()
        finally:
            link.detach()
    diff = {n: (got[n], expect[n]) for n in expect if got[n] != expect[n]}
    assert not diff
