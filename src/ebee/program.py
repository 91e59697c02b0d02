"""The program model: one eBPF program, ready to verify and to run.

Every way into ebee ends here -- an entry program of a loaded object
(``ebee.load``), raw instructions given a type (``Program.from_insns``: the CLI's
``ebee run prog.s --type xdp``, tests) -- and everything downstream reads it:
the verifier (its attributes are the verifier's ``VerifiableProgram``), the test
runs (``ebee.testrun``), tail calls (it is a :class:`~ebee.runtime.Runnable`) and
the kernel backend.

The program owns its verdict.  Loading verifies, as in Linux: a program that
requires verification runs only after the verifier accepted it (:meth:`admit`,
at first run, after user space set ``.rodata``), and the accepted result is the
evidence that lets the JIT drop its memory checks.  The verdict is computed once
per instruction list and kept here -- the verifier never writes on its caller.
"""
from __future__ import annotations

import dataclasses
import hashlib
import marshal
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, NoReturn, Protocol

from . import cache, uapi as U
from .btf.ext import FuncInfo, LineInfo
from .engines.blinding import blind, blinding_enabled, is_multi_function, jit_harden
from .engines.probes import COVERAGE
from .errors import EbeeError
from .fs import PinStore, default_store, sync_maps
from .helpers import RUNTIME
from .isa import OP_CALL, OP_LDDW, Instruction, encode
from .maps import MapError, by_id as map_by_id
from .packet import Network
from .progtypes import ProgTypeInfo, get as progtype
from .progtypes.sections import SectionDef
from .runtime.program import Executable, Runnable
from .runtime.rewrite import rewrite_map
from .testrun import Runner, RunResult
from .testrun.events import fire as fire_event
from .verifier import VerifierError, VerifierResult, verify

# -- the on-disk verdict cache (ebee.cache) --------------------------------------------------
# A verdict at BPF_PROG_LOAD's defaults is a function of: the instructions (map references
# by position, not by this process's ids), every referenced map's definition (and, when
# frozen, its contents: the verifier reads frozen .rodata as constants), the program's
# type, attach target, flags, license and BTF, the kernel it models and runs on, and
# ebee's own code.  The key holds all of them; programs whose verdict may depend on
# anything else (other programs, module BTF, maps whose verifier-visible state is more
# than their definition) are not cached.

_VERDICT_FORMAT = 2
# maps whose definition (and frozen memory) is all the verifier sees of them: no owner
# program (prog arrays), no inner-map templates, no sockets
_PLAIN_MAPS = frozenset(int(t) for t in (
    U.MapType.HASH, U.MapType.ARRAY, U.MapType.PERCPU_HASH, U.MapType.PERCPU_ARRAY,
    U.MapType.LRU_HASH, U.MapType.LRU_PERCPU_HASH, U.MapType.LPM_TRIE, U.MapType.RINGBUF,
    U.MapType.PERF_EVENT_ARRAY, U.MapType.QUEUE, U.MapType.STACK, U.MapType.BLOOM_FILTER))
VERDICT_CACHE = cache.Cache("verdicts")


@lru_cache(maxsize=1)
def _ebee_and_kernel() -> str:
    """ebee's code (every source file) and the kernel and machine it runs on."""
    root = Path(__file__).resolve().parent
    files = sorted(str(f) for f in root.rglob("*.py"))
    parts = [cache.source_digest(*files), " ".join(os.uname())]
    for f in ("/sys/kernel/btf/vmlinux", "/sys/devices/system/cpu/possible"):
        try:
            st = os.stat(f)
            parts.append(f"{f} {st.st_size} {st.st_mtime_ns} "
                         f"{Path(f).read_text() if f.endswith('possible') else ''}")
        except OSError:
            parts.append(f"{f} missing")
    return cache.digest(*parts)


def _btf_digest(btf: Any) -> str:
    return hashlib.sha256(btf.data).hexdigest() if btf is not None else "-"


