"""The workflow examples under examples/workflows run as documented."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

WF = Path(__file__).resolve().parents[1] / "examples" / "workflows"


def run(name: str) -> str:
    r = subprocess.run([sys.executable, str(WF / name)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_histogram_example():
    out = run("histogram.py")
    assert "\nip proto = 6\n     bytes               : count     distribution\n" in "\n" + out
    assert "       128 -> 255        : 1        |" + "*" * 40 + "|\n\nip proto = 17" in out
    assert "     64-byte steps : count     distribution" in out


@pytest.mark.kernel
def test_kernel_skeleton_example(kernel):
    out = run("kernel_skeleton.py")
    assert out.startswith("attached: on_openat, on_sys_enter\n")
    assert "failed: on_missing:" in out
    n = int(out.rsplit("openat calls seen:", 1)[1])
    assert n >= 1
