"""Source lines and prototypes interleaved with disassembly, against `bpftool prog dump xlated`."""
from __future__ import annotations

import json
import re

import pytest

from btf_testlib import DATA, run_bpftool
from ebee.btf import BTF
from ebee.btf.ext import FuncInfo, LineInfo
from ebee.btf.linum import annotate, annotate_json, func_signature, line_json, line_text

_INSN = re.compile(r"^\s*(\d+): ")


def _program(name: str, prog: str):
    ebee = pytest.importorskip("ebee")
    try:
        obj = ebee.load(DATA / name)
    except Exception as e:            # the loader is another package's work in progress
        pytest.skip(f"ebee.load unavailable: {e}")
    return obj, obj.programs[prog]


def _annotations(lines: list[str]) -> list[tuple[int, str]]:
    """(pc of the next instruction, line) for every prototype and source line."""
    out, pending = [], []
    for line in lines:
        m = _INSN.match(line)
        if m:
            out += [(int(m.group(1)), p) for p in pending]
            pending = []
        else:
            pending.append(line)
    return out


@pytest.mark.parametrize("linum", [False, True])
def test_annotations_match_bpftool(linum, pin_dir):
    obj, p = _program("linum.o", "linum_prog")
    run_bpftool("prog", "loadall", str(DATA / "linum.o"), str(pin_dir))
    args = ["prog", "dump", "xlated", "pinned", f"{pin_dir}/linum_prog"] + (["linum"] if linum else [])
    theirs = run_bpftool(*args).stdout.splitlines()
    mine = annotate(p.insns, p.btf, p.func_info, p.line_info, linum=linum)
    assert _annotations(mine) == _annotations(theirs)
    assert len(_annotations(mine)) > 15
    assert [_INSN.match(x).group(1) for x in mine if _INSN.match(x)] == \
        [_INSN.match(x).group(1) for x in theirs if _INSN.match(x)]
    jt = json.loads(run_bpftool("-j", *args).stdout)
    jm = annotate_json(p.insns, p.btf, p.func_info, p.line_info, linum=linum)
    strip = lambda entries: [{k: v for k, v in e.items() if k != "disasm"} for e in entries]
    assert strip(jm) == strip(jt)
    obj.close()


def test_signatures_match_bpftool_for_the_kinds_object(pin_dir):
    obj, p = _program("btf_kinds.o", "uses_everything")
    run_bpftool("prog", "loadall", str(DATA / "btf_kinds.o"), str(pin_dir))
    theirs = [l for l in run_bpftool("prog", "dump", "xlated", "pinned",
                                      f"{pin_dir}/uses_everything").stdout.splitlines()
              if l.endswith(":") and not _INSN.match(l)]
    mine = [l for l in annotate(p.insns, p.btf, p.func_info, p.line_info)
            if l.endswith(":") and not _INSN.match(l)]
    assert mine == theirs == ["int uses_everything(struct xdp_md * ctx):",
                              "int helper_fn(int a, restrict int * out):",
                              "int global_fn(struct nested * n):"]
    obj.close()


def test_formatting_without_a_kernel():
    btf = BTF.from_file(DATA / "linum.o")
    f = btf.find("scale", "func")
    assert func_signature(btf, f.id) == "int scale(int v, restrict const int * k)"
    assert func_signature(btf, 0) == "void "          # bpftool's spelling of void
    tag = next(t for t in BTF.from_file(DATA / "btf_kinds.o") if t.kind.name == "DECL_TAG")
    assert func_signature(BTF.from_file(DATA / "btf_kinds.o"), tag.id) == ""
    li = LineInfo(16, 0, 0, 12, 4, "a.c", "\t  x = 1;")
    assert line_text(li) == "; x = 1;"
    assert line_text(li, linum=True) == "; x = 1; [file:a.c line_num:12 line_col:4]"
    assert line_json(li, linum=True) == {"src": "x = 1;", "file": "a.c", "line_num": 12,
                                         "line_col": 4}
    assert line_json(LineInfo(0, 0, 0, 3, 0, "a.c", "y"), linum=True) == \
        {"src": "y", "file": "a.c", "line_num": 3}


def test_only_the_last_record_of_an_instruction_is_shown():
    from ebee.isa import make, renumber
    insns = renumber([make("mov", dst=0, imm=1, is64=True, use_reg=False), make("exit")])
    lines = [LineInfo(0, 0, 0, 1, 0, "f.c", "first"), LineInfo(0, 0, 0, 2, 0, "f.c", "second"),
             LineInfo(8, 0, 0, 3, 0, "f.c", "third")]
    btf = BTF.from_file(DATA / "linum.o")
    out = annotate(insns, btf, [FuncInfo(0, btf.find("sum_to").id)], lines)
    assert out[:2] == ["int sum_to(int n):", "; second"]
    assert out[3] == "; third" and "; first" not in out