def _map_part(m: Any) -> str | None:
    if int(m.type) not in _PLAIN_MAPS:
        return None
    part = (f"{int(m.type)} {type(m).__name__} {m.key_size} {m.value_size} {m.max_entries} "
            f"{m.flags} {m.map_extra} {m.name!r} {getattr(m, 'numa_node', 0)} {bool(m.frozen)} "
            f"{_btf_digest(getattr(m, 'btf', None))} {m.btf_key_type_id} {m.btf_value_type_id} "
            f"{m.btf_vmlinux_value_type_id}")
    if m.frozen:
        if not m.elements_in_regions:
            return None
        part += " " + hashlib.sha256(b"".join(bytes(r.buf) for r in m.regions)).hexdigest()
    return part


def verdict_key(prog: "Program") -> str | None:
    """The verdict cache's key for ``prog`` at BPF_PROG_LOAD's defaults; None when its
    verdict may depend on more than the key holds (then it is not cached)."""
    if prog.type is U.ProgType.EXT:          # verified against another program
        return None
    maps: dict[int, int] = {}
    parts: list[str] = []
    insns: list[Instruction] = []
    for i in prog.insns:
        if i.opcode == OP_LDDW and i.src in (U.BPF_PSEUDO_MAP_IDX, U.BPF_PSEUDO_MAP_IDX_VALUE):
            return None
        if i.opcode == OP_LDDW and i.src in (U.BPF_PSEUDO_MAP_FD, U.BPF_PSEUDO_MAP_VALUE):
            mid = i.imm & 0xFFFFFFFF
            if mid not in maps:
                try:
                    part = _map_part(map_by_id(mid))
                except MapError:
                    return None
                if part is None:
                    return None
                maps[mid] = len(parts)
                parts.append(part)
            i = dataclasses.replace(i, imm=maps[mid])
        elif i.opcode == OP_CALL and i.src == U.BPF_PSEUDO_KFUNC_CALL and i.off:
            return None                      # a kfunc of module BTF
        insns.append(i)
    return cache.digest(
        "verdict", str(_VERDICT_FORMAT), _ebee_and_kernel(), encode(insns), *parts,
        str(int(prog.type)), str(prog.expected_attach_type), str(prog.attach_target),
        str(prog.prog_flags), prog.license, str(prog.kern_version), _btf_digest(prog.btf),
        repr(prog.func_info), repr(prog.line_info))


def load_verdict(key: str) -> VerifierResult | None:
    payload = VERDICT_CACHE.get(key)
    if payload is None:
        return None
    try:
        (fmt, accepted, log, error, processed, states, errno, peak, per_insn, depth, duration,
         ctx_insns, dead) = marshal.loads(payload)
    except Exception:
        return None
    if fmt != _VERDICT_FORMAT:
        return None
    return VerifierResult(accepted=accepted, log=log, error=error, insns_processed=processed,
                          states=states, facts=None, errno=errno, peak_states=peak,
                          max_states_per_insn=per_insn, stack_depth=tuple(depth),
                          duration=duration, ctx_insns=tuple(ctx_insns),
                          dead_insns=tuple(dead))


def store_verdict(key: str, r: VerifierResult) -> None:
    VERDICT_CACHE.put(key, marshal.dumps((
        _VERDICT_FORMAT, r.accepted, r.log, r.error, r.insns_processed, r.states, r.errno,
        r.peak_states, r.max_states_per_insn, tuple(r.stack_depth), r.duration,
        tuple(r.ctx_insns), tuple(r.dead_insns))))


GPL_COMPATIBLE = ("GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL",
                  "Dual MPL/GPL")


@dataclass(frozen=True)
class LineRecord:
    """A line_info record of a linked program (``insn`` is the slot index)."""
    insn: int
    file_name: str
    line: int
    col: int
    line_text: str


class ImmutableProgramError(EbeeError, TypeError):
    """An attempt to change a program's instructions after it was verified or loaded to
    run: as in the kernel, the image the verifier passed is the image that runs."""


