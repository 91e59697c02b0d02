"""Synthetic events: tracing programs run on events built from Python values, and the
user-space attach points -- ebee's stand-in for the kernel's tracepoints, probes and
network devices.

Linux has no test run for tracepoint, kprobe, uprobe or perf_event programs (and the
raw_tp one takes raw u64s), so :func:`fire` builds what the kernel would hand the
program from the section it was compiled for:

- ``tracepoint/CAT/NAME``: the record laid out from the tracepoint's format file, fields
  by name (``filename=b"/etc/passwd"``); pointer fields given as ``bytes``/``str``
  point at a NUL-terminated copy in read-only memory, lists of them at a NULL-ended
  array of pointers (``argv``), ``__data_loc`` fields get their bytes after the record;
- ``kprobe``/``kretprobe``/``uprobe``/``uretprobe``: ``pt_regs`` with the positional
  arguments in the SysV argument registers (strings placed in memory the same way),
  ``retval=`` in ``ax`` and ``ip=``;
- ``raw_tp``/``tp_btf``/``fentry``/``fexit``/``lsm``: the u64 argument array (fexit:
  then ``retval``);
- ``perf_event``: ``bpf_perf_event_data`` with ``sample_period=`` and ``addr=``.

The task the event happens in is an argument (``task=Task(pid=42, comm="cat")``): it
is what ``bpf_get_current_*`` answer during that run, and the tracepoint record's
``common_pid``.  Nothing is process-global.

:class:`EventSource` is what ``obj.attach()`` of a user-space object attaches to:
tracing programs by the attach point their section names, XDP and tc programs to a
device of a modelled :class:`~ebee.packet.Network`; ``events.fire(point, ...)`` then runs
every program attached there, ``events.receive(dev, frame)`` a packet through XDP and tc
ingress, as the kernel would.
"""
from __future__ import annotations

import errno
import fnmatch
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..btf import BTF
from ..btf.errors import BTFError
from ..helpers.task import Task
from ..memory import SHARED, Region
from ..packet.net import NetDevice, Network
from ..progtypes.sections import parse_section
from ..progtypes.tracing import btf_args, pt_regs, tracepoint_format, u64_args
from ..uapi import AttachType as A, ProgType as P
from ..verifier import VerifierError
from .common import RunResult, TestRunError
from .runner import run_event

# libbpf's section rows, by the attach point each names
_KINDS = {"tp": "tracepoint", "tracepoint": "tracepoint", "raw_tp": "raw_tp",
          "raw_tracepoint": "raw_tp", "raw_tp.w": "raw_tp", "raw_tracepoint.w": "raw_tp",
          "tp_btf": "tp_btf", "kprobe": "kprobe", "kretprobe": "kretprobe",
          "kprobe.multi": "kprobe", "kretprobe.multi": "kretprobe", "ksyscall": "ksyscall",
          "kretsyscall": "kretsyscall", "uprobe": "uprobe", "uretprobe": "uretprobe",
          "uprobe.s": "uprobe", "uretprobe.s": "uretprobe", "uprobe.multi": "uprobe",
          "uretprobe.multi": "uretprobe", "fentry": "fentry", "fentry.s": "fentry",
          "fexit": "fexit", "fexit.s": "fexit", "fmod_ret": "fmod_ret",
          "fmod_ret.s": "fmod_ret", "lsm": "lsm", "lsm.s": "lsm", "lsm_cgroup": "lsm",
          "perf_event": "perf_event"}


