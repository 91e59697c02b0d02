"""``ebee.debug.Session``: run one program instruction by instruction.

The program runs as a test run (``ebee.testrun.run``, or ``run_event`` for tracing
programs) in the interpreter, on a thread of its own, inside
:func:`ebee.engines.probes.stepping`: before every instruction the generated code
calls the session's hook, which decides whether to stop and, if so, hands control to
the caller and waits.  Only one of the two threads runs at a time, so the caller sees
a program frozen before an instruction -- its registers, its stack and every region
it can reach -- and resumes it with :meth:`Session.step`, :meth:`Session.next`,
:meth:`Session.finish` or :meth:`Session.cont`.

What the verifier proved comes from verifying each program met (the entry program
and tail-call targets) once with facts: ``facts[pc] -> {reg: RegFact}`` for the
registers the instruction at ``pc`` reads.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ..engines.probes import stepping
from ..errors import EbeeError, VMError
from ..isa import Instruction, Kind, format_kernel
from ..maps import MapKeyError
from ..session.mapargs import MapArgError, encode_arg
from ..testrun import RunResult, run, run_event
from ..verifier import RegFact
from ..verifier.types import PTR_MAYBE_NULL, RegType, reg_type_str
from .source import SourceLine, SourceMap

M64 = (1 << 64) - 1
STACK = 512


class DebugError(EbeeError, ValueError):
    """A command the session cannot carry out (one line for the user)."""


class _Quit(BaseException):
    """Unwinds the program's thread when the session ends mid-run (never caught by the
    program's helpers, which catch VMError)."""


class ProgramView:
    """One program as the debugger shows it: its image's source map and the verifier's
    facts, made when the program first runs."""

    def __init__(self, prog: Any, insns: list[Instruction]):
        self.program = prog
        self.name = getattr(prog, "name", "") or "program"
        self.src = SourceMap(prog, insns)
        self._facts: Any = None
        self._facts_done = False
        self.stack_depth: tuple[int, ...] = ()

    @property
    def facts(self) -> Any:
        if not self._facts_done:
            self._facts_done = True
            verify = getattr(self.program, "verify", None)
            if verify is not None:
                try:
                    r = verify()
                except Exception:   # the verifier cannot judge it: no facts to show
                    r = None
                if r is not None and r.accepted:
                    self._facts = r.facts
                    self.stack_depth = tuple(r.stack_depth)
        return self._facts

    def facts_at(self, pc: int) -> dict[int, RegFact]:
        """What the verifier proved before image pc ``pc`` (only where ``pc`` is an
        instruction as loaded: a rewritten context access's later steps have none)."""
        f = self.facts
        orig = self.src.orig_pc.get(pc)
        if f is None or orig is None or orig not in f:
            return {}
        # a call's unset argument registers: nothing was proved, nothing to show
        return {r: x for r, x in f[orig].items() if x.type != "NOT_INIT"}


@dataclass
class Frame:
    """One frame of the program's call stack (innermost first in a backtrace)."""
    view: ProgramView
    pc: int
    depth: int
    #: (program, pc) of each tail call that replaced this frame, oldest first
    tail_from: list[tuple[str, int]] = field(default_factory=list)

    @property
    def function(self) -> str:
        return self.view.src.function(self.pc)

    @property
    def line(self) -> SourceLine | None:
        return self.view.src.line(self.pc)


@dataclass
class Stop:
    """Where the program stopped, or how it ended (``reason`` "exited", "fault", ...)."""
    reason: str                      # step, breakpoint, finish, exited, fault, error, quit
    frame: Frame | None = None
    regs: tuple[int, ...] = ()
    result: RunResult | None = None
    error: BaseException | None = None
    breakpoint: int | None = None    # its number

    @property
    def running(self) -> bool:
        return self.frame is not None

    @property
    def pc(self) -> int | None:
        return self.frame.pc if self.frame is not None else None

    @property
    def insn(self) -> Instruction | None:
        f = self.frame
        return f.view.src.by_pc.get(f.pc) if f is not None else None


