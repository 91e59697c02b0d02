"""BPF_PROG_TEST_RUN semantics and packet helpers, differential against the kernel.

Each case is a small program, an input and options; ebee's ``run`` and the
kernel's BPF_PROG_TEST_RUN must give the same retval, data_out and ctx_out,
or fail with the same errno.
"""
from __future__ import annotations

import struct

import pytest

import ebee
from ebee import Program, progtypes, testrun
from ebee.testrun import TestRunError
from ebee.pytest_plugin import tcp_packet, udp_packet
from ebee.uapi import AttachType as A, ProgType as P

UDP = udp_packet("10.0.0.1", "10.0.0.2", 1000, 53, b"hello world")
TCP = tcp_packet("10.1.1.1", "10.2.2.2", 40000, 80, b"GET /")
UDP6 = udp_packet("fd00::1", "fd00::2", 5353, 5353, b"six")
VLAN = UDP[:12] + bytes.fromhex("81000064") + UDP[12:]


def ebee_run(src, pt, data=b"", at=None, **kw):
    insns = ebee.assemble(src)
    try:
        r = testrun.run(Program.from_insns(insns, pt, expected_attach_type=at), data, **kw)
    except TestRunError as e:
        return ("errno", e.errno)
    return (r.retval & 0xFFFFFFFF, r.data_out, r.ctx_out)


def kernel_run(src, pt, data=b"", at=None, **kw):
    from ebee.kernel import KernelProgram
    insns = ebee.assemble(src)
    with KernelProgram(insns, pt, expected_attach_type=int(at) if at is not None else 0) as kp:
        try:
            r = kp.run(data, **kw)
        except TestRunError as e:
            return ("errno", e.errno)
        return (r.retval & 0xFFFFFFFF, r.data_out, r.ctx_out)


def _show(r) -> str:
    return repr(tuple(x.hex() if isinstance(x, bytes) and len(x) < 80 else
                      (f"<{len(x)} bytes>" if isinstance(x, bytes) else x) for x in r))


def same(src, pt, data=b"", at=None, **kw):
    e = ebee_run(src, pt, data, at, **kw)
    k = kernel_run(src, pt, data, at, **kw)
    assert e == k, f"ebee {_show(e)}\nkernel {_show(k)}"
    return e


PASS = "r0 = 2\nexit"
RET_LEN_XDP = """
    r2 = *(u32 *)(r1 +0)
    r3 = *(u32 *)(r1 +4)
    r0 = r3
    r0 -= r2
    exit
"""


# -- XDP --------------------------------------------------------------------------------------