@dataclass(frozen=True)
class AttachPoint:
    """Where a tracing program runs: ``kind`` (``tracepoint``, ``raw_tp``, ``kprobe``,
    ``uprobe``, ``fentry``, ...) and ``target`` (``syscalls/sys_enter_openat``,
    ``do_unlinkat``, ``/bin/bash:readline``; a glob for the multi-probes)."""
    kind: str
    target: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.target}" if self.target else self.kind

    def matches(self, other: "AttachPoint") -> bool:
        return self.kind == other.kind and (self.target == other.target or
                                            fnmatch.fnmatchcase(other.target, self.target))

    @classmethod
    def parse(cls, section: str) -> "AttachPoint | None":
        """The attach point a SEC() name (any of libbpf's spellings) or ``kind/target``
        names; None for sections that name none (XDP, tc, "kprobe" alone, ...)."""
        sd = parse_section(section)
        row = (sd.sec_def or "").rstrip("+/")
        kind = _KINDS.get(row)
        if kind is None:
            return None
        if kind == "perf_event":
            return cls(kind, "")
        if not sd.attach_target:
            return None
        return cls(kind, sd.attach_target)


class EventBuilder:
    """Builds one event's context; the memory its pointers point at lives until
    :meth:`close`."""

    def __init__(self) -> None:
        self.regions: list[Region] = []

    def string(self, v: str | bytes) -> int:
        data = (v.encode() if isinstance(v, str) else bytes(v))
        if not data.endswith(b"\0"):
            data += b"\0"
        r = SHARED.add(Region(data, "event string", writable=False))
        self.regions.append(r)
        return r.start

    def value(self, v: Any) -> int:
        """An argument as the probed code would pass it: integers as they are, strings
        as pointers to a copy, lists as pointers to a NULL-ended array of those."""
        if isinstance(v, (str, bytes, bytearray, memoryview)):
            return self.string(bytes(v) if not isinstance(v, str) else v)
        if isinstance(v, (list, tuple)):
            ptrs = [self.value(x) for x in v] + [0]
            r = SHARED.add(Region(struct.pack(f"<{len(ptrs)}Q", *ptrs), "event array",
                                  writable=False))
            self.regions.append(r)
            return r.start
        if isinstance(v, bool):
            return int(v)
        if not isinstance(v, int):
            raise TypeError(f"an event argument is an int, str, bytes or a list of them, "
                            f"not {type(v).__name__}")
        return v

    def tracepoint(self, target: str, task: Task, fields: dict[str, Any]) -> bytes:
        cat, _, name = target.partition("/")
        fmt = tracepoint_format(cat, name)
        plain: dict[str, Any] = {}
        data_locs: dict[str, bytes] = {}
        for k, v in fields.items():
            f = fmt.field(k)
            if f.ctype.startswith("__data_loc"):
                data_locs[k] = (v.encode() if isinstance(v, str) else bytes(v)) + b"\0"
            elif "*" in f.ctype or isinstance(v, (list, tuple)):
                plain[k] = self.value(v)
            else:
                plain[k] = v
        rec = bytearray(fmt.record(plain, pid=task.pid))
        tail = b""
        for k, raw in data_locs.items():
            struct.pack_into("<I", rec, fmt.field(k).offset, (len(raw) << 16) | (len(rec) + len(tail)))
            tail += raw
        return bytes(rec) + tail

    def context(self, point: AttachPoint, args: Iterable[Any], fields: dict[str, Any], *,
                task: Task, retval: int = 0, ip: int = 0) -> bytes:
        vals = [self.value(a) for a in args]
        retval = self.value(retval)          # uretprobe on a function returning a string
        k = point.kind
        if k == "tracepoint":
            if vals:
                raise TypeError(f"{point}: a tracepoint takes its fields by name, not "
                                f"positional arguments")
            return self.tracepoint(point.target, task, fields)
        if fields:
            raise TypeError(f"{point}: only tracepoints take fields by name "
                            f"(got {', '.join(fields)}); give the arguments in order")
        if k in ("kprobe", "kretprobe", "uprobe", "uretprobe", "ksyscall", "kretsyscall",
                 "perf_event"):
            return pt_regs(*vals, ax=retval & ((1 << 64) - 1), ip=ip)
        if k in ("fexit", "fmod_ret") and point.target:
            return self._btf_args(point.target, vals, retval) or u64_args(*vals, retval)
        if k in ("fentry", "lsm") and point.target:
            return self._btf_args(point.target, vals, None) or u64_args(*vals)
        return u64_args(*vals)

    @staticmethod
    def _btf_args(func: str, vals: list[int], ret: int | None) -> bytes | None:
        """The trampoline's layout from the function's BTF (narrow ints extended); None
        where the host has no vmlinux BTF or no such function."""
        try:
            return btf_args(func.split(":")[-1], *vals, ret=ret)
        except (KeyError, OSError, BTFError, ValueError):
            return None

    def close(self) -> None:
        for r in self.regions:
            SHARED.remove(r)
        self.regions = []


