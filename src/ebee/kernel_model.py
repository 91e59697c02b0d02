"""The Linux kernel ebee emulates: the one place that names it.

ebee's tables and behaviours follow one kernel build: the uapi constants
(``ebee.uapi``), the helpers each program type may call
(``ebee.progtypes.func_protos``), the kfunc registry (``ebee.protos.kfuncs``),
the kernel-structure layouts (``ebee.layouts.kernel``), the verifier's messages
and the context rewrites were generated from, or checked against, this
release on this architecture.  Where the machine ebee runs on has another
kernel, the differential tests (which compare ebee with the running kernel)
may disagree for that reason alone; they say so with :func:`describe`.

``ebee --version`` prints :func:`describe`.
"""
from __future__ import annotations

import os
import platform
import re

#: the Linux release ebee emulates (major.minor)
RELEASE = "6.18"
#: the kernel version the generated tables were taken from (each names its ``uname -r``)
BUILD = "6.18.44"
#: the architecture of the layouts and of kernel-structure offsets
ARCH = "x86_64"
#: the Linux sources of the kfunc flags, struct layouts and rewrites read as text
SOURCES = "linux-source-6.12 6.12.118-1~deb12u1 (Debian)"
#: the builds (``uname -r``) whose verifier logs ebee reproduces line for line.
#: Builds of one release differ in backports that show only in the log (another
#: 6.18.44 build prints "SCC enter" lines around callbacks and types a lookup in
#: a map-in-map as ``map_ptr_or_null``); verdicts and error lines do not move.
LOG_BUILDS = ("6.18.44-fc-v1147",)


def kernel_version(a: int, b: int, c: int = 0) -> int:
    """KERNEL_VERSION(a, b, c) as bpf_helpers.h computes it (c saturates at 255)."""
    return (a << 16) + (b << 8) + min(c, 255)


def _parse(release: str) -> tuple[int, int, int] | None:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


#: (major, minor, patch) of :data:`BUILD`
VERSION: tuple[int, int, int] = _parse(BUILD) or (0, 0, 0)
#: LINUX_VERSION_CODE of the emulated kernel
VERSION_CODE = kernel_version(*VERSION)


def host_release() -> str:
    """``uname -r`` of the machine ebee runs on."""
    return platform.release()


def host_matches(release: str | None = None) -> bool:
    """The host kernel (or ``release``) is the release ebee emulates (same major.minor)."""
    v = _parse(release if release is not None else host_release())
    return v is not None and v[:2] == VERSION[:2] and os.uname().machine == ARCH


def host_logs_modelled(release: str | None = None) -> bool:
    """The host kernel (or ``release``) is a build whose verifier log ebee reproduces."""
    return (release if release is not None else host_release()) in LOG_BUILDS


def describe() -> str:
    """One line: the emulated kernel, and the host's (marked when it is another release)."""
    host, machine = host_release(), os.uname().machine
    text = f"emulates Linux {RELEASE} {ARCH}, tables from {BUILD}, logs of {', '.join(LOG_BUILDS)}; " \
        f"host kernel {host}"
    return text if host_matches(host) else f"{text} {machine}, another release"
