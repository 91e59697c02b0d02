"""Every shipped example through the AOT C (gcc -O2, clang-19 -O2) against ebee's JIT:
retval, data_out and map contents after every packet; the examples the AOT runtime
cannot run are refused with the reason; random programs of the kernel-differential
strategy (tests/strategies.py) give the JIT's r0 through the AOT C as well."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings

import aot_diff as D
from ebee import aot, run
from ebee.aot import build
from ebee.engines import jit
from strategies import programs

pytestmark = pytest.mark.skipif(not jit.available(), reason="the JIT is unavailable")
CCS = ["gcc", "clang-19"]


def _cc(cc):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")


@pytest.mark.parametrize("cc", CCS)
@pytest.mark.parametrize("name", D.XDP_EXAMPLES)
def test_example_matches_jit(name, cc, tmp_path):
    _cc(cc)
    obj = D.load(name, tmp_path)
    try:
        units, maps = aot.object_units(obj)
        so = build.build_native(units, maps, tmp_path / f"{name}.so", object_name=name,
                                runtime=True, cc=cc)[0]
        bad, seen = D.compare(name, obj, so, maps)
    finally:
        obj.close()
    assert not bad, "\n".join(bad[:5])
    if name in ("xdp_firewall", "lpm_filter", "xdp_reflect", "tail_calls"):
        assert len(seen) > 1, f"{name}: every packet got {seen}: the packets test nothing"


@pytest.mark.parametrize("name", sorted(D.REFUSED))
def test_other_examples_are_refused(name, tmp_path):
    obj = D.load(name, tmp_path)
    try:
        with pytest.raises(aot.OffloadError, match=D.REFUSED[name]):
            aot.object_units(obj)
    finally:
        obj.close()


def _sample(n: int) -> list:
    out: list = []

    @settings(max_examples=n, database=None, derandomize=True)
    @given(programs())
    def collect(insns):
        out.append(insns)
    collect()
    return out


@pytest.mark.parametrize("cc", CCS)
def test_kernel_differential_programs_match_jit(cc, tmp_path):
    """The programs test_kernel_diff.py compares with the kernel, as unverified raw
    programs (checked AOT C) on a 64-byte block: the same r0 as the JIT."""
    _cc(cc)
    progs = _sample(60)
    units = [aot.raw_unit(f"p{k}", p) for k, p in enumerate(progs)]
    aot.write_c(units, [], tmp_path / "kd.c", object_name="kd")
    mem = bytes(range(64))
    (tmp_path / "main.c").write_text(build.mem_driver("kd", [mem] * len(progs)))
    exe = aot.build_c([tmp_path / "kd.c", tmp_path / "main.c"], tmp_path / "kd", cc=cc)
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    got = [(int(lines[k + 1]), int(lines[k + 2])) for k in range(0, len(lines), 3)]
    assert len(got) == len(progs)
    bad = [k for k, (p, (st, rv)) in enumerate(zip(progs, got))
           if st != 0 or rv != run(p, mem=mem, engine="jit").retval]
    assert not bad, f"{len(bad)} of {len(progs)} differ (first: p{bad[0]})"