def attach_point(prog) -> AttachPoint | None:
    """The attach point of a program's section (None: it names none)."""
    return AttachPoint.parse(prog.section) if getattr(prog, "section", None) else None


def fire(prog, *args: Any, task: Task | None = None, cpu: int = 0, retval: int = 0,
         ip: int = 0, engine: str | None = None, sample_period: int = 0, addr: int = 0,
         point: AttachPoint | str | None = None, **fields: Any) -> RunResult:
    """Run a tracing program on one synthetic event built from Python values (see the
    module doc); ``point`` overrides the attach point its section names (a program in
    plain ``SEC("kprobe")``, or one attached elsewhere)."""
    if prog.type not in _TRACING_TYPES:
        raise ValueError(f"program {prog.name!r} is a {prog.type.name.lower()} program: "
                         f"synthetic events are for tracing programs (use run())")
    ap = AttachPoint.parse(point) if isinstance(point, str) else point or attach_point(prog)
    if ap is None:
        raise ValueError(f"program {prog.name!r} (SEC {prog.section!r}) names no attach "
                         f"point: give point='tracepoint/CAT/NAME', 'kprobe/FUNC', ...")
    t = task if task is not None else Task()
    ev = EventBuilder()
    try:
        ctx = ev.context(ap, args, fields, task=t, retval=retval, ip=ip)
        return run_event(prog, ctx, engine=engine, sample_period=sample_period, addr=addr,
                         task=t, cpu=cpu)
    finally:
        ev.close()


_TRACING_TYPES = {P.KPROBE, P.TRACEPOINT, P.RAW_TRACEPOINT, P.RAW_TRACEPOINT_WRITABLE,
                  P.TRACING, P.LSM, P.PERF_EVENT}


# -- attach points for user-space objects ---------------------------------------------------

@dataclass(eq=False)
class EventAttachment:
    """A program attached to an :class:`EventSource`; ``detach()`` (or ``with``) removes it."""
    source: "EventSource"
    program: Any
    point: AttachPoint | None
    device: NetDevice | None = None
    hook: str = ""                   # "xdp", "tc_ingress", "tc_egress" for devices
    runs: int = 0

    @property
    def target(self) -> str:
        return str(self.point) if self.point is not None else f"{self.hook} {self.device.name}"

    def detach(self) -> None:
        self.source.remove(self)

    def __enter__(self) -> "EventAttachment":
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def __repr__(self) -> str:
        return f"<EventAttachment {self.program.name!r} at {self.target}>"


