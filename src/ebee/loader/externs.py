"""Extern symbols: ``.kconfig`` values and ``__ksym`` kernel symbols and kfuncs.

As libbpf's ``bpf_object__collect_externs``/``bpf_object__resolve_externs``:

* ``extern T CONFIG_X __kconfig`` (DATASEC ``.kconfig``) -- a value from the
  kernel configuration, laid out in a read-only ``.kconfig`` array map.  Values
  come from the ``kconfig`` argument (``"CONFIG_X=y\\n..."`` or a dict), else the
  host's ``/proc/config.gz`` or ``/boot/config-$(uname -r)``; ``LINUX_KERNEL_VERSION``,
  ``LINUX_HAS_BPF_COOKIE`` and ``LINUX_HAS_SYSCALL_WRAPPER`` are libbpf's own, the last
  two probed on the kernel as libbpf probes them.
  A ``__weak`` extern without a value is zero; a strong one is an error.
* ``extern T sym __ksym`` (DATASEC ``.ksyms``) -- a kernel variable (typed:
  ``ld_imm64`` with ``BPF_PSEUDO_BTF_ID`` of the vmlinux VAR) or an address
  (``void`` type: from ``/proc/kallsyms``), or a kfunc (``FUNC``): calls get the
  id ``ebee.protos.kfuncs.kfunc_id(name)`` gives the user-space runtime.
"""
from __future__ import annotations

import gzip
import platform
import re
from dataclasses import dataclass
from typing import Callable

from ..btf import BTF, Kind
from ..btf.core import types_are_compat
from ..errors import LoadError
from ..protos.kfuncs import kfunc_id
from .elf import STB_WEAK

KCONFIG_SEC, KSYMS_SEC = ".kconfig", ".ksyms"


@dataclass
class Extern:
    name: str
    kind: str                  # "kcfg" | "ksym_var" | "ksym_addr" | "kfunc"
    weak: bool
    btf_id: int                # the VAR/FUNC in the object's BTF
    type_id: int = 0           # its type
    size: int = 0              # kcfg: value size
    align: int = 1
    data_off: int = 0          # kcfg: offset in the .kconfig map value
    resolved: bool = False
    value: int = 0             # ksym_addr address / ksym_var vmlinux BTF id / kfunc id
    kcfg_type: str = ""        # kcfg: libbpf's kcfg type (kcfg_type())
    signed: bool = False       # kcfg: a signed integer


def collect(btf, elf) -> dict[str, Extern]:
    """Externs the object declares, by symbol name, typed from its BTF."""
    syms = {s.name: s for s in elf.symbols if s.is_extern}
    if not syms or btf is None:
        return {}
    out: dict[str, Extern] = {}
    for sec_name in (KCONFIG_SEC, KSYMS_SEC):
        try:
            ds = btf.find(sec_name, Kind.DATASEC)
        except KeyError:
            continue
        for vi in ds.vars:
            t = btf[vi.type_id]
            sym = syms.get(t.name)
            if sym is None:
                continue
            weak = sym.bind == STB_WEAK
            if t.kind is Kind.FUNC:
                if sec_name != KSYMS_SEC:
                    raise LoadError(f"extern function '{t.name}' is not in {KSYMS_SEC}")
                out[t.name] = Extern(t.name, "kfunc", weak, t.id, t.type_id)
                continue
            if t.kind is not Kind.VAR:
                continue
            if sec_name == KCONFIG_SEC:
                size = btf.sizeof(t.type_id)
                kt = kcfg_type(btf, t.type_id)
                if kt == "unknown":
                    raise LoadError(f"extern (kcfg) '{t.name}': type is unsupported")
                inner = btf.resolve(t.type_id)
                out[t.name] = Extern(t.name, "kcfg", weak, t.id, t.type_id, size,
                                     max(1, btf.alignof(t.type_id)), kcfg_type=kt,
                                     signed=inner.kind is Kind.INT and inner.signed)
            else:
                inner = btf.resolve(t.type_id)
                kind = "ksym_addr" if inner.kind is Kind.UNKN or inner.id == 0 else "ksym_var"
                out[t.name] = Extern(t.name, kind, weak, t.id, t.type_id)
    return out


def layout_kconfig(externs: dict[str, Extern]) -> int:
    """Assign offsets in the .kconfig map (libbpf: by alignment, then name); return its size."""
    kc = sorted((e for e in externs.values() if e.kind == "kcfg"), key=lambda e: (-e.align, e.name))
    off = 0
    for e in kc:
        off = (off + e.align - 1) // e.align * e.align
        e.data_off = off
        off += e.size
    return off


def host_kconfig() -> dict[str, str]:
    """The running kernel's configuration, if it can be read."""
    rel = platform.release()
    for path, opener in (("/proc/config.gz", gzip.open), (f"/boot/config-{rel}", open)):
        try:
            with opener(path, "rt") as f:
                return parse_kconfig(f.read())
        except (OSError, EOFError, ValueError):
            continue
    return {}


