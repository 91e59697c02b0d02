"""freplace (BPF_PROG_TYPE_EXT) and the libxdp-style xdp-dispatcher.

This kernel refuses EXT programs before verifying them (EPERM, as it refuses fentry),
even with a valid attach_prog_fd/attach_btf_id: the kernel test checks that refusal.
In user space a ``freplace/classify`` program replaces target.o's global function.  The
dispatcher is spliced into one plain XDP program, which this kernel does load and
verify, and BPF_PROG_TEST_RUN of it is compared with ebee's runs: verdicts and per-program
run counts.
"""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

import ebee
from ebee.session.freplace import Component, FreplaceError, XdpDispatcher, replace_function

DATA = Path(__file__).resolve().parent / "data" / "ext"


def u64(m, k: int) -> int:
    return int.from_bytes(bytes(m.lookup(k.to_bytes(4, "little"))), "little")


def test_freplace_replaces_the_global_function():
    t, r = ebee.load(DATA / "target.o"), ebee.load(DATA / "replace.o")
    entry = t.programs["entry"]
    assert [entry.run(bytes(n)).verdict for n in (60, 200)] == ["XDP_PASS", "XDP_DROP"]
    new = replace_function(entry, "classify", r.programs["new_classify"])
    assert [new.run(bytes(n)).verdict for n in (60, 16, 200)] == ["XDP_TX", "XDP_PASS", "XDP_TX"]
    # the old classify ran twice (before), the replacement three times; entry itself 5
    assert (u64(t.maps["calls"], 0), u64(t.maps["calls"], 1), u64(r.maps["replaced"], 0)) == \
        (2, 5, 3)
    assert entry.run(bytes(200)).verdict == "XDP_DROP"      # the target is unchanged


def test_freplace_refusals():
    t, r = ebee.load(DATA / "target.o"), ebee.load(DATA / "replace.o")
    entry, ext = t.programs["entry"], r.programs["new_classify"]
    for func, err in (("nothing", errno.ESRCH), ("entry", errno.EINVAL)):
        with pytest.raises(FreplaceError) as ei:
            replace_function(entry, func, ext)
        assert ei.value.errno == err
    other = ebee.load(DATA / "dispatcher.o").programs["drop_big"]
    bare = ebee.Program.from_insns(list(entry.insns), entry.type, name="bare")
    with pytest.raises(FreplaceError) as ei:           # no BTF: nothing to replace
        replace_function(bare, "classify", other)
    assert ei.value.errno == errno.EINVAL


@pytest.mark.kernel
def test_the_kernel_refuses_ext_programs(kernel):
    t, r = ebee.load(DATA / "target.o"), ebee.load(DATA / "replace.o")
    with t.load_kernel() as kt:
        try:
            with r.load_kernel(attach_prog=kt.programs["entry"], log_level=1) as kr:
                loaded = kr.programs["new_classify"].id
        except OSError as e:
            assert e.errno == errno.EPERM, e        # refused before verification
            assert not getattr(e, "log", "")
            loaded = None
    if loaded is not None:                          # a kernel that allows EXT
        assert loaded > 0


def packet(proto: int, size: int) -> bytes:
    b = bytearray(size)
    b[12:14] = b"\x08\x00"
    b[14] = 0x45
    b[23] = proto
    return bytes(b)


PACKETS = [packet(17, 60), packet(6, 60), packet(17, 200), packet(6, 40), packet(1, 120),
           packet(17, 101), packet(17, 100)]
CONFIGS = {
    "default": [("tx_udp", 30, None), ("count_all", 10, None), ("drop_big", 20, None)],
    # drop_big's XDP_DROP chains on: tx_udp still sees big packets
    "chain-drop": [("tx_udp", 30, None), ("count_all", 10, None), ("drop_big", 20, 0b110)],
    # equal priorities run by name
    "ties": [("tx_udp", 50, None), ("drop_big", 50, None), ("count_all", 50, None)],
}


def dispatcher(name: str) -> XdpDispatcher:
    progs = ebee.load(DATA / "dispatcher.o").programs
    return XdpDispatcher([Component(progs[n], prio, *(() if ch is None else (ch,)))
                          for n, prio, ch in CONFIGS[name]])


EXPECTED = {
    "default": (["XDP_TX", "XDP_PASS", "XDP_DROP", "XDP_PASS", "XDP_DROP", "XDP_DROP", "XDP_TX"],
                {"count_all": 7, "drop_big": 7, "tx_udp": 4}),
    "chain-drop": (["XDP_TX", "XDP_PASS", "XDP_TX", "XDP_PASS", "XDP_PASS", "XDP_TX", "XDP_TX"],
                   {"count_all": 7, "drop_big": 7, "tx_udp": 7}),
    "ties": (["XDP_TX", "XDP_PASS", "XDP_DROP", "XDP_PASS", "XDP_DROP", "XDP_DROP", "XDP_TX"],
             {"count_all": 7, "drop_big": 7, "tx_udp": 4}),
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_dispatcher_order_and_chain_calls(config):
    d = dispatcher(config)
    got = [d.run(p).verdict for p in PACKETS]
    assert (got, d.run_counts()) == EXPECTED[config]
    if config == "ties":
        assert [c.program.name for c in d.order] == ["count_all", "drop_big", "tx_udp"]


@pytest.mark.kernel
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_dispatcher_matches_the_kernel(kernel, config):
    d = dispatcher(config)
    want = ([d.run(p).retval for p in PACKETS], d.run_counts())
    with d.load_kernel() as k:
        got = ([k.run(p).retval for p in PACKETS], k.run_counts())
    assert got == want


def test_dispatcher_limits():
    progs = ebee.load(DATA / "dispatcher.o").programs
    with pytest.raises(FreplaceError) as ei:
        XdpDispatcher([Component(progs["count_all"])] * 11)
    assert ei.value.errno == errno.E2BIG
    cg = ebee.load(DATA.parent / "runtime_maps" / "cgroup_storage.o").programs["count_egress"]
    with pytest.raises(FreplaceError):
        XdpDispatcher([Component(cg)])
