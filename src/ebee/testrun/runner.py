"""Binding a program for test runs, once, and running it many times.

:class:`Runner` does per program what must happen once -- admit it through the
verifier, rewrite its context accesses, pick the engine, compile and bind it to a
CPU -- so that each :meth:`Runner.run` only builds the context, runs and reads the
result.  :func:`run` is one test run; :func:`run_event` runs a tracing program on a
synthetic event.
"""
from __future__ import annotations

import struct
from contextlib import contextmanager
from typing import Callable

from ..engines import Machine, select_engine
from ..errors import MemoryFault, VerifierSoundnessError
from ..helpers import RUNTIME
from ..memory import SHARED, Region
from ..packet.net import Network
from ..layouts.kernel import BPF_PERF_EVENT_DATA_KERN, PERF_SAMPLE_DATA
from ..runtime import RunContext
from ..runtime.trace_pipe import capture
from ..uapi import AttachType as A, MapType, ProgType as P
from .common import RunResult, TestRun, TestTarget
from .flow import run_flow_dissector
from .sk_lookup import run_sk_lookup
from .skb import run_skb
from .tracing import run_nf, run_raw_tp, run_struct_ops, run_syscall, run_tracing, run_unsupported
from .xdp import PLAIN_MAX, PLAIN_MIN, plain_xdp, run_xdp

DRIVERS: dict[str, Callable[[TestRun], RunResult]] = {
    "skb": run_skb, "xdp": run_xdp, "flow_dissector": run_flow_dissector,
    "sk_lookup": run_sk_lookup, "raw_tp": run_raw_tp, "syscall": run_syscall,
    "tracing": run_tracing, "struct_ops": run_struct_ops, "nf": run_nf}

_NET: Network | None = None


def default_net() -> Network:
    """The modelled network test runs see unless given one (made once per process)."""
    global _NET
    if _NET is None:
        _NET = Network()
    return _NET


