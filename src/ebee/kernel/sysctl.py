"""The host's ``net.core.bpf_jit_harden``: what the kernel blinds, and ebee following it.

The kernel reads the sysctl when a program is loaded (``bpf_jit_blinding_enabled``),
so a program keeps the form it was loaded with after the value changes.
:func:`follow_host` sets ebee's own level (``ebee.engines.blinding``) to the
host's, so that ebee's ``prog dump xlated`` has the shape the kernel's has here.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from ..engines.blinding import JitHarden, blinding_enabled, jit_harden, set_jit_harden
from .syscall import privileged

JIT_HARDEN = Path("/proc/sys/net/core/bpf_jit_harden")
JIT_ENABLE = Path("/proc/sys/net/core/bpf_jit_enable")


def _read(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def host_jit_harden() -> JitHarden | None:
    """The host's level, or None where the sysctl cannot be read (no /proc, no JIT)."""
    v = _read(JIT_HARDEN)
    try:
        return None if v is None else JitHarden(v)
    except ValueError:
        return None


def host_blinds(*, privileged_loader: bool | None = None) -> bool:
    """Whether a program this process loads now has its constants blinded by the kernel
    (the JIT is on and the level asks for it for this loader)."""
    level = host_jit_harden()
    if level is None or not _read(JIT_ENABLE):
        return False
    return blinding_enabled(level, privileged=privileged() if privileged_loader is None
                            else privileged_loader)


def follow_host() -> JitHarden:
    """Set ebee's blinding level to the host's (unchanged where it cannot be read);
    returns the level now in force."""
    level = host_jit_harden()
    if level is not None:
        set_jit_harden(level)
        return level
    return jit_harden()


@contextlib.contextmanager
def jit_harden_set(level: int) -> Iterator[JitHarden]:
    """Set the host's sysctl for the duration of the block and restore it after, whatever
    happens (PermissionError where it cannot be written).  The setting is system-wide:
    keep the block to the loads that need it."""
    old = _read(JIT_HARDEN)
    if old is None:
        raise OSError(f"{JIT_HARDEN}: not readable (no BPF JIT on this host?)")
    new = JitHarden(int(level))
    JIT_HARDEN.write_text(f"{int(new)}\n")
    try:
        yield new
    finally:
        JIT_HARDEN.write_text(f"{old}\n")


__all__ = ["JIT_HARDEN", "follow_host", "host_blinds", "host_jit_harden", "jit_harden_set"]
