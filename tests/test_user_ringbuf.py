"""USER_RINGBUF at run time: user space writes samples (libbpf's
user_ring_buffer__reserve/submit/discard), ``bpf_user_ringbuf_drain`` hands them to a
BPF callback as a dynptr.  The same script of writes and drains runs against ebee's
map and against the kernel's (mmap'ed as libbpf maps it, drained by BPF_PROG_TEST_RUN
of an XDP program); the outcomes -- the helper's return values, what the callback saw,
the consumer position -- must be the same.
"""
from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest

import ebee
from ebee.maps.errors import MapError
from ebee.uapi import BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP

OBJ = Path(__file__).resolve().parent / "data" / "runtime_maps" / "user_ringbuf.o"
SEEN, SUM_A, SUM_B, SHORT, RET, NESTED, BYTES = range(7)


def s64(raw: bytes) -> int:
    return struct.unpack("<q", raw)[0]


def sample(a: int, b: int) -> bytes:
    return struct.pack("<QQ", a, b)


class Backend:
    """What the script needs of one backend: programs, maps and the ring's writer."""

    def __init__(self, programs, maps, writer, raw):
        self.programs, self.maps, self.w, self.raw = programs, maps, writer, raw

    def cfg(self, stop_after: int = 0, flags: int = 0) -> None:
        self.maps["cfg"].update(struct.pack("<I", 0), struct.pack("<Q", stop_after))
        self.maps["cfg"].update(struct.pack("<I", 1), struct.pack("<Q", flags))

    def drain(self, prog: str = "drain") -> tuple:
        out = self.maps["out"]
        for i in range(7):
            out.update(struct.pack("<I", i), bytes(8))
        self.programs[prog].run(bytes(64))
        return tuple(s64(out.lookup(struct.pack("<I", i))) for i in range(7)) + \
            (self.w.consumer_pos, self.w.producer_pos)


def script(b: Backend) -> list:
    log: list = []
    b.cfg()
    log.append(("empty", b.drain()))
    b.w.submit(sample(5, 7))
    b.w.submit(sample(50, 70), discard=True)         # consumed, not counted
    b.w.submit(sample(6, 8))
    b.w.submit(b"abc")                               # short: dynptr_read -E2BIG
    log.append(("three and a discard", b.drain()))
    for i in range(5):
        b.w.submit(sample(i, 100 + i))
    b.cfg(stop_after=2)
    log.append(("callback stops after 2", b.drain()))
    b.cfg()
    log.append(("the rest", b.drain()))
    held = b.w.reserve(16)                           # BUSY: holds the reader back
    b.w.submit(sample(9, 9))
    log.append(("busy sample first", b.drain()))
    held.write(sample(1, 2))
    held.submit()
    log.append(("after its submit", b.drain()))
    b.w.submit(sample(3, 3))
    b.cfg(flags=4)
    log.append(("bad flags", b.drain()))
    for flags in (BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP):
        b.cfg(flags=flags)
        log.append((f"flags {flags}", b.drain()))
    b.cfg()
    b.w.submit(sample(4, 4))
    log.append(("nested drain", b.drain("drain_nested")))
    # the producer position and headers are user memory: corrupt them
    b.w.submit(sample(11, 12))
    prod = b.w.producer_pos
    b.w.producer_pos = prod - 3
    log.append(("unaligned producer", b.drain()))
    b.w.producer_pos = prod - 8
    log.append(("sample past the producer", b.drain()))
    b.w.producer_pos = prod
    cons = b.w.consumer_pos
    buf = b.raw()
    off = cons & 4095
    keep = bytes(buf[off:off + 4])
    buf[off:off + 4] = struct.pack("<I", 8192)
    b.w.producer_pos = cons + 8192 + 8
    log.append(("sample larger than the ring", b.drain()))
    buf[off:off + 4] = keep
    b.w.producer_pos = prod
    log.append(("repaired", b.drain()))
    # many samples around the ring, one drain each few
    total = 0
    for i in range(300):
        b.w.submit(sample(i, i * i) + bytes(i % 24))
        if i % 7 == 6:
            total += b.drain()[SEEN]
    total += b.drain()[SEEN]
    log.append(("wrapped", total, b.w.consumer_pos, b.w.producer_pos))
    errs = []
    for size in (4096, 4089, 1 << 30):
        try:
            b.w.reserve(size)
        except OSError as e:
            errs.append(errno.errorcode[e.errno])
    log.append(("reserve errors", errs))
    return log


