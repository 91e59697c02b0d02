""".BTF.ext: func_info, line_info and CO-RE records, checked against llvm-objdump."""
from __future__ import annotations

import re
import struct
import subprocess

import pytest
from hypothesis import given, strategies as st

from btf_testlib import CORPUS, DATA, corpus_objects, has_btf
from ebee import uapi as U
from ebee.btf import BTF, BTFError
from ebee.btf.core import KIND_NAMES
from ebee.btf.elf import btf_sections
from ebee.btf.ext import BTFExt


def _load(path):
    s = btf_sections(path.read_bytes())
    btf = BTF.from_bytes(s.btf, pointer_size=s.pointer_size)
    return btf, BTFExt.from_bytes(s.btf_ext, btf), s.btf_ext


def test_records_of_the_test_object():
    btf, ext, _ = _load(DATA / "btf_kinds.o")
    assert set(ext.func_info) == {".text", "xdp"}
    names = {btf[f.type_id].name for recs in ext.func_info.values() for f in recs}
    assert names == {"helper_fn", "global_fn", "uses_everything"}
    first = ext.line_info["xdp"][0]
    assert first.insn == 0 and first.file_name.endswith("btf_kinds.c")
    assert first.line_text.startswith("int uses_everything(") and first.col == 0
    assert all(li.line > 0 for recs in ext.line_info.values() for li in recs)
    assert ext.sections()[0] in (".text", "xdp")


# field relocations end with the access string "(0:1:2)"; type and enum ones show none
_CORE_LINE = re.compile(r"^\s+([0-9a-f]+):\s+CO-RE <(\w+)> \[(\d+)\] .*?(?:\(([\d:]+)\))?$")


def _objdump_relos(llvm_objdump: str, path) -> list[tuple[str, int, str, int, str]]:
    out = subprocess.run([llvm_objdump, "-dr", "--no-show-raw-insn", str(path)],
                         capture_output=True, text=True, check=True).stdout
    relos, sec = [], None
    for line in out.splitlines():
        m = re.match(r"^Disassembly of section (.*):$", line)
        if m:
            sec = m.group(1)
            continue
        m = _CORE_LINE.match(line)
        if m:
            relos.append((sec, int(m.group(1), 16), m.group(2), int(m.group(3)), m.group(4)))
    return relos


CORE_OBJECTS = [DATA / "core_kern.o", DATA / "core_poison.o"] + \
    [p for p in corpus_objects() if p.name.startswith("tcprtt")]


@pytest.mark.parametrize("path", CORE_OBJECTS, ids=lambda p: p.name)
def test_core_relos_match_llvm_objdump(path, llvm_objdump):
    btf, ext, _ = _load(path)
    mine = sorted((sec, r.insn_off, KIND_NAMES[r.kind], r.type_id,
                   r.access_str if r.kind.name.startswith("FIELD") else None)
                  for sec, recs in ext.core_relos.items() for r in recs)
    assert mine == sorted(_objdump_relos(llvm_objdump, path))
    assert len(mine) >= 5


def test_every_relocation_kind_is_in_the_test_objects():
    kinds = set()
    for name in ("core_kern.o", "core_poison.o"):
        _, ext, _ = _load(DATA / name)
        kinds |= {r.kind for recs in ext.core_relos.values() for r in recs}
    assert kinds == set(U.CoreReloKind)


def test_corpus_btf_ext_parses():
    n = 0
    for p in corpus_objects():
        if has_btf(p):
            s = btf_sections(p.read_bytes())
            if s.btf_ext:
                BTFExt.from_bytes(s.btf_ext, BTF.from_bytes(s.btf))
                n += 1
    if not CORPUS.is_dir():
        pytest.skip("corpus not found")
    assert n > 50


def _corrupt(ext: bytes, off: int, value: int) -> bytes:
    b = bytearray(ext)
    struct.pack_into("<I", b, off, value)
    return bytes(b)


def test_corruptions_are_reported():
    btf, _, raw = _load(DATA / "core_kern.o")
    hdr_len, fi_off = struct.unpack_from("<II", raw, 4)[0], struct.unpack_from("<I", raw, 8)[0]
    cases = [
        (raw[:6], "header truncated"),
        (b"\x00\x00" + raw[2:], "bad magic"),
        (raw[:2] + b"\x02" + raw[3:], "unsupported version 2"),
        (_corrupt(raw, 4, 10_000), "header length"),
        (_corrupt(raw, 12, 1 << 20), "runs past the end"),
        (_corrupt(raw, hdr_len + fi_off, 3), "record size 3 is invalid"),
        (_corrupt(raw, hdr_len + fi_off + 4, 1 << 30), "string offset"),
        (_corrupt(raw, hdr_len + fi_off + 8, 0), "has no records"),
        (_corrupt(raw, hdr_len + fi_off + 16, 99999), "is not a FUNC"),
    ]
    for data, message in cases:
        with pytest.raises(BTFError, match=message):
            BTFExt.from_bytes(data, btf)


@given(st.data())
def test_fuzzed_btf_ext_raises_btferror_only(data):
    btf, _, raw = _load(DATA / "core_kern.o")
    b = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(b) - 1))
        b[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(b)))
    try:
        BTFExt.from_bytes(bytes(b[:cut]), btf)
    except BTFError:
        pass
