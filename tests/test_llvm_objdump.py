"""ebee's llvm format against llvm-objdump itself, instruction by instruction."""
from __future__ import annotations

import random
import re
import shutil
import subprocess

import pytest

from ebee import isa
from ebee.asm import format_llvm
from ebee.conformance import parse
from ebee.isa import Kind


def _llvm_prints_losslessly(i: isa.Instruction) -> bool:
    # LLVM's text drops the src of calls and ld_imm64, the imm of LD_IND, and
    # (in LLVM 19) has no load-acquire/store-release: ebee spells those its own way.
    return not (i.kind in (Kind.CALL_LOCAL, Kind.CALL_KFUNC, Kind.LOAD_ACQ, Kind.STORE_REL)
                or (i.kind is Kind.LD_IMM64 and i.src) or (i.kind is Kind.LD_IND and i.imm))


def _random_insns(n: int, seed: int) -> list[isa.Instruction]:
    rnd = random.Random(seed)
    out = []
    specs = [s for s in isa.TABLE]
    while len(out) < n:
        s = rnd.choice(specs)
        fixed = dict(s.fixed)
        vals = {f: fixed.get(f, rnd.randint(0, 10) if f in s.operands else 0) for f in ("dst", "src")}
        vals["off"] = fixed.get("off", rnd.choice([0, 1, -1, 5, -300, 0x7fff, -0x8000]) if "off" in s.operands else 0)
        vals["imm"] = rnd.choice(s.imm_values) if s.imm_values else fixed.get(
            "imm", rnd.choice([0, 1, -1, 42, 0x7fffffff, -(1 << 31), 0xffff]) if "imm" in s.operands else 0)
        insn = isa.make(s, imm_hi=rnd.choice([0, 1, -1]) if s.wide else 0, **vals)
        if _llvm_prints_losslessly(insn):
            out.append(insn)
    return isa.renumber(out)


def _objdump(insns, tmp_path, objdump) -> list[str]:
    mc = shutil.which("llvm-mc-19") or shutil.which("llvm-mc")
    if not mc:
        pytest.skip("llvm-mc not installed")
    src = tmp_path / "p.s"
    data = isa.encode(insns)
    src.write_text(".text\n" + "".join(f".quad {int.from_bytes(data[k:k + 8], 'little'):#x}\n"
                                        for k in range(0, len(data), 8)))
    obj = tmp_path / "p.o"
    subprocess.run([mc, "-triple", "bpfel", "-mcpu=v4", "-filetype=obj", str(src), "-o", str(obj)],
                   check=True)
    out = subprocess.run([objdump, "-d", "--mcpu=v4", "--no-show-raw-insn", str(obj)],
                         check=True, capture_output=True, text=True).stdout
    lines = []
    for line in out.splitlines():
        m = re.match(r"^\s*(\d+):\t(.*)$", line)
        if m:
            lines.append(re.sub(r"\s*<[^<>]*>$", "", m.group(2)).strip())
    return lines


def test_random_instructions_match_llvm_objdump(tmp_path, llvm_objdump):
    insns = _random_insns(3000, seed=9669)
    theirs = _objdump(insns, tmp_path, llvm_objdump)
    ours = [format_llvm(i) for i in insns]
    assert len(theirs) == len(ours)
    diffs = [(i.pc, o, t) for i, o, t in zip(insns, ours, theirs) if o != t]
    assert not diffs[:20]


def test_conformance_programs_match_llvm_objdump(tmp_path, llvm_objdump, conformance_dir):
    insns = []
    for path in sorted(conformance_dir.glob("*.data")):
        insns += [i for i in parse(path).program() if _llvm_prints_losslessly(i)]
    insns = isa.renumber(insns)
    theirs = _objdump(insns, tmp_path, llvm_objdump)
    ours = [format_llvm(i) for i in insns]
    diffs = [(o, t) for o, t in zip(ours, theirs) if o != t]
    assert len(theirs) == len(ours) and not diffs[:20]