class Runner:
    """A program bound to a CPU for test runs: run it many times cheaply (pcap replays)."""

    def __init__(self, prog: TestTarget, *, engine: str | None = None, net: Network | None = None,
                 machine: Machine | None = None, link_layer: bool = False,
                 sanitize: bool = False):
        self.program = prog
        self.info = prog.info
        self.engine = engine
        self.sanitize = sanitize
        exe = prog.executable(evidence=engine != "interp" or sanitize)
        if sanitize:
            # a sanitizer run: the program must verify, and then runs checked anyway (the
            # interpreter, or the JIT without the verifier's evidence), so that a fault
            # shows the verifier let an unsafe access through
            verdict = exe.evidence if exe.evidence is not None else prog.admit()
            self.verdict = verdict
            exe = type(exe)(exe.insns, None, exe.name)
        self.insns = list(exe.insns)
        self.evidence = exe.evidence
        self.machine = machine or Machine()
        self.own_machine = machine is None
        # kfuncs such as bpf_obj_new size objects from the program's own BTF
        if prog.btf is not None:
            self.machine.btf = prog.btf
        self.bound = select_engine(engine, exe.evidence).compile(exe.insns, exe.evidence) \
            .bind(self.machine, RUNTIME)
        self.net = net or default_net()
        self.driver = DRIVERS.get(self.info.test_run or "", run_unsupported)
        self.link_layer = link_layer
        # the XDP frame kept between runs of a Runner that owns its CPU
        self.frames = None
        # XDP runs of data alone take plain_xdp on the kept frame: what such a call needs
        # of the program and its arguments is settled here, once
        # the cgroup storage maps whose bpf_get_local_storage each run must answer
        self.storage_maps = [mp for mp in getattr(prog, "maps", ())
                             if mp.type in (MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE)]
        self.plain = self.driver is run_xdp and self.own_machine and not self.storage_maps \
            and self.info.expected_attach_type not in (A.XDP_DEVMAP, A.XDP_CPUMAP)

    def run(self, data: bytes | None = None, *, ctx: bytes | None = None, repeat: int = 0,
            flags: int = 0, cpu: int = 0, batch_size: int = 0, data_size_out: int | None = None,
            ctx_size_out: int | None = None, ctx_out: bool = False,
            cgroup: int | tuple[int, int] | None = None) -> RunResult:
        if self.storage_maps or cgroup is not None:
            with self._storage(cgroup):
                return self._run(data, ctx=ctx, repeat=repeat, flags=flags, cpu=cpu,
                                 batch_size=batch_size, data_size_out=data_size_out,
                                 ctx_size_out=ctx_size_out, ctx_out=ctx_out)
        return self._run(data, ctx=ctx, repeat=repeat, flags=flags, cpu=cpu,
                         batch_size=batch_size, data_size_out=data_size_out,
                         ctx_size_out=ctx_size_out, ctx_out=ctx_out)

    @contextmanager
    def _storage(self, cgroup: int | tuple[int, int] | None):
        """The cgroup storage of one run.  A test run has its own, zeroed, for all its
        repetitions and in no map (bpf_test_run's bpf_cgroup_storages_alloc); a run as
        attached to ``cgroup`` (an id, or (id, attach type); the program's expected attach
        type by default) uses that cgroup's element of each map, made as attaching does."""
        made: list[Region] = []
        table = self.machine.cgroup_storage
        try:
            for mp in self.storage_maps:
                if cgroup is None:
                    r = SHARED.add(Region(mp.value_buf_size, "test run cgroup storage"))
                    made.append(r)
                    table[mp.id] = r.start
                else:
                    cg, at = cgroup if isinstance(cgroup, tuple) else \
                        (cgroup, int(self.info.expected_attach_type or 0))
                    table[mp.id] = mp.attach(cg, at)
            yield
        finally:
            table.clear()
            for r in made:
                SHARED.remove(r)

    def _run(self, data: bytes | None = None, *, ctx: bytes | None = None, repeat: int = 0,
             flags: int = 0, cpu: int = 0, batch_size: int = 0, data_size_out: int | None = None,
             ctx_size_out: int | None = None, ctx_out: bool = False) -> RunResult:
        if self.plain and ctx is None and repeat <= 1 and not (flags or cpu or batch_size
                                                                or ctx_out) \
                and data_size_out is None and ctx_size_out is None and type(data) is bytes \
                and PLAIN_MIN <= len(data) <= PLAIN_MAX:
            with capture() as lines:
                try:
                    res = plain_xdp(self, data)
                except MemoryFault as e:
                    raise self._unsound(e) if self.sanitize else e
            res.trace_output = [ln.message for ln in lines]
            return res
        want_ctx_out = ctx_out or ctx is not None
        if ctx_size_out is None and ctx is not None:
            ctx_size_out = len(ctx) if self.info.test_run not in ("skb", "xdp") else None
        t = TestRun(self.program, self.info, self.insns, self.machine, self.bound, self.net,
                    bytes(data or b""), bytes(ctx) if ctx is not None else None, repeat, flags,
                    cpu, batch_size, data_size_out, ctx_size_out, want_ctx_out,
                    self.link_layer and self.driver is run_skb, self.frames, self.own_machine)
        with capture() as lines:
            try:
                res = self.driver(t)
            except MemoryFault as e:
                raise self._unsound(e) if self.sanitize else e
            finally:
                self.frames = t.frames
        res.trace_output = [ln.message for ln in lines]
        return res

    @staticmethod
    def _unsound(e: MemoryFault) -> VerifierSoundnessError:
        err = VerifierSoundnessError(f"the verifier accepted this program, but it faulted: "
                                     f"{e.reason}", pc=e.pc, insn=e.insn)
        err.__cause__ = e
        return err

    def clear_stack(self) -> None:
        """Zero the CPU's stack: what a run on a fresh CPU would find."""
        buf = self.machine.stack.buf
        buf[:] = bytes(len(buf))

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()
            self.frames = None
        if self.own_machine:
            self.machine.close()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run(prog: TestTarget, data: bytes | None = None, *, ctx: bytes | None = None,
        repeat: int = 0, engine: str | None = None, flags: int = 0, cpu: int = 0,
        batch_size: int = 0, data_size_out: int | None = None, ctx_size_out: int | None = None,
        ctx_out: bool = False, net: Network | None = None, sanitize: bool = False,
        cgroup: int | tuple[int, int] | None = None) -> RunResult:
    """Run ``prog`` once (or ``repeat`` times) with BPF_PROG_TEST_RUN semantics.

    Raises :class:`TestRunError` (an OSError with the kernel's errno) where Linux's
    test run fails.  ``sanitize``: the program must verify and then runs with every
    memory access checked; a fault raises
    :class:`~ebee.errors.VerifierSoundnessError` naming the instruction.  ``cgroup``: run
    as attached to that cgroup (see :meth:`ebee.program.Program.run`).
    """
    with Runner(prog, engine=engine, net=net, sanitize=sanitize) as r:
        return r.run(data, ctx=ctx, repeat=repeat, flags=flags, cpu=cpu, batch_size=batch_size,
                     data_size_out=data_size_out, ctx_size_out=ctx_size_out, ctx_out=ctx_out,
                     cgroup=cgroup)


