"""Dumps against bpftool: raw, JSON and C, on test objects, the corpus, vmlinux, split BTF."""
from __future__ import annotations

import json
import subprocess

import pytest

from btf_testlib import DATA, VMLINUX, corpus_objects, has_btf, run_bpftool
from ebee.btf import BTF
from ebee.btf.builder import BTFBuilder

TEST_OBJECTS = sorted(DATA.glob("*.o"))
CORPUS_BTF = [p for p in corpus_objects() if has_btf(p)]


def _json(btf: BTF) -> str:
    return json.dumps(btf.format_json(), separators=(",", ":"), ensure_ascii=False) + "\n"




@pytest.mark.parametrize("path", TEST_OBJECTS + CORPUS_BTF, ids=lambda p: p.name)
def test_raw_json_and_c_match_bpftool(path, bpftool):
    btf = BTF.from_file(path)
    assert btf.format_raw() == run_bpftool("btf", "dump", "file", str(path)).stdout
    assert _json(btf) == run_bpftool("-j", "btf", "dump", "file", str(path)).stdout
    assert btf.format_c() == run_bpftool("btf", "dump", "file", str(path), "format", "c").stdout


def test_corpus_has_btf_objects():
    if not corpus_objects():
        pytest.skip("corpus not found")
    assert len(CORPUS_BTF) >= 70


def test_vmlinux_matches_bpftool(vmlinux, bpftool):
    """All ~120k kernel types, in the three output forms."""
    path = str(VMLINUX)
    assert vmlinux.format_raw() == run_bpftool("btf", "dump", "file", path).stdout
    assert _json(vmlinux) == run_bpftool("-j", "btf", "dump", "file", path).stdout
    assert vmlinux.format_c() == run_bpftool("btf", "dump", "file", path, "format", "c").stdout


def test_split_btf_matches_bpftool(vmlinux, bpftool, tmp_path):
    b = BTFBuilder(vmlinux)
    i = b.add_int("mod_int", 4, signed=True)
    s = b.add_struct("mod_struct", 16, [("a", i, 0), ("t", b.add_ptr(vmlinux.find("task_struct").id), 64)])
    b.add_typedef("mod_t", s)
    b.add_func("mod_fn", b.add_func_proto(i, [("x", s)]), 1)
    b.add_struct("task_struct", 4, [("x", i, 0)])         # a name clash with the base
    f = tmp_path / "mod.btf"
    f.write_bytes(b.to_bytes())
    split = b.build()
    base = ["-B", str(VMLINUX)]
    assert split.format_raw() == run_bpftool(*base, "btf", "dump", "file", str(f)).stdout
    assert _json(split) == run_bpftool(*base, "-j", "btf", "dump", "file", str(f)).stdout
    tail = split.format_c()[-2000:]
    assert tail == run_bpftool(*base, "btf", "dump", "file", str(f), "format", "c").stdout[-2000:]
    assert "struct task_struct___2 {" in tail


def test_format_c_compiles(tmp_path):
    """The C dump of an object is a header clang accepts."""
    import shutil
    clang = shutil.which("clang-19") or shutil.which("clang")
    if not clang:
        pytest.skip("clang not installed")
    h = tmp_path / "kinds.h"
    h.write_text(BTF.from_file(DATA / "btf_kinds.o").format_c())
    src = tmp_path / "use.c"
    src.write_text('#include "kinds.h"\nint f(struct nested *n) { return sizeof(*n) + n->matrix[1][2]; }\n')
    r = subprocess.run([clang, "-target", "bpf", "-c", "-o", str(tmp_path / "use.o"), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------ CLI


class _Run:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def ebee_cli(capsys):
    """Run the ebee CLI in-process; an unexpected exception fails the test."""
    from ebee.cli import main

    def run(*args: str) -> _Run:
        capsys.readouterr()
        rc = main(list(args))
        out, err = capsys.readouterr()
        return _Run(rc, out, err)
    return run


def test_cli_dump_forms(bpftool, ebee_cli):
    path = str(DATA / "btf_kinds.o")
    assert ebee_cli("btf", "dump", "file", path).stdout == run_bpftool("btf", "dump", "file", path).stdout
    assert ebee_cli("btf", "dump", "file", path, "format", "c").stdout == \
        run_bpftool("btf", "dump", "file", path, "format", "c").stdout
    assert ebee_cli("btf", "dump", "file", path, "--json").stdout == \
        run_bpftool("-j", "btf", "dump", "file", path).stdout


@pytest.mark.parametrize("args, message", [
    (["file", "/nonexistent.o"], "/nonexistent.o: error: no such file"),
    (["file", str(DATA / "btf_kinds.c")], "bad BTF magic"),
    (["file", str(DATA / "btf_kinds.o"), "format", "x"], "unrecognized format specifier: 'x'"),
    (["file", str(DATA / "btf_kinds.o"), "format"], "expecting value for 'format'"),
    (["file", str(DATA / "btf_kinds.o"), "sideways"], "unrecognized option: 'sideways'"),
    (["file", str(DATA / "btf_kinds.o"), "format", "c", "--json"], "JSON output for C-syntax"),
])
def test_cli_errors_are_one_line_exit_2(args, message, ebee_cli):
    r = ebee_cli("btf", "dump", *args)
    assert r.returncode == 2
    assert r.stdout == ""
    assert message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_cli_corrupt_objects(tmp_path, ebee_cli):
    from btf_testlib import CORPUS
    bad = sorted((CORPUS / "invalid").glob("*")) if (CORPUS / "invalid").is_dir() else []
    data = (DATA / "btf_kinds.o").read_bytes()
    trunc = tmp_path / "trunc.o"
    trunc.write_bytes(data[:len(data) // 2])
    for f in bad + [trunc]:
        r = ebee_cli("btf", "dump", "file", str(f))
        assert r.returncode in (0, 2), (f, r.stderr)
        assert "Traceback" not in r.stderr
        if r.returncode == 2:
            assert r.stderr.startswith(str(f)) and r.stderr.count("\n") == 1
