"""Running a compiled script in ebee's own runtime, on synthetic events (no root).

The programs are the ones the kernel would get -- verified by ebee's verifier and
run by ebee's engine -- with ebee maps in place of kernel maps.  Events are
built from what the caller says happened: a tracepoint record laid out from its
format file (``fire("tracepoint:syscalls:sys_enter_openat", filename="/etc/passwd")``:
strings for pointer fields are placed in memory the program can read), a uprobe's
``pt_regs``, a timer tick of the virtual clock (``advance(ns)`` fires the
``interval``/``profile`` probes that fall due).  The current task is whatever
``task=`` says (an ``ebee.helpers.task.Task``), per call.
"""
from __future__ import annotations

import fnmatch
import pwd
import struct
from dataclasses import dataclass
from typing import Any, Callable

from .. import uapi as U
from ..engines import Machine, select_engine
from ..helpers import RUNTIME
from ..helpers.calls import VirtualClock
from ..helpers.task import Task
from ..maps import Map
from ..memory import SHARED, Region
from ..program import Program
from ..progtypes.tracing import pt_regs, u64_args
from ..runtime import RunContext
from ..testrun.events import EventBuilder
from ..testrun.runner import default_net, place_event
from .codegen import CompiledProbe
from .compiler import Script, program_btf
from .errors import TraceError
from .layout import EVENTS_MAP, USER_RINGBUF_SIZE
from .probes import Target
from .session import Session
from .values import strftime

START_NS = 1_000_000_000


class UserResolver:
    """Symbols for user-space runs: a table the test gives, else hex addresses."""

    def __init__(self, session: "UserSpaceTrace"):
        self.s = session
        self.ksyms: dict[int, str] = {}
        self.usyms: dict[int, str] = {}

    def ksym(self, addr: int) -> str:
        return self.ksyms.get(addr, f"0x{addr:x}")

    def usym(self, addr: int, pid: int) -> str:
        return self.usyms.get(addr, f"0x{addr:x}")

    def stack(self, kind: str, mode: str, limit: int, stack_id: int, pid: int) -> list[str]:
        name = self.s.res.stack_maps.get((kind, mode, limit))
        m = self.s.bpf_maps.get(name) if name else None
        if m is None or stack_id < 0:
            return []
        try:
            raw = bytes(m.raw_lookup(struct.pack("<I", stack_id)))
        except (KeyError, OSError):
            return []
        ips = [x for x in struct.unpack(f"<{len(raw) // 8}Q", raw) if x][:limit]
        table = self.ksyms if kind == "kstack" else self.usyms
        return [_symoff(table, ip) for ip in ips]

    def probe(self, probe_id: int) -> str:
        probes = self.s.res.probes
        return probes[probe_id] if probe_id < len(probes) else ""

    def username(self, uid: int) -> str:
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)

    def strftime(self, fmt: str, ns: int) -> str:
        return strftime(fmt, ns)


def _symoff(table: dict[int, str], ip: int) -> str:
    best = None
    for a in table:
        if a <= ip and (best is None or a > best):
            best = a
    if best is None:
        return f"0x{ip:x}"
    return f"{table[best]}+{ip - best}"


@dataclass
class _Loaded:
    probe: CompiledProbe
    program: Program
    bound: Any


