"""The command line: outputs, exit codes and one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ebee.cli import main

EX = os.path.join(os.path.dirname(__file__), "..", "examples", "asm")


def ebee(*args, stdin: bytes | None = None):
    return subprocess.run([sys.executable, "-m", "ebee", *map(str, args)], capture_output=True,
                          input=stdin)


def test_asm_then_run_and_disasm(tmp_path):
    out = tmp_path / "fib.bin"
    r = ebee("asm", os.path.join(EX, "fib.s"), "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size % 8 == 0
    r = ebee("run", out, "--mem", "0a000000", "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout) == {"retval": 55, "insns": 66}
    r = ebee("disasm", out)
    assert r.stdout.decode().splitlines()[0] == "   0: (61) r6 = *(u32 *)(r1 +0)"
    r = ebee("disasm", out, "--format", "llvm")
    assert "\tw6 = *(u32 *)(r1 + 0x0)" in r.stdout.decode()


def test_run_text_output(tmp_path):
    r = ebee("run", os.path.join(EX, "checksum.s"), "--mem", "45000073000040004011b861c0a80001c0a800c7")
    assert r.returncode == 0
    assert r.stdout.decode().startswith("retval: 0 (0x0)\n")


def test_mem_file(tmp_path):
    f = tmp_path / "mem"
    f.write_bytes((12).to_bytes(4, "little"))
    r = ebee("run", os.path.join(EX, "fib.s"), "--mem-file", f, "--json")
    assert json.loads(r.stdout)["retval"] == 144


def test_conformance_command(conformance_dir):
    r = ebee("conformance", conformance_dir)
    lines = r.stdout.decode().splitlines()
    assert lines[-1] == "313 passed, 0 failed" and r.returncode == 0


def test_conformance_command_fails_on_negative(negative_dir):
    r = ebee("conformance", negative_dir)
    assert r.returncode == 1
    assert r.stdout.decode().splitlines()[-1].startswith("0 passed, ")


@pytest.mark.parametrize("content,expect", [
    (b"r0 = 1\nr0 +== 2\nexit\n", ":2: error: cannot parse instruction"),
    (b"mov %r0, %r50\nexit\n", ":1: error: invalid register '%r50'"),
])
def test_bad_assembly_is_one_line_exit_2(tmp_path, content, expect):
    src = tmp_path / "bad.s"
    src.write_bytes(content)
    out = tmp_path / "out.bin"
    r = ebee("asm", src, "-o", out)
    err = r.stderr.decode()
    assert r.returncode == 2
    assert err.count("\n") == 1 and expect in err and "Traceback" not in err
    assert not out.exists()            # nothing half-written


def test_bad_binary_is_one_line_exit_2(tmp_path):
    f = tmp_path / "bad.bin"
    f.write_bytes(bytes.fromhex("0701010001000000" "9500000000000000"))
    r = ebee("run", f)
    assert r.returncode == 2
    assert r.stderr.decode() == f"{f}:insn 0: error: invalid off 1 for opcode 0x07 (add)\n"


@pytest.mark.parametrize("args,msg", [
    (["run", "/nonexistent.bin"], "/nonexistent.bin: error: no such file"),
    (["run", "FILE", "--mem", "zz"], "--mem is not valid hex"),
    (["disasm", "FILE", "--format", "nope"], "invalid choice"),
])
def test_usage_errors(tmp_path, args, msg):
    f = tmp_path / "p.bin"
    f.write_bytes(bytes.fromhex("9500000000000000"))
    r = ebee(*[str(f) if a == "FILE" else a for a in args])
    assert r.returncode == 2
    assert msg in r.stderr.decode() and r.stderr.decode().count("\n") == 1


def test_runtime_fault_exit_1(tmp_path, capsys):
    f = tmp_path / "p.s"
    f.write_text("r1 = 0\nr0 = *(u8 *)(r1 + 0)\nexit\n")
    assert main(["run", str(f)]) == 1
    err = capsys.readouterr().err
    assert "pc 1 (r0 = *(u8 *)(r1 +0))" in err and err.count("\n") == 1


def test_asm_refuses_binary_to_terminal_but_pipes(tmp_path):
    r = ebee("asm", os.path.join(EX, "fib.s"))
    assert r.returncode == 0 and len(r.stdout) % 8 == 0 and len(r.stdout) > 0
