"""The per-call path of test runs: a Runner's plain XDP path and the Runner a Program keeps.

``Runner.run(data)`` of an XDP program takes :func:`ebee.testrun.xdp.plain_xdp`; every
other call (``data_size_out=`` here) takes the general ``run_xdp``.  Both must give the
same result for every packet, and ``prog.run`` reusing its prepared Runner must give what
a fresh one gives, including after the program's instructions change.
"""
from __future__ import annotations

import dataclasses

from hypothesis import given, settings, strategies as st

import ebee
from ebee import Program
from ebee.testrun import Runner
from ebee.uapi import ProgType as P

# grows the head by 4 bytes when the first byte is odd, prints it, drops when the second
# byte is 0xff, TX when it is 0xfe, else passes -- packet bytes decide every outcome
PROG = """
    r6 = r1
    r2 = *(u32 *)(r6 + 0)
    r3 = *(u32 *)(r6 + 4)
    r4 = r2
    r4 += 2
    if r4 > r3 goto pass
    r7 = *(u8 *)(r2 + 0)
    r8 = *(u8 *)(r2 + 1)
    r5 = r7
    r5 &= 1
    if r5 == 0 goto verdict
    r1 = r6
    r2 = -4
    call 44
    *(u32 *)(r10 - 8) = 0x7825
    r1 = r10
    r1 += -8
    r2 = 4
    r3 = r7
    call 6
verdict:
    if r8 == 0xff goto drop
    if r8 == 0xfe goto tx
pass:
    r0 = 2
    exit
drop:
    r0 = 1
    exit
tx:
    r0 = 3
    exit
"""


def program(src: str = PROG) -> Program:
    return Program.from_insns(ebee.assemble(src), P.XDP, verify=True)


def comparable(res) -> dict:
    d = dataclasses.asdict(res)
    d.pop("duration_ns")
    return d


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=4000), min_size=1, max_size=6),
       st.sampled_from(["interp", "jit"]))
def test_plain_path_equals_general_path(packets, engine):
    prog = program()
    with Runner(prog, engine=engine) as plain, Runner(prog, engine=engine) as general:
        for data in packets:
            try:
                a = comparable(plain.run(data))
            except OSError as e:
                a = ("errno", e.errno)
            try:
                b = comparable(general.run(data, data_size_out=1 << 20))
            except OSError as e:
                b = ("errno", e.errno)
            assert a == b


def test_prog_run_reuses_its_runner_and_rebuilds_on_change():
    prog = program()
    pkt = bytes([1, 0xff]) + bytes(60)
    first = prog.run(pkt)
    kept = prog._runner[1]
    assert comparable(prog.run(pkt)) == comparable(first)
    assert prog._runner[1] is kept
    assert first.retval == 1 and first.trace_output == ["1"] and len(first.data_out) == 66
    prog.insns = ebee.assemble("r0 = 3\nexit")
    assert prog.run(pkt).retval == 3
    assert prog._runner[1] is not kept
    assert prog.run(pkt, engine="interp").retval == 3


def test_prog_run_clears_the_stack_between_runs():
    # unverified, checked: reads a stack slot the previous run wrote
    src = "r0 = *(u64 *)(r10 - 8)\nr1 = 7\n*(u64 *)(r10 - 8) = r1\nexit"
    prog = Program.from_insns(ebee.assemble(src), P.XDP)
    assert [prog.run(bytes(64)).retval for _ in range(3)] == [0, 0, 0]


def test_program_writes_to_pinned_maps_reach_the_store(tmp_path):
    # a store skips maps whose memory did not change since its last sync; writes through
    # a value pointer (no helper call) and helper updates must still reach it
    from ebee.fs.store import PinStore
    from ebee.maps import Map
    from ebee.uapi import MapType
    loc = tmp_path / "pins.sqlite3"
    store = PinStore(loc)
    arr = Map(MapType.ARRAY, 4, 8, 1)      # direct value access needs one entry
    h = Map(MapType.HASH, 4, 8, 16)
    store.pin_map("/sys/fs/bpf/arr", arr)
    store.pin_map("/sys/fs/bpf/h", h)
    src = f"""
        r6 = *(u32 *)(r1 + 0)
        r7 = *(u32 *)(r1 + 4)
        r5 = r6
        r5 += 1
        if r5 > r7 goto out
        r3 = *(u8 *)(r6 + 0)
        r1 = map[id:{arr.id}][0]+0 ll
        r2 = *(u64 *)(r1 + 0)
        r2 += r3
        *(u64 *)(r1 + 0) = r2
        if r3 != 2 goto out
        *(u32 *)(r10 - 4) = r3
        *(u64 *)(r10 - 16) = r2
        r1 = map[id:{h.id}] ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 0
        call 2
    out:
        r0 = 2
        exit
    """
    prog = program(src)

    def stored(path: str, key: bytes):
        other = PinStore(loc)                 # what another process reads
        try:
            return other.get(path).lookup(key)
        except KeyError:
            return None
        finally:
            other.close()

    zero = (0).to_bytes(4, "little")
    for first, total in ((1, 1), (0, 1), (3, 4), (0, 4), (2, 6)):
        prog.run(bytes([first]) + bytes(63))
        assert stored("/sys/fs/bpf/arr", zero) == total.to_bytes(8, "little")
    assert stored("/sys/fs/bpf/h", (2).to_bytes(4, "little")) == (6).to_bytes(8, "little")
    arr.update(zero, (100).to_bytes(8, "little"))          # user space writes through
    prog.run(bytes([0]) + bytes(63))
    assert stored("/sys/fs/bpf/arr", zero) == (100).to_bytes(8, "little")
    store.close()