class InstructionArray(list):
    """A program's instruction list: an ordinary list until :meth:`seal`, then read-only
    (every mutator raises :class:`ImmutableProgramError`)."""

    __slots__ = ("_sealed_by",)

    def __init__(self, insns: Iterable[Instruction] = ()):
        super().__init__(insns)
        self._sealed_by: str | None = None

    @property
    def sealed(self) -> bool:
        return self._sealed_by is not None

    def seal(self, who: str) -> None:
        if self._sealed_by is None:
            self._sealed_by = who

    def _refuse(self, *_a: Any, **_k: Any) -> NoReturn:
        raise ImmutableProgramError(f"program {self._sealed_by!r}: its instructions are read-only "
                                    f"once it is verified or loaded to run (build a new Program "
                                    f"to change them)")

    def __reduce__(self):
        return (list, (list(self),))      # copies and pickles are ordinary lists


def _guarded(name: str):
    base = getattr(list, name)

    def method(self: InstructionArray, *a: Any, **k: Any) -> Any:
        if self.sealed:
            self._refuse()
        return base(self, *a, **k)
    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


for _name in ("__setitem__", "__delitem__", "__iadd__", "__imul__", "append", "extend", "insert",
              "pop", "remove", "clear", "sort", "reverse"):
    setattr(InstructionArray, _name, _guarded(_name))
del _name


class Owner(Protocol):
    """What a program needs of the object it came from (``ebee.session.Object``)."""

    verifies: bool

    def first_use(self) -> None:
        """Freeze read-only data before the object's first run or verification."""


