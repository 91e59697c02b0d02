"""Resizing global arrays between open and load (libbpf's bpf_map__set_value_size),
compared with libbpf (a small C program against libbpf-dev) and with the kernel."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import ebee
from ebee.btf import Kind
from ebee.packet import udp_packet

DATA = Path(__file__).resolve().parent / "data" / "resize"
OBJ = DATA / "resize_globals.o"


@pytest.fixture(scope="module")
def libbpf_resize(tmp_path_factory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None or not Path("/usr/include/bpf/libbpf.h").exists():
        pytest.skip("needs gcc and libbpf-dev")
    exe = tmp_path_factory.mktemp("libbpf") / "libbpf_resize"
    r = subprocess.run([gcc, "-O2", "-o", str(exe), str(DATA / "libbpf_resize.c"), "-lbpf"],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot build the libbpf harness: {r.stderr.strip()[:200]}")
    return exe


def libbpf(exe: Path, *args: str) -> dict[str, str]:
    out = subprocess.run([str(exe), str(OBJ), *args], capture_output=True, text=True,
                         check=True).stdout
    return {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] if " " in ln else "" for ln in
            out.splitlines() if not ln.startswith("libbpf:")}


def arr(o):
    return o.data_section(".data.arr").arr


def test_resized_array_reads_its_new_length():
    o = ebee.open_object(OBJ)
    assert arr(o) == [1, 2, 3, 4] and o.maps[".data.arr"].value_size == 40
    o.maps[".data.arr"].value_size = 72          # scale (4 bytes, padded to 8), arr[8]
    assert o.maps[".data.arr"].value_size == 72
    assert arr(o) == [1, 2, 3, 4, 0, 0, 0, 0]
    ds = o.spec.btf.find(".data.arr", Kind.DATASEC)
    assert ds.size == 72 and [(v.offset, v.size) for v in ds.vars] == [(0, 4), (8, 64)]
    o.data_section(".data.arr").arr = [1, 2, 3, 4, 5, 6, 7, 8]
    o.rodata.nr = 8
    with o.load() as obj:
        assert obj.maps[".data.arr"].value_size == 72
        r = obj.programs["sum"].run(udp_packet())   # the verifier sees the 72-byte value
        assert r.verdict == "XDP_PASS"
        assert (obj.bss.total, obj.bss.last) == (2 * 36, 8)
        assert arr(obj) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_shrinking_keeps_the_prefix():
    o = ebee.open_object(OBJ)
    o.maps[".data.arr"].value_size = 24
    assert arr(o) == [1, 2] and o.maps[".data.arr"].initial_value == bytes.fromhex(
        "0200000000000000" "0100000000000000" "0200000000000000")
    o.rodata.nr = 2
    with o.load() as obj:
        obj.programs["sum"].run(udp_packet())
        assert obj.bss.total == 2 * 3


def test_when_the_btf_cannot_follow():
    o = ebee.open_object(OBJ)
    o.maps[".bss"].value_size = 16                # last variable is no array
    o.maps[".data.arr"].value_size = 44           # 36 bytes are no whole __u64s
    assert [w.split(", ")[1].split(";")[0] for w in o.spec.warnings[-2:]] == \
        ["last var must be an array", "element size (8) doesn't align with new total size (44)"]
    assert o.maps[".bss"].value_size == 16 and o.maps[".bss"].initial_value == bytes(16)
    assert o.data_section(".data.arr").arr == [1, 2, 3, 4]   # still fits: kept as it was
    with pytest.raises(ValueError):
        o.maps[".bss"].value_size = -1
    o.maps["events" if "events" in o.maps else ".bss.buf"].value_size = 40
    assert o.data_section(".bss.buf").buf == b""


def test_user_map_value_size_is_recorded():
    o = ebee.open_object(Path(__file__).resolve().parents[1] / "examples" / "c" / "skeleton.o")
    o.maps["per_tgid"].value_size = 16
    with o.load() as obj:
        assert obj.maps["per_tgid"].value_size == 16


@pytest.mark.parametrize("name,size", [(".data.arr", "72"), (".data.arr", "24"),
                                       (".data.arr", "2"), (".bss", "16"), (".bss.buf", "40"),
                                       (".rodata", "8")])
def test_sizes_and_data_as_libbpf(libbpf_resize, name, size):
    want = libbpf(libbpf_resize, name, size)
    o = ebee.open_object(OBJ)
    o.maps[name].value_size = int(size)
    assert want["rc"] == "0"
    assert int(want["value_size"]) == o.maps[name].value_size
    assert want["initial"] == o.maps[name].initial_value.hex()


@pytest.mark.kernel
def test_kernel_takes_the_resized_btf_and_runs_as_libbpf(kernel, libbpf_resize):
    want = libbpf(libbpf_resize, ".data.arr", "72", "8", "run")
    o = ebee.open_object(OBJ)
    o.maps[".data.arr"].value_size = 72
    o.rodata.nr = 8
    with o.load() as obj, obj.load_kernel() as k:
        assert not k.warnings                      # created with the adjusted BTF
        kb = k.maps[".data.arr"].kernel_btf()
        ds = kb.find(".data.arr", Kind.DATASEC)
        last = max(ds.vars, key=lambda v: v.offset)
        assert (ds.size, last.size, kb.resolve(kb[last.type_id].type_id).nelems) == (72, 64, 8)
        r = k.programs["sum"].run(udp_packet())
        assert f"0 retval {r.retval}" == want["run"]
        assert k.maps[".bss"].lookup(0).hex() == want["bss"][:24]      # .bss is 12 bytes
        u = obj.programs["sum"].run(udp_packet())
        assert u.retval == r.retval and obj.maps[".bss"].lookup(0).hex() == want["bss"][:24]
