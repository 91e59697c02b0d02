"""Typed values from BTF: maps and readers give and take ints, records, lists and strings."""
from __future__ import annotations

import ctypes
import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import ebee
from ebee import uapi as U
from ebee.btf import BTF, Kind
from ebee.btf.pyvalues import BTFValue
from ebee.btf.values import value_json
from ebee.maps import Map
from ebee.testrun import run_event

ROOT = Path(__file__).resolve().parents[1]
KINDS = ROOT / "tests" / "data" / "btf" / "btf_kinds.o"
EXAMPLES = ROOT / "examples" / "c"


@pytest.fixture(scope="module")
def kinds_btf() -> BTF:
    with ebee.load(KINDS, verify=False) as obj:
        return obj.spec.btf


def test_map_items_lookup_update_with_btf_values():
    with ebee.load(EXAMPLES / "syscall_counter.o") as obj:
        m = obj.maps["syscalls"].use_btf()
        m[{"comm": "bash"}] = 5                       # a dict for a struct key
        m.update({"comm": "python3"}, 7)
        raw_key = b"curl".ljust(16, b"\0")
        m.update(raw_key, (9).to_bytes(8, "little"))  # bytes stay accepted
        items = dict((k.comm, v) for k, v in m.items())
        assert items == {"bash": 5, "python3": 7, "curl": 9}
        key = next(k for k in m.keys() if k.comm == "bash")
        assert repr(key) == "comm_key(comm='bash')"
        assert m[key] == 5 and m.lookup(raw_key) == 9  # a record back in as a key
        key.comm = "zsh"
        m[key] = 1
        assert m[{"comm": "zsh"}] == 1
        with pytest.raises(ValueError, match="do not fit in char\\[16\\]"):
            m[{"comm": "x" * 17}] = 1
        with pytest.raises(ValueError, match="has no member 'pid'"):
            m[{"pid": 1}] = 1


def test_struct_values_match_the_btf_dump(kinds_btf):
    """The record's fields are what `bpftool map dump` (ebee.btf.values) prints for the
    same bytes: ints, bitfields, signed and unsigned, arrays, pointers."""
    value = kinds_btf.find("value", Kind.STRUCT)
    bv = BTFValue(kinds_btf, value.id)
    data = bytes((i * 37 + 11) & 0xFF for i in range(bv.size))
    rec = bv.decode(data)
    want = value_json(kinds_btf, value.id, data)
    assert rec.count == want["count"]
    # bpftool prints bitfields as unsigned hex
    assert [rec.bits.a, rec.bits.b & 0x1F, rec.bits.c] == \
        [int(want["bits"][k], 16) for k in ("a", "b", "c")]
    assert rec.bits.tail == want["bits"]["tail"]
    assert rec.arr == want["arr"] and rec.ptr == want["ptr"]
    assert rec.small_signed == want["small_signed"] and rec.ok is bool(want["ok"])
    assert rec.raw.word == want["raw"]["word"] and rec.raw.bytes == want["raw"]["bytes"]
    assert bv.encode(rec)[:8] == data[:8]


def test_bitfields_round_trip_as_the_dump_reads_them(kinds_btf):
    tid = kinds_btf.find("bits", Kind.STRUCT).id
    bv = BTFValue(kinds_btf, tid)
    for a, b, c, flag, tail in ((5, -3, (1 << 40) - 2, True, 200), (0, 15, 12345, False, 1),
                                (7, -16, 0, True, 0)):
        raw = bv.encode({"a": a, "b": b, "c": c, "flag": flag, "tail": tail})
        rec = bv.decode(raw)
        assert (rec.a, rec.b, rec.c, rec.flag, rec.tail) == (a, b, c, flag, tail)
        dumped = value_json(kinds_btf, tid, raw)
        assert [int(dumped[k], 16) for k in ("a", "b", "c", "flag")] == \
            [a, b & 0x1F, c, int(flag)]
        assert dumped["tail"] == tail
        assert bv.encode(dataclasses.asdict(rec)) == raw
    with pytest.raises(ValueError, match="does not fit in 3 bits"):
        bv.encode({"a": 8})


def _composites(btf: BTF) -> list[int]:
    return [t.id for t in btf if t.kind in (Kind.STRUCT, Kind.UNION) and btf.sizeof(t.id)
            and t.members and not _flexible(btf, t)]


def _flexible(btf: BTF, t) -> bool:
    last = btf.resolve(t.members[-1].type_id)
    return last.kind is Kind.ARRAY and last.nelems == 0


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_decode_encode_decode_is_stable(kinds_btf, data):
    tid = data.draw(st.sampled_from(_composites(kinds_btf)))
    bv = BTFValue(kinds_btf, tid)
    raw = data.draw(st.binary(min_size=bv.size, max_size=bv.size))
    v = bv.decode(raw)
    assert bv.decode(bv.encode(v)) == v


def test_ring_buffer_records_decoded_by_type(kinds_btf):
    rb = Map(U.MapType.RINGBUF, 0, 0, 4096)
    rb.source_btf = kinds_btf                 # as ebee.load sets it for an object's maps
    key = BTFValue.named(kinds_btf, "struct key")
    with rb.reader(type="struct key") as r:
        rb.output(key.encode({"id": 7, "name": "seven"}), 0)
        (rec,) = r.drain()
    assert (rec.value.id, rec.value.name) == (7, "seven") and rec.data == key.encode(rec.value)
    with pytest.raises(ValueError, match="no BTF type 'struct nope'"):
        rb.reader(type="struct nope")


def test_ring_buffer_of_an_object_with_a_btf_value():
    with ebee.load(EXAMPLES / "ringbuf_events.o") as obj:
        # clang leaves struct event out of the object's BTF (no global uses it): name a
        # type the caller builds, here the same layout from ctypes, or pass a BTFValue
        class Event(ctypes.Structure):
            _fields_ = [("pid", ctypes.c_uint32), ("uid", ctypes.c_uint32),
                        ("ts_ns", ctypes.c_uint64), ("comm", ctypes.c_char * 16)]
        with obj.maps["events"].reader() as r:
            run_event(obj.programs["on_exec"], bytes(64))
            (rec,) = r.drain()
        assert Event.from_buffer_copy(rec.data).pid > 0 and rec.value is None
        with pytest.raises(ValueError, match="no BTF type 'struct event'"):
            obj.maps["events"].reader(type="struct event")


def test_globals_arrays_and_structs_read_as_python_values():
    with ebee.load(KINDS, verify=False) as obj:
        g = obj.bss.global_nested                       # struct nested, zeroed .bss
        assert g.kind == 0 and g.matrix == [[0, 0, 0], [0, 0, 0]] and g.point.x == 0
        obj.bss.global_nested = {"kind": 3, "matrix": [[1, 2, 3], [4, 5, 6]],
                                 "point": {"x": -1, "y": 2}, "color": 5}
        g = obj.bss.global_nested
        assert (g.kind, g.matrix, g.point.x, g.point.y, g.color) == \
            (3, [[1, 2, 3], [4, 5, 6]], -1, 2, 5)
        g.kind = 4
        obj.bss.global_nested = g                       # a record goes back as it came
        assert obj.bss.global_nested.kind == 4 and obj.data.initialized == 42
