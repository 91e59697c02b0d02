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

from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from . import uapi as U
from .btf.ext import FuncInfo, LineInfo
from .fs import PinStore, default_store, sync_maps
from .isa import Instruction
from .maps import MapError, by_id as map_by_id
from .progtypes import ProgTypeInfo, get as progtype
from .progtypes.sections import SectionDef
from .runtime.program import Executable, Runnable
from .runtime.rewrite import rewrite_map
from .testrun import RunResult, run as test_run
from .verifier import VerifierError, VerifierResult, verify

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
                 verify: bool = False, evidence_from_verifier: bool | None = None):
        self.insns = list(insns)
        self.type = U.ProgType(int(prog_type))
        self.name = name
        self.section = section
        self.sec_def = sec_def
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
        self.verifier_result: VerifierResult | None = None   # the verdict it runs under
        self._verdict_of: tuple[Instruction, ...] | None = None
        self._xlated: tuple[tuple, tuple[list[Instruction], dict[int, int]]] | None = None

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

    def xlated(self) -> tuple[list[Instruction], dict[int, int]]:
        """The program as the runtime runs it -- context accesses rewritten onto the
        runtime's kernel-shaped structures, what ``bpftool prog dump xlated`` shows for
        the kernel -- and the map from original pcs to rewritten ones (cached)."""
        key = (tuple(self.insns), self.type, self.expected_attach_type)
        if self._xlated is None or self._xlated[0] != key:
            info = self.info
            if info.rules is None or info.ctx_kind != "struct":
                out = (list(self.insns), {i.pc: i.pc for i in self.insns})
            else:
                out = rewrite_map(list(self.insns), info.rules)
            self._xlated = (key, out)
        return self._xlated[1]

    def executable(self, *, evidence: bool = True) -> Executable:
        """The rewritten instructions and the evidence they run under.

        A program that requires verification is admitted first (``VerifierError`` if
        rejected).  One that does not still carries its verdict as evidence when the
        verifier accepts it and :attr:`evidence_from_verifier` allows (``evidence=False``
        skips that: the interpreter ignores evidence).
        """
        if self.requires_verification:
            ev: Any = self.admit()
        else:
            ev = self.evidence() if evidence else None
        return Executable(tuple(self.xlated()[0]), ev, self.name)

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
        if self.object is not None:
            self.object.first_use()
        return verify(self, **kw)

    def verdict(self) -> VerifierResult:
        """The verdict with BPF_PROG_LOAD's defaults, computed once per instruction list."""
        insns = tuple(self.insns)
        if self.verifier_result is None or self._verdict_of != insns:
            # the verifier reads frozen .rodata as constants, as Linux does after libbpf's
            # load: verify() freezes the object's read-only data first
            self.verifier_result = self.verify()
            self._verdict_of = insns
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
            raise VerifierError(self.name or "program", r)
        return r

    # -- running -------------------------------------------------------------------------

    def run(self, data: bytes | None = None, **kw) -> RunResult:
        """Run the program once with BPF_PROG_TEST_RUN semantics (``ebee.testrun.run``:
        ``ctx=``, ``repeat=``, ``engine=`` ...); returns a ``RunResult``.  The first run
        verifies it (unless it does not require verification): ``VerifierError`` if
        rejected."""
        if self.object is not None:
            self.object.first_use()
        try:
            return test_run(self, data, **kw)
        finally:
            sync_maps(self.maps)     # program-side writes reach pinned maps' store

    def pin(self, path: str, *, store: PinStore | None = None) -> None:
        """Pin the program: its object's bytes and name go to the pin store."""
        (store or default_store()).pin_program(path, self)

    def __repr__(self) -> str:
        return (f"<Program {self.name!r} section={self.section!r} type={self.type.name} "
                f"insns={len(self.insns)}>")