def ebee_backend():
    obj = ebee.load(OBJ)
    urb = obj.maps["urb"]
    return obj, Backend(obj.programs, obj.maps, urb, lambda: _EbeeRaw(urb))


class _EbeeRaw:
    """The data pages as user space sees them (both copies, as Linux maps them)."""

    def __init__(self, urb):
        self.urb = urb

    def __getitem__(self, s):
        return self.urb.data.buf[s]

    def __setitem__(self, s, v):
        size = self.urb.size
        self.urb.data.buf[s] = v
        self.urb.data.buf[s.start + size:s.stop + size] = v


def test_drain_script_in_ebee():
    obj, b = ebee_backend()
    log = dict((e[0], e[1:]) for e in script(b))
    seen, a, bb, short, ret, nested, nob = log["three and a discard"][0][:7]
    assert (ret, seen, a, bb, short, nob) == (3, 3, 11, 15, 1, 1)
    assert log["callback stops after 2"][0][RET] == 2
    assert log["the rest"][0][RET] == 3
    assert log["busy sample first"][0][RET] == 0
    assert log["after its submit"][0][RET] == 2
    assert log["bad flags"][0][RET] == -errno.EINVAL
    assert log["nested drain"][0][NESTED] == -errno.EBUSY
    assert log["unaligned producer"][0][RET] == -errno.EINVAL
    assert log["sample past the producer"][0][RET] == -errno.EINVAL
    assert log["sample larger than the ring"][0][RET] == -errno.E2BIG
    assert log["repaired"][0][RET] == 1
    assert log["wrapped"][0] == 300
    assert log["reserve errors"][0] == ["E2BIG", "E2BIG", "E2BIG"]


def test_user_space_reserve_rules():
    urb = ebee.Map(ebee.uapi.MapType.USER_RINGBUF, 0, 0, 4096)
    s = urb.reserve(8)
    with pytest.raises(ValueError):
        s.write(bytes(9))
    s.submit()
    with pytest.raises(ValueError):
        s.submit()
    n = 0
    with pytest.raises(MapError) as ei:
        while True:
            urb.reserve(100)
            n += 1
    assert ei.value.errno == errno.ENOSPC and n == (4096 - 16) // 112
    urb.close()


@pytest.mark.kernel
def test_drain_script_matches_the_kernel(kernel):
    obj, eb = ebee_backend()
    want = script(eb)
    with ebee.load(OBJ).load_kernel() as k:
        with ebee.kernel.UserRingBufWriter(k.maps["urb"]) as w:
            got = script(Backend(k.programs, k.maps, w, lambda: w.data))
    assert got == want


# -- random scripts, both backends ----------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

OPS = st.lists(st.one_of(
    st.tuples(st.just("submit"), st.integers(0, 600)),
    st.tuples(st.just("discard"), st.integers(0, 300)),
    st.tuples(st.just("hold"), st.integers(0, 64)),       # reserve, submit at the next drain
    st.tuples(st.just("drain"), st.integers(0, 4)),       # callback stops after N (0: never)
), min_size=1, max_size=40)


def random_script(b: Backend, ops) -> list:
    log, held, n = [], [], 0
    for op, arg in ops:
        try:
            if op in ("submit", "discard"):
                n += 1
                b.w.submit(sample(n, arg) + bytes(arg % 17), discard=op == "discard")
                log.append((op, "ok"))
            elif op == "hold":
                held.append(b.w.reserve(16 + arg))
                log.append((op, "ok"))
            else:
                b.cfg(stop_after=arg)
                log.append((op, b.drain()))
                for s in held:
                    s.write(sample(99, 99))
                    s.submit()
                held.clear()
        except OSError as e:
            log.append((op, errno.errorcode[e.errno]))
    for s in held:
        s.discard()
    b.cfg()
    log.append(("final", b.drain()))
    return log


@pytest.fixture(scope="module")
def both():
    """One ring in each backend for all examples: every example leaves both drained, at
    the same positions."""
    obj, eb = ebee_backend()
    with ebee.load(OBJ).load_kernel() as k:
        with ebee.kernel.UserRingBufWriter(k.maps["urb"]) as w:
            yield eb, Backend(k.programs, k.maps, w, lambda: w.data)


@pytest.mark.kernel
@settings(max_examples=60, deadline=None)
@given(ops=OPS)
def test_random_scripts_match_the_kernel(kernel, both, ops):
    eb, kb = both
    assert random_script(kb, ops) == random_script(eb, ops)
