"""bpftool's ``feature probe`` system-configuration section (sysctls and kernel config
options) and its unprivileged probes (``feature probe unprivileged``: the same probes in
a child process that dropped every capability, as bpftool drops them)."""
from __future__ import annotations

import ctypes
import json
import os
from typing import Any

from ..loader.externs import host_kconfig
from .probe import Features, probe

# bpftool 7.1's options (probe_kernel_image_config), in its order; CONFIG_HZ is the one
# it also prints as a macro ("Misc kernel config items")
CONFIG_OPTIONS = (
    "CONFIG_BPF", "CONFIG_BPF_SYSCALL", "CONFIG_HAVE_EBPF_JIT", "CONFIG_BPF_JIT",
    "CONFIG_BPF_JIT_ALWAYS_ON", "CONFIG_DEBUG_INFO_BTF", "CONFIG_DEBUG_INFO_BTF_MODULES",
    "CONFIG_CGROUPS", "CONFIG_CGROUP_BPF", "CONFIG_CGROUP_NET_CLASSID",
    "CONFIG_SOCK_CGROUP_DATA", "CONFIG_BPF_EVENTS", "CONFIG_KPROBE_EVENTS",
    "CONFIG_UPROBE_EVENTS", "CONFIG_TRACING", "CONFIG_FTRACE_SYSCALLS",
    "CONFIG_FUNCTION_ERROR_INJECTION", "CONFIG_BPF_KPROBE_OVERRIDE", "CONFIG_NET",
    "CONFIG_XDP_SOCKETS", "CONFIG_LWTUNNEL_BPF", "CONFIG_NET_ACT_BPF", "CONFIG_NET_CLS_BPF",
    "CONFIG_NET_CLS_ACT", "CONFIG_NET_SCH_INGRESS", "CONFIG_XFRM", "CONFIG_IP_ROUTE_CLASSID",
    "CONFIG_IPV6_SEG6_BPF", "CONFIG_BPF_LIRC_MODE2", "CONFIG_BPF_STREAM_PARSER",
    "CONFIG_NETFILTER_XT_MATCH_BPF", "CONFIG_BPFILTER", "CONFIG_BPFILTER_UMH",
    "CONFIG_TEST_BPF", "CONFIG_HZ")
MACRO_OPTIONS = ("CONFIG_HZ",)

SYSCTLS = {"unprivileged_bpf_disabled": "/proc/sys/kernel/unprivileged_bpf_disabled",
           "bpf_jit_enable": "/proc/sys/net/core/bpf_jit_enable",
           "bpf_jit_harden": "/proc/sys/net/core/bpf_jit_harden",
           "bpf_jit_kallsyms": "/proc/sys/net/core/bpf_jit_kallsyms",
           "bpf_jit_limit": "/proc/sys/net/core/bpf_jit_limit"}

# bpftool's sentences for each sysctl value (-1: could not be read)
_SENTENCES: dict[str, dict[int, str]] = {
    "unprivileged_bpf_disabled": {
        0: "bpf() syscall for unprivileged users is enabled",
        1: "bpf() syscall restricted to privileged users (without recovery)",
        2: "bpf() syscall restricted to privileged users (admin can change)",
        -1: "Unable to retrieve required privileges for bpf() syscall"},
    "bpf_jit_enable": {
        0: "JIT compiler is disabled", 1: "JIT compiler is enabled",
        2: "JIT compiler is enabled with debugging traces in kernel logs",
        -1: "Unable to retrieve JIT-compiler status"},
    "bpf_jit_harden": {
        0: "JIT compiler hardening is disabled",
        1: "JIT compiler hardening is enabled for unprivileged users",
        2: "JIT compiler hardening is enabled for all users",
        -1: "Unable to retrieve JIT hardening status"},
    "bpf_jit_kallsyms": {
        0: "JIT compiler kallsyms exports are disabled",
        1: "JIT compiler kallsyms exports are enabled for root",
        -1: "Unable to retrieve JIT kallsyms export status"},
}
_UNKNOWN = {"unprivileged_bpf_disabled": "bpf() syscall restriction has unknown value {}",
            "bpf_jit_enable": "JIT-compiler status has unknown value {}",
            "bpf_jit_harden": "JIT hardening status has unknown value {}",
            "bpf_jit_kallsyms": "JIT kallsyms exports status has unknown value {}"}


