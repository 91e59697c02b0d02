"""The instruction table: decoding, encoding and validation."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, strategies as st

from ebee import isa, uapi as U
from ebee.errors import DecodeError
from ebee.isa import Kind, decode, encode, make
from strategies import any_instruction


def raw(opcode, dst=0, src=0, off=0, imm=0) -> bytes:
    return struct.pack("<BBhi", opcode, (src << 4) | dst, off, imm)


def test_every_rfc9669_class_is_present():
    kinds = {s.kind for s in isa.TABLE}
    assert kinds == set(Kind)
    # RFC 9669 + Linux: 4 atomic ALU ops x {plain, fetch} + xchg + cmpxchg, for 32 and 64 bits
    assert len([s for s in isa.TABLE if s.kind is Kind.ATOMIC]) == 2 * (4 * 2 + 2)
    # ld_imm64 with every src value 0..6
    assert sorted(dict(s.fixed)["src"] for s in isa.TABLE if s.kind is Kind.LD_IMM64) == list(range(7))
    # calls: helper, local, kfunc, and callx
    assert {s.kind for s in isa.BY_OPCODE[U.BPF_JMP | U.BPF_CALL]} == {Kind.CALL, Kind.CALL_LOCAL,
                                                                     Kind.CALL_KFUNC}


def test_table_rows_are_unambiguous():
    for opcode, specs in isa.BY_OPCODE.items():
        keys = [tuple(sorted(s.fixed)) for s in specs]
        assert len(keys) == len(set(keys)), hex(opcode)


@pytest.mark.parametrize("code,fields,why", [
    (0x07, dict(off=1, imm=1), "invalid off 1"),          # add64 imm with an offset
    (0x0f, dict(imm=1), "reserved field imm"),             # add64 reg with an immediate
    (0x95, dict(dst=1), "reserved field dst"),             # exit
    (0x85, dict(off=1), "reserved field off"),             # call helper with an offset
    (0x8f, dict(), "unknown opcode"),                     # neg with BPF_X
    (0x38, dict(), "unknown opcode"),                     # ld_abs of a double word
    (0xdf, dict(imm=16), "unknown opcode"),               # alu64 | end | to_be
    (0xd4, dict(imm=8), "invalid imm 8"),                 # le8 does not exist
    (0x3f, dict(off=2), "invalid off 2"),                 # div with an unknown sign flag
    (0xdb, dict(imm=0x02), "invalid imm 2"),              # atomic with no such op
    (0xbc, dict(off=32), "invalid off 32"),               # 32-bit movsx from s32
    (0x18, dict(src=7), "invalid src 7"),                 # ld_imm64 pseudo 7
])
def test_invalid_encodings_are_rejected_with_reason(code, fields, why):
    data = raw(code, **fields) + (raw(0) if code == 0x18 else b"") + raw(0x95)
    with pytest.raises(DecodeError, match=why):
        decode(data)


def test_lddw_second_slot_must_be_clean():
    with pytest.raises(DecodeError, match="second slot"):
        decode(raw(0x18, dst=1, imm=5) + raw(0, dst=1) + raw(0x95))
    with pytest.raises(DecodeError, match="missing its second slot"):
        decode(raw(0x18, dst=1, imm=5))


def test_truncated_program():
    with pytest.raises(DecodeError, match="not a multiple of 8"):
        decode(b"\x95\x00\x00")


def test_register_numbers_above_10_are_invalid():
    with pytest.raises(DecodeError, match="invalid register r11"):
        decode(raw(0xb7, dst=11) + raw(0x95))


def test_lddw_immediate_and_pcs():
    insns = decode(raw(0x18, dst=1, imm=0x55667788) + raw(0, imm=0x11223344) + raw(0x95))
    assert insns[0].imm64 == 0x1122334455667788
    assert [i.pc for i in insns] == [0, 2]
    assert insns[0].slots == 2


def test_jump_targets():
    ja, gotol, jeq, call = decode(raw(0x05, off=2) + raw(0x06, imm=-2) + raw(0x15, dst=1, off=-3)
                                  + raw(0x85, src=1, imm=4))
    assert ja.jump_target() == 3 and gotol.jump_target() == 0
    assert jeq.jump_target() == 0 and call.jump_target() == 8


@given(any_instruction())
def test_encode_decode_round_trip(insn):
    data = insn.encode()
    back = decode(data + raw(0x95))[0]
    assert back.encode() == data
    assert back.spec is insn.spec


@given(st.binary(min_size=8, max_size=8 * 6).filter(lambda b: len(b) % 8 == 0))
def test_random_bytes_decode_or_fail_cleanly(data):
    try:
        insns = decode(data)
    except DecodeError as e:
        assert e.reason
        return
    assert encode(insns) == data


def test_make_checks_field_widths():
    with pytest.raises(ValueError, match="does not fit in 16 bits"):
        make("ja", off=1 << 15 << 1)
    with pytest.raises(ValueError, match="register 16 out of range"):
        make("mov", dst=16, imm=0, use_reg=False)
