"""Attaching kernel programs to where they run.

One function per mechanism, each returning an :class:`~ebee.kernel.links.Attachment`
(detached by ``detach()``, ``with``, garbage collection or process exit):

==================  ====================================================
``tracepoint``      perf_event_open + BPF link (or PERF_EVENT_IOC_SET_BPF)
``kprobe``          the kprobe PMU (or tracefs kprobe_events)
``uprobe``          the uprobe PMU (or tracefs uprobe_events); symbol -> offset from the ELF
``raw_tracepoint``  RAW_TRACEPOINT_OPEN
``tracing``         fentry/fexit/fmod_ret/lsm/tp_btf as BPF links
``perf_event``      software/hardware counters, one event per CPU
``xdp``             BPF link or netlink, generic/native/offload mode
``tc``              tcx link or clsact qdisc + cls_bpf filter
``cgroup``          BPF link or PROG_ATTACH on a cgroup v2 directory
``socket_filter``   SO_ATTACH_BPF on a Python socket
==================  ====================================================

:func:`attach` picks the mechanism from the program's section, as libbpf's
auto-attach does.
"""
from __future__ import annotations

from ...uapi import ProgType
from .cgroup import cgroup
from .net import tc, xdp
from .perf_event import kprobe, perf_event, tracepoint, uprobe
from .socket import socket_filter
from .tracing import raw_tracepoint, tracing
from ...progtypes.sections import parse_section


def _split_offset(spec: str) -> tuple[str, int]:
    name, plus, off = spec.partition("+")
    return name, (int(off, 0) if plus else 0)


def attach(prog, target=None, *, section: str | None = None, **kw):
    """Attach ``prog`` where its section says (``kprobe/do_unlinkat``,
    ``tracepoint/syscalls/sys_enter_openat``, ``fentry/...``, ``uprobe/PATH:FUNC``,
    ``raw_tp/NAME``); XDP, tc and cgroup programs, socket filters and perf_event
    programs need ``target`` (an interface, cgroup path, socket, or counter).
    """
    sec = section if section is not None else prog.section
    sd = parse_section(sec) if sec else None
    where = target if target is not None else (sd.attach_target if sd else None)
    row = (sd.sec_def or "").rstrip("+/") if sd else ""
    t = prog.type
    if t in (ProgType.KPROBE,) and row in ("kprobe", "kretprobe", "ksyscall", "kretsyscall"):
        if not where:
            raise ValueError(f"{sec}: a kprobe needs a function (kprobe/FUNC)")
        name, off = _split_offset(where)
        return kprobe(prog, name, offset=off, retprobe=row.startswith("kret"), **kw)
    if t == ProgType.KPROBE and row in ("uprobe", "uretprobe", "uprobe.s", "uretprobe.s"):
        if not where or ":" not in where:
            raise ValueError(f"{sec}: a uprobe needs BINARY:FUNCTION")
        path, _, fn = where.rpartition(":")
        name, off = _split_offset(fn)
        if name.startswith("0x") or name.isdigit():
            return uprobe(prog, path, offset=int(name, 0), retprobe="ret" in row, **kw)
        return uprobe(prog, path, symbol=name, offset=off or None, retprobe="ret" in row, **kw)
    if t == ProgType.TRACEPOINT:
        if not where:
            raise ValueError(f"{sec}: a tracepoint needs CATEGORY/NAME")
        return tracepoint(prog, where, **kw)
    if t in (ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE):
        if not where:
            raise ValueError(f"{sec}: a raw tracepoint needs a name (raw_tp/NAME)")
        return raw_tracepoint(prog, where, **kw)
    if t in (ProgType.TRACING, ProgType.LSM):
        return tracing(prog, **kw)
    if t == ProgType.XDP:
        if target is None:
            raise ValueError("an XDP program attaches to a network interface: give its name")
        return xdp(prog, target, **kw)
    if t == ProgType.SCHED_CLS:
        if target is None:
            raise ValueError("a tc program attaches to a network interface: give its name")
        direction = kw.pop("direction", None) or ("egress" if sec and "egress" in sec
                                                   else "ingress")
        return tc(prog, target, direction, **kw)
    if t in (ProgType.CGROUP_SKB, ProgType.CGROUP_SOCK, ProgType.CGROUP_SOCK_ADDR,
             ProgType.CGROUP_DEVICE, ProgType.CGROUP_SYSCTL, ProgType.CGROUP_SOCKOPT,
             ProgType.SOCK_OPS):
        if target is None:
            raise ValueError("a cgroup program attaches to a cgroup v2 directory: give its path")
        if "attach_type" not in kw and not prog.expected_attach_type \
                and sd is not None and sd.expected_attach_type is not None:
            kw["attach_type"] = sd.expected_attach_type     # a program opened by id
        return cgroup(prog, target, **kw)
    if t == ProgType.SOCKET_FILTER:
        if target is None:
            raise ValueError("a socket filter attaches to a socket: give it")
        return socket_filter(prog, target)
    if t == ProgType.PERF_EVENT:
        return perf_event(prog, **kw)
    raise ValueError(f"don't know how to attach a {t.name.lower()} program"
                     + (f" from section {sec!r}" if sec else ""))


__all__ = ["attach", "cgroup", "kprobe", "perf_event", "raw_tracepoint", "socket_filter", "tc",
           "tracepoint", "tracing", "uprobe", "xdp"]
