"""The public face of the verifier: :func:`verify` and :class:`VerifierResult`."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Sequence

from .. import uapi as U
from ..errors import LoadError
from ..idr import map_idr
from ..progtypes import get as pt_get
from . import cfg
from .bounds import Bounds
from .calls import check_tail_call_fixups
from .core import do_check_common, do_check_subprogs, print_verification_stats
from .env import Env, LineInfo
from .errors import EINVAL, E2BIG, VerifierReject
from .globals import check_btf_func, check_max_stack_depth, func_info_records
from .inputs import MapDescription, VerifiableProgram
from .insn import Insn, from_bytes, from_instructions
from .kfuncs import default_kfuncs
from .liveness import StackLiveness
from .struct_ops import check_struct_ops_btf_id
from .types import PTR_MAYBE_NULL, RegType, base_type


@dataclass(frozen=True)
class RegFact:
    """What the verifier proved about one register before one instruction, over
    every path that reached it: its type (kernel name, e.g. ``PTR_TO_STACK``;
    ``None`` if paths disagree), its fixed offset (pointers; ``None`` if paths
    disagree) and the hull of its variable part (scalar value or pointer offset)."""
    type: str | None
    off: int | None
    bounds: Bounds

    @property
    def umin(self) -> int:
        return self.bounds.umin_value

    @property
    def umax(self) -> int:
        return self.bounds.umax_value

    @property
    def smin(self) -> int:
        return self.bounds.smin_value

    @property
    def smax(self) -> int:
        return self.bounds.smax_value

    @property
    def const(self) -> int | None:
        return self.bounds.var_off.value if not self.bounds.var_off.mask else None


class Facts:
    """Per-instruction register facts (``facts[pc] -> {regno: RegFact}``) for the
    registers each instruction reads.  Instructions the verifier never reached
    (dead code is rejected, so only pruned-away duplicates) have no entry."""

    def __init__(self, insns: Sequence[Insn]):
        self._insns = insns
        self._facts: dict[int, dict[int, tuple]] = {}
        self._uses: list = [None] * len(insns)    # _operands per instruction, memoised

    def record(self, idx: int, state) -> None:
        regs = state.frames[state.curframe].regs
        use = self._uses[idx]
        if use is None:
            use = self._uses[idx] = _operands(self._insns[idx])
        slot = self._facts.get(idx)
        if slot is None:
            self._facts[idx] = slot = {}
        for r in use:
            if r >= len(regs):      # an invalid register: check_reg_arg rejects the insn
                continue
            reg = regs[r]
            cur = (reg.type, reg.off, reg.bounds)
            old = slot.get(r)
            if old is None:
                slot[r] = cur
            elif old != cur:
                slot[r] = _join(old, cur)

    def __getitem__(self, idx: int) -> dict[int, RegFact]:
        out = {}
        for r, (t, off, b) in self._facts.get(idx, {}).items():
            if t is None:
                name = None
            else:
                name = RegType(base_type(t)).name
                if t & PTR_MAYBE_NULL:
                    name += "_OR_NULL"       # not yet null-checked on some path
            out[r] = RegFact(name, off, b)
        return out

    def __contains__(self, idx: int) -> bool:
        return idx in self._facts

    def __len__(self) -> int:
        return len(self._facts)

    def items(self):
        for idx in sorted(self._facts):
            yield idx, self[idx]


def _operands(insn: Insn) -> tuple[int, ...]:
    cls = insn.cls
    if cls in (U.BPF_ALU, U.BPF_ALU64):
        if insn.op == U.BPF_MOV:
            return (insn.src,) if insn.srcx else ()
        return (insn.dst, insn.src) if insn.srcx else (insn.dst,)
    if cls == U.BPF_LDX:
        return (insn.src,)
    if cls == U.BPF_ST:
        return (insn.dst,)
    if cls == U.BPF_STX:
        return (insn.dst, insn.src)
    if cls in (U.BPF_JMP, U.BPF_JMP32):
        op = insn.op
        if op == U.BPF_CALL:
            return (1, 2, 3, 4, 5)
        if op == U.BPF_EXIT:
            return (0,)
        if op in (U.BPF_JA, U.BPF_JCOND):
            return ()
        return (insn.dst, insn.src) if insn.srcx else (insn.dst,)
    if cls == U.BPF_LD and insn.mode == U.BPF_IND:
        return (insn.src,)
    return ()


def _join(a: tuple, b: tuple) -> tuple:
    ta, oa, ba = a
    tb, ob, bb = b
    t = ta if ta == tb else None
    off = oa if oa == ob else None
    j = ba.copy()
    j.var_off = ba.var_off.union(bb.var_off)
    j.smin_value = min(ba.smin_value, bb.smin_value)
    j.smax_value = max(ba.smax_value, bb.smax_value)
    j.umin_value = min(ba.umin_value, bb.umin_value)
    j.umax_value = max(ba.umax_value, bb.umax_value)
    j.s32_min_value = min(ba.s32_min_value, bb.s32_min_value)
    j.s32_max_value = max(ba.s32_max_value, bb.s32_max_value)
    j.u32_min_value = min(ba.u32_min_value, bb.u32_min_value)
    j.u32_max_value = max(ba.u32_max_value, bb.u32_max_value)
    return (t, off, j)


@dataclass
class VerifierResult:
    """The verdict, in Linux's terms.

    ``error`` is the last line of the log as Linux prints it (None when
    accepted); ``errno`` the error bpf(BPF_PROG_LOAD) would return.
    ``states`` is the number of states stored for pruning (total_states).
    """
    accepted: bool
    log: str
    error: str | None
    insns_processed: int
    states: int
    facts: Facts | None = None
    errno: int = 0
    peak_states: int = 0
    max_states_per_insn: int = 0
    stack_depth: tuple[int, ...] = ()
    duration: float = 0.0
    ctx_insns: tuple[int, ...] = ()
    #: slots of an accepted program no path reached (bpf_insn_aux_data.seen unset): the
    #: code the kernel removes, or traps for unprivileged loads, after verification
    dead_insns: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return self.accepted

    @property
    def stats_line(self) -> str:
        return (f"processed {self.insns_processed} insns (limit 1000000) max_states_per_insn "
                f"{self.max_states_per_insn} total_states {self.states} peak_states "
                f"{self.peak_states} mark_read 0")

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "error": self.error,
                "insns_processed": self.insns_processed, "log": self.log}


def verify(prog_or_insns, *, prog_type: U.ProgType | int | None = None,
           expected_attach_type: int | None = None, log_level: int = 0,
           unpriv: bool = False, maps=None, license: str | None = None,
           prog_flags: int = 0, btf=None, func_info=None, line_info=None,
           kfuncs=None, sleepable: bool | None = None, facts: bool = True,
           attach_target: str | None = None) -> VerifierResult:
    """Verify a program as bpf(BPF_PROG_LOAD) would.

    ``prog_or_insns`` is a :class:`~.inputs.VerifiableProgram` (``ebee.Program``: its
    type, license and BTF func/line info are used), a list of
    :class:`~ebee.isa.Instruction`, or raw instruction bytes.  ``maps`` resolves the
    number an ``lddw`` carries (a file descriptor for Linux, a map id in ebee) to a
    :class:`~.inputs.MapDescription` -- a dict or a callable; by default ebee's live
    maps (``ebee.idr.map_idr``).  ``unpriv`` verifies as an unprivileged user would be
    (no CAP_BPF/CAP_PERFMON).  Log levels are Linux's (1: the failing path,
    2: everything, +4: statistics).
    """

    prog: VerifiableProgram | None = None
    if isinstance(prog_or_insns, (bytes, bytearray, memoryview)):
        insns = from_bytes(bytes(prog_or_insns))
    elif isinstance(prog_or_insns, (list, tuple)):
        insns = from_instructions(list(prog_or_insns))
    else:
        prog = prog_or_insns
        insns = from_instructions(list(prog.insns))
        if prog_type is None:
            prog_type = prog.type
        if expected_attach_type is None:
            expected_attach_type = prog.expected_attach_type
        if license is None:
            license = prog.license
        if btf is None:
            btf = prog.btf
        if line_info is None:
            line_info = [LineInfo(li.insn, li.file_name or "", li.line_text or "", li.line, li.col)
                         for li in prog.line_info]
        if func_info is None:
            func_info = func_info_records(prog.btf, prog.func_info)
        if sleepable is None:
            sleepable = prog.sleepable
        if attach_target is None:
            attach_target = prog.attach_target
    if prog_type is None:
        prog_type = U.ProgType.SOCKET_FILTER
    prog_type = U.ProgType(int(prog_type))
    if maps is None:
        maps = map_idr.get
    if kfuncs is None:
        kfuncs = default_kfuncs(btf)
    try:
        ptinfo = pt_get(prog_type, expected_attach_type)
    except Exception:
        ptinfo = None
    gpl = _license_is_gpl_compatible(license if license is not None else "GPL")
    env = Env(insns, prog_type=prog_type, expected_attach_type=expected_attach_type,
              log_level=log_level, unpriv=unpriv, maps=maps, line_info=line_info,
              func_info=func_info, btf=btf, ptinfo=ptinfo, prog_flags=prog_flags, gpl=gpl,
              kfuncs=kfuncs, sleepable=bool(sleepable), attach_target=attach_target)
    if facts:
        env.facts = Facts(insns)
    t0 = time.perf_counter()
    error = None
    errno_ = 0
    n = len(insns)
    limit = U.BPF_COMPLEXITY_LIMIT_INSNS if not unpriv else U.BPF_MAXINSNS
    try:
        if n == 0:
            raise VerifierReject("empty program", EINVAL)
        if n > limit:
            raise VerifierReject(f"program of {n} instructions is too large (limit {limit})",
                                 E2BIG)
        cfg.add_subprogs(env)
        cfg.check_subprogs(env)
        check_btf_func(env)
        env.struct_ops_member = check_struct_ops_btf_id(env)
        cfg.resolve_pseudo_ldimm64(env)
        cfg.check_cfg(env)
        cfg.compute_scc(env)
        cfg.compute_live_registers(env)
        env.liveness = StackLiveness(env)
        do_check_common(env, 0)
        do_check_subprogs(env)
        check_max_stack_depth(env)
        check_tail_call_fixups(env)
    except VerifierReject as e:
        error = e.msg.splitlines()[-1] if e.msg else ""
        errno_ = e.errno
    except RecursionError:
        error = "program too complex for ebee's verifier"
        errno_ = E2BIG
    env.verification_time = time.perf_counter() - t0
    accepted = error is None
    if env.log.level and n and n <= limit:
        print_verification_stats(env)
    return VerifierResult(accepted=accepted, log=env.log.getvalue(), error=error,
                          insns_processed=env.insn_processed, states=env.total_states,
                          facts=env.facts if accepted else None, errno=errno_,
                          peak_states=env.peak_states,
                          max_states_per_insn=env.max_states_per_insn,
                          stack_depth=tuple(sp.stack_depth for sp in env.subprogs),
                          duration=env.verification_time,
                          ctx_insns=tuple(i for i, a in enumerate(env.aux)
                                          if a.ptr_type is not None and a.ptr_type & 0xFF == 2
                                          and insns[i].cls in (1, 2, 3)),
                          dead_insns=tuple(i for i, a in enumerate(env.aux) if not a.seen)
                          if accepted else ())


def _license_is_gpl_compatible(lic: str) -> bool:
    """license_is_gpl_compatible() of include/linux/license.h."""
    return lic in ("GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL",
                   "Dual MPL/GPL")


_LOG_INSN = re.compile(r"^(\d+): \([0-9a-f]{2}\) ")
_LOG_SOURCE = re.compile(r"^; (.*?)(?: @ (\S+:\d+))?$")


class VerifierError(LoadError):
    """A program the verifier rejected while its object was loaded (libbpf's
    "-- BEGIN PROG LOAD LOG --" moment); ``result`` holds the verdict and log.

    ``str()`` is the verdict, then -- when the log has them -- the failing instruction,
    the source line it came from and the log's last lines (as cilium/ebpf prints the
    tail), so a failing test shows why; ``summary`` is the verdict alone, one line."""

    TAIL = 12

    def __init__(self, prog_name: str, result: VerifierResult):
        self.prog_name = prog_name
        self.result = result
        self.log = result.log
        self.summary = f"program '{prog_name}' rejected by the verifier: {result.error}"
        self.insn, self.source = _failing_insn(result.log)
        super().__init__(self.summary)

    def __str__(self) -> str:
        lines = [self.summary]
        if self.insn is not None:
            lines.append(f"  at insn {self.insn}")
        if self.source is not None:
            lines.append(f"  source: {self.source}")
        tail = [t for t in self.log.rstrip("\n").splitlines()][-self.TAIL:]
        if tail:
            lines.append(f"  verifier log (last {len(tail)} lines):")
            lines += [f"    {t}" for t in tail]
        return "\n".join(lines)


def _failing_insn(log: str) -> tuple[str | None, str | None]:
    """The last instruction the log shows being checked, and the source line before it."""
    insn = source = None
    pending = None
    for line in log.splitlines():
        m = _LOG_SOURCE.match(line)
        if m:
            pending = f"{m.group(1).strip()} ({m.group(2)})" if m.group(2) else m.group(1).strip()
            continue
        if _LOG_INSN.match(line):
            insn = line.split(";", 1)[0].rstrip()
            source = pending
    return insn, source