@dataclass
class Breakpoint:
    number: int
    spec: str
    kind: str                        # line, func, pc
    value: Any
    file: str | None = None
    program: str | None = None       # pc breakpoints: of this program only
    hits: int = 0

    def pcs(self, view: ProgramView) -> set[int]:
        src = view.src
        if self.kind == "line":
            # as gdb: a line without code stops at the next line that has some
            lines = sorted({sl.line for sl in src.stmt.values() if sl.line >= self.value and
                            (self.file is None or self.file in (sl.file, _base(sl.file)))})
            return set(src.line_pcs(lines[0], self.file)) if lines else set()
        if self.kind == "func":
            if self.value in src.functions:
                return {src.functions[self.value]}
            return {0} if self.value == view.name else set()
        if self.program is None or self.program == view.name:
            return {self.value} if self.value in src.by_pc else set()
        return set()


class Session:
    """A debugging session of one program run.

    ``data``: the packet (``data_in``); ``ctx``: ``ctx_in``; ``event``: run a tracing
    program on this event record instead (``ebee.testrun.run_event``).  The run starts
    at :meth:`start` and stops before the first instruction.
    """

    def __init__(self, prog: Any, data: bytes | None = None, *, ctx: bytes | None = None,
                 event: bytes | None = None):
        self.program = prog
        self.data = data
        self.ctx = ctx
        self.event = event
        self.breakpoints: list[Breakpoint] = []
        self._views: dict[int, ProgramView] = {}
        self._bp_pcs: dict[tuple[int, int], set[int]] = {}
        self._bp_next = 1
        self.frames: list[Frame] = []
        self.stop: Stop = Stop("not started")
        self._thread: threading.Thread | None = None
        self._to_main = threading.Semaphore(0)
        self._to_worker = threading.Semaphore(0)
        self._mode = "stepi"
        self._base: tuple[int, int, int | None, Frame | None] = (0, 0, None, None)
        self._quit = False
        self._bound: Any = None
        self._regs: tuple[int, ...] = ()
        self._final: Stop | None = None

    # -- the program's thread ------------------------------------------------------------

    def _view(self, bound: Any) -> ProgramView:
        key = id(bound.image)
        v = self._views.get(key)
        if v is None:
            prog = bound.source if bound.source is not None else self.program
            v = self._views[key] = ProgramView(prog, bound.image.insns)
        return v

    def _worker(self) -> None:
        final: Stop
        try:
            with stepping(self._hook):
                if self.event is not None:
                    res = run_event(self.program, self.event, engine="interp")
                else:
                    res = run(self.program, self.data, ctx=self.ctx, engine="interp")
            final = Stop("exited", result=res)
        except _Quit:
            final = Stop("quit")
        except VMError as e:
            final = Stop("fault", error=e, frame=self.frames[-1] if self.frames else None,
                         regs=self._regs)
        except Exception as e:      # the run refused (TestRunError, VerifierError, ...)
            final = Stop("error", error=e)
        self.frames = []
        self._final = final
        self._to_main.release()

    def _hook(self, bound: Any, pc: int, depth: int, regs: tuple) -> None:
        view = self._view(bound)
        frames = self.frames
        del frames[depth + 1:]
        if len(frames) == depth + 1:
            top = frames[-1]
            if top.view is not view:                 # a tail call replaced the frame
                frames[-1] = Frame(view, pc, depth, top.tail_from + [(top.view.name, top.pc)])
            elif pc == view.src.function_entry(pc) and pc != top.pc and \
                    top.view.src.by_pc[top.pc].kind is Kind.EXIT:
                frames[-1] = Frame(view, pc, depth)  # a helper calls its callback again
            else:
                top.pc = pc
        else:
            frames.append(Frame(view, pc, depth))
        self._bound = bound
        self._regs = regs
        reason = self._should_stop(view, pc, depth)
        if reason is None:
            return
        bp = None
        if isinstance(reason, Breakpoint):
            reason.hits += 1
            bp, reason = reason.number, "breakpoint"
        self.stop = Stop(reason, frames[-1], regs, breakpoint=bp)
        self._to_main.release()
        self._to_worker.acquire()
        if self._quit:
            raise _Quit()

    def _hit(self, view: ProgramView, pc: int) -> Breakpoint | None:
        for bp in self.breakpoints:
            key = (bp.number, id(view))
            pcs = self._bp_pcs.get(key)
            if pcs is None:
                pcs = self._bp_pcs[key] = bp.pcs(view)
            if pc in pcs:
                return bp
        return None

    def _should_stop(self, view: ProgramView, pc: int, depth: int) -> Any:
        bp = self._hit(view, pc) if self.breakpoints else None
        if bp is not None:
            return bp
        mode = self._mode
        if mode == "continue":
            return None
        base_depth, base_pc, base_line, base_frame = self._base
        if mode == "stepi":
            return "step"
        if mode == "nexti":
            return "step" if depth <= base_depth else None
        if mode == "finish":
            return "finish" if depth < base_depth else None
        # step / next: to the next statement of another line (or back to this line's
        # start), into a call (step), out of the function, or into a tail-call target
        if depth > base_depth:
            return "step" if mode == "step" else None
        if depth < base_depth or self.frames[-1] is not base_frame:
            return "step"
        src = view.src
        if not src.has_lines:
            return "step"
        s = src.stmt.get(pc)
        if s is not None and (s.line != base_line or pc <= base_pc):
            return "step"
        return None

    # -- driving it ------------------------------------------------------------------------

    def start(self) -> Stop:
        """Begin the run; stops before its first instruction (or reports how it ended)."""
        if self._thread is not None:
            self.kill()
        self._quit = False
        self._mode = "stepi"
        self.frames = []
        self._bp_pcs.clear()
        self._thread = threading.Thread(target=self._worker, name="ebee-debug", daemon=True)
        self._thread.start()
        return self._wait()

    def _wait(self) -> Stop:
        self._to_main.acquire()
        final = self._final
        if final is not None:            # the run ended
            self._thread.join()
            self._thread = None
            self._final = None
            self.stop = final
        return self.stop

    def _resume(self, mode: str) -> Stop:
        if not self.stop.running or self._thread is None:
            raise DebugError("the program is not being run")
        f = self.stop.frame
        line = f.line
        self._base = (f.depth, f.pc, line.line if line is not None else None, f)
        self._mode = mode
        self._to_worker.release()
        return self._wait()

    def stepi(self) -> Stop:
        """One instruction, into calls."""
        return self._resume("stepi")

    def nexti(self) -> Stop:
        """One instruction, over calls."""
        return self._resume("nexti")

    def step(self) -> Stop:
        """To the next source line, into calls (one instruction without line info)."""
        return self._resume("step")

    def next(self) -> Stop:
        """To the next source line of this function, over calls."""
        return self._resume("next")

    def finish(self) -> Stop:
        """Until the current function returns (to the end, in the entry function)."""
        return self._resume("finish")

    def cont(self) -> Stop:
        """Until a breakpoint or the end."""
        return self._resume("continue")

    def kill(self) -> None:
        """End the run (the program's thread unwinds)."""
        if self._thread is not None and self.stop.running:
            self._quit = True
            self._to_worker.release()
            self._wait()
        self._quit = False

    close = kill

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    # -- breakpoints -------------------------------------------------------------------------

    def add_breakpoint(self, spec: str) -> Breakpoint:
        """``LINE`` or ``FILE:LINE`` (a source line), ``FUNC`` (a function or program
        name), ``*PC`` or ``pc PC`` (an instruction of the entry program, or
        ``PROG:*PC``)."""
        s = spec.strip()
        if not s:
            raise DebugError("break: give LINE, FUNC or *PC")
        prog = None
        if ":*" in s:
            prog, s = s.split(":*", 1)
            s = "*" + s
        if s.startswith("*") or s.startswith("pc "):
            n = _number(s[1:] if s.startswith("*") else s[3:], "break")
            bp = Breakpoint(self._bp_next, spec, "pc", n, program=prog or self._entry_name())
        elif s.isdigit() or (":" in s and s.rsplit(":", 1)[1].isdigit()):
            file, _, line = s.rpartition(":")
            bp = Breakpoint(self._bp_next, spec, "line", int(line), file=file or None)
        elif s.isidentifier():
            bp = Breakpoint(self._bp_next, spec, "func", s)
        else:
            raise DebugError(f"break: cannot read {spec!r} (LINE, FILE:LINE, FUNC or *PC)")
        self._bp_next += 1
        self.breakpoints.append(bp)
        return bp

    def delete_breakpoint(self, number: int | None = None) -> None:
        if number is None:
            self.breakpoints.clear()
        elif not any(b.number == number for b in self.breakpoints):
            raise DebugError(f"no breakpoint number {number}")
        else:
            self.breakpoints = [b for b in self.breakpoints if b.number != number]
        self._bp_pcs.clear()

    def where_breakpoint(self, bp: Breakpoint) -> list[tuple[str, int]]:
        """(program, pc) the breakpoint resolves to in the programs met so far (the entry
        program's image is known before the run)."""
        out = []
        for v in self._known_views():
            out.extend((v.name, pc) for pc in sorted(bp.pcs(v)))
        return out

    def _known_views(self) -> list[ProgramView]:
        views = list(self._views.values())
        if not views:
            views = [self.entry_view()]
        return views

    def entry_view(self) -> ProgramView:
        """The entry program's view (its image made from ``Program.executable``)."""
        for v in self._views.values():
            if v.program is self.program:
                return v
        v = getattr(self, "_entry", None)
        if v is None:
            exe = self.program.executable(evidence=False)
            v = self._entry = ProgramView(self.program, list(exe.insns))
        return v

    def _entry_name(self) -> str:
        return getattr(self.program, "name", "") or "program"

    # -- what it sees ----------------------------------------------------------------------------

    def _running(self) -> Stop:
        if not self.stop.running:
            raise DebugError("the program is not being run")
        return self.stop

    def register(self, n: int) -> tuple[int, RegFact | None]:
        """Register ``n``'s value and what the verifier proved of it here (None: the
        instruction does not read it, or no fact)."""
        st = self._running()
        if not 0 <= n <= 10:
            raise DebugError(f"no register r{n} (r0..r10)")
        return st.regs[n], st.frame.view.facts_at(st.frame.pc).get(n)

    def facts(self) -> dict[int, RegFact]:
        st = self._running()
        return st.frame.view.facts_at(st.frame.pc)

    def region_of(self, addr: int) -> str | None:
        """``name+offset`` of the region holding ``addr``, if any."""
        b = self._bound
        if b is None or not 0 < addr <= M64:
            return None
        r = b.cpu.memory.find(addr, 1)
        if r is None:
            return None
        if r is b.cpu.stack:
            # relative to the r10 of the frame that holds it, named by its function
            k = (addr - r.start) // STACK
            rel = addr - r.start - (k + 1) * STACK
            owner = f" of {self.frames[k].function}" if k < len(self.frames) and \
                k != len(self.frames) - 1 else ""
            return f"fp{rel:+d}{owner}"
        return f"{r.name}+{addr - r.start}"

    def read(self, addr: int, size: int) -> bytes:
        """``size`` bytes at ``addr`` of the program's address space."""
        self._running()
        if size <= 0 or size > 1 << 16:
            raise DebugError("x: between 1 and 65536 bytes")
        r = self._bound.cpu.memory.find(addr, size) if 0 <= addr <= M64 else None
        if r is None:
            raise DebugError(f"cannot access memory at {addr:#x} ({size} bytes)")
        o = addr - r.start
        return bytes(r.buf[o:o + size])

    def stack(self) -> tuple[int, bytes]:
        """(r10, the used part of the current frame: the verifier's stack depth of this
        function, or 64 bytes) as bytes from the lowest address up to r10."""
        st = self._running()
        f = st.frame
        v = f.view
        _ = v.facts
        k = v.src.function_index(f.pc)
        depth = v.stack_depth[k] if k < len(v.stack_depth) and v.stack_depth[k] else 64
        depth = (depth + 7) // 8 * 8
        fp = st.regs[10]
        return fp, self.read(fp - depth, depth)

    def maps(self) -> dict[str, Any]:
        """The maps the program can name: its object's, or those it references."""
        obj = getattr(self.program, "object", None)
        if obj is not None and getattr(obj, "maps", None) is not None:
            return dict(obj.maps)
        return {m.name: m for m in getattr(self.program, "maps", ())}

    def lookup(self, name: str, key: str) -> tuple[bytes, bytes | None]:
        """(key bytes, value bytes or None if absent) of map ``name``; ``key`` as
        ``--map-update`` takes it (0x and the exact hex bytes, or JSON through BTF)."""
        maps = self.maps()
        m = maps.get(name)
        if m is None:
            raise DebugError(f"no map {name!r} (maps: {', '.join(maps) or 'none'})")
        try:
            kb = encode_arg(m, key, "key")
        except MapArgError as e:
            raise DebugError(f"lookup: {e}") from None
        try:
            return kb, bytes(m.raw_lookup(kb))
        except MapKeyError:
            return kb, None

    def backtrace(self) -> list[Frame]:
        """The frames, innermost first."""
        self._running()
        return list(reversed(self.frames))

    def disassemble(self, pc: int, view: ProgramView | None = None) -> str:
        v = view or self.stop.frame.view
        i = v.src.by_pc.get(pc)
        return format_kernel(i) if i is not None else "?"


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _number(text: str, what: str) -> int:
    try:
        return int(text.strip(), 0)
    except ValueError:
        raise DebugError(f"{what}: {text.strip()!r} is not a number") from None


