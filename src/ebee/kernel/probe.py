"""``feature probe``: what this kernel supports, found by asking it.

As libbpf's probes (and ``bpftool feature probe``) do: a program type is
available if a two-instruction program of that type loads; a map type if a
small map of it can be created; a helper, for a program type, if a program
calling it is not refused with "unknown func", "invalid func" or "program of
this type cannot use helper" (the last is how newer kernels say it; probes
that look only for the older messages report every helper as available).
"""
from __future__ import annotations

import ctypes
import errno
import functools
import mmap
import os
import re
from dataclasses import dataclass, field

from ..uapi import (BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, BPF_F_SLEEPABLE, ENOTSUPP, AttachType,
                    Cmd, FuncId, MapType, ProgType)
from .attach.perf_event import _append, _probe_events_file, open_event, pmu_type
from .attrs import MapCreateAttr, ProgLoadAttr
from .syscall import addr, bpf
from ..btf.builder import BTFBuilder
from .btf import KernelBTF
from ..isa import encode, make
from ..asm import assemble
from ..uapi import BPF_MAXINSNS

_LOG = 1 << 16

_EXPECTED_ATTACH = {
    ProgType.CGROUP_SOCK_ADDR: AttachType.CGROUP_INET4_CONNECT,
    ProgType.CGROUP_SOCKOPT: AttachType.CGROUP_GETSOCKOPT,
    ProgType.SK_LOOKUP: AttachType.SK_LOOKUP,
    ProgType.LIRC_MODE2: AttachType.LIRC_MODE2,
    ProgType.NETFILTER: AttachType.NETFILTER,
}
# types whose programs must name an attach target: probed by the error a bogus one gives
_NEEDS_TARGET = {
    ProgType.TRACING: (AttachType.TRACE_FENTRY, errno.EINVAL, "attach_btf_id 1 is not a function"),
    ProgType.LSM: (AttachType.LSM_MAC, errno.EINVAL, "attach_btf_id 1 is not a function"),
    ProgType.EXT: (0, errno.EINVAL, "Cannot replace kernel functions"),
}
_HELPER_REFUSED = re.compile(r"unknown func |invalid func |program of this type cannot use helper ")


def _load(prog_type: int, image: bytes, *, expected_attach_type: int = 0, prog_flags: int = 0,
          attach_btf_id: int = 0, log: ctypes.Array | None = None,
          kern_version: int = 0) -> tuple[int, str]:
    """(errno or 0, log) of loading ``image``."""
    insns = ctypes.create_string_buffer(image, len(image))
    lic = ctypes.create_string_buffer(b"GPL")
    if log is not None:
        log[0] = b"\0"
    attr = ProgLoadAttr(prog_type=prog_type, insn_cnt=len(image) // 8, insns=addr(insns),
                        license=addr(lic), log_level=1 if log is not None else 0,
                        log_size=len(log) if log is not None else 0, log_buf=addr(log),
                        expected_attach_type=expected_attach_type, prog_flags=prog_flags,
                        attach_btf_id=attach_btf_id, kern_version=kern_version)
    try:
        fd = bpf(Cmd.PROG_LOAD, attr)
    except OSError as e:
        return e.errno, (log.value.decode(errors="replace") if log is not None else "")
    os.close(fd)
    return 0, ""


