from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import bpftrace_version, build_workload   # noqa: E402


def kernel_reason() -> str | None:
    """Why kernel tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root"
    from ebee.kernel.prog import bpf_available
    return bpf_available()


@pytest.fixture(scope="session")
def workload(tmp_path_factory) -> Path:
    path = build_workload(tmp_path_factory.mktemp("ebwl"))
    if path is None:
        pytest.skip("no gcc to build the workload")
    return path


@pytest.fixture(scope="session")
def bpftrace017() -> str:
    v = bpftrace_version()
    if v is None:
        pytest.skip("bpftrace is not installed")
    if "v0.17" not in v:
        pytest.skip(f"parity is against bpftrace 0.17 ({v} installed)")
    return v


@pytest.fixture(scope="session")
def kernel() -> None:
    why = kernel_reason()
    if why:
        pytest.skip(why)