def format_fact(f: RegFact | None) -> str:
    """What the verifier proved, compactly: ``scalar(umin=0,umax=64)``, ``scalar(42)``,
    ``ptr_to_packet(off=14)``."""
    if f is None:
        return "-"
    b = f.bounds
    if f.type is None:
        name = "unknown(paths disagree)"
        return name
    parts: list[str] = []
    if f.type == "SCALAR_VALUE":
        if f.const is not None:
            v = f.const
            return f"scalar({v if v < 1 << 63 else v - (1 << 64)})"
        name = "scalar"
    else:
        null = f.type.endswith("_OR_NULL")
        t = RegType[f.type.removesuffix("_OR_NULL")]
        name = reg_type_str(int(t) | (PTR_MAYBE_NULL if null else 0))
        fixed = b.var_off.mask == 0 and b.var_off.value == 0
        if t is RegType.PTR_TO_STACK and fixed and f.off is not None:
            return f"fp{f.off:+d}" if f.off else "fp0"
        if f.off is None:
            parts.append("off=?")
        elif f.off:
            parts.append(f"off={f.off}")
        if fixed:
            return f"{name}({','.join(parts)})"
    if b.umin_value != 0:
        parts.append(f"umin={b.umin_value}")
    if b.umax_value != M64:
        parts.append(f"umax={b.umax_value}")
    smin_full, smax_full = -(1 << 63), (1 << 63) - 1
    implied = b.umax_value < 1 << 63 and b.smin_value == b.umin_value and \
        b.smax_value == b.umax_value
    if not implied:
        if b.smin_value != smin_full:
            parts.append(f"smin={b.smin_value}")
        if b.smax_value != smax_full:
            parts.append(f"smax={b.smax_value}")
    if b.var_off.mask != M64 and not parts:
        parts.append(f"var_off=({b.var_off.value:#x}; {b.var_off.mask:#x})")
    return f"{name}({','.join(parts)})"
