"""docs/aot.md's complete C example: extracted from the page, compiled with gcc against
`ebee aot --runtime` output, run; its output is the page's and agrees with the JIT."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import aot_diff as D
from ebee.cli.main import main

PAGE = D.ROOT / "docs" / "aot.md"


def _block(tag: str) -> str:
    m = re.search(rf"<!-- aot-example: {tag}\b.*?-->\n```\w+\n(.*?)```", PAGE.read_text(), re.S)
    assert m, f"docs/aot.md has no {tag} block"
    return m.group(1)


def test_c_example_runs_as_documented(tmp_path, capsys):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    (tmp_path / "app.c").write_text(_block("app.c"))
    assert main(["aot", str(D.EX / "xdp_firewall.o"), "-o", str(tmp_path / "xdp_firewall.c"),
                 "--runtime"]) == 0
    capsys.readouterr()
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", "app", "app.c", "xdp_firewall.c",
                    "ebee_rt.c"], cwd=tmp_path, check=True)
    out = subprocess.run([str(tmp_path / "app")], capture_output=True, text=True, check=True).stdout
    assert out == _block("output")
    # and the JIT says the same of the same packet
    pkt = bytes([0xff] * 6 + [2, 0, 0, 0, 0, 1, 8, 0, 0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0,
                              10, 0, 0, 1, 10, 0, 0, 2])
    obj = D.load("xdp_firewall", tmp_path)
    try:
        prog = obj.programs["xdp_firewall"]
        before = prog.run(pkt, engine="jit")
        obj.maps["blocklist"][bytes([10, 0, 0, 1])] = 0
        after = prog.run(pkt, engine="jit")
    finally:
        obj.close()
    assert f"before blocking: retval {before.retval}, {len(before.data_out)} bytes out" in out
    assert f"after blocking: retval {after.retval}\n" in out
