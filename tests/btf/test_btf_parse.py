"""Parsing BTF: every kind, both byte orders, split BTF, queries, strict validation."""
from __future__ import annotations

import struct

import pytest

from ebee import uapi as U
from ebee.btf import (BTF, BTFError, Array, DeclTag, Enum, Enum64, Float, Func, FuncProto, Fwd,
                      Int, Kind, Struct, TypeTag, Union, Var, VOID)
from ebee.btf.builder import BTFBuilder
from ebee.btf.elf import btf_sections

from btf_testlib import DATA


@pytest.fixture(scope="module")
def kinds() -> BTF:
    return BTF.from_file(DATA / "btf_kinds.o")


def test_every_kind_is_present(kinds):
    present = {t.kind for t in kinds}
    assert present == set(Kind) - {Kind.UNKN}


def test_ints_and_floats(kinds):
    i = kinds.find("int", Kind.INT)
    assert (i.size, i.nr_bits, i.bits_offset, i.signed) == (4, 32, 0, True)
    assert kinds.find("_Bool").is_bool
    assert kinds.find("__int128").size == 16
    assert not kinds.find("unsigned __int128").signed
    assert isinstance(kinds.find("double"), Float) and kinds.find("double").size == 8


def test_structs_bitfields_and_anonymous_members(kinds):
    bits = kinds.find("bits", Kind.STRUCT)
    assert bits.kflag
    assert [(m.name, m.bits_offset, m.bitfield_size) for m in bits.members] == [
        ("a", 0, 3), ("b", 3, 5), ("c", 8, 40), ("flag", 48, 1), ("tail", 56, 0)]
    nested = kinds.find("nested", Kind.STRUCT)
    anon = kinds[nested.member("").type_id]
    assert isinstance(anon, Union) and anon.anonymous
    assert kinds.resolve(nested.member("cv").type_id).name == "int"
    with pytest.raises(KeyError, match="no member 'nope'"):
        nested.member("nope")


def test_enums(kinds):
    temp = kinds.find("temp", Kind.ENUM)
    assert temp.signed and temp.value_of("COLD") == -10
    color = kinds.find("color")
    assert isinstance(color, Enum) and not color.signed and color.value_of("BLUE") == 6
    wide = kinds.find("wide")
    assert isinstance(wide, Enum64) and wide.value_of("W_BIG") == 0x1234567890
    assert kinds.find("small").size == 1


def test_fwd_func_var_datasec_tags(kinds):
    assert isinstance(kinds.find("fwd_union"), Fwd) and kinds.find("fwd_union").is_union
    assert not kinds.find("fwd_only").is_union
    gf = kinds.find("global_fn")
    assert isinstance(gf, Func) and gf.linkage == U.BtfFuncLinkage.GLOBAL
    assert kinds.find("helper_fn").linkage == U.BtfFuncLinkage.STATIC
    proto = kinds[gf.type_id]
    assert isinstance(proto, FuncProto) and [p.name for p in proto.params] == ["n"]
    assert any(isinstance(t, FuncProto) and t.variadic for t in kinds)
    v = kinds.find("static_counter")
    assert isinstance(v, Var) and v.linkage == U.BtfVarLinkage.STATIC
    data = kinds.find(".data", Kind.DATASEC)
    assert {kinds[x.type_id].name for x in data.vars} == {"initialized", "tagged_var"}
    ksyms = kinds.find(".ksyms", Kind.DATASEC)
    assert [kinds[x.type_id].kind for x in ksyms.vars] == [Kind.FUNC]
    tags = {(t.name, kinds[t.type_id].name, t.component_idx) for t in kinds
            if isinstance(t, DeclTag)}
    assert ("param_tag", "helper_fn", 0) in tags and ("struct_tag", "bits", -1) in tags
    callback = [m.name for m in kinds.find("nested").members].index("callback")
    assert ("member_tag", "nested", callback) in tags
    tt = next(t for t in kinds if isinstance(t, TypeTag))
    assert tt.name == "user" and kinds[tt.type_id].name == "int"


def test_big_endian_object_decodes_to_the_same_types(kinds):
    be = BTF.from_file(DATA / "btf_kinds_be.o")
    assert be.byteorder == "big" and kinds.byteorder == "little"
    assert list(be) == list(kinds)


def test_queries(kinds):
    nested = kinds.find("nested")
    assert kinds.sizeof(nested) == nested.size
    arr = next(t for t in kinds if isinstance(t, Array) and t.nelems == 2)
    assert kinds.sizeof(arr) == 2 * kinds.sizeof(arr.type_id)
    assert kinds.alignof(kinds.find("packed_s")) == 1
    assert kinds.alignof(kinds.find("padded")) == 8     # aligned(16) is not in BTF
    assert kinds.resolve(kinds.find("u32_t")).name == "unsigned int"
    assert kinds[0] is VOID and kinds.kind(0) is Kind.UNKN
    assert kinds.find_all("nested", "struct") == [nested]
    with pytest.raises(KeyError, match="no BTF STRUCT type named 'nope'"):
        kinds.find("nope", Kind.STRUCT)
    with pytest.raises(KeyError):
        kinds[kinds.type_count]
    for bad in (0, kinds.find("fwd_only").id, kinds.find("global_fn").id):
        with pytest.raises(BTFError, match="has no size"):
            kinds.sizeof(bad)


