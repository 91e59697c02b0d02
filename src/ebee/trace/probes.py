"""Attach points: bpftrace's probe spellings parsed, wildcards expanded, probes listed.

``tracepoint:syscalls:sys_enter_open*`` expands against tracefs (or, where tracefs
cannot be read, the tracepoint formats bundled with ebee); ``uprobe:BIN:pat*``
against the binary's ELF symbols; ``kprobe:pat*`` against
``available_filter_functions`` or, where that is unreadable, the kernel's BTF.
Nothing here touches bpf(): the compiler runs without privileges.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..btf import BTF
from ..progtypes.tracing import TRACEFS, bundled_tracepoints, tracepoint_format
from elftools.elf.elffile import ELFFile

from ..uapi import ProgType
from .ast import AttachPoint, Loc
from .errors import TraceError

ALIASES = {"t": "tracepoint", "rt": "rawtracepoint", "k": "kprobe", "kr": "kretprobe",
           "u": "uprobe", "ur": "uretprobe", "i": "interval", "p": "profile", "s": "software",
           "h": "hardware", "f": "kfunc", "fr": "kretfunc", "begin": "BEGIN", "end": "END",
           "fentry": "kfunc", "fexit": "kretfunc"}
PROVIDERS = ("BEGIN", "END", "tracepoint", "rawtracepoint", "kprobe", "kretprobe", "uprobe",
             "uretprobe", "interval", "profile", "software", "hardware", "kfunc", "kretfunc",
             "usdt", "watchpoint", "iter")

# perf software events (PERF_TYPE_SOFTWARE configs) with bpftrace's aliases and default
# sample periods
SOFTWARE_EVENTS = {
    "cpu-clock": (0, 1000000), "cpu": (0, 1000000), "task-clock": (1, 1000000),
    "page-faults": (2, 100), "faults": (2, 100), "context-switches": (3, 1000),
    "cs": (3, 1000), "cpu-migrations": (4, 1), "minor-faults": (5, 100),
    "major-faults": (6, 1), "alignment-faults": (7, 1), "emulation-faults": (8, 1),
    "dummy": (9, 1), "bpf-output": (10, 1),
}
HARDWARE_EVENTS = {
    "cpu-cycles": (0, 1000000), "cycles": (0, 1000000), "instructions": (1, 1000000),
    "cache-references": (2, 1000000), "cache-misses": (3, 1000000),
    "branch-instructions": (4, 100000), "branches": (4, 100000), "branch-misses": (5, 100000),
    "bus-cycles": (6, 100000), "frontend-stalls": (7, 1000000),
    "backend-stalls": (8, 1000000), "ref-cycles": (9, 1000000),
}
TIME_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "hz": 0}
LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
            "/lib", "/usr/lib", "/usr/local/lib")


@dataclass(frozen=True)
class Target:
    """One attach point after parsing (and wildcard expansion)."""
    provider: str          # canonical provider name (PROVIDERS)
    target: str = ""       # tracepoint category, uprobe binary, time unit, event name
    func: str = ""         # tracepoint/function/symbol name, or the period as text
    offset: int = 0        # kprobe/uprobe +offset, or a uprobe raw address
    loc: Loc = Loc()

    @property
    def name(self) -> str:
        """What the ``probe`` builtin prints."""
        p = self.provider
        if p in ("BEGIN", "END"):
            return p
        if p in ("kprobe", "kretprobe", "kfunc", "kretfunc", "rawtracepoint"):
            return f"{p}:{self.func}" + (f"+{self.offset}" if self.offset else "")
        if p in ("uprobe", "uretprobe"):
            fn = self.func if self.func else hex(self.offset)
            return f"{p}:{self.target}:{fn}" + (f"+{self.offset}" if self.func and self.offset
                                                else "")
        return f"{p}:{self.target}:{self.func}"

    @property
    def prog_type(self) -> ProgType:
        p = self.provider
        if p == "tracepoint":
            return ProgType.TRACEPOINT
        if p == "rawtracepoint":
            return ProgType.RAW_TRACEPOINT
        if p in ("kprobe", "kretprobe", "uprobe", "uretprobe"):
            return ProgType.KPROBE
        if p in ("interval", "profile", "software", "hardware"):
            return ProgType.PERF_EVENT
        # BEGIN and END run once, through BPF_PROG_TEST_RUN: raw tracepoint programs
        return ProgType.RAW_TRACEPOINT

    @property
    def is_special(self) -> bool:
        return self.provider in ("BEGIN", "END")

    @property
    def user(self) -> bool:
        """Whether pointers the probe receives point into user memory."""
        return self.provider in ("uprobe", "uretprobe") or (
            self.provider == "tracepoint" and self.target == "syscalls")

    @property
    def period_ns(self) -> int:
        """interval/profile: the period in ns (0 with ``hz``)."""
        return TIME_UNITS.get(self.target, 0) * int(self.func)

    @property
    def frequency(self) -> int:
        return int(self.func) if self.target == "hz" else 0


def _fail(msg: str, ap: AttachPoint) -> TraceError:
    return TraceError(msg, ap.loc)


def parse_attach_point(ap: AttachPoint) -> Target:
    """Split one attach point as bpftrace's AttachPointParser does (no expansion)."""
    raw = ap.raw
    head, _, rest = raw.partition(":")
    provider = ALIASES.get(head, head)
    if provider not in PROVIDERS:
        raise _fail(f"Invalid probe type: {head}", ap)
    parts = raw.split(":")
    if provider in ("BEGIN", "END"):
        if len(parts) != 1:
            raise _fail(f"{provider} probe type requires 0 arguments", ap)
        return Target(provider, loc=ap.loc)
    if provider == "tracepoint":
        if len(parts) != 3:
            raise _fail("tracepoint probe type requires 2 arguments", ap)
        return Target(provider, parts[1], parts[2], loc=ap.loc)
    if provider == "rawtracepoint":
        if len(parts) not in (2, 3):
            raise _fail("rawtracepoint probe type requires 1 argument", ap)
        return Target(provider, "", parts[-1], loc=ap.loc)
    if provider in ("kprobe", "kretprobe", "kfunc", "kretfunc"):
        if len(parts) not in (2, 3):
            raise _fail(f"{provider} probe type requires 1 argument", ap)
        func, plus, off = parts[-1].partition("+")
        if plus and provider == "kretprobe":
            raise _fail("Offset not allowed for kretprobe probes", ap)
        return Target(provider, parts[1] if len(parts) == 3 else "", func,
                      int(off, 0) if plus else 0, loc=ap.loc)
    if provider in ("uprobe", "uretprobe"):
        if len(parts) < 3:
            raise _fail(f"{provider} probe type requires 2 arguments", ap)
        binary = ":".join(parts[1:-1])
        sym = parts[-1]
        func, plus, off = sym.partition("+")
        if func.startswith("0x") or func.isdigit():
            return Target(provider, resolve_binary(binary, ap), "", int(func, 0), loc=ap.loc)
        return Target(provider, resolve_binary(binary, ap), func, int(off, 0) if plus else 0,
                      loc=ap.loc)
    if provider in ("interval", "profile"):
        if len(parts) != 3:
            raise _fail(f"{provider} probe type requires 2 arguments", ap)
        unit, n = parts[1], parts[2]
        if unit not in TIME_UNITS:
            raise _fail(f"{parts[1]} is not an accepted unit", ap)
        if not n.isdigit() or int(n) == 0:
            raise _fail(f"{provider} {'period' if unit != 'hz' else 'frequency'} must be a "
                        f"positive integer: {n}", ap)
        return Target(provider, unit, str(int(n)), loc=ap.loc)
    if provider in ("software", "hardware"):
        table = SOFTWARE_EVENTS if provider == "software" else HARDWARE_EVENTS
        if len(parts) not in (2, 3):
            raise _fail(f"{provider} probe type requires 1 or 2 arguments", ap)
        if parts[1] not in table:
            raise _fail(f"Unknown {provider} event: {parts[1]}", ap)
        count = parts[2] if len(parts) == 3 and parts[2] else str(table[parts[1]][1])
        if not count.isdigit():
            raise _fail(f"{provider} count must be an integer: {count}", ap)
        return Target(provider, parts[1], count, loc=ap.loc)
    raise _fail(f"{provider} probes are not supported by ebee trace", ap)