class Program(Runnable):
    """One entry program: linked and relocated instructions, its type and BTF info."""

    def __init__(self, insns: Iterable[Instruction], prog_type: U.ProgType | int, *,
                 name: str = "", section: str = "", sec_def: SectionDef | None = None,
                 expected_attach_type: U.AttachType | int | None = None,
                 attach_target: str | None = None, prog_flags: int = 0,
                 license: str = "GPL", kern_version: int = 0, btf: Any = None,
                 func_info: list[FuncInfo] | None = None, line_info: list[LineInfo] | None = None,
                 functions: list[tuple[str, int]] | None = None, owner: Owner | None = None,
                 verify: bool = False, evidence_from_verifier: bool | None = None,
                 privileged: bool = True):
        self._insns = InstructionArray(insns)
        self.type = U.ProgType(int(prog_type))
        self.name = name
        self.section = section
        self.sec_def = sec_def
        # libbpf's bpf_program__set_autoload(): whether load_kernel() loads it (SEC("?..."): no)
        self.autoload = sec_def.autoload if sec_def is not None else True
        self.expected_attach_type = (U.AttachType(int(expected_attach_type))
                                     if expected_attach_type is not None else None)
        self.attach_target = attach_target
        self.prog_flags = prog_flags
        self.license = license
        self.kern_version = kern_version
        self.btf = btf
        self.func_info = func_info or []     # btf.ext.FuncInfo, insn_off program-relative (bytes)
        self.line_info = line_info or []     # btf.ext.LineInfo, insn_off program-relative (bytes)
        self.functions = functions or [(name, 0)]   # (function name, first slot)
        self.object = owner
        self._verify = verify
        # whether the verifier's acceptance lets the JIT drop checks even when the program
        # does not require verification (a loaded object's programs: yes; raw lists: no)
        self.evidence_from_verifier = owner is not None if evidence_from_verifier is None \
            else evidence_from_verifier
        # whether its loader had CAP_BPF: verified as unprivileged otherwise, and blinded
        # at net.core.bpf_jit_harden=1
        self.privileged = privileged
        self.verifier_result: VerifierResult | None = None   # the verdict it runs under
        self._verdict_of: tuple[Instruction, ...] | None = None
        self._xlated: tuple[tuple, tuple[list[Instruction], dict[int, int]]] | None = None
        # the Runner prog.run() reuses: (what it was prepared from, runner); its lock is held
        # by the run using it, so a concurrent or nested run makes its own
        self._runner: tuple[tuple, Runner, list] | None = None
        self._runner_lock = threading.Lock()
        self._blinded: tuple[tuple, tuple[list[Instruction], dict[int, int]] | None] | None = None

    @classmethod
    def from_insns(cls, insns: Iterable[Instruction], prog_type: U.ProgType | int, *,
                   expected_attach_type: U.AttachType | int | None = None, name: str = "",
                   verify: bool = False, **kw) -> "Program":
        """A program of raw instructions.  ``verify=True`` holds it to the verifier like a
        loaded object's program; by default it runs checked and unverified."""
        return cls(insns, prog_type, expected_attach_type=expected_attach_type, name=name,
                   verify=verify, **kw)

    # -- what it is ----------------------------------------------------------------------

    @property
    def insns(self) -> InstructionArray:
        """The linked instructions; read-only once verified or loaded to run."""
        return self._insns

    @insns.setter
    def insns(self, insns: Iterable[Instruction]) -> None:
        if self._insns.sealed:
            self._insns._refuse()
        self._insns = InstructionArray(insns)

    @property
    def sealed(self) -> bool:
        """Whether the instructions are fixed (verified, or loaded to run)."""
        return self._insns.sealed

    @property
    def kernel_name(self) -> str:
        """The name the kernel keeps (BPF_OBJ_NAME_LEN - 1 characters)."""
        return self.name[:15]

    @property
    def gpl_compatible(self) -> bool:
        return self.license in GPL_COMPATIBLE

    @property
    def sleepable(self) -> bool:
        return bool(self.prog_flags & U.BPF_F_SLEEPABLE)

    @property
    def info(self) -> ProgTypeInfo:
        """The program type's row (context rules, helpers, return range, test run)."""
        return progtype(self.type, self.expected_attach_type)

    @property
    def maps(self) -> list:
        """Maps the program references (``lddw`` map pseudo-sources), in first-use order."""
        seen: dict[int, Any] = {}
        for i in self.insns:
            if i.spec.wide and i.src in (U.BPF_PSEUDO_MAP_FD, U.BPF_PSEUDO_MAP_VALUE):
                mid = i.imm & 0xFFFFFFFF
                if mid not in seen:
                    try:
                        seen[mid] = map_by_id(mid)
                    except MapError:
                        continue
        return list(seen.values())

    def lines(self) -> list[LineRecord]:
        return [LineRecord(li.insn, li.file_name, li.line, li.col, li.line_text)
                for li in self.line_info]

    @property
    def requires_verification(self) -> bool:
        """Whether the program must pass the verifier before it runs (``ebee.load``'s
        ``verify``)."""
        return self.object.verifies if self.object is not None else self._verify

    # -- as the runtime runs it ----------------------------------------------------------

    def _ctx_rewritten(self) -> tuple[list[Instruction], dict[int, int]]:
        key = (tuple(self.insns), self.type, self.expected_attach_type)
        if self._xlated is None or self._xlated[0] != key:
            info = self.info
            if info.rules is None or info.ctx_kind != "struct":
                out = (list(self.insns), {i.pc: i.pc for i in self.insns})
            else:
                out = rewrite_map(list(self.insns), info.rules)
            self._xlated = (key, out)
        return self._xlated[1]

    @property
    def blinding(self) -> bool:
        """Whether ebee's ``jit_harden`` level blinds this program's constants."""
        return blinding_enabled(jit_harden(), privileged=self.privileged)

    def _blinded_image(self) -> tuple[list[Instruction], dict[int, int]] | None:
        """The rewritten program with its constants blinded, once per image (the random
        constants are fixed at load, as in the kernel); None when not blinded."""
        if not self.blinding:
            return None
        insns, moved = self._ctx_rewritten()
        key = tuple(insns)
        if self._blinded is None or self._blinded[0] != key:
            # map lddws are blinded as addresses, as the kernel blinds them (the runner
            # binds images to RUNTIME, so this is the value they would load)
            b = blind(insns, resolve=RUNTIME.ld_imm64)
            out = None if b is None else (b[0], {pc: b[1][m] for pc, m in moved.items()})
            self._blinded = (key, out)
        return self._blinded[1]

    def xlated(self) -> tuple[list[Instruction], dict[int, int]]:
        """The program as ``bpftool prog dump xlated`` shows it for the kernel -- context
        accesses rewritten onto the runtime's kernel-shaped structures, constants blinded
        when ``jit_harden`` asks (not for programs with bpf-to-bpf functions: the kernel
        blinds only their per-function JIT copies) -- and the map from original pcs to
        rewritten ones (cached)."""
        out = self._ctx_rewritten()
        if not is_multi_function(out[0]):
            out = self._blinded_image() or out
        return out

    def executable(self, *, evidence: bool = True) -> Executable:
        """The instructions as they run -- rewritten, and blinded when ``jit_harden`` asks --
        and the evidence they run under.  From here on the instructions are read-only.

        A program that requires verification is admitted first (``VerifierError`` if
        rejected).  One that does not still carries its verdict as evidence when the
        verifier accepts it and :attr:`evidence_from_verifier` allows (``evidence=False``
        skips that: the interpreter ignores evidence).
        """
        if self.requires_verification:
            ev: Any = self.admit()
        else:
            ev = self.evidence() if evidence else None
        self._insns.seal(self.name)
        image = self._blinded_image() or self._ctx_rewritten()
        COVERAGE.note(image[0], self)      # coverage reports find the program's source lines
        return Executable(tuple(image[0]), ev, self.name)

    def evidence(self) -> VerifierResult | None:
        """The verdict if the verifier accepted the program and it may serve as evidence
        for unchecked code; None otherwise (never raises)."""
        if not (self.requires_verification or self.evidence_from_verifier):
            return None
        try:
            r = self.verdict()
        except Exception:        # the verifier could not judge it: no evidence
            return None
        return r if r.accepted else None

    # -- verification ----------------------------------------------------------------------

    def verify(self, **kw) -> VerifierResult:
        """Verify the program (``ebee.verifier.verify``); returns a ``VerifierResult``."""
        kw.setdefault("unpriv", not self.privileged)
        if self.object is not None:
            self.object.first_use()
        return verify(self, **kw)

    def verdict(self) -> VerifierResult:
        """The verdict with BPF_PROG_LOAD's defaults, computed once per instruction list
        and kept on disk (``ebee.cache``; a verdict read back carries no ``facts``)."""
        insns = tuple(self.insns)
        if self.verifier_result is None or self._verdict_of != insns:
            # the verifier reads frozen .rodata as constants, as Linux does after libbpf's
            # load: the object's read-only data is frozen first
            if self.object is not None:
                self.object.first_use()
            key = verdict_key(self) if cache.enabled() else None
            r = load_verdict(key) if key else None
            if r is None:
                r = self.verify()
                if key:
                    store_verdict(key, r)
            self.verifier_result = r
            self._verdict_of = insns
        if self.verifier_result.accepted:
            self._insns.seal(self.name)
        return self.verifier_result

    def admit(self) -> VerifierResult:
        """The gate before a program's first run: its verdict if accepted, else
        :class:`~ebee.verifier.VerifierError` -- a program runs only after
        BPF_PROG_LOAD would have accepted it."""
        r = self.verdict()
        if not r.accepted:
            # as libbpf retries a failed load with a log buffer: the error carries the log
            if not r.log:
                r = self.verifier_result = self.verify(log_level=1)
                key = verdict_key(self) if cache.enabled() else None
                if key:                  # the next load of it has the log at once
                    store_verdict(key, r)
            raise VerifierError(self.name or "program", r)
        return r

    # -- running -------------------------------------------------------------------------

    def run(self, data: bytes | None = None, *, ctx: bytes | None = None, repeat: int = 0,
            engine: str | None = None, flags: int = 0, cpu: int = 0, batch_size: int = 0,
            data_size_out: int | None = None, ctx_size_out: int | None = None,
            ctx_out: bool = False, net: Network | None = None,
            sanitize: bool = False, cgroup: int | tuple[int, int] | None = None) -> RunResult:
        """Run the program with BPF_PROG_TEST_RUN semantics; returns a ``RunResult``
        (``retval``, ``verdict``, ``data_out``, ``ctx_out``, ``duration_ns``, ...).

        ``data``: the packet (``data_in``); ``ctx``: ``ctx_in`` bytes (a ``__sk_buff``,
        ``xdp_md``, ...); ``repeat``: run that many times, ``duration_ns`` the average;
        ``engine``: ``"jit"``, ``"interp"`` or None (the JIT where it is available);
        ``flags``, ``cpu``, ``batch_size``, ``data_size_out``, ``ctx_size_out`` as in
        ``union bpf_attr``'s test; ``ctx_out``: return the context after the run;
        ``net``: the modelled network (devices, routes, sockets) for redirects and lookups;
        ``sanitize``: see below; ``cgroup``: run as attached to that cgroup (id, or (id,
        attach type)): ``bpf_get_local_storage`` then answers that cgroup's element of
        each cgroup storage map (made as attaching makes it) instead of the test run's own
        zeroed storage.

        The first run verifies the program (unless it does not require verification):
        ``VerifierError`` if rejected; ``TestRunError`` (an OSError with Linux's errno)
        where the kernel's test run would fail.

        What a run needs once -- the verdict, the rewritten instructions, the engine's
        image bound to a CPU -- is prepared by the first run and kept (a ``Runner``) until
        the instructions, type or engine change; each run then does only its own work.
        The CPU's stack is cleared before each run, as a fresh CPU's would be.

        ``sanitize=True``: the program must verify, then runs with every memory access
        checked anyway; a fault raises :class:`~ebee.errors.VerifierSoundnessError`."""
        if self.object is not None:
            self.object.first_use()
        kw = dict(ctx=ctx, repeat=repeat, flags=flags, cpu=cpu, batch_size=batch_size,
                  data_size_out=data_size_out, ctx_size_out=ctx_size_out, ctx_out=ctx_out,
                  cgroup=cgroup)
        maps = None
        try:
            if not self._runner_lock.acquire(blocking=False):
                with Runner(self, engine=engine, net=net, sanitize=sanitize) as r:
                    return r.run(data, **kw)
            try:
                r, maps = self._prepared(engine, net, sanitize)
                r.clear_stack()
                return r.run(data, **kw)
            finally:
                self._runner_lock.release()
        finally:
            # program-side writes reach pinned maps' store
            sync_maps(self.maps if maps is None else maps)

    def fire(self, *args: Any, task: Any = None, cpu: int = 0, retval: int = 0, ip: int = 0,
             engine: str | None = None, point: str | None = None, **fields: Any) -> RunResult:
        """Run this tracing program on one synthetic event (Linux has no test run for
        tracepoints, kprobes or uprobes); the event is built from the program's section
        and Python values, as :mod:`ebee.testrun.events` describes.

        ``fields``: a tracepoint's fields by name (``filename=b"/etc/passwd"``: pointer
        fields point at a copy in readable memory); ``args``: a kprobe's, uprobe's, raw
        tracepoint's or fentry's arguments in order (strings placed in memory too);
        ``retval``: a kretprobe/uretprobe's or fexit's return value; ``task``: the
        :class:`ebee.helpers.task.Task` it happens in (``bpf_get_current_pid_tgid``,
        ``_comm``, ``_uid_gid``, ``_task`` read it; default: a task of this process);
        ``cpu``: the CPU it runs on; ``point``: the attach point when the section names
        none (``"kprobe/do_unlinkat"``).  Returns the :class:`RunResult` (``retval``,
        ``trace_output``); what the program wrote is in its maps."""
        if self.object is not None:
            self.object.first_use()
        try:
            return fire_event(self, *args, task=task, cpu=cpu, retval=retval, ip=ip,
                              engine=engine, point=point, **fields)
        finally:
            sync_maps(self.maps)

    def _prepared(self, engine: str | None, net: Any,
                  sanitize: bool = False) -> tuple[Runner, list]:
        """The kept Runner and the maps the program references, for these instructions."""
        key = (tuple(self.insns), self.type, self.expected_attach_type, self.prog_flags,
               self.requires_verification, self.evidence_from_verifier, self.btf, engine, net,
               sanitize)
        kept = self._runner
        if kept is not None:
            if kept[0] == key:
                return kept[1], kept[2]
            self._runner = None
            kept[1].close()
        r = Runner(self, engine=engine, net=net, sanitize=sanitize)
        self._runner = (key, r, self.maps)
        return r, self._runner[2]

    def pin(self, path: str, *, store: PinStore | None = None) -> None:
        """Pin the program: its object's bytes and name go to the pin store."""
        (store or default_store()).pin_program(path, self)

    def __repr__(self) -> str:
        return (f"<Program {self.name!r} section={self.section!r} type={self.type.name} "
                f"insns={len(self.insns)}>")