@dataclass(eq=False)
class EventSource:
    """ebee's synthetic kernel: the attach points of user-space programs.

    Tracing programs attach at the point their section names and run on
    :meth:`fire`; XDP and tc programs attach to a device of ``net`` and run on
    :meth:`receive` (XDP, then tc ingress when XDP passes) and :meth:`transmit` (tc
    egress)."""
    net: Network = field(default_factory=Network)
    attached: list[EventAttachment] = field(default_factory=list)

    def attach(self, prog, target: Any = None, *, direction: str | None = None) -> EventAttachment:
        """Attach ``prog`` where its section says; XDP and tc programs to the device
        ``target`` (a name, ifindex or :class:`NetDevice` of ``net``; a name that is not
        there yet is added)."""
        t = prog.type
        if t in (P.XDP, P.SCHED_CLS, P.SCHED_ACT):
            if target is None:
                raise ValueError(f"{prog.name}: an {'XDP' if t is P.XDP else 'tc'} program "
                                 f"attaches to a network device: give its name")
            dev = target if isinstance(target, NetDevice) else self._device(target)
            if t is P.XDP:
                hook = "xdp"
            else:
                d = direction or ("egress" if "egress" in (prog.section or "") else "ingress")
                if d not in ("ingress", "egress"):
                    raise ValueError(f"tc direction is 'ingress' or 'egress', not {d!r}")
                hook = f"tc_{d}"
            if hook == "xdp" and any(a.device is dev and a.hook == "xdp" for a in self.attached):
                raise OSError(16, f"{dev.name} already has an XDP program (EBUSY)")
            a = EventAttachment(self, prog, None, dev, hook)
        else:
            if target is not None:
                point = target if isinstance(target, AttachPoint) else AttachPoint.parse(str(target))
            else:
                point = attach_point(prog)
            if point is None or t not in _TRACING_TYPES:
                raise ValueError(f"{prog.name}: SEC({prog.section!r}) names nothing ebee's "
                                 f"event source runs (tracepoint, raw_tp, kprobe, uprobe, "
                                 f"fentry/fexit, lsm, tp_btf, perf_event)")
            check_point(point)
            a = EventAttachment(self, prog, point)
        self.attached.append(a)
        return a

    def _device(self, dev: str | int) -> NetDevice:
        try:
            return self.net.device(dev)
        except KeyError:
            if isinstance(dev, int):
                raise
            return self.net.add_device(dev)

    def remove(self, a: EventAttachment) -> None:
        if a in self.attached:
            self.attached.remove(a)

    def points(self) -> list[str]:
        return [a.target for a in self.attached]

    def fire(self, point: str, *args: Any, task: Task | None = None, cpu: int = 0,
             **kw: Any) -> list[RunResult]:
        """One event at ``point`` (``"tracepoint/syscalls/sys_enter_openat"``,
        ``"tp/sched/sched_process_exec"``, ``"kprobe/do_unlinkat"``, ...): every program
        attached there runs on it, in attach order; their results."""
        ap = AttachPoint.parse(point)
        if ap is None:
            raise ValueError(f"{point!r} is not an attach point (e.g. "
                             f"'tracepoint/syscalls/sys_enter_openat', 'kprobe/do_unlinkat')")
        t = task if task is not None else Task()
        out = []
        for a in list(self.attached):
            if a.point is not None and a.point.matches(ap):
                a.runs += 1
                out.append(fire(a.program, *args, task=t, cpu=cpu, point=ap, **kw))
        return out

    def receive(self, dev: str | int, frame: bytes) -> list[RunResult]:
        """A frame arriving on ``dev``: its XDP program, then (unless XDP did not pass
        it) its tc ingress programs until one does not return TC_ACT_OK/UNSPEC."""
        d = self.net.device(dev)
        out = []
        for a in [a for a in self.attached if a.device is d and a.hook == "xdp"]:
            r = self._run_packet(a, frame)
            out.append(r)
            if r.retval != 2:                       # XDP_PASS
                return out
            frame = r.data_out
        return out + self._tc(d, "tc_ingress", frame)

    def transmit(self, dev: str | int, frame: bytes) -> list[RunResult]:
        """A frame leaving through ``dev``: its tc egress programs."""
        return self._tc(self.net.device(dev), "tc_egress", frame)

    def _tc(self, d: NetDevice, hook: str, frame: bytes) -> list[RunResult]:
        out = []
        for a in [a for a in self.attached if a.device is d and a.hook == hook]:
            r = self._run_packet(a, frame)
            out.append(r)
            if r.retval not in (0, -1 & 0xFFFFFFFF, -1):   # TC_ACT_OK, TC_ACT_UNSPEC
                break
            frame = r.data_out
        return out

    def _run_packet(self, a: EventAttachment, frame: bytes) -> RunResult:
        a.runs += 1
        if a.hook == "xdp" and a.device.ifindex != 1:
            # xdp_md.ingress_ifindex: the device it arrived on
            ctx = struct.pack("<6I", 0, 0, 0, a.device.ifindex, 0, 0)
            try:
                return a.program.run(frame, ctx=ctx, net=self.net)
            except TestRunError:
                pass
        return a.program.run(frame, net=self.net)

    def close(self) -> None:
        self.attached = []


