"""Programs on perf events: tracepoints, kprobes, uprobes, software and hardware counters.

A perf event is opened with perf_event_open(2) and the program attached to it
with a BPF link (LINK_CREATE, BPF_PERF_EVENT; Linux 5.15+) or, on older
kernels, the PERF_EVENT_IOC_SET_BPF ioctl.  kprobes and uprobes use the
kprobe/uprobe PMUs (Linux 4.17+) and fall back to the tracefs
kprobe_events/uprobe_events interface, removing what they added on detach.
"""
from __future__ import annotations

import ctypes
import errno
import itertools
import os
from pathlib import Path

from ...uapi import (PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_SET_BPF, PERF_FLAG_FD_CLOEXEC,
                     AttachType, PerfType)
from ..attrs import PerfEventAttr
from ..fs import tracefs
from ..links import FdAttachment, Link
from ..syscall import addr, ioctl, perf_event_open
from .elfsym import find_binary, symbol_offset

PMU_DIR = Path("/sys/bus/event_source/devices")
_probe_seq = itertools.count()


class PerfEventAttachment(FdAttachment):
    """A program on one or more perf events (one per CPU for counters)."""
    kind = "perf_event"

    @property
    def link(self) -> Link | None:
        return self.links[0] if self.links else None


def online_cpus() -> list[int]:
    try:
        text = Path("/sys/devices/system/cpu/online").read_text().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def open_event(type_: int, config: int, *, pid: int = -1, cpu: int = 0, sample_period: int = 1,
               freq: bool = False, config1: int = 0, config2: int = 0, wakeup_events: int = 1,
               sample_type: int = 0) -> int:
    attr = PerfEventAttr(type=int(type_), size=ctypes.sizeof(PerfEventAttr), config=config,
                         sample_period=sample_period, sample_type=sample_type,
                         wakeup_events=wakeup_events, config1=config1, config2=config2)
    attr.freq = 1 if freq else 0
    return perf_event_open(attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC)


def attach_fd(prog, pfd: int, target: str, *, cookie: int = 0,
              on_detach=None) -> PerfEventAttachment:
    """Attach ``prog`` to the opened perf event ``pfd`` (the attachment owns the fd)."""
    return attach_fds(prog, [pfd], target, cookie=cookie, on_detach=on_detach)


def attach_fds(prog, pfds: list[int], target: str, *, cookie: int = 0,
               on_detach=None) -> PerfEventAttachment:
    links: list[Link] = []
    try:
        for pfd in pfds:
            try:
                links.append(Link.create(prog.fd, pfd, AttachType.PERF_EVENT, program=prog,
                                         target=target, perf_event_cookie=cookie))
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP) or links:
                    raise
                ioctl(pfd, PERF_EVENT_IOC_SET_BPF, prog.fd)   # kernels before 5.15
                ioctl(pfd, PERF_EVENT_IOC_ENABLE, 0)
    except BaseException:
        for link in links:
            link.detach()
        for pfd in pfds:
            os.close(pfd)
        if on_detach is not None:
            on_detach()
        raise
    return PerfEventAttachment(pfds, prog, target, links=links, on_detach=on_detach)


# --- tracepoints ---------------------------------------------------------------------------

def tracepoint_id(category: str, name: str) -> int:
    path = tracefs() / "events" / category / name / "id"
    try:
        return int(path.read_text())
    except FileNotFoundError:
        raise OSError(errno.ENOENT, f"no tracepoint {category}/{name} "
                                    f"(see {tracefs()}/available_events)") from None


def split_tracepoint(target: str) -> tuple[str, str]:
    cat, sep, name = target.partition("/")
    if not sep:
        cat, sep, name = target.partition(":")
    if not sep or not cat or not name:
        raise ValueError(f"tracepoint {target!r}: expected CATEGORY/NAME "
                         f"(e.g. syscalls/sys_enter_openat)")
    return cat, name


def tracepoint(prog, target: str, *, cookie: int = 0) -> PerfEventAttachment:
    """Attach to ``category/name`` (``raw_syscalls/sys_enter``)."""
    cat, name = split_tracepoint(target)
    pfd = open_event(PerfType.TRACEPOINT, tracepoint_id(cat, name), pid=-1, cpu=0)
    return attach_fd(prog, pfd, f"tracepoint/{cat}/{name}", cookie=cookie)


# --- kprobes and uprobes --------------------------------------------------------------------

def pmu_type(name: str) -> int | None:
    try:
        return int((PMU_DIR / name / "type").read_text())
    except (OSError, ValueError):
        return None


def _retprobe_bit(pmu: str) -> int:
    """Which config bit marks a return probe (the PMU's format/retprobe, 'config:0')."""
    try:
        text = (PMU_DIR / pmu / "format" / "retprobe").read_text().strip()
        return 1 << int(text.split(":")[1])
    except (OSError, ValueError, IndexError):
        return 1


def _probe_events_file(uprobe: bool) -> Path | None:
    try:
        p = tracefs() / ("uprobe_events" if uprobe else "kprobe_events")
    except OSError:
        return None
    return p if p.exists() else None