def resolve_binary(name: str, ap: AttachPoint | None = None) -> str:
    """An absolute path for a uprobe's binary: as given, on PATH, or a library."""
    if os.sep in name:
        return os.path.abspath(name)
    found = shutil.which(name)
    if found:
        return found
    for d in LIB_DIRS:
        p = Path(d) / name
        if p.exists():
            return str(p.resolve())
    for d in LIB_DIRS:
        hits = sorted(Path(d).glob(f"lib{name}.so*")) if Path(d).is_dir() else []
        if hits:
            return str(hits[0].resolve())
    return name


# -- expansion ---------------------------------------------------------------------------

def has_wildcard(s: str) -> bool:
    return any(c in s for c in "*?[")


def tracefs_events_dir() -> Path | None:
    for root in TRACEFS:
        try:
            if root.is_dir() and any(True for _ in root.iterdir()):
                return root
        except OSError:
            continue
    return None


def all_tracepoints() -> list[tuple[str, str]]:
    """(category, name) of every tracepoint: tracefs when readable, else ebee's bundled
    formats."""
    root = tracefs_events_dir()
    out: list[tuple[str, str]] = []
    if root is not None:
        avail = root.parent / "available_events"
        try:
            for line in avail.read_text().splitlines():
                cat, _, name = line.partition(":")
                if name:
                    out.append((cat, name))
            return sorted(out)
        except OSError:
            pass
        for cat in root.iterdir():
            if cat.is_dir():
                for ev in cat.iterdir():
                    if (ev / "format").exists():
                        out.append((cat.name, ev.name))
        return sorted(out)
    return sorted(tuple(s.split("/", 1)) for s in bundled_tracepoints())   # type: ignore