def test_pointer_size_comes_from_the_elf_class(kinds):
    assert kinds.pointer_size == 8
    b = BTFBuilder()
    b.add_int("long int", 4, signed=True)
    assert b.build().pointer_size == 4        # libbpf's guess from 'long'


def test_vmlinux(vmlinux):
    ts = vmlinux.find("task_struct", Kind.STRUCT)
    assert vmlinux.sizeof(ts) == ts.size > 1000
    assert vmlinux.resolve(ts.member("pid").type_id).name == "int"
    assert BTF.load_vmlinux() is vmlinux          # cached
    assert len(vmlinux) > 10000 and vmlinux.start_id == 1


def test_split_btf_continues_ids_and_strings(vmlinux):
    b = BTFBuilder(vmlinux)
    i = b.add_int("mod_int", 4, signed=True)
    ts = vmlinux.find("task_struct").id
    s = b.add_struct("mod_struct", 16, [("a", i, 0), ("t", b.add_ptr(ts), 64)])
    split = b.build()
    assert split.start_id == vmlinux.type_count == i
    assert split[s].members[1].name == "t" and split[split[s].members[1].type_id].type_id == ts
    assert split.find("task_struct").id == ts and split.find("mod_struct").id == s
    assert [t.name for t in split] == ["mod_int", "", "mod_struct"]
    assert len(list(split.all_types())) == len(vmlinux) + 3


def test_builder_round_trip_both_byte_orders(kinds):
    for order in ("little", "big"):
        b = BTFBuilder(byteorder=order)
        i = b.add_int("int", 4, signed=True)
        e = b.add_enum64("e", 8, [("A", -1)], signed=True)
        t = b.add_type_tag("rcu", i, attribute=True)
        btf = b.build()
        assert btf.byteorder == order
        assert btf[e].values[0].value == -1 and btf[t].kflag


# ------------------------------------------------------------------------------ validation


def _blob(*words: int, strings: bytes = b"\0int\0") -> bytes:
    types = struct.pack(f"<{len(words)}I", *words)
    return struct.pack("<HBBIIIII", U.BTF_MAGIC, 1, 0, 24, 0, len(types), len(types),
                       len(strings)) + types + strings


INT_INFO = int(Kind.INT) << 24


@pytest.mark.parametrize("data, message", [
    (b"", "header truncated"),
    (b"\x00\x01" + bytes(30), "bad BTF magic"),
    (_blob()[:2] + b"\x02" + _blob()[3:], "unsupported BTF version 2"),
    (_blob()[:3] + b"\x01" + _blob()[4:], "header flags"),
    (_blob(1, INT_INFO, 4, 32)[:-3], "runs past the end"),
    (_blob(1, 0, 4), "unknown kind 0"),
    (_blob(1, 25 << 24, 4), "unknown kind 25"),
    (_blob(1, INT_INFO, 4), "INT record truncated"),
    (_blob(1, INT_INFO, 3, 24), "INT size 3"),
    (_blob(1, INT_INFO, 4, 33), "cannot hold 33 bits"),
    (_blob(99, INT_INFO, 4, 32), "name offset 99 is outside the string section"),
    (_blob(0, int(Kind.PTR) << 24, 7), r"refers to type \[7\], but the last type is \[1\]"),
    (_blob(0, int(Kind.CONST) << 24, 1), "contains itself"),
    (_blob(0, int(Kind.PTR) << 24, 1), "refers to itself through pointers"),
    (_blob(0, int(Kind.PTR) << 24, 2, 0, int(Kind.ARRAY) << 24, 0, 1, 1, 4),
     "refers to itself through pointers"),
    (_blob(1, int(Kind.FUNC) << 24, 0), "not a FUNC_PROTO"),
    (_blob(1, (int(Kind.PTR) << 24) | 1, 0), "vlen 1 on PTR"),
    (_blob(1, INT_INFO | (1 << 31), 4, 32), "kind_flag is set on INT"),
    (_blob(1, int(Kind.TYPEDEF) << 24, 2, 1, int(Kind.TYPEDEF) << 24, 1), "contains itself"),
    (_blob(1, int(Kind.STRUCT) << 24 | 1, 4, 1, 1, 64), "lies beyond the STRUCT size"),
    (_blob(strings=b"x\0"), "must start with the empty string"),
    (_blob(strings=b"\0x"), "not NUL-terminated"),
])
def test_invalid_btf_is_rejected_with_a_reason(data, message):
    with pytest.raises(BTFError, match=message):
        BTF.from_bytes(data)


def test_error_names_the_type_and_offset():
    with pytest.raises(BTFError, match=r"type \[2\] at type-section offset 16: unknown kind 0"):
        BTF.from_bytes(_blob(1, INT_INFO, 4, 32, 0, 0, 0))


def test_elf_without_btf_or_corrupt(tmp_path):
    with pytest.raises(BTFError, match="not an ELF file"):
        btf_sections(b"hello")
    data = bytearray((DATA / "linum.o").read_bytes())
    with pytest.raises(BTFError, match="run past the end"):
        btf_sections(bytes(data[:200]))
    struct.pack_into("<H", data, 0x3E, 200)          # e_shstrndx out of range
    with pytest.raises(BTFError, match="name table index 200"):
        btf_sections(bytes(data))
