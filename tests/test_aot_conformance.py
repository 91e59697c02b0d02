"""AOT C (gcc/clang -O2 with ebee's C runtime) agrees with the JIT on the conformance suite."""
import glob
import shutil
import subprocess

import pytest

from ebee import aot, conformance as C
from ebee.aot import build

def _cases(d):
    out = []
    for p in sorted(glob.glob(str(d / "*.data"))):
        try:
            tc = C.parse(p)
            out.append((tc, tc.program()))
        except Exception:
            continue
    return out


@pytest.mark.parametrize("cc", ["gcc", "clang-19"])
def test_conformance_matches_jit(cc, tmp_path, conformance_dir):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")
    cases = _cases(conformance_dir)
    if not cases:
        pytest.skip("conformance corpus not found")
    units = [aot.raw_unit(tc.name, insns) for tc, insns in cases]
    aot.write_c(units, [], tmp_path / "conf.c", object_name="conf")
    (tmp_path / "main.c").write_text(build.mem_driver("conf", [tc.mem if tc.has_mem else None
                                                               for tc, _ in cases]))
    exe = aot.build_c([tmp_path / "conf.c", tmp_path / "main.c"], tmp_path / "conf", cc=cc)
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split("\n")
    bad = []
    for (tc, _), line in zip(cases, lines):
        _, st, rv = line.split()
        jit = C.run_case(tc, engine="jit")
        ok = int(st) != 0 if tc.error is not None else (int(st) == 0 and int(rv) == tc.result & (2**64 - 1))
        if ok != jit.passed or (int(st) == 0 and jit.retval is not None and int(rv) != jit.retval):
            bad.append(tc.name)
    assert not bad