def place_event(pt: P, ctx: bytes, regions: list[Region], *, sample_period: int = 0,
                addr: int = 0) -> int:
    """Put an event's context in read-only memory (appending the regions to
    ``regions``, for the caller to remove after the run): the address the program's r1
    gets -- for perf_event, a ``bpf_perf_event_data_kern`` pointing at ``ctx`` as its
    ``pt_regs`` and at sample data with ``sample_period`` and ``addr``."""
    data = SHARED.add(Region(bytes(ctx) or b"\0", "event", writable=False))
    regions.append(data)
    if pt is not P.PERF_EVENT:
        return data.start
    sample = SHARED.add(Region(PERF_SAMPLE_DATA.size, "perf_sample_data", writable=False))
    regions.append(sample)
    struct.pack_into("<Q", sample.buf, PERF_SAMPLE_DATA.off("period"), sample_period)
    struct.pack_into("<Q", sample.buf, PERF_SAMPLE_DATA.off("addr"), addr)
    kern = SHARED.add(Region(BPF_PERF_EVENT_DATA_KERN.size, "bpf_perf_event_data_kern",
                             writable=False))
    regions.append(kern)
    struct.pack_into("<Q", kern.buf, BPF_PERF_EVENT_DATA_KERN.off("regs"), data.start)
    struct.pack_into("<Q", kern.buf, BPF_PERF_EVENT_DATA_KERN.off("data"), sample.start)
    return kern.start


def run_event(prog: TestTarget, ctx: bytes, *, engine: str | None = None,
              sample_period: int = 0, addr: int = 0, task=None, cpu: int = 0) -> RunResult:
    """Run a tracing program on one synthetic event (Linux has no test run for these).

    ``ctx`` is what the program's context points at: ``pt_regs`` bytes for
    kprobe/uprobe (see :func:`ebee.progtypes.tracing.pt_regs`), a tracepoint
    record (``tracepoint_format(...).record(...)``), u64 arguments for raw
    tracepoints, fentry/fexit, tp_btf and lsm, or ``pt_regs`` for perf_event
    (with ``sample_period`` and ``addr``).  ``task``: the :class:`ebee.helpers.task.Task`
    the event happens in (what ``bpf_get_current_*`` answer); ``cpu``: the CPU it runs on
    (its per-CPU map slots).  :func:`ebee.testrun.events.fire` builds ``ctx`` from Python
    values.
    """
    pt = prog.info.prog_type
    exe = prog.executable(evidence=engine != "interp")
    m = Machine()
    if prog.btf is not None:
        m.btf = prog.btf
    m.task = task
    m.cpu = cpu
    regions = []
    try:
        bound = select_engine(engine, exe.evidence).compile(exe.insns, exe.evidence) \
            .bind(m, RUNTIME)
        arg = place_event(pt, ctx, regions, sample_period=sample_period, addr=addr)
        m.progctx = RunContext(default_net(), pt)
        with capture() as lines:
            ex = bound.run(arg)
        return RunResult(ex.retval, b"", None, 0, None, [ln.message for ln in lines], 0,
                         ex.insns, pt)
    finally:
        m.progctx = None
        for r in regions:
            SHARED.remove(r)
        m.close()
