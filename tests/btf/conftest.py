"""Fixtures for the BTF/CO-RE tests: bpftool, kernel BTF, a scratch bpffs directory."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from btf_testlib import BPFFS, VMLINUX


@pytest.fixture(scope="session")
def bpftool() -> str:
    path = shutil.which("bpftool")
    if not path:
        pytest.skip("bpftool not installed")
    return path


@pytest.fixture(scope="session")
def vmlinux():
    if not VMLINUX.exists():
        pytest.skip("no kernel BTF at /sys/kernel/btf/vmlinux")
    from ebee.btf import BTF
    return BTF.load_vmlinux()


@pytest.fixture
def pin_dir(kernel, bpftool):
    """A fresh directory in bpffs (mounted if needed), removed afterwards."""
    if not os.path.ismount(BPFFS):
        r = subprocess.run(["mount", "-t", "bpf", "bpf", str(BPFFS)], capture_output=True)
        if r.returncode:
            pytest.skip("bpffs is not mounted and cannot be mounted")
    d = BPFFS / f"ebee-btf-test-{uuid.uuid4().hex[:8]}"
    try:
        yield d
    finally:
        for p in sorted(BPFFS.glob(d.name + "*")):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
