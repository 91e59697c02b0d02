"""Printing values through BTF like `bpftool map dump`, checked against bpftool on kernel maps."""
from __future__ import annotations

import json
import random
import struct

import pytest

from btf_testlib import DATA, run_bpftool
from ebee.btf import BTF, BTFError
from ebee.btf.builder import BTFBuilder
from ebee.btf.values import format_map_dump, format_value, map_dump_json, value_json


def _hex(b: bytes) -> list[str]:
    return [f"{x:02x}" for x in b]


def _bytes(hexes: list[str]) -> bytes:
    return bytes(int(x, 16) for x in hexes)


@pytest.fixture
def kinds_maps(pin_dir):
    run_bpftool("prog", "loadall", str(DATA / "btf_kinds.o"), str(pin_dir),
                "pinmaps", f"{pin_dir}-maps")
    return f"{pin_dir}-maps"


def _kernel_entries(pin: str) -> list[tuple[bytes, bytes]]:
    return [(_bytes([x[2:] for x in e["key"]]), _bytes([x[2:] for x in e["value"]]))
            for e in json.loads(run_bpftool("-j", "map", "dump", "pinned", pin).stdout)]


def test_hash_map_dump_matches_bpftool(kinds_maps):
    btf = BTF.from_file(DATA / "btf_kinds.o")
    key_t, value_t = btf.find("key").id, btf.find("value").id
    ksz, vsz = btf.sizeof(key_t), btf.sizeof(value_t)
    rnd = random.Random(1234)
    pin = f"{kinds_maps}/kv"
    for n in range(12):
        name = rnd.choice([b"abc\0", b"abcdefgh", b"\x01\x02\0", b"", b"x y z\0"])
        key = struct.pack("<I", n) + name[:8].ljust(8, b"\0")
        value = bytearray(rnd.getrandbits(8) for _ in range(vsz))
        if n % 3 == 0:                        # known enumerators and a printable label
            value[8:12] = struct.pack("<I", rnd.choice([0, 5, 6]))
            value[48:54] = b"label\0"
        if n % 4 == 1:
            value[0:48] = bytes(48)           # zeros, NULL pointer
        run_bpftool("map", "update", "pinned", pin, "key", "hex", *_hex(key),
                    "value", "hex", *_hex(value))
    entries = _kernel_entries(pin)            # in the kernel's iteration order
    assert len(entries) == 12 and all(len(k) == ksz for k, _ in entries)
    assert format_map_dump(btf, key_t, value_t, entries) == \
        run_bpftool("map", "dump", "pinned", pin).stdout
    assert json.dumps(map_dump_json(btf, key_t, value_t, entries), separators=(",", ":")) + "\n" \
        == run_bpftool("-j", "map", "dump", "pinned", pin).stdout


@pytest.mark.parametrize("map_name, section", [("btf_kind_data", ".data"),
                                               ("btf_kind_rodata", ".rodata"),
                                               ("_data_custom", ".data.custom")])
def test_global_data_dump_matches_bpftool(kinds_maps, map_name, section):
    from elftools.elf.elffile import ELFFile
    btf = BTF.from_file(DATA / "btf_kinds.o")
    # the layout the loader knows from the ELF symbols (libbpf's btf_fixup_datasec)
    elf = ELFFile(open(DATA / "btf_kinds.o", "rb"))
    sec = elf.get_section_by_name(section)
    offsets = {s.name: (s["st_value"], s["st_size"])
               for s in elf.get_section_by_name(".symtab").iter_symbols()
               if s["st_shndx"] == elf.get_section_index(section) and s["st_info"]["type"] == "STT_OBJECT"}
    btf = btf.with_datasecs({section: (sec["sh_size"], offsets)})
    pin = f"{kinds_maps}/{map_name}"
    entries = _kernel_entries(pin)
    ds = btf.find(section, "datasec").id
    assert format_map_dump(btf, 0, ds, entries) == run_bpftool("map", "dump", "pinned", pin).stdout
    assert json.dumps(map_dump_json(btf, 0, ds, entries), separators=(",", ":")) + "\n" == \
        run_bpftool("-j", "map", "dump", "pinned", pin).stdout


# ------------------------------------------------------------------------------ by construction


