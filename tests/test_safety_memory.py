"""What an unverified program can do to ebee's memory stays confined.

- The ring buffer trusts its own table of reservations, never the header a
  program can overwrite: a corrupted header is skipped and reported (one lost
  record), later records still arrive, and nothing raises ``BufferError``.
- A returned function's stack frame is gone: loads, stores and helpers that
  reach above the running function's frame fault (or, for ``probe_read*``,
  return the errno of any unreadable address), in both engines.
"""
from __future__ import annotations

import errno

import pytest

import ebee
from ebee.asm import assemble
from ebee.engines import Machine
from ebee.errors import MemoryFault, VMError
from ebee.program import Program
from ebee.testrun.runner import Runner
from ebee.uapi import MapType, ProgType

ENGINES = ["interp", "jit"]


@pytest.fixture
def rb():
    m = ebee.Map(MapType.RINGBUF, 0, 0, 4096)
    yield m
    m.close()


def _producer(rb, before: str = "", after: str = "") -> Program:
    """Reserve 16 bytes, write 'AAAA', (``before``), submit, (``after``: r6 is the record)."""
    return Program.from_insns(assemble(f"""r1 = map[id:{rb.id}] ll
r2 = 16
r3 = 0
call bpf_ringbuf_reserve
if r0 == 0 goto out
r6 = r0
r1 = 0x41414141
*(u64 *)(r6 +0) = r1
{before}
r1 = r6
r2 = 0
call bpf_ringbuf_submit
{after}
out:
r0 = 2
exit
"""), ProgType.XDP)


def _run(prog, engine):
    with Runner(prog, engine=engine) as r:
        return r.run(bytes(64))


HEADERS = {"huge length": "r1 = 0x7ffffff0\n*(u32 *)(r6 -8) = r1",
           "busy bit": "r1 = 0x80000010\n*(u32 *)(r6 -8) = r1",
           "zeroed": "r1 = 0\n*(u64 *)(r6 -8) = r1",
           "discard bit": "r1 = 0x40000010\n*(u32 *)(r6 -8) = r1"}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", sorted(HEADERS))
def test_header_overwritten_before_submit_is_restored(rb, engine, kind):
    assert _run(_producer(rb, before=HEADERS[kind]), engine).retval == 2
    assert _run(_producer(rb), engine).retval == 2
    recs = rb.reader().drain()
    assert [(r.data[:4], r.lost) for r in recs] == [(b"AAAA", 0)] * 2
    assert rb.corrupted == 0


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", sorted(HEADERS))
def test_header_overwritten_after_submit_is_skipped_and_reported(rb, engine, kind):
    assert _run(_producer(rb, after=HEADERS[kind]), engine).retval == 2
    for _ in range(3):
        assert _run(_producer(rb), engine).retval == 2
    lost = []
    recs = rb.reader(lost_callback=lambda cpu, n: lost.append(n)).drain()
    assert [r.data[:4] for r in recs] == [b"AAAA"] * 3          # nothing after it is lost
    assert lost == [1] and rb.corrupted == 1
    assert rb.consume() == [] and rb.query(0) == 0              # BPF_RB_AVAIL_DATA: all read
    assert _run(_producer(rb), engine).retval == 2              # and the ring still works
    assert [r[:4] for r in rb.consume()] == [b"AAAA"]


@pytest.mark.parametrize("engine", ENGINES)
def test_submitting_twice_or_a_forged_record_is_refused(rb, engine):
    with pytest.raises(VMError, match="not a reserved ring buffer record"):
        _run(_producer(rb, after="r1 = r6\nr2 = 0\ncall bpf_ringbuf_submit"), engine)
    with pytest.raises(VMError, match="not a reserved ring buffer record"):
        _run(_producer(rb, before="r1 = r6\nr1 += 64\nr2 = 0\ncall bpf_ringbuf_discard"), engine)
    assert [r[:4] for r in rb.consume()] == [b"AAAA"]


def test_user_ring_buffer_refuses_a_sample_past_the_producer():
    urb = ebee.Map(MapType.USER_RINGBUF, 0, 0, 4096)
    urb.submit(b"one")
    urb.submit(b"two")
    urb.data.buf[0:4] = (0x100).to_bytes(4, "little")      # longer than what was produced
    assert urb.drain() == [] and urb.corrupted == 1         # as __bpf_user_ringbuf_peek
    urb.close()


# -- returned frames -----------------------------------------------------------------------

CALLEE = """
sub:
r1 = 0x1234
*(u64 *)(r10 -8) = r1
r0 = r10
r0 += -8
exit
"""


def _machine_run(src: str, engine: str) -> int:
    with Machine() as m:
        return m.run(assemble(src), engine=engine).retval


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("access", ["r1 = *(u64 *)(r0 +0)", "*(u64 *)(r0 +0) = 1",
                                    "r1 = *(u8 *)(r0 +7)", "lock *(u64 *)(r0 +0) += r0"])
def test_a_returned_frame_is_unreachable(engine, access):
    src = f"call sub\n{access}\nr0 = 0\nexit\n" + CALLEE
    with pytest.raises(MemoryFault, match="above the running function's frame"):
        _machine_run(src, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_helpers_cannot_reach_a_returned_frame(engine):
    read = "call sub\nr3 = r0\nr1 = r10\nr1 += -8\nr2 = 8\ncall bpf_probe_read_user\nexit\n"
    assert _machine_run(read + CALLEE, engine) == -errno.EFAULT & (1 << 64) - 1
    # the _kernel variant: ebee's memory is at user addresses, so -ERANGE on x86-64
    got = _machine_run(read.replace("_user", "_kernel") + CALLEE, engine)
    assert got in (-errno.ERANGE & (1 << 64) - 1, -errno.EFAULT & (1 << 64) - 1)
    write = "call sub\nr1 = r0\nr2 = 8\ncall bpf_get_current_comm\nexit\n"
    with pytest.raises(MemoryFault, match="no writable region"):
        _machine_run(write + CALLEE, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_callees_still_reach_their_callers_frames(engine):
    src = """r1 = 0
*(u64 *)(r10 -8) = r1
r1 = r10
r1 += -8
call sub
r0 = *(u64 *)(r10 -8)
exit
sub:
r2 = 0x77
*(u64 *)(r1 +0) = r2
r6 = r1
r1 = r10
r1 += -16
r2 = 8
r3 = r6
call bpf_probe_read_kernel
r0 = *(u64 *)(r10 -16)
exit
"""
    assert _machine_run(src, engine) == 0x77
