"""Random and mutated BTF: parsing and every consumer raise BTFError or succeed -- nothing else."""
from __future__ import annotations

import os
import struct
import time

from hypothesis import HealthCheck, given, settings, strategies as st

from btf_testlib import DATA
from ebee.btf import BTF, BTFError, Kind
from ebee.btf.builder import BTFBuilder
from ebee.btf.elf import btf_sections

# EBEE_FUZZ_EXAMPLES scales every test here (default: a few hundred examples each)
SCALE = int(os.environ.get("EBEE_FUZZ_EXAMPLES", "0")) or None


def examples(n: int) -> int:
    return SCALE or n


SEEDS = [btf_sections((DATA / n).read_bytes()).btf for n in ("btf_kinds.o", "core_kern.o",
                                                              "linum.o")]
SEEDS.append(btf_sections((DATA / "btf_kinds_be.o").read_bytes()).btf)


def exercise(data: bytes) -> None:
    """Parse, then use every type the way the tools do; only BTFError may escape."""
    start = time.monotonic()
    try:
        btf = BTF.from_bytes(data)
    except BTFError:
        return
    btf.format_raw()
    btf.format_json()
    try:
        btf.format_c()
    except BTFError:
        pass
    for t in btf:
        for fn in (btf.sizeof, btf.alignof, btf.resolve):
            try:
                fn(t)
            except BTFError:
                pass
        if t.kind in (Kind.STRUCT, Kind.UNION, Kind.INT, Kind.ARRAY, Kind.ENUM, Kind.DATASEC):
            try:
                btf.format_value(t.id, bytes(range(64)) * 4)
                btf.format_value(t.id, b"\xff" * 8, json=True)
            except BTFError:
                pass
    assert time.monotonic() - start < 10, "too slow: a hang in the making"


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes(data):
    exercise(data)


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_real_btf(seed, data):
    b = bytearray(seed)
    lo = data.draw(st.sampled_from([0, 24, 24, 24]))    # mostly past the header
    for _ in range(data.draw(st.integers(1, 4))):
        if data.draw(st.booleans()):
            i = data.draw(st.integers(lo, len(b) - 1))
            b[i] = data.draw(st.integers(0, 255))
        else:                       # a whole u32: small values make plausible type ids
            i = data.draw(st.integers(lo // 4, len(b) // 4 - 1)) * 4
            v = data.draw(st.one_of(st.integers(0, 64), st.integers(0, 0xFFFFFFFF)))
            struct.pack_into("<I", b, i, v)
    cut = data.draw(st.one_of(st.just(len(b)), st.just(len(b)), st.integers(0, len(b))))
    exercise(bytes(b[:cut]))


@st.composite
def random_btf(draw) -> bytes:
    """Well-formed encodings with arbitrary (possibly absurd) references between types."""
    b = BTFBuilder(byteorder=draw(st.sampled_from(["little", "big"])))
    n = draw(st.integers(1, 12))
    ref = st.one_of(st.integers(1, n), st.integers(0, n + 1))
    name = st.sampled_from(["", "a", "b", "s", "int", "a___1"])
    for _ in range(n):
        k = draw(st.sampled_from(list(Kind)[1:]))
        nm = draw(name)
        if k is Kind.INT:
            b.add_int(nm or "i", draw(st.sampled_from([1, 2, 4, 8, 16])), signed=draw(st.booleans()))
        elif k is Kind.PTR:
            b.add_ptr(draw(ref))
        elif k is Kind.ARRAY:
            b.add_array(draw(ref), draw(ref), draw(st.integers(0, 5)))
        elif k in (Kind.STRUCT, Kind.UNION):
            ms = [(draw(name), draw(ref), draw(st.integers(0, 64)), draw(st.integers(0, 3)))
                  for _ in range(draw(st.integers(0, 3)))]
            (b.add_struct if k is Kind.STRUCT else b.add_union)(nm, draw(st.integers(0, 16)), ms)
        elif k in (Kind.ENUM, Kind.ENUM64):
            vals = [(draw(name) or "V", draw(st.integers(-5, 5))) for _ in range(draw(st.integers(0, 3)))]
            (b.add_enum if k is Kind.ENUM else b.add_enum64)(nm, draw(st.sampled_from([1, 4, 8])), vals)
        elif k is Kind.FWD:
            b.add_fwd(nm or "f", union=draw(st.booleans()))
        elif k in (Kind.TYPEDEF, Kind.TYPE_TAG):
            (b.add_typedef if k is Kind.TYPEDEF else b.add_type_tag)(nm or "t", draw(ref))
        elif k in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT):
            {Kind.CONST: b.add_const, Kind.VOLATILE: b.add_volatile,
             Kind.RESTRICT: b.add_restrict}[k](draw(ref))
        elif k is Kind.FUNC:
            b.add_func(nm or "fn", draw(ref), draw(st.integers(0, 2)))
        elif k is Kind.FUNC_PROTO:
            b.add_func_proto(draw(ref), [(draw(name), draw(ref)) for _ in range(draw(st.integers(0, 3)))])
        elif k is Kind.VAR:
            b.add_var(nm or "v", draw(ref), draw(st.integers(0, 2)))
        elif k is Kind.DATASEC:
            b.add_datasec(nm or ".d", 16, [(draw(ref), draw(st.integers(0, 8)), 4)])
        elif k is Kind.FLOAT:
            b.add_float(nm or "float", draw(st.sampled_from([4, 8])))
        elif k is Kind.DECL_TAG:
            b.add_decl_tag(nm or "tag", draw(ref), draw(st.integers(-1, 2)))
    return b.to_bytes()


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(random_btf())
def test_random_type_graphs(data):
    exercise(data)


ELF = (DATA / "linum.o").read_bytes()


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_elf_objects(data):
    """Corrupt ELF headers and section tables: btf_sections says what is wrong, or finds BTF."""
    b = bytearray(ELF)
    shoff = struct.unpack_from("<Q", ELF, 0x28)[0]
    for _ in range(data.draw(st.integers(1, 4))):
        # aim at the ELF header and the section header table
        i = data.draw(st.one_of(st.integers(0, 63), st.integers(shoff, len(b) - 1)))
        b[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.just(len(b)), st.integers(0, len(b))))
    try:
        secs = btf_sections(bytes(b[:cut]))
    except BTFError:
        return
    exercise(secs.btf)