def kernel_version_code() -> int:
    """LINUX_VERSION_CODE of the running kernel (for kprobe programs on old kernels)."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", os.uname().release)
    if not m:
        return 0
    a, b, c = (int(x or 0) for x in m.groups())
    return (a << 16) + (b << 8) + min(c, 255)


def _exit0() -> bytes:
    return _asm("r0 = 0\nexit")


def prog_type_available(t: ProgType) -> bool:
    if t in _NEEDS_TARGET:
        at, want, msg = _NEEDS_TARGET[t]
        log = ctypes.create_string_buffer(_LOG)
        err, text = _load(t, _exit0(), expected_attach_type=at, attach_btf_id=1, log=log)
        return err == want and msg in text
    if t == ProgType.STRUCT_OPS:
        err, _ = _load(t, _exit0())
        return err == ENOTSUPP
    err, _ = _load(t, _exit0(), expected_attach_type=_EXPECTED_ATTACH.get(t, 0),
                   prog_flags=BPF_F_SLEEPABLE if t == ProgType.SYSCALL else 0,
                   kern_version=kernel_version_code() if t == ProgType.KPROBE else 0)
    return err == 0


def _storage_btf():
    """BTF for local-storage maps: int key, value struct { int cnt; struct bpf_spin_lock l; }."""
    b = BTFBuilder()
    i = b.add_int("int", 4, signed=True)
    lock = b.add_struct("bpf_spin_lock", 4, [("val", i, 0)])
    b.add_struct("val", 8, [("cnt", i, 0), ("l", lock, 32)])
    return KernelBTF(b.to_bytes())


def map_type_available(t: MapType) -> bool:
    key, value, entries, flags, inner, btf = 4, 4, 1, 0, None, None
    keep = []
    try:
        if t == MapType.LPM_TRIE:
            key, value, flags = 8, 8, BPF_F_NO_PREALLOC
        elif t == MapType.STACK_TRACE:
            value = 8
        elif t in (MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER):
            key = 0
        elif t in (MapType.RINGBUF, MapType.USER_RINGBUF):
            key, value, entries = 0, 0, mmap.PAGESIZE
        elif t == MapType.ARENA:
            key, value, flags = 0, 0, BPF_F_MMAPABLE        # one page, mapped anywhere
        elif t in (MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE):
            key, entries = 16, 0          # struct bpf_cgroup_storage_key
        elif t in (MapType.SK_STORAGE, MapType.INODE_STORAGE, MapType.TASK_STORAGE,
                   MapType.CGRP_STORAGE):
            value, entries, flags = 8, 0, BPF_F_NO_PREALLOC
            btf = _storage_btf()
            keep.append(btf)
        elif t in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
            inner = bpf(Cmd.MAP_CREATE, MapCreateAttr(map_type=MapType.ARRAY, key_size=4,
                                                       value_size=4, max_entries=1))
        attr = MapCreateAttr(map_type=t, key_size=key, value_size=value, max_entries=entries,
                             map_flags=flags, inner_map_fd=inner or 0,
                             btf_fd=btf.fd if btf else 0, btf_key_type_id=1 if btf else 0,
                             btf_value_type_id=3 if btf else 0)
        if t == MapType.STRUCT_OPS:     # a bogus value type: ENOTSUPP if the type exists
            attr.btf_vmlinux_value_type_id, attr.value_type_btf_obj_fd = 1, -1
        try:
            os.close(bpf(Cmd.MAP_CREATE, attr))
            return True
        except OSError as e:
            # struct_ops maps need a kernel value type; ENOTSUPP says the type exists
            return t == MapType.STRUCT_OPS and e.errno == ENOTSUPP
    except OSError:
        return False
    finally:
        if inner is not None:
            os.close(inner)
        for k in keep:
            k.close()


def type_name(t) -> str:
    """bpftool's name for a program or map type (``cgroup_storage``, not ``..._deprecated``)."""
    return t.name.lower().removesuffix("_deprecated")


def helper_names() -> dict[int, str]:
    return {int(f): "bpf_" + f.name.lower() for f in FuncId if int(f) > 0}


def helpers_for(t: ProgType) -> list[str] | None:
    """Helpers programs of type ``t`` may call (None: this type cannot be probed so)."""
    if t in _NEEDS_TARGET or t == ProgType.STRUCT_OPS:
        return None
    log = ctypes.create_string_buffer(_LOG)
    out = []
    at = _EXPECTED_ATTACH.get(t, 0)
    flags = BPF_F_SLEEPABLE if t == ProgType.SYSCALL else 0
    kv = kernel_version_code() if t == ProgType.KPROBE else 0
    for fid, name in sorted(helper_names().items()):
        image = encode([make("call", imm=fid), make("exit")])
        err, text = _load(t, image, expected_attach_type=at, prog_flags=flags, log=log,
                          kern_version=kv)
        if err == 0 or not _HELPER_REFUSED.search(text):
            out.append(name)
    return out


def _asm(text: str) -> bytes:
    return encode(assemble(text))


def misc_features() -> dict[str, bool]:
    """bpftool's miscellaneous probes: program size limit, loops, ISA versions."""
    def loads(text: str) -> bool:
        return _load(ProgType.SOCKET_FILTER, _asm(text))[0] == 0
    return {
        "have_large_insn_limit": loads("r0 = 0\n" * BPF_MAXINSNS + "exit"),
        "have_bounded_loops": loads("r0 = 10\nr0 -= 1\nif r0 != 0 goto -2\nexit"),
        "have_v2_isa_extension": loads("r0 = 0\nif r0 < 0 goto +1\nr0 = 1\nexit"),
        "have_v3_isa_extension": loads("r0 = 0\nif w0 < 0 goto +1\nr0 = 1\nexit"),
        "have_v4_isa_extension": loads("r0 = 0\nif w0 == 1 goto +1\ngotol +1\nr0 = 1\nexit"),
    }


