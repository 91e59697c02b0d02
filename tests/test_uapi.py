"""uapi.py holds Linux's values; check them against the headers and BTF of this machine."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ebee import uapi as U

HEADERS = [Path("/usr/include/linux/bpf.h"), Path("/usr/include/linux/bpf_common.h")]


def _defines() -> dict[str, int]:
    out = {}
    for h in HEADERS:
        if not h.exists():
            continue
        for m in re.finditer(r"^#define\s+(BPF_\w+)\s+(0x[0-9a-fA-F]+|\d+)U?\b", h.read_text(), re.M):
            out[m.group(1)] = int(m.group(2), 0)
        for m in re.finditer(r"^#define\s+(BPF_F_\w+)\s+\(1U << (\d+)\)", h.read_text(), re.M):
            out[m.group(1)] = 1 << int(m.group(2))
    return out


def test_defines_match_uapi_headers():
    defines = _defines()
    if not defines:
        pytest.skip("linux uapi headers not installed")
    checked = 0
    for name, value in defines.items():
        if hasattr(U, name):
            assert getattr(U, name) == value, name
            checked += 1
    assert checked > 40


def test_enums_match_kernel_btf():
    bpftool = shutil.which("bpftool")
    if not bpftool or not Path("/sys/kernel/btf/vmlinux").exists():
        pytest.skip("bpftool or kernel BTF unavailable")
    text = subprocess.run([bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"],
                          capture_output=True, text=True).stdout
    for cname, cls, prefix in [("bpf_map_type", U.MapType, "BPF_MAP_TYPE_"),
                               ("bpf_prog_type", U.ProgType, "BPF_PROG_TYPE_"),
                               ("bpf_func_id", U.FuncId, "BPF_FUNC_"),
                               ("bpf_cmd", U.Cmd, "BPF_")]:
        body = re.search(r"^enum " + cname + r" \{\n(.*?)\n\};", text, re.S | re.M).group(1)
        for name, value in re.findall(r"^\t(\w+) = (\d+),", body, re.M):
            short = name[len(prefix):]
            if name.startswith("__") or short not in cls.__members__:
                continue   # newer kernel than the generated table: a superset is fine
            assert cls[short] == int(value), name