@dataclass
class AttachReport:
    """What attaching every program of an object did, by program name (both backends:
    ``obj.attach()`` in user space, ``k.attach()`` in the kernel)."""
    attached: dict[str, Any] = field(default_factory=dict)     # name -> attachment
    failed: dict[str, str] = field(default_factory=dict)       # name -> why
    skipped: list[str] = field(default_factory=list)           # no target in the section

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        lines = [f"attached: {', '.join(self.attached) or 'none'}"]
        lines += [f"failed: {n}: {why}" for n, why in self.failed.items()]
        if self.skipped:
            lines.append(f"skipped (attach with a target): {', '.join(self.skipped)}")
        return "\n".join(lines)


def _vmlinux() -> BTF | None:
    try:
        return BTF.load_vmlinux()
    except (OSError, BTFError):
        return None


def check_point(point: AttachPoint) -> None:
    """Refuse an attach point the kernel would refuse, as ``bpf(2)`` and perf_event_open
    would (OSError with its errno): a tracepoint neither in tracefs nor in ebee's bundled
    formats, a kernel function the host's BTF does not have, a uprobe binary that does not
    exist.  Where the host has no BTF, kernel functions are taken on trust."""
    k, target = point.kind, point.target
    if k == "tracepoint":
        try:
            tracepoint_format(*target.split("/", 1))
        except (KeyError, TypeError):
            raise OSError(errno.ENOENT, f"no tracepoint {target}") from None
    elif k in ("kprobe", "kretprobe", "fentry", "fexit", "fmod_ret", "lsm"):
        func = target.split("+", 1)[0]
        if k == "lsm":
            func = "bpf_lsm_" + func
        btf = _vmlinux()
        if btf is not None and not any(ch in func for ch in "*?[") and not func.startswith("0x"):
            try:
                btf.find(func, "func")
            except (KeyError, LookupError):
                raise OSError(errno.ENOENT, f"no kernel function {func}") from None
    elif k in ("uprobe", "uretprobe"):
        path = target.rpartition(":")[0]
        if not path or not any(ch in path for ch in "*?[") and not os.path.exists(path):
            raise OSError(errno.ENOENT, f"no such binary {path or target!r}")


def attach_all(programs: dict[str, Any], source: "EventSource") -> AttachReport:
    """libbpf's skeleton ``__attach()`` over ebee's event source: every program whose
    section names where it attaches, except those whose ``autoload`` is off (the kernel
    backend does not load them); one that cannot attach (rejected by the verifier, or an
    attach point the kernel does not have) does not undo the others."""
    report = AttachReport()
    for name, prog in programs.items():
        if not getattr(prog, "autoload", True):
            continue
        point = attach_point(prog)
        if point is None or prog.type not in _TRACING_TYPES or point.kind == "perf_event":
            report.skipped.append(name)
            continue
        try:
            check_point(point)
            prog.admit()
        except OSError as e:
            report.failed[name] = e.strerror or str(e)
            continue
        except VerifierError as e:
            report.failed[name] = f"rejected by the verifier: {e.summary}"
            continue
        report.attached[name] = source.attach(prog)
    return report


__all__ = ["AttachPoint", "AttachReport", "EventAttachment", "EventBuilder", "EventSource", "attach_all",
           "attach_point", "check_point", "fire"]