def _legacy_probe(prog, *, uprobe: bool, retprobe: bool, spec: str, target: str, pid: int,
                  cookie: int) -> PerfEventAttachment:
    """A probe made through tracefs {k,u}probe_events, removed again on detach."""
    events = _probe_events_file(uprobe)
    if events is None:
        raise OSError(errno.EOPNOTSUPP, _no_probes_message(uprobe))
    group = "ebee_uprobes" if uprobe else "ebee_kprobes"
    event = f"ebee_{os.getpid()}_{next(_probe_seq)}"
    _append(events, f"{'r' if retprobe else 'p'}:{group}/{event} {spec}\n")

    def remove():
        try:
            _append(events, f"-:{group}/{event}\n")
        except OSError:
            pass
    try:
        pfd = open_event(PerfType.TRACEPOINT, tracepoint_id(group, event),
                         pid=pid, cpu=0 if pid == -1 else -1)
    except BaseException:
        remove()
        raise
    return attach_fd(prog, pfd, target, cookie=cookie, on_detach=remove)


def _append(path: Path, line: str) -> None:
    # tracefs control files reject the seek that Python's append mode does on open
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _no_probes_message(uprobe: bool) -> str:
    kind = "uprobes" if uprobe else "kprobes"
    cfg = "CONFIG_UPROBE_EVENTS" if uprobe else "CONFIG_KPROBES/CONFIG_KPROBE_EVENTS"
    return f"{kind} are not available in this kernel (no {kind[:-1]} PMU and no tracefs " \
           f"{kind[:-1]}_events; {cfg} is off)"


def kprobe(prog, func: str, *, offset: int = 0, retprobe: bool = False, cookie: int = 0,
           legacy: bool = False) -> PerfEventAttachment:
    """Attach to a kernel function's entry (``func+offset``) or return (``retprobe``)."""
    what = f"{'kretprobe' if retprobe else 'kprobe'}/{func}" + (f"+{offset}" if offset else "")
    pmu = pmu_type("kprobe")
    if pmu is not None and not legacy:
        name = ctypes.create_string_buffer(func.encode())
        pfd = open_event(pmu, _retprobe_bit("kprobe") if retprobe else 0, pid=-1, cpu=0,
                         config1=addr(name), config2=offset)
        return attach_fd(prog, pfd, what, cookie=cookie)
    spec = func + (f"+{offset}" if offset else "")
    return _legacy_probe(prog, uprobe=False, retprobe=retprobe, spec=spec, target=what,
                         pid=-1, cookie=cookie)


def uprobe(prog, path: str, *, offset: int | None = None, symbol: str | None = None,
           retprobe: bool = False, pid: int = -1, cookie: int = 0,
           legacy: bool = False) -> PerfEventAttachment:
    """Attach to a user-space function: ``symbol`` (resolved by reading the ELF, plus
    ``offset`` if given) or a raw file ``offset`` in ``path``; ``pid`` -1 for every process."""
    path = find_binary(path)
    if symbol is not None:
        off = symbol_offset(path, symbol) + (offset or 0)
    elif offset is not None:
        off = offset
    else:
        raise ValueError("uprobe needs a symbol or an offset")
    what = f"{'uretprobe' if retprobe else 'uprobe'}/{path}:" + (symbol or hex(off))
    pmu = pmu_type("uprobe")
    if pmu is not None and not legacy:
        p = ctypes.create_string_buffer(os.fsencode(path))
        pfd = open_event(pmu, _retprobe_bit("uprobe") if retprobe else 0, pid=pid,
                         cpu=0 if pid == -1 else -1, config1=addr(p), config2=off)
        return attach_fd(prog, pfd, what, cookie=cookie)
    return _legacy_probe(prog, uprobe=True, retprobe=retprobe, spec=f"{path}:{off:#x}",
                         target=what, pid=pid, cookie=cookie)


# --- counters (BPF_PROG_TYPE_PERF_EVENT) ------------------------------------------------------

def perf_event(prog, type_: int = PerfType.SOFTWARE, config: int = 0, *,
               sample_period: int | None = None, sample_freq: int | None = None,
               cpus: list[int] | None = None, pid: int = -1) -> PerfEventAttachment:
    """Run ``prog`` on a software/hardware counter's overflow, on every CPU (or ``cpus``).

    Give ``sample_period`` (events between runs) or ``sample_freq`` (runs per second);
    the default is 1000 runs per second.  Hardware counters need a CPU PMU, which
    virtual machines often lack (perf_event_open then fails with ENOENT).
    """
    freq = sample_period is None
    period = sample_freq if freq else sample_period
    if period is None:
        period = 1000
    pfds: list[int] = []
    try:
        for cpu in (cpus if cpus is not None else online_cpus()):
            pfds.append(open_event(type_, config, pid=pid, cpu=cpu, sample_period=period,
                                   freq=freq))
    except OSError as e:
        for fd in pfds:
            os.close(fd)
        if e.errno == errno.ENOENT and int(type_) in (PerfType.HARDWARE, PerfType.HW_CACHE):
            raise OSError(e.errno, "perf_event_open: this machine has no hardware counters "
                                   "(no CPU PMU; common in VMs)") from None
        raise
    name = f"{PerfType(int(type_)).name.lower()}:{config}"
    return attach_fds(prog, pfds, f"perf_event/{name}")