@dataclass
class Features:
    program_types: dict[str, bool] = field(default_factory=dict)
    map_types: dict[str, bool] = field(default_factory=dict)
    helpers: dict[str, list[str]] = field(default_factory=dict)
    misc: dict[str, bool] = field(default_factory=dict)

    def to_json(self) -> dict:
        """bpftool's ``feature probe --json`` keys."""
        return {
            "syscall_config": {"have_bpf_syscall": True},
            "program_types": {f"have_{n}_prog_type": v for n, v in self.program_types.items()},
            "map_types": {f"have_{n}_map_type": v for n, v in self.map_types.items()},
            "helpers": {f"{n}_available_helpers": h for n, h in self.helpers.items()},
            "misc": self.misc,
        }


def probe(*, helpers: bool = True, prog_types=None) -> Features:
    f = Features()
    for t in ProgType:
        if t == ProgType.UNSPEC:
            continue
        f.program_types[type_name(t)] = prog_type_available(t)
    for t in MapType:
        if t == MapType.UNSPEC:
            continue
        f.map_types[type_name(t)] = map_type_available(t)
    if helpers:
        for t in ProgType:
            if t == ProgType.UNSPEC or (prog_types is not None and t not in prog_types):
                continue
            name = type_name(t)
            if not f.program_types.get(name):
                f.helpers[name] = []
                continue
            got = helpers_for(t)
            f.helpers[name] = got if got is not None else []
    f.misc = misc_features()
    return f


# --- libbpf's feature probes behind the virtual .kconfig externs -----------------------------

#: arch_specific_syscall_pfx(): the prefix of the syscall wrappers' symbols (__x64_sys_bpf)
_SYSCALL_PFX = {"x86_64": "x64", "i386": "ia32", "i686": "ia32", "s390x": "s390x",
                "s390": "s390", "armv7l": "arm", "armv6l": "arm", "aarch64": "arm64",
                "mips": "mips", "mips64": "mips", "riscv64": "riscv", "ppc64le": "powerpc64",
                "ppc64": "powerpc64", "ppc": "powerpc"}


@functools.lru_cache(maxsize=None)
def has_syscall_wrapper() -> bool:
    """libbpf's probe_kern_syscall_wrapper: whether a kprobe on ``__<arch>_sys_bpf`` can be
    made (kprobe PMU, else tracefs kprobe_events).  False where kprobes are unavailable,
    as libbpf then reports it -- ``LINUX_HAS_SYSCALL_WRAPPER``."""
    pfx = _SYSCALL_PFX.get(os.uname().machine)
    if pfx is None:
        return False
    func = f"__{pfx}_sys_bpf"
    pmu = pmu_type("kprobe")
    if pmu is not None:
        name = ctypes.create_string_buffer(func.encode())
        try:
            fd = open_event(pmu, 0, pid=os.getpid(), cpu=-1, config1=addr(name))
        except OSError:
            return False
        os.close(fd)
        return True
    events = _probe_events_file(uprobe=False)
    if events is None:
        return False
    event = f"ebee_probe_{os.getpid()}"
    try:
        _append(events, f"p:kprobes/{event} {func}\n")
    except OSError:
        return False
    try:
        _append(events, f"-:kprobes/{event}\n")
    except OSError:
        pass
    return True


@functools.lru_cache(maxsize=None)
def has_bpf_cookie() -> bool:
    """libbpf's probe_kern_bpf_cookie: a tracepoint program calling bpf_get_attach_cookie
    loads -- ``LINUX_HAS_BPF_COOKIE``."""
    image = encode([make("call", imm=int(FuncId.get_attach_cookie)),
                    make("mov", dst=0, imm=0, use_reg=False), make("exit")])
    return _load(ProgType.TRACEPOINT, image)[0] == 0


#: libbpf's virtual __kconfig externs and the probe behind each
KCONFIG_PROBES = {"LINUX_HAS_SYSCALL_WRAPPER": has_syscall_wrapper,
                  "LINUX_HAS_BPF_COOKIE": has_bpf_cookie}


def kconfig_probe(name: str) -> int:
    """The value libbpf gives a virtual ``LINUX_HAS_*`` extern on this kernel (0 where
    the kernel cannot be asked, as libbpf's failed probes give)."""
    try:
        return int(KCONFIG_PROBES[name]())
    except Exception:
        return 0