class UserSpaceTrace(Session):
    """A script running in ebee's runtime: ``fire`` events at it, read ``maps`` and
    ``output()``."""

    def __init__(self, script: Script, *, task: Task | None = None, engine: str = "interp",
                 json: bool = False, write: Callable[[str], Any] | None = None,
                 clock: VirtualClock | None = None, quiet: bool = False):
        self.resolver_impl = UserResolver(self)
        super().__init__(script, self.resolver_impl, json=json, write=write)
        self.clock = clock or VirtualClock(START_NS)
        self.task = task or Task(pid=1000, tgid=1000, uid=0, gid=0, comm="ebee")
        self.machine = Machine(clock=self.clock)
        self.machine.task = self.task
        self.engine = engine
        self.start_ns = self.clock.now
        self.loaded: list[_Loaded] = []
        self.timers: list[tuple[int, int, _Loaded]] = []      # (next due, period, program)
        self.started = False
        self.stopped = False
        self.quiet = quiet
        self._create_maps()
        for p in script.probes:
            self.loaded.append(self._load(p))
        self.reader = self.bpf_maps[EVENTS_MAP].reader() if EVENTS_MAP in self.bpf_maps else None

    # -- setup ---------------------------------------------------------------------------

    def _create_maps(self) -> None:
        for name, spec in self.res.maps.items():
            entries = USER_RINGBUF_SIZE if name == EVENTS_MAP else spec.max_entries
            self.bpf_maps[name] = Map(spec.map_type, spec.key_size, spec.value_size, entries,
                                      name=spec.kernel_name)

    def resolve_reloc(self, name: str) -> tuple[int, int]:
        if name == "const:start_ns":
            return 0, self.start_ns
        if name.startswith("const:"):
            return 0, 0
        if name.startswith(("ksym:", "usym:", "cgroupid:")):
            return 0, 0
        if name.startswith("value:"):
            _, mname, off = name.split(":")
            return U.BPF_PSEUDO_MAP_VALUE, self.bpf_maps[mname].id | (int(off) << 32)
        return U.BPF_PSEUDO_MAP_FD, self.bpf_maps[name].id

    def _load(self, p: CompiledProbe) -> _Loaded:
        insns, lines = self.script.link(p, self.resolve_reloc)
        kw = {}
        if p.callbacks:
            pb = program_btf()
            kw = {"btf": pb.btf, "func_info": pb.func_info(p)}
        prog = Program.from_insns(insns, p.prog_type, name=p.kernel_name, verify=True, **kw)
        r = prog.verify(log_level=1)
        if not r.accepted:
            raise verifier_error(self.script, p, r.log, r.error or "", lines)
        exe = prog.executable(evidence=self.engine != "interp")
        bound = select_engine(self.engine, exe.evidence).compile(exe.insns, exe.evidence) \
            .bind(self.machine, RUNTIME)
        return _Loaded(p, prog, bound)

    # -- running -------------------------------------------------------------------------

    def start(self) -> "UserSpaceTrace":
        """``Attaching N probes...``, then BEGIN (as bpftrace: before the others attach)."""
        if self.started:
            return self
        self.started = True
        if not self.quiet:
            self.emit(self.fmt.attached(self.script.attach_count))
        for ld in self.loaded:
            if ld.probe.targets[0].provider == "BEGIN":
                self._run(ld, u64_args())
        for ld in self.loaded:
            t = ld.probe.targets[0]
            if t.provider in ("interval", "profile"):
                period = t.period_ns or 1_000_000_000 // max(t.frequency, 1)
                self.timers.append((self.clock.now + period, period, ld))
        return self

    def _run(self, ld: _Loaded, ctx: bytes, *, task: Task | None = None, cpu: int = 0) -> int:
        if self.stopped and ld.probe.targets[0].provider != "END":
            return 0
        if self.exit_requested and ld.probe.targets[0].provider not in ("END",):
            return 0
        m = self.machine
        m.task = task or self.task
        m.cpu = cpu
        pt = ld.probe.prog_type
        regions: list[Region] = []
        try:
            arg = place_event(U.ProgType(pt), ctx, regions)
            m.progctx = RunContext(default_net(), pt)
            ex = ld.bound.run(arg)
        finally:
            m.progctx = None
            for r in regions:
                SHARED.remove(r)
        self.drain()
        return ex.retval

    def drain(self) -> None:
        if self.reader is None:
            return
        for rec in self.reader.drain():
            self.handle(rec.data)

    def matching(self, name: str) -> list[tuple[_Loaded, Target]]:
        """The loaded programs (and attach points) a probe name selects (wildcards ok)."""
        head, _, rest = name.partition(":")
        from_alias = {"t": "tracepoint", "u": "uprobe", "ur": "uretprobe", "k": "kprobe",
                      "kr": "kretprobe", "rt": "rawtracepoint", "i": "interval",
                      "p": "profile"}.get(head, head)
        full = f"{from_alias}:{rest}" if rest else from_alias
        out = []
        for ld in self.loaded:
            for t in ld.probe.targets:
                if fnmatch.fnmatchcase(t.name, full) or t.name == full:
                    out.append((ld, t))
        return out

    def fire(self, probe: str, *, task: Task | None = None, cpu: int = 0, retval: int = 0,
             args: tuple | list = (), **fields: Any) -> int:
        """Run the probes ``probe`` names on one synthetic event; returns how many ran.

        Tracepoints take their fields by name (strings for pointer or ``__data_loc``
        fields, lists of strings for ``char **``); kprobes/uprobes take ``args=``
        (integers or strings) and ``retval=``; raw tracepoints ``args=``.
        """
        self.start()
        hits = self.matching(probe)
        if not hits:
            raise KeyError(f"no probe in the script matches {probe!r} (probes: "
                           f"{', '.join(t.name for ld in self.loaded for t in ld.probe.targets)})")
        for ld, t in hits:
            ev = EventBuilder()
            try:
                ctx = self._context(t, task or self.task, retval, list(args), fields, ev)
                self._run(ld, ctx, task=task, cpu=cpu)
            finally:
                ev.close()
        return len(hits)

    @staticmethod
    def _context(t: Target, task: Task, retval: int, args: list, fields: dict,
                 ev: EventBuilder) -> bytes:
        """The context bpftrace's probe ``t`` gets, built as ``prog.fire`` builds it."""
        p = t.provider
        if p == "tracepoint":
            return ev.tracepoint(f"{t.target}/{t.func}", task, fields)
        if p in ("kprobe", "kretprobe", "uprobe", "uretprobe"):
            vals = [ev.value(a) for a in args]
            ip = t.offset if not t.func else fields.get("ip", 0)
            return pt_regs(*vals, ax=ev.value(retval) & ((1 << 64) - 1), ip=ip)
        if p == "rawtracepoint":
            return u64_args(*[ev.value(a) for a in args])
        if p in ("interval", "profile", "software", "hardware"):
            return pt_regs(ip=fields.get("ip", 0))
        return u64_args()

    def advance(self, ns: int) -> int:
        """Move the virtual clock forward, running interval/profile probes as they fall
        due; returns how many ran."""
        self.start()
        target = self.clock.now + ns
        ran = 0
        while self.timers and not self.exit_requested:
            self.timers.sort(key=lambda x: x[0])
            due, period, ld = self.timers[0]
            if due > target:
                break
            self.clock.advance(due - self.clock.now)
            self.timers[0] = (due + period, period, ld)
            self._run(ld, pt_regs())
            ran += 1
        if self.clock.now < target:
            self.clock.advance(target - self.clock.now)
        return ran

    def stop(self) -> str:
        """END probes, then bpftrace's exit output (two empty lines and the maps)."""
        if self.stopped:
            return self.output()
        self.start()
        self.drain()
        self.stopped = True
        self.in_end = True
        for ld in self.loaded:
            if ld.probe.targets[0].provider == "END":
                self._run(ld, u64_args())
        self.drain()
        self.finish_output()
        return self.output()

    def output(self) -> str:
        """Everything bpftrace would have printed for the run (stops it first)."""
        if not self.stopped:
            self.stop()
        return "".join(self.text)

    @property
    def printed(self) -> str:
        """The output so far, without stopping."""
        return "".join(self.text)

    def close(self) -> None:
        for m in self.bpf_maps.values():
            try:
                m.close()
            except Exception:
                pass
        self.machine.close()


_STATE_LINES = ("old state", "cur state", "processed ", "verification time", "stack depth",
                "mark_precise", "last_idx", "parent ", "regs=")


def _reason(log: str) -> str:
    """The verifier's own reason from its log: the last line that is not a state dump or a
    statistic (an infinite loop is reported before the two states it compared)."""
    for ln in reversed(log.splitlines()):
        t = ln.strip()
        if t and not t.startswith(_STATE_LINES) and not (t.split(":", 1)[0].isdigit() and
                                                        ": (" in t):
            return t
    return ""


def verifier_error(script: Script, p: CompiledProbe, log: str, error: str,
                   lines: dict) -> TraceError:
    """A verifier rejection, blamed on the script line that produced the instruction."""
    pc = None
    for ln in log.splitlines():
        head = ln.split(":", 1)[0].strip()
        if head.isdigit() and ": (" in ln:
            pc = int(head)
    loc = None
    if pc is not None:
        for k in sorted(lines):
            if k <= pc:
                loc = lines[k]
    msg = f"the BPF verifier rejected the program for {p.name}: {_reason(log) or error}"
    return TraceError(msg, loc, source=script.source, filename=script.filename)