def read_sysctl(path: str) -> int:
    """The sysctl's value, -1 if it cannot be read (bpftool's convention)."""
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return -1


def system_config() -> dict[str, Any]:
    """bpftool's ``system_config`` JSON object: sysctls (ints) and config options (their
    value, None if not set)."""
    out: dict[str, Any] = {k: read_sysctl(p) for k, p in SYSCTLS.items()}
    if not os.path.exists(SYSCTLS["unprivileged_bpf_disabled"]):
        out.pop("unprivileged_bpf_disabled")
    cfg = host_kconfig()
    for k in CONFIG_OPTIONS:
        v = cfg.get(k)
        out[k] = None if v in (None, "n") else v
    return out


def system_config_lines(cfg: dict[str, Any]) -> list[str]:
    """The section as bpftool prints it."""
    out = []
    for k in ("unprivileged_bpf_disabled", "bpf_jit_enable", "bpf_jit_harden",
              "bpf_jit_kallsyms"):
        if k in cfg:
            v = cfg[k]
            out.append(_SENTENCES[k].get(v) or _UNKNOWN[k].format(v))
    lim = cfg.get("bpf_jit_limit", -1)
    out.append("Unable to retrieve global memory limit for JIT compiler for unprivileged users"
               if lim == -1 else
               f"Global memory limit for JIT compiler for unprivileged users is {lim} bytes")
    for k in CONFIG_OPTIONS:
        v = cfg.get(k)
        out.append(f"{k} is set to {v}" if v is not None else f"{k} is not set")
    return out


_CAP_V3 = 0x20080522
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}


def _drop_capabilities() -> None:
    """capset(2) with empty sets: the calling process keeps no capability."""
    nr = _SYS_CAPSET.get(os.uname().machine)
    if nr is None:
        raise OSError(38, "capset: unsupported architecture")
    hdr = (ctypes.c_uint32 * 2)(_CAP_V3, 0)
    data = (ctypes.c_uint32 * 6)()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(nr, hdr, data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def probe_unprivileged(*, helpers: bool = True) -> tuple[dict[str, Any], Features]:
    """The system configuration and the probes as a process without capabilities sees
    them (a forked child that drops them: dropping is for good)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:            # the child: drop, probe, report, exit
        code = 0
        try:
            os.close(r)
            _drop_capabilities()
            f = probe(helpers=helpers)
            msg = {"system_config": system_config(), "features": {
                "program_types": f.program_types, "map_types": f.map_types,
                "helpers": f.helpers, "misc": f.misc}}
        except BaseException as e:     # noqa: BLE001 -- reported to the parent
            msg, code = {"error": str(e)}, 1
        try:
            data = json.dumps(msg).encode()
            while data:
                data = data[os.write(w, data):]
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as f:
        while True:
            b = f.read(1 << 16)
            if not b:
                break
            chunks.append(b)
    os.waitpid(pid, 0)
    msg = json.loads(b"".join(chunks) or b'{"error": "the probe process died"}')
    if "error" in msg:
        raise OSError(1, f"unprivileged probe: {msg['error']}")
    fe = msg["features"]
    return msg["system_config"], Features(fe["program_types"], fe["map_types"], fe["helpers"],
                                          fe["misc"])


__all__ = ["CONFIG_OPTIONS", "MACRO_OPTIONS", "probe_unprivileged", "read_sysctl",
           "system_config", "system_config_lines"]
