"""The ring buffer consumer's batch path gives what the record-by-record walk gives."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from ebee import Map, uapi as U
from ebee.events import Record

HDR = U.BPF_RINGBUF_HDR_SZ


def produce(rb, ops):
    """ops: record sizes; negative: reserve and discard; None: consume now."""
    want = []
    for op in ops:
        if op is None:
            yield want
            want = []
            continue
        addr = rb.reserve(abs(op))
        if not addr:
            continue
        rb.data.buf[addr - rb.data.start:addr - rb.data.start + abs(op)] = bytes([op % 251]) * abs(op)
        rb.commit(addr, U.BPF_RB_NO_WAKEUP, op < 0)
        if op >= 0:
            want.append(bytes([op % 251]) * op)
    yield want


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.sampled_from([0, 8, 16, 16, 16, 100, -16]), st.none()),
                max_size=80), st.booleans())
def test_raw_and_record_readers_agree_with_the_walk(ops, raw):
    rb = Map(U.MapType.RINGBUF, 0, 0, 4096)
    r = rb.reader(raw=raw)
    got, want = [], []
    for batch in produce(rb, ops):
        want += batch
        items = r.drain()
        got += items if raw else [i.data for i in items if not i.lost]
    assert got == want
    assert r.lost == rb.dropped


def test_corrupted_header_in_a_uniform_batch():
    rb = Map(U.MapType.RINGBUF, 0, 0, 4096)
    for i in range(5):
        assert rb.output(bytes([i]) * 16, U.BPF_RB_NO_WAKEUP) == 0
    rb.data.buf[2 * 24] ^= 0xFF          # the third record's length
    recs = rb.reader().drain()
    assert recs == [Record(b"\0" * 16), Record(b"\1" * 16), Record(b"", lost=1),
                    Record(b"\3" * 16), Record(b"\4" * 16)]
    assert rb.corrupted == 1
    for i in range(3):
        rb.output(bytes([i]) * 16, U.BPF_RB_NO_WAKEUP)
    rb.data.buf[5 * 24 + 24] ^= 0xFF      # the second record of this batch
    seen = []
    raw = rb.reader(raw=True, lost_callback=lambda cpu, n: seen.append((cpu, n)))
    assert raw.drain() == [b"\0" * 16, b"\2" * 16] and raw.lost == 1 and seen == [(-1, 1)]