@pytest.mark.kernel
@pytest.mark.parametrize("n", [0, 13, 14, 60, 1514, 3520, 3521, 4000, 9000])
def test_xdp_sizes(kernel, n):
    same(RET_LEN_XDP, P.XDP, bytes(range(256)) * (n // 256) + bytes(n % 256))


XDP_META = """
    r2 = *(u32 *)(r1 +8)
    r3 = *(u32 *)(r1 +0)
    r0 = r3
    r0 -= r2
    r4 = *(u32 *)(r1 +12)
    r0 <<= 8
    r0 |= r4
    r4 = *(u32 *)(r1 +16)
    r0 <<= 8
    r0 |= r4
    exit
"""


def xdp_md(data=0, data_end=0, meta=0, ingress=0, queue=0, egress=0):
    return struct.pack("<6I", data, data_end, meta, ingress, queue, egress)


@pytest.mark.kernel
@pytest.mark.parametrize("ctx", [
    xdp_md(0, len(UDP)), xdp_md(8, len(UDP)), xdp_md(32, len(UDP)), xdp_md(36, len(UDP)),
    xdp_md(6, len(UDP)), xdp_md(0, len(UDP) - 1), xdp_md(0, len(UDP), meta=4),
    xdp_md(0, len(UDP), ingress=1), xdp_md(0, len(UDP), ingress=1, queue=1),
    xdp_md(0, len(UDP), queue=1), xdp_md(0, len(UDP), ingress=9999),
    xdp_md(0, len(UDP), egress=1), xdp_md(0, len(UDP)) + b"\0" * 8, xdp_md(0, len(UDP) + 1),
    xdp_md(0, 20), xdp_md(8, 21), xdp_md(8, 22), xdp_md(40, len(UDP)),
    xdp_md(0, len(UDP)) + b"\1",
], ids=lambda c: c.hex())
def test_xdp_ctx_in(kernel, ctx):
    same(XDP_META, P.XDP, UDP, ctx=ctx)


@pytest.mark.kernel
@pytest.mark.parametrize("kw", [dict(flags=1), dict(flags=8), dict(batch_size=4), dict(cpu=1),
                                dict(repeat=5), dict(data_size_out=10), dict(data_size_out=200)],
                         ids=str)
def test_xdp_options(kernel, kw):
    same(PASS, P.XDP, UDP, **kw)


def test_xdp_devmap_program_cannot_be_test_run():
    assert ebee_run(PASS, P.XDP, UDP, at=A.XDP_DEVMAP) == ("errno", 22)


XDP_HELPER = """
    r6 = r1
    r2 = {arg}
    call {helper}
    r7 = r0
    r2 = *(u32 *)(r6 +0)
    r3 = *(u32 *)(r6 +4)
    r4 = *(u32 *)(r6 +8)
    r3 -= r2
    r2 -= r4
    r0 = r7
    r0 <<= 16
    r0 += r3
    r0 <<= 8
    r0 += r2
    exit
"""


@pytest.mark.kernel
@pytest.mark.parametrize("helper,arg", [
    (44, 0), (44, 14), (44, -14), (44, -200), (44, -300), (44, 100), (44, len(UDP) - 14),
    (44, len(UDP) - 13),
    (65, 0), (65, -10), (65, 20), (65, -(len(UDP) - 14)), (65, -(len(UDP) - 13)), (65, 4000),
    (54, 0), (54, -8), (54, -32), (54, -6), (54, -36), (54, 4),
])
def test_xdp_adjust_helpers(kernel, helper, arg):
    same(XDP_HELPER.format(helper=helper, arg=arg), P.XDP, UDP)


XDP_BYTES = """
    r6 = r1
    r2 = {off}
    r3 = r10
    r3 += -16
    r4 = {n}
    call 189
    r7 = r0
    r1 = *(u64 *)(r10 -16)
    r1 ^= 0x5a
    *(u64 *)(r10 -16) = r1
    r1 = r6
    r2 = {off}
    r3 = r10
    r3 += -16
    r4 = {n}
    call 190
    r0 <<= 8
    r0 |= r7
    r0 &= 0xffff
    exit
"""


@pytest.mark.kernel
@pytest.mark.parametrize("off,n", [(0, 8), (10, 6), (len(UDP) - 8, 8), (len(UDP) - 7, 8),
                                   (0x10000, 1), (len(UDP), 1)])
def test_xdp_load_store_bytes(kernel, off, n):
    same(XDP_BYTES.format(off=off, n=n), P.XDP, UDP)


# -- skb test runs ------------------------------------------------------------------------------

SKB_FIELDS = """
    r2 = *(u32 *)(r1 +0)
    r3 = *(u32 *)(r1 +4)
    r0 = r2
    r0 <<= 4
    r0 += r3
    r3 = *(u32 *)(r1 +16)
    r0 <<= 16
    r0 += r3
    r3 = *(u32 *)(r1 +8)
    r0 += r3
    r3 = *(u32 *)(r1 +40)
    r0 += r3
    exit
"""


def skb_ctx(**fields) -> bytes:
    offs = {"mark": (8, "I"), "priority": (32, "I"), "ingress_ifindex": (36, "I"),
            "ifindex": (40, "I"), "cb0": (48, "I"), "cb4": (64, "I"), "len": (0, "I"),
            "tstamp": (152, "Q"), "wire_len": (160, "I"), "gso_segs": (164, "I"),
            "gso_size": (176, "I"), "hwtstamp": (184, "Q"), "hash": (68, "I"),
            "protocol": (16, "I")}
    b = bytearray(192)
    for k, v in fields.items():
        off, f = offs[k]
        struct.pack_into("<" + f, b, off, v)
    return bytes(b)


SKB_TYPES = [(P.SOCKET_FILTER, None), (P.SCHED_CLS, None), (P.CGROUP_SKB, A.CGROUP_INET_INGRESS),
             (P.LWT_IN, None)]
# cgroup_skb programs must return 0 or 1: the value goes to cb[0] and comes back in ctx_out
CG_FIELDS = SKB_FIELDS.replace("    exit", "    *(u32 *)(r1 +48) = r0\n    r0 = 1\n    exit")


@pytest.mark.kernel
@pytest.mark.parametrize("pt,at", SKB_TYPES, ids=lambda x: getattr(x, "name", str(x)))
@pytest.mark.parametrize("data", [b"", bytes(13), bytes(14), UDP, TCP, UDP6, VLAN,
                                  bytes.fromhex("ffffffffffff020000000001") + b"\x00\x30" + bytes(40)],
                         ids=["empty", "13", "14", "udp", "tcp", "udp6", "vlan", "8023"])
def test_skb_packets(kernel, pt, at, data):
    if pt is P.CGROUP_SKB:
        same(CG_FIELDS, pt, data, at, ctx_out=True)
    else:
        same(SKB_FIELDS, pt, data, at)


@pytest.mark.kernel
@pytest.mark.parametrize("ctx", [
    skb_ctx(), skb_ctx(mark=7, priority=3, cb0=1, cb4=9), skb_ctx(len=1), skb_ctx(hash=5),
    skb_ctx(protocol=1), skb_ctx(wire_len=len(UDP)), skb_ctx(wire_len=len(UDP) - 1),
    skb_ctx(wire_len=70000), skb_ctx(gso_segs=70000), skb_ctx(gso_segs=5, gso_size=1400),
    skb_ctx(ifindex=1), skb_ctx(ifindex=9999), skb_ctx(ingress_ifindex=4), skb_ctx(tstamp=123),
    skb_ctx(hwtstamp=99), skb_ctx()[:20], skb_ctx() + b"\0" * 8, skb_ctx() + b"\1",
], ids=lambda c: str(len(c)) + ":" + c.rstrip(b"\0").hex()[-24:])
def test_skb_ctx_in(kernel, ctx):
    same(SKB_FIELDS, P.SCHED_CLS, UDP, ctx=ctx)


TC_WRITES = """
    r2 = 0x1234
    *(u32 *)(r1 +8) = r2
    *(u32 *)(r1 +32) = r2
    *(u32 *)(r1 +44) = r2
    *(u32 *)(r1 +48) = r2
    *(u16 *)(r1 +66) = r2
    *(u32 *)(r1 +72) = r2
    r0 = *(u32 *)(r1 +160)
    exit
"""


@pytest.mark.kernel
def test_tc_context_writes_reach_ctx_out(kernel):
    same(TC_WRITES, P.SCHED_CLS, UDP, ctx=skb_ctx())
    same(TC_WRITES, P.SCHED_CLS, UDP, ctx_out=True)


@pytest.mark.kernel
@pytest.mark.parametrize("kw", [dict(flags=1), dict(cpu=1), dict(batch_size=1), dict(repeat=3),
                                dict(data_size_out=20)], ids=str)
def test_skb_options(kernel, kw):
    same(SKB_FIELDS, P.SCHED_CLS, UDP, **kw)


def _call(helper: int, *args) -> str:
    regs = "\n".join(f"r{k + 2} = {a}" for k, a in enumerate(args))
    return f"""
        r6 = r1
        {regs}
        call {helper}
        r7 = r0
        r0 = *(u32 *)(r6 +0)
        r0 <<= 32
        r0 |= r7
        exit
    """


SKB_HELPER_CASES = [
    # skb_change_tail, change_head, adjust_room, change_proto, change_type, vlan, pull, hash
    (38, (len(UDP) + 10, 0)), (38, (len(UDP) - 5, 0)), (38, (10, 0)), (38, (14, 0)),
    (38, (20000, 0)), (38, (len(UDP), 1)),
    (43, (14, 0)), (43, (4, 1)), (43, (64, 0)),
    (50, (8, 0, 0)), (50, (-8, 0, 0)), (50, (20, 1, 0)), (50, (-20, 1, 0)), (50, (8, 7, 0)),
    (50, (0x1000, 0, 0)), (50, (-(len(UDP) - 20), 0, 0)), (50, (8, 0, 1 << 20)),
    (31, (0xdd86, 0)), (31, (0x0008, 0)), (31, (0x0608, 0)), (31, (0xdd86, 1)),
    (32, (0,)), (32, (1,)), (32, (4,)),
    (18, (0x0081, 5)), (18, (0xa888, 7)), (18, (0x1234, 9)), (19, ()),
    (39, (0,)), (39, (20,)), (39, (len(UDP) + 1,)),
    (48, (0x1234,)), (41, ()),
    (13, (1, 0)), (13, (1, 1)), (13, (9999, 0)), (13, (1, 2)),
    (23, (3, 0)), (23, (3, 1)), (23, (3, 2)),
]


@pytest.mark.kernel
@pytest.mark.parametrize("helper,args", SKB_HELPER_CASES, ids=str)
def test_skb_geometry_helpers(kernel, helper, args):
    same(_call(helper, *args), P.SCHED_CLS, UDP)


VLAN_TWICE = """
    r6 = r1
    r2 = 0x81
    r3 = 5
    call 18
    r1 = r6
    r2 = 0x81
    r3 = 6
    call 18
    r1 = r6
    call 19
    r0 = *(u32 *)(r6 +24)
    r2 = *(u32 *)(r6 +20)
    r0 <<= 8
    r0 |= r2
    exit
"""


@pytest.mark.kernel
def test_vlan_push_push_pop(kernel):
    same(VLAN_TWICE, P.SCHED_CLS, UDP)
    same(_call(19), P.SCHED_CLS, VLAN)


STORE = """
    r6 = r1
    r1 = 0x1122334455667788 ll
    *(u64 *)(r10 -8) = r1
    r1 = r6
    r2 = {off}
    r3 = r10
    r3 += -8
    r4 = {n}
    r5 = {flags}
    call 9
    r7 = r0
    r1 = r6
    r2 = {off2}
    r3 = r10
    r3 += -16
    r4 = 8
    call 26
    r0 <<= 32
    r0 |= r7
    r1 = *(u32 *)(r10 -16)
    r0 ^= r1
    exit
"""


@pytest.mark.kernel
@pytest.mark.parametrize("off,n,flags,off2", [(0, 8, 0, 0), (20, 4, 2, 16), (len(UDP) - 8, 8, 0, 8),
                                              (len(UDP) - 7, 8, 0, len(UDP) - 7), (0, 8, 4, 0),
                                              (0, 8, 1, 0x7fffffff)])
def test_skb_store_load_bytes(kernel, off, n, flags, off2):
    same(STORE.format(off=off, n=n, flags=flags, off2=off2), P.SCHED_CLS, UDP)


RELATIVE = """
    r6 = r1
    r2 = {off}
    r3 = r10
    r3 += -8
    r4 = 4
    r5 = {hdr}
    call 68
    r1 = *(u32 *)(r10 -8)
    r0 <<= 32
    r0 |= r1
    exit
"""


@pytest.mark.kernel
@pytest.mark.parametrize("pt", [P.SCHED_CLS, P.SOCKET_FILTER], ids=lambda p: p.name)
@pytest.mark.parametrize("off,hdr", [(0, 0), (12, 1), (6, 0), (len(UDP) - 14 - 4, 1),
                                     (len(UDP) - 14 - 3, 1), (0, 2), (0x10000, 0)])
def test_load_bytes_relative(kernel, pt, off, hdr):
    same(RELATIVE.format(off=off, hdr=hdr), pt, UDP)


CSUM = """
    r6 = r1
    r2 = {off}
    r3 = {frm}
    r4 = {to}
    r5 = {flags}
    call {helper}
    exit
"""


@pytest.mark.kernel
@pytest.mark.parametrize("helper,off,frm,to,flags", [
    (10, 24, 0x0100000a, 0x0900000a, 4), (10, 24, 0x4000, 0x3f00, 2), (10, 24, 0, 0x12345, 0),
    (10, 24, 1, 2, 3), (10, 25, 1, 2, 2), (10, 24, 1, 2, 0x10),
    (11, 40, 0x0100000a, 0x0900000a, 4 | 0x10), (11, 40, 0x3500, 0x3600, 2),
    (11, 40, 0, 0xabcd, 0 | 0x10), (11, 40, 1, 2, 2 | 0x20), (11, 40, 1, 2, 0x100),
    (11, 0x10000, 1, 2, 2),
])
def test_csum_replace(kernel, helper, off, frm, to, flags):
    same(CSUM.format(helper=helper, off=off, frm=frm, to=to, flags=flags), P.SCHED_CLS, UDP)
    # a UDP checksum of 0 with BPF_F_MARK_MANGLED_0
    zero = UDP[:40] + b"\0\0" + UDP[42:]
    same(CSUM.format(helper=helper, off=off, frm=frm, to=to, flags=flags), P.SCHED_CLS, zero)


# -- other test-run types -------------------------------------------------------------------

FLOW = """
    r2 = *(u64 *)(r1 +144)
    r3 = *(u16 *)(r2 +0)
    r3 += 20
    *(u16 *)(r2 +2) = r3
    r4 = 0x11
    *(u8 *)(r2 +9) = r4
    r0 = 0
    exit
"""


@pytest.mark.kernel
@pytest.mark.parametrize("data", [UDP, bytes(13), bytes(14), UDP6], ids=["udp", "13", "14", "v6"])
def test_flow_dissector(kernel, data):
    same(FLOW, P.FLOW_DISSECTOR, data, at=A.FLOW_DISSECTOR)


def sk_lookup_ctx(family=2, proto=6, rip4=0x0100000a, rport=0x1234, lip4=0x0200000a, lport=80,
                  sk=0, extra=0):
    b = bytearray(72)
    struct.pack_into("<Q", b, 0, sk)
    struct.pack_into("<II", b, 8, family, proto)
    struct.pack_into("<I", b, 16, rip4)
    struct.pack_into("<I", b, 36, rport)
    struct.pack_into("<I", b, 40, lip4)
    struct.pack_into("<I", b, 60, lport)
    struct.pack_into("<I", b, 64, extra)
    return bytes(b)


SK_LOOKUP = """
    r2 = *(u32 *)(r1 +8)
    r3 = *(u32 *)(r1 +12)
    r4 = *(u32 *)(r1 +36)
    r5 = *(u32 *)(r1 +60)
    r0 = r2
    r0 <<= 8
    r0 += r3
    r0 <<= 16
    r0 += r4
    r0 += r5
    r0 &= 1
    exit
"""


@pytest.mark.kernel
@pytest.mark.parametrize("ctx", [sk_lookup_ctx(), sk_lookup_ctx(proto=17, lport=53),
                                 sk_lookup_ctx(family=10), sk_lookup_ctx(family=1),
                                 sk_lookup_ctx(lport=70000), sk_lookup_ctx(sk=1),
                                 sk_lookup_ctx(extra=1), None], ids=str)
def test_sk_lookup(kernel, ctx):
    same(SK_LOOKUP, P.SK_LOOKUP, b"", at=A.SK_LOOKUP, ctx=ctx)


RAW_TP = "r0 = *(u64 *)(r1 +8)\nexit"


@pytest.mark.kernel
@pytest.mark.parametrize("kw", [dict(ctx=struct.pack("<2Q", 5, 7)), dict(ctx=bytes(8)),
                                dict(ctx=bytes(104)), dict(ctx=bytes(16), repeat=2),
                                dict(ctx=bytes(16), cpu=1), dict(ctx=bytes(16), flags=1, cpu=1),
                                dict(ctx=bytes(16), flags=2)], ids=str)
def test_raw_tracepoint(kernel, kw):
    same(RAW_TP, P.RAW_TRACEPOINT, b"", **kw)


def test_types_without_test_run_report_enotsupp():
    assert ebee_run("r0 = 0\nexit", P.KPROBE)[1] == 524
    assert ebee_run("r0 = 0\nexit", P.CGROUP_SOCK)[1] == 524


def test_redirect_is_the_runs_outcome():
    insns = ebee.assemble("r1 = 7\nr2 = 0\ncall 23\nexit")
    r = testrun.run(Program.from_insns(insns, P.XDP), UDP)
    assert r.verdict == "XDP_REDIRECT" and r.redirect.ifindex == 7
    r = testrun.run(Program.from_insns(insns, P.SCHED_CLS), UDP)
    assert r.verdict == "TC_ACT_REDIRECT" and r.redirect.describe() == "ifindex 7"
    r = testrun.run(Program.from_insns(ebee.assemble("r0 = 3\nexit"), P.XDP), UDP)
    assert r.redirect.kind == "tx"


def test_fib_lookup_against_a_configured_network():
    from ebee.packet import Network
    net = Network()
    eth1 = net.add_device("eth1", "02:00:00:00:00:aa", mtu=1500)
    net.add_route("10.9.0.0/16", "eth1", via="10.0.0.254")
    net.add_neighbour("10.0.0.254", "02:00:00:00:00:fe", "eth1")
    src = """
        r6 = r1
        r1 = 0
        *(u64 *)(r10 -64) = r1
        *(u64 *)(r10 -56) = r1
        *(u64 *)(r10 -48) = r1
        *(u64 *)(r10 -40) = r1
        *(u64 *)(r10 -32) = r1
        *(u64 *)(r10 -24) = r1
        *(u64 *)(r10 -16) = r1
        *(u64 *)(r10 -8) = r1
        r1 = 2
        *(u8 *)(r10 -64) = r1
        r1 = 1
        *(u32 *)(r10 -56) = r1
        r1 = 0x0500090a
        *(u32 *)(r10 -32) = r1
        r1 = r6
        r2 = r10
        r2 += -64
        r3 = 64
        r4 = 0
        call 69
        r1 = *(u32 *)(r10 -56)
        r0 <<= 8
        r0 |= r1
        r1 = *(u8 *)(r10 -1)
        r0 <<= 8
        r0 |= r1
        exit
    """
    r = testrun.run(Program.from_insns(ebee.assemble(src), P.XDP), UDP, net=net)
    assert r.retval == (0 << 16) | (eth1.ifindex << 8) | 0xfe
    net.neighbours.clear()
    r = testrun.run(Program.from_insns(ebee.assemble(src), P.XDP), UDP, net=net)
    assert r.retval >> 16 == 7            # BPF_FIB_LKUP_RET_NO_NEIGH
    net.routes.clear()
    r = testrun.run(Program.from_insns(ebee.assemble(src), P.XDP), UDP, net=net)
    assert r.retval >> 16 == 4            # BPF_FIB_LKUP_RET_NOT_FWDED
    net.close()


def test_redirect_map_to_a_devmap_slot():
    from ebee.uapi import MapType
    dm = ebee.Map(MapType.DEVMAP, 4, 4, 8, name="tx_ports")
    try:
        dm.update(struct.pack("<I", 2), struct.pack("<I", 7))
        src = f"""
            r1 = map[id:{dm.id}] ll
            r2 = {{key}}
            r3 = {{flags}}
            call 51
            exit
        """
        r = testrun.run(Program.from_insns(ebee.assemble(src.format(key=2, flags=0)), P.XDP), UDP)
        assert r.verdict == "XDP_REDIRECT" and r.redirect.describe() == "map tx_ports[2]"
        assert r.redirect.ifindex == 7
        # an empty slot falls back to the action in the low bits of flags (XDP_PASS here)
        r = testrun.run(Program.from_insns(ebee.assemble(src.format(key=3, flags=2)), P.XDP), UDP)
        assert r.verdict == "XDP_PASS" and r.redirect is None
        r = testrun.run(Program.from_insns(ebee.assemble(src.format(key=2, flags=0x100)), P.XDP), UDP)
        assert r.verdict == "XDP_ABORTED"
    finally:
        dm.close()


def test_sk_lookup_assigns_a_socket_from_the_network():
    from ebee.packet import Network
    net = Network()
    listener = net.add_socket(2, 6, ("0.0.0.0", 8080))
    src = """
        r6 = r1
        r1 = *(u32 *)(r6 +60)
        if r1 != 80 goto +20
        r1 = 0
        *(u64 *)(r10 -16) = r1
        *(u32 *)(r10 -8) = r1
        r1 = 0x0200000a
        *(u32 *)(r10 -12) = r1
        r1 = 0x901f
        *(u16 *)(r10 -6) = r1
        r1 = r6
        r2 = r10
        r2 += -16
        r3 = 12
        r4 = -1
        r5 = 0
        call 84
        if r0 == 0 goto +6
        r7 = r0
        r1 = r6
        r2 = r7
        r3 = 0
        call 124
        r1 = r7
        call 86
        r0 = 1
        exit
    """
    r = testrun.run(Program.from_insns(ebee.assemble(src), P.SK_LOOKUP), b"", net=net, ctx=sk_lookup_ctx(lport=80))
    assert r.retval == 1
    assert struct.unpack_from("<Q", r.ctx_out, 0)[0] == listener.cookie
    net.close()