def parse_kconfig(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"^(CONFIG_\w+)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
        else:
            m = re.match(r"^# (CONFIG_\w+) is not set$", line)
            if m:
                out[m.group(1)] = "n"
    return out


def kernel_version() -> int:
    """libbpf's get_kernel_version: Ubuntu's /proc/version_signature, Debian's version in
    ``uname -v``, else ``uname -r`` -- as KERNEL_VERSION(a, b, c)."""
    try:
        with open("/proc/version_signature") as f:
            m = re.search(r"^\S+ \S+ (\d+)\.(\d+)\.(\d+)", f.read())
    except OSError:
        m = None
    if m is None:
        m = re.search(r"Debian (\d+)\.(\d+)\.(\d+)", platform.version())
    if m is None:
        m = re.match(r"(\d+)\.(\d+)\.(\d+)", platform.release())
    if not m:
        return 0
    a, b, c = (int(x) for x in m.groups())
    return (a << 16) | (b << 8) | min(c, 255)


#: libbpf's virtual externs whose value is a probe of the kernel (FEAT_SYSCALL_WRAPPER,
#: FEAT_BPF_COOKIE); the caller supplies the probe
PROBED = ("LINUX_HAS_SYSCALL_WRAPPER", "LINUX_HAS_BPF_COOKIE")


def kconfig_values(btf, externs: dict[str, Extern], kconfig, size: int,
                   probe: Callable[[str], int] | None = None) -> bytes:
    """The initial contents of the .kconfig map.  ``probe(name)`` gives the value of the
    probed virtual externs (:data:`PROBED`); without one they read as libbpf's default
    where it cannot probe, 0."""
    kc = [e for e in externs.values() if e.kind == "kcfg"]
    if isinstance(kconfig, str):
        cfg = parse_kconfig(kconfig)
    elif isinstance(kconfig, dict):
        cfg = {k: (v if isinstance(v, str) else ("y" if v is True else "n" if v is False else str(v)))
               for k, v in kconfig.items()}
    else:
        cfg = host_kconfig() if any(e.name.startswith("CONFIG_") for e in kc) else {}
    buf = bytearray(size)
    for e in kc:
        t = btf.resolve(e.type_id)
        if e.name == "LINUX_KERNEL_VERSION":
            kv = kernel_version()
            if not kv:
                raise LoadError(f"extern (kcfg) '{e.name}': failed to get kernel version")
            val: int | bytes | None = _kcfg_num(e, kv)
        elif e.name in PROBED:
            val = _kcfg_num(e, probe(e.name) if probe is not None else 0)
        elif e.name.startswith("CONFIG_") and e.name in cfg:
            val = _kcfg_value(e, t, cfg[e.name], Kind)
        elif e.name.startswith("CONFIG_") or e.name.startswith("LINUX_"):
            if not e.weak:
                raise LoadError(f"extern (kcfg) '{e.name}': value not found in the kernel "
                                f"config; pass it with kconfig= or declare it __weak")
            val = None
        else:
            raise LoadError(f"extern (kcfg) '{e.name}': unrecognized extern name")
        if val is None:
            continue
        e.resolved = True
        if isinstance(val, bytes):
            buf[e.data_off:e.data_off + len(val)] = val
        elif e.size:
            buf[e.data_off:e.data_off + e.size] = \
                (val & ((1 << (8 * e.size)) - 1)).to_bytes(e.size, "little")
    return bytes(buf)


def kcfg_type(btf, tid: int) -> str:
    """libbpf's find_kcfg_type: "bool", "char" (any 1-byte integer), "int", "tristate"
    (enum libbpf_tristate), "char_arr" or "unknown"."""
    t = btf.resolve(tid)
    if t.kind is Kind.INT:
        if t.is_bool:
            return "bool" if t.size == 1 else "unknown"
        if t.size == 1:
            return "char"
        return "int" if t.size in (2, 4, 8) else "unknown"
    if t.kind in (Kind.ENUM, Kind.ENUM64):
        ok = t.name == "libbpf_tristate" and (t.kind is Kind.ENUM64 or t.size == 4)
        return "tristate" if ok else "unknown"
    if t.kind is Kind.ARRAY:
        return "char_arr" if t.nelems and kcfg_type(btf, t.type_id) == "char" else "unknown"
    return "unknown"


def _kcfg_value(e: Extern, t, raw: str, Kind) -> int | bytes:
    """A Kconfig value as libbpf's bpf_object__process_kconfig_line sets it."""
    raw = raw.strip()
    kt = e.kcfg_type
    if raw in ("y", "n", "m"):                   # set_kcfg_value_tri
        if kt == "bool":
            if raw == "m":
                raise LoadError(f"extern (kcfg) '{e.name}': value '{raw}' implies tristate or "
                                f"char type")
            return int(raw == "y")
        if kt == "tristate":
            return {"n": 0, "y": 1, "m": 2}[raw]
        if kt == "char":
            return ord(raw)
        raise LoadError(f"extern (kcfg) '{e.name}': value '{raw}' implies bool, tristate, or "
                        f"char type")
    if raw.startswith('"'):                      # set_kcfg_value_str
        if kt != "char_arr":
            raise LoadError(f"extern (kcfg) '{e.name}': value '{raw}' implies char array type")
        if len(raw) < 2 or not raw.endswith('"'):
            raise LoadError(f"extern (kcfg) '{e.name}': invalid string config '{raw}'")
        s = raw[1:-1].encode()[:e.size - 1]
        return s + b"\0" * (e.size - len(s))
    try:
        v = int(raw, 0)
    except ValueError:
        raise LoadError(f"extern (kcfg) '{e.name}': invalid value {raw!r}") from None
    return _kcfg_num(e, v)


def _kcfg_num(e: Extern, v: int) -> int:
    """set_kcfg_value_num: integers into int, char and bool externs."""
    kt = e.kcfg_type
    if kt not in ("int", "char", "bool"):
        raise LoadError(f"extern (kcfg) '{e.name}': value '{v}' implies integer, char, or "
                        f"boolean type")
    if kt == "bool":
        if v not in (0, 1):
            raise LoadError(f"extern (kcfg) '{e.name}': value '{v}' isn't boolean compatible")
        return v
    v &= (1 << 64) - 1                   # libbpf parses with strtoull: a u64
    bits = 8 * e.size
    if bits >= 64:
        ok = True
    elif e.signed:                       # is_kcfg_value_in_range
        ok = ((v + (1 << (bits - 1))) & ((1 << 64) - 1)) < (1 << bits)
    else:
        ok = v >> bits == 0
    if not ok:
        raise LoadError(f"extern (kcfg) '{e.name}': value '{v}' doesn't fit in {e.size} bytes")
    return v


def kallsyms_address(name: str) -> int | None:
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == name:
                    addr = int(parts[0], 16)
                    return addr or None
    except OSError:
        return None
    return None


def resolve_ksyms(externs: dict[str, Extern], btf=None) -> None:
    """Kernel variables (vmlinux BTF ids, addresses) and kfunc ids."""
    vmlinux = None
    for e in externs.values():
        if e.kind == "ksym_var":
            if vmlinux is None:
                try:
                    vmlinux = BTF.load_vmlinux()
                except Exception:
                    vmlinux = False
            ids = [t.id for t in vmlinux.find_all(e.name, Kind.VAR)] if vmlinux else []
            if ids:
                e.value, e.resolved = ids[0], True
            elif not e.weak:
                raise LoadError(f"extern (var ksym) '{e.name}': not found in kernel BTF")
        elif e.kind == "ksym_addr":
            addr = kallsyms_address(e.name)
            if addr is not None:
                e.value, e.resolved = addr, True
            elif not e.weak:
                raise LoadError(f"extern (ksym) '{e.name}': failed to find kernel symbol "
                                f"address (needs /proc/kallsyms)")
        elif e.kind == "kfunc":
            if vmlinux is None:
                try:
                    vmlinux = BTF.load_vmlinux()
                except Exception:
                    vmlinux = False
            _resolve_kfunc(btf, e, vmlinux)


def essential_name(name: str) -> str:
    """A symbol without its ``___flavor`` suffix (libbpf's essent_name)."""
    i = name.find("___")
    return name[:i] if i > 0 else name


#: ids of kernel functions that are not kfuncs (libbpf resolves any FUNC of vmlinux BTF;
#: the verifier then refuses the call): this base plus the FUNC's vmlinux BTF id
NON_KFUNC_ID_BASE = 0x7EC00000


def _resolve_kfunc(btf, e: Extern, vmlinux) -> None:
    """libbpf's bpf_object__resolve_ksym_func_btf_id: the FUNC of that name in kernel BTF,
    with a compatible prototype; a __weak one that is missing or incompatible stays
    unresolved (its calls are poisoned, an error only if reached)."""
    name = essential_name(e.name)
    kid = kfunc_id(name)            # a kfunc of the emulated kernel
    found = vmlinux.find_all(name, Kind.FUNC) if vmlinux else []
    kern = found[0] if found else None
    if kid is None and kern is None:
        if e.weak:
            return
        raise LoadError(f"extern (func ksym) '{e.name}': not found in kernel or module BTFs")
    if kern is not None and btf is not None and \
            not types_are_compat(btf, e.type_id, vmlinux, kern.type_id):
        if e.weak:
            return
        raise LoadError(f"extern (func ksym) '{e.name}': func_proto [{e.type_id}] "
                        f"incompatible with vmlinux [{kern.type_id}]")
    e.value = kid if kid is not None else NON_KFUNC_ID_BASE + kern.id
    e.resolved = True
