"""``ebee aot``: every form for the shipped XDP examples; the .so (runtime linked in)
run through the runtime's C API (ctypes) gives the JIT's results; bad input is one
line and exit code 2, naming the instruction."""
from __future__ import annotations

import shutil
import subprocess

import pytest

import aot_diff as D
from ebee import aot
from ebee.cli.main import main
from ebee.engines import jit

pytestmark = pytest.mark.skipif(not jit.available(), reason="the JIT is unavailable")


def _aot(capsys, *args):
    rc = main(["aot", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("name", D.XDP_EXAMPLES)
def test_every_form(name, tmp_path, capsys):
    src = D.EX / f"{name}.o"
    rc, out, _ = _aot(capsys, src, "-o", tmp_path / f"{name}.c")
    assert rc == 0 and "object definition" in out
    assert (tmp_path / "ebee_rt.h").exists() and not (tmp_path / "ebee_rt.c").exists()
    # the C needs no header but the generated one
    cc = shutil.which("gcc") or shutil.which("cc")
    subprocess.run([cc, "-O2", "-Wall", "-Werror", "-c", "-I", str(tmp_path), str(tmp_path / f"{name}.c"),
                    "-o", str(tmp_path / "c.o")], check=True)
    rc, _, _ = _aot(capsys, src, "-o", tmp_path / f"{name}.o")
    assert rc == 0
    nm = subprocess.run(["nm", str(tmp_path / f"{name}.o")], capture_output=True, text=True).stdout
    assert f" D {name}\n" in nm and " T ebee_run_xdp" not in nm   # the program only
    rc, _, _ = _aot(capsys, src, "-o", tmp_path / f"{name}.so", "--runtime")
    assert rc == 0
    obj = D.load(name, tmp_path)
    try:
        _units, maps = aot.object_units(obj)
        bad, _seen = D.compare(name, obj, tmp_path / f"{name}.so", maps)
    finally:
        obj.close()
    assert not bad, "\n".join(bad[:5])


def test_runtime_beside_c_and_inside_o(tmp_path, capsys):
    src = D.EX / "xdp_firewall.o"
    assert _aot(capsys, src, "-o", tmp_path / "fw.c", "--runtime")[0] == 0
    assert (tmp_path / "ebee_rt.c").exists()
    assert _aot(capsys, src, "-o", tmp_path / "fw.o", "--runtime")[0] == 0
    nm = subprocess.run(["nm", str(tmp_path / "fw.o")], capture_output=True, text=True).stdout
    assert " T ebee_run_xdp\n" in nm and " T ebee_h_map_lookup_elem\n" in nm


def test_aarch64_cross_object(tmp_path, capsys):
    if shutil.which("clang-19") is None or shutil.which("llvm-objdump-19") is None:
        pytest.skip("clang-19 and llvm-objdump-19 are needed")
    out = tmp_path / "fw_arm64.o"
    rc, _, err = _aot(capsys, D.EX / "xdp_firewall.o", "--target", "aarch64-linux-gnu", "-o", out)
    assert rc == 0, err
    dis = subprocess.run(["llvm-objdump-19", "-d", str(out)], capture_output=True, text=True,
                         check=True).stdout
    assert "file format elf64-littleaarch64" in dis
    assert "<xdp_firewall_p0_xdp_firewall>:" in dis and "\tret" in dis


@pytest.mark.parametrize("args, words", [
    (["--prog", "nope"], "no program 'nope'"),
    ([], "the output's suffix picks the form"),
])
def test_bad_arguments(args, words, tmp_path, capsys):
    outname = "x.txt" if not args else "x.so"
    rc, _, err = _aot(capsys, D.EX / "xdp_firewall.o", *args, "-o", tmp_path / outname)
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("text, words", [
    ("r1 = 1\ncall 23\nexit\n", "pc 1: call bpf_redirect#23: helper bpf_redirect (#23) is not "
                                "supported by the AOT runtime"),
    ("r0 = *(u8 *)skb[0]\nexit\n", "pc 0: "),
])
def test_unsupported_instruction_named(text, words, tmp_path, capsys):
    (tmp_path / "p.s").write_text(text)
    rc, _, err = _aot(capsys, tmp_path / "p.s", "-o", tmp_path / "p.c")
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1


def test_unsupported_program_type(tmp_path, capsys):
    rc, _, err = _aot(capsys, D.EX / "socket_bytes.o", "-o", tmp_path / "s.so")
    assert rc == 2 and "program type socket_filter cannot be offloaded" in err