def kernel_functions() -> list[str]:
    """Traceable kernel functions: available_filter_functions, else BTF FUNCs."""
    for root in TRACEFS:
        p = root.parent / "available_filter_functions"
        try:
            return sorted({ln.split()[0] for ln in p.read_text().splitlines() if ln})
        except OSError:
            continue
    try:
        btf = BTF.load_vmlinux()
        return sorted({t.name for t in btf if t.kind.name == "FUNC" and t.name})
    except Exception:
        return []


def elf_functions(path: str) -> list[str]:
    """Function symbols of an ELF file (.symtab, else .dynsym), sorted."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            names: set[str] = set()
            for secname in (".symtab", ".dynsym"):
                sec = elf.get_section_by_name(secname)
                if sec is None:
                    continue
                for sym in sec.iter_symbols():
                    if sym["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC") and \
                            sym["st_shndx"] not in ("SHN_UNDEF", "SHN_ABS") and sym.name:
                        names.add(sym.name.split("@", 1)[0])
            return sorted(names)
    except (OSError, Exception):
        return []


def expand(t: Target, ap: AttachPoint, *, missing_ok: bool = False) -> list[Target]:
    """Wildcards expanded; a tracepoint that does not exist is an error, as in bpftrace."""
    p = t.provider
    if p == "tracepoint":
        if has_wildcard(t.target) or has_wildcard(t.func):
            hits = [Target(p, c, n, loc=t.loc) for c, n in all_tracepoints()
                    if fnmatch.fnmatchcase(c, t.target) and fnmatch.fnmatchcase(n, t.func)]
            if not hits and not missing_ok:
                raise _fail(f"No tracepoints matched {t.target}:{t.func}", ap)
            return hits
        if not missing_ok and not tracepoint_exists(t.target, t.func):
            raise _fail(f"tracepoint not found: {t.target}:{t.func}", ap)
        return [t]
    if p in ("kprobe", "kretprobe") and has_wildcard(t.func):
        hits = [Target(p, t.target, f, loc=t.loc) for f in kernel_functions()
                if fnmatch.fnmatchcase(f, t.func)]
        if not hits and not missing_ok:
            raise _fail(f"No matches for {t.name}", ap)
        return hits
    if p in ("uprobe", "uretprobe") and has_wildcard(t.func):
        hits = [Target(p, t.target, f, loc=t.loc) for f in elf_functions(t.target)
                if fnmatch.fnmatchcase(f, t.func)]
        if not hits and not missing_ok:
            raise _fail(f"No matches for {t.name}", ap)
        return hits
    if p in ("uprobe", "uretprobe") and not missing_ok and not os.path.exists(t.target):
        raise _fail(f"Could not resolve uprobe binary: {t.target}", ap)
    return [t]


def tracepoint_exists(cat: str, name: str) -> bool:
    root = tracefs_events_dir()
    if root is not None:
        return (root / cat / name / "format").exists()
    return f"{cat}/{name}" in bundled_tracepoints()


# -- listing (-l) ------------------------------------------------------------------------

def list_probes(pattern: str | None) -> list[str]:
    """Probe names matching ``pattern`` (bpftrace -l), in bpftrace's order: software and
    hardware events, then tracepoints (sorted), then kprobes / uprobes asked for."""
    pat = pattern or "*"
    head, _, rest = pat.partition(":")
    prov = ALIASES.get(head, head)
    out: list[str] = []
    if prov in ("uprobe", "uretprobe") and rest:
        binary, _, sym = rest.rpartition(":")
        path = resolve_binary(binary)
        return [f"uprobe:{path}:{f}" for f in elf_functions(path)
                if fnmatch.fnmatchcase(f, sym or "*")]
    full = f"{prov}:{rest}" if rest else pat
    want = (lambda name: fnmatch.fnmatchcase(name, full)) if ":" in pat else \
        (lambda name: fnmatch.fnmatchcase(name, f"*{pat}*") if not has_wildcard(pat)
         else fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(name.split(":", 1)[-1], pat))
    for kind, table in (("software", SOFTWARE_EVENTS), ("hardware", HARDWARE_EVENTS)):
        for ev in table:
            name = f"{kind}:{ev}:"
            if want(name):
                out.append(name)
    out += [n for n in (f"tracepoint:{c}:{e}" for c, e in all_tracepoints()) if want(n)]
    if prov in ("kprobe", "kretprobe"):
        out += [n for n in (f"kprobe:{f}" for f in kernel_functions()) if want(n)]
    return out


def describe_tracepoint(cat: str, name: str) -> list[str]:
    """``-lv``: the tracepoint's fields as ``    TYPE NAME`` (the common fields left out)."""
    fmt = tracepoint_format(cat, name)
    return [f"    {f.ctype} {f.name}" for f in fmt.fields if not f.name.startswith("common_")]
