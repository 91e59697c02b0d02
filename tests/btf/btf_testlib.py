"""Paths and helpers shared by the BTF/CO-RE tests."""
from __future__ import annotations

import subprocess
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "btf"
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "ebpf-samples"
VMLINUX = Path("/sys/kernel/btf/vmlinux")
BPFFS = Path("/sys/fs/bpf")


def run_bpftool(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["bpftool", *args], capture_output=True, text=True)
    if check and r.returncode:
        raise AssertionError(f"bpftool {' '.join(args)} failed: {r.stderr[-2000:]}")
    return r


def corpus_objects() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and "invalid" not in p.parts)


def has_btf(path: Path) -> bool:
    from ebee.btf import BTFError
    from ebee.btf.elf import btf_sections
    try:
        btf_sections(path.read_bytes())
        return True
    except BTFError:
        return False
