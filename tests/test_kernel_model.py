"""The kernel ebee emulates (ebee.kernel_model): named once, reported, checked against the host.

The generated tables say which kernel they were generated from; each must be the
release the model names.  The differential tests compare ebee with the running
kernel, so the host is checked to be that release too (a skip says it is not,
and why the comparisons may then differ).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ebee import kernel_model

SRC = Path(kernel_model.__file__).resolve().parent


def test_version_reports_the_emulated_kernel():
    out = subprocess.run([sys.executable, "-m", "ebee", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert f"emulates Linux {kernel_model.RELEASE} {kernel_model.ARCH}" in out
    assert out.count("\n") == 1


def test_version_code_is_kernel_version():
    a, b, c = kernel_model.VERSION
    assert kernel_model.VERSION_CODE == (a << 16) + (b << 8) + c
    assert kernel_model.kernel_version(5, 4, 300) == (5 << 16) + (4 << 8) + 255
    assert kernel_model.RELEASE == f"{a}.{b}"


@pytest.mark.parametrize("module", ["progtypes/func_protos.py", "protos/kfuncs.py"])
def test_generated_tables_name_the_emulated_release(module):
    head = (SRC / module).read_text()[:2000]
    m = re.search(r"from Linux (\d+\.\d+)[\d.]*\S* \((\w+)\)", head)
    assert m, f"{module} does not say which kernel it was generated from"
    assert (m.group(1), m.group(2)) == (kernel_model.RELEASE, kernel_model.ARCH)


def test_host_is_the_emulated_release():
    """The differential tests compare with this machine's kernel: it must be the model."""
    if not kernel_model.host_matches():
        pytest.skip(f"the host kernel is another release: ebee {kernel_model.describe()}")
    assert kernel_model.host_release().startswith(kernel_model.RELEASE + ".")


@pytest.mark.kernel
def test_host_version_code(kernel):
    from ebee.kernel.probe import kernel_version_code
    if not kernel_model.host_matches():
        pytest.skip(f"ebee {kernel_model.describe()}")
    assert kernel_version_code() >> 8 == kernel_model.VERSION_CODE >> 8


def test_log_builds_are_builds_of_the_emulated_release():
    """Line-by-line log parity is claimed only for named builds of the modelled release."""
    assert kernel_model.LOG_BUILDS
    for build in kernel_model.LOG_BUILDS:
        assert kernel_model.host_matches(build), build
        assert kernel_model.host_logs_modelled(build)
    assert not kernel_model.host_logs_modelled("6.18.44-fc-v1252")
    assert "logs of " + kernel_model.LOG_BUILDS[0] in kernel_model.describe()