@pytest.fixture(scope="module")
def small():
    b = BTFBuilder()
    ids = {}
    ids["int"] = b.add_int("int", 4, signed=True)
    ids["uchar"] = b.add_int("unsigned char", 1)
    ids["char"] = b.add_int("char", 1, signed=True)
    ids["cchar"] = b.add_int("cchar", 1, char=True)
    ids["bool"] = b.add_int("_Bool", 1, bool_=True)
    ids["float"] = b.add_float("float", 4)
    ids["double"] = b.add_float("double", 8)
    ids["u128"] = b.add_int("unsigned __int128", 16)
    ids["str"] = b.add_array(ids["char"], ids["int"], 4)
    ids["tdchar"] = b.add_typedef("char_t", ids["char"])
    ids["tdstr"] = b.add_array(ids["tdchar"], ids["int"], 4)
    ids["e"] = b.add_enum("e", 4, [("NEG", -1), ("ONE", 1)], signed=True)
    ids["e64"] = b.add_enum64("e64", 8, [("BIG", 1 << 40)])
    ids["bits"] = b.add_struct("bits", 4, [("a", ids["int"], 0, 3), ("b", ids["int"], 3, 13)])
    ids["fwd"] = b.add_fwd("opaque")
    ids["ptr"] = b.add_ptr(ids["int"])
    ids["s"] = b.add_struct("s", 16, [("f", ids["float"], 0), ("p", ids["ptr"], 64)])
    return b.build(), ids


def test_scalars(small):
    btf, t = small
    assert format_value(btf, t["int"], struct.pack("<i", -7)) == "-7"
    assert format_value(btf, t["char"], b"\xff") == "-1"
    assert format_value(btf, t["uchar"], b"\xff") == "255"
    assert format_value(btf, t["cchar"], b"A") == '"A"'
    assert format_value(btf, t["cchar"], b"\x01") == "0x1"
    assert value_json(btf, t["cchar"], b"\x01") == "\x01"
    assert format_value(btf, t["bool"], b"\x00\x00\x01\x00") == "true"   # read as int, like bpftool
    assert format_value(btf, t["u128"], (1 << 64 | 2).to_bytes(16, "little")) == \
        "0x10000000000000002"
    assert value_json(btf, t["u128"], (5).to_bytes(16, "little")) == "0x5"


def test_floats_are_printed(small):
    btf, t = small
    assert format_value(btf, t["float"], struct.pack("<f", 1.5)) == "1.5"
    assert value_json(btf, t["double"], struct.pack("<d", -0.25)) == -0.25
    assert format_value(btf, t["double"], struct.pack("<d", float("inf"))) == "inf"
    assert value_json(btf, t["double"], struct.pack("<d", float("nan"))) == "nan"
    assert value_json(btf, t["s"], struct.pack("<fxxxxQ", 2.0, 0x1000)) == {"f": 2.0, "p": 4096}
    assert format_value(btf, t["s"], bytes(16)) == '{\n    "f": 0.0,\n    "p": (nil)\n}'


def test_strings_enums_bitfields(small):
    btf, t = small
    assert format_value(btf, t["str"], b"hi\0\0") == '"hi"'
    assert format_value(btf, t["str"], b"abcd") == "[97,98,99,100\n]"         # no NUL
    assert format_value(btf, t["tdstr"], b"hi\0\0") == "[104,105,0,0\n]"      # typedef: no string
    assert format_value(btf, t["e"], struct.pack("<i", -1)) == '"NEG"'
    assert format_value(btf, t["e"], struct.pack("<i", 7)) == "7"
    assert value_json(btf, t["e64"], struct.pack("<Q", 1 << 40)) == "BIG"
    assert value_json(btf, t["bits"], struct.pack("<I", 5 | (300 << 3))) == {"a": "0x5",
                                                                              "b": "0x12c"}


def test_unprintable_kinds_stop_like_bpftool(small):
    btf, t = small
    assert format_value(btf, t["fwd"], b"") == "(fwd-kind-invalid)"
    with pytest.raises(BTFError, match="cannot be formatted"):
        value_json(btf, t["fwd"], b"")


def test_percpu_layout(small):
    btf, t = small
    text = format_map_dump(btf, t["int"], t["int"], [(struct.pack("<i", 1),
                                                      [struct.pack("<i", 10), struct.pack("<i", 11)])])
    assert text == ('[{\n        "key": 1,\n        "values": [{\n                "cpu": 0,\n'
                    '                "value": 10\n            },{\n                "cpu": 1,\n'
                    '                "value": 11\n            }\n        ]\n    }\n]\n')
    j = map_dump_json(btf, t["int"], t["int"], [(b"\1\0\0\0", [b"\2\0\0\0"])])
    assert j == [{"key": ["0x01", "0x00", "0x00", "0x00"],
                  "values": [{"cpu": 0, "value": ["0x02", "0x00", "0x00", "0x00"]}],
                  "formatted": {"key": 1, "values": [{"cpu": 0, "value": 2}]}}]


def test_empty_dump_and_btf_method(small):
    btf, t = small
    assert format_map_dump(btf, t["int"], t["int"], []) == "[]\n"
    assert btf.format_value(t["int"], b"\x05\0\0\0") == "5"
    assert btf.format_value(t["int"], b"\x05\0\0\0", json=True) == 5
