"""The native capture scanner and writer (ebee.engines.jit.capture) against the Python
reader and writer (ebee.packet.pcap): the same frames, timestamps and errors, the same
bytes written -- on the shipped captures, on generated ones and on damaged ones."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

pytest.importorskip("llvmlite")

from ebee.engines.jit.capture import open_capture  # noqa: E402
from ebee.packet import pcap  # noqa: E402

EX = Path(__file__).resolve().parent.parent / "examples"
CAPTURES = sorted((EX / "pcap").glob("*.pcap*"))


def _python(path) -> tuple[list, str | None]:
    out = []
    try:
        for f in pcap.read(str(path)):
            out.append((f.index, f.data, f.ts_ns, f.linktype))
    except pcap.PcapError as e:
        return out, str(e)
    return out, None


def _native(path, chunk: int = 5) -> tuple[list, str | None]:
    out = []
    try:
        with open_capture(str(path), chunk=chunk) as c:
            lt = c.layout.linktype
            for ch in c.chunks():
                assert ch.min_len == min(ch.lens[:ch.count])
                assert ch.max_len == max(ch.lens[:ch.count])
                for k in range(ch.count):
                    t = c.ts_ns(ch.ts[k]) if c.raw_ts else ch.ts[k]
                    out.append((ch.index + k, ch.data(k), t, lt))
            for f in c.rest():
                out.append((f.index, f.data, f.ts_ns, f.linktype))
    except pcap.PcapError as e:
        return out, str(e)
    return out, None


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_shipped_captures_scan_as_the_reader_reads(path):
    ref = _python(path)
    assert ref[1] is None and len(ref[0]) > 0
    assert _native(path) == ref


def _write(path, frames, *, ng: bool, nano: bool = True, comments=()):
    with pcap.Writer(str(path), pcapng=ng, nano=nano) as w:
        for k, (data, ts) in enumerate(frames):
            w.write(data, ts_ns=ts, comment=comments[k] if k < len(comments) else None)


def _swap_pcap(buf: bytes) -> bytes:
    """The same capture in the other byte order (pcap only)."""
    out = bytearray(struct.pack(">IHHiIII", *struct.unpack("<IHHiIII", buf[:24])))
    pos = 24
    while pos < len(buf):
        sec, frac, cap, wire = struct.unpack_from("<IIII", buf, pos)
        out += struct.pack(">IIII", sec, frac, cap, wire) + buf[pos + 16:pos + 16 + cap]
        pos += 16 + cap
    return bytes(out)


frames_st = st.lists(st.tuples(st.binary(min_size=0, max_size=90),
                               st.integers(0, (1 << 32) * 10**9 - 1)), max_size=12)
damage_st = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=frames_st, ng=st.booleans(), nano=st.booleans(), swap=st.booleans(),
       cut=st.integers(0, 64), damage=damage_st,
       comments=st.lists(st.sampled_from([None, "XDP_TX", "é", "XDP_REDIRECT -> ifindex 1"]),
                         max_size=12))
def test_generated_and_damaged_captures_scan_as_the_reader_reads(tmp_path, frames, ng, nano,
                                                                 swap, cut, damage, comments):
    p = tmp_path / ("c.pcapng" if ng else "c.pcap")
    _write(p, frames, ng=ng, nano=nano, comments=comments)
    buf = bytearray(p.read_bytes())
    if swap and not ng:
        buf = bytearray(_swap_pcap(bytes(buf)))
    for at, v in damage:
        buf[at % len(buf)] = v
    if cut:
        del buf[len(buf) - min(cut, len(buf) - 1):]
    p.write_bytes(bytes(buf))
    assert _native(p, chunk=3) == _python(p)
