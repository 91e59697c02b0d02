"""The verification environment (bpf_verifier_env): the program, per-insn facts, the log.

Handlers in the other modules take an :class:`Env` as Linux's take ``env``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import uapi as U
from .errors import EACCES, EFAULT, EINVAL, VerifierReject
from .insn import Insn
from .log import Log, vlog_alignment
from .state import RegState, VerifierState
from .types import BPF_ADD_CONST, NOT_INIT, SCALAR_VALUE

BPF_REG_FP = 10
SRC_OP, DST_OP, DST_OP_NO_MARK = 0, 1, 2
BPF_COMPLEXITY_LIMIT_INSNS = U.BPF_COMPLEXITY_LIMIT_INSNS
BPF_COMPLEXITY_LIMIT_JMP_SEQ = 8192
BPF_COMPLEXITY_LIMIT_STATES = 64


@dataclass
class SubprogInfo:
    start: int
    exit_idx: int = -1
    stack_depth: int = 0
    has_tail_call: bool = False
    tail_call_reachable: bool = False
    has_ld_abs: bool = False
    is_global: bool = False
    is_cb: bool = False
    is_async_cb: bool = False
    is_exception_cb: bool = False
    changes_pkt_data: bool = False
    might_sleep: bool = False
    name: str = ""
    linkage: int = 0
    func_proto: object = None   # BTF FUNC_PROTO of a global function, for argument checks
    arg_types: tuple = ()       # for global subprogs: what each argument register must be
    args_cached: bool = False   # arg_types derived (btf_prepare_func_args succeeded)
    visited: bool = False


@dataclass
class InsnAux:
    """bpf_insn_aux_data: what the verifier learns about one instruction."""
    seen: bool = False
    prune_point: bool = False
    jmp_point: bool = False
    force_checkpoint: bool = False
    calls_callback: bool = False
    live_regs_before: int = 0
    ptr_type: int | None = None         # the pointer type a ld/st insn dereferences
    map_ptr: object = None              # tail call / map helpers: map used at this call
    map_ptr_poisoned: bool = False
    map_key: int | None = None          # tail call index when constant
    map_key_poisoned: bool = False
    ctx_field_size: int = 0
    alu_state: int = 0
    alu_limit: int = 0
    scc: int = 0
    nospec: bool = False
    nospec_result: bool = False      # Spectre v4: speculative paths end after this insn
    call_imm: int = 0
    loop_inline: tuple | None = None    # bpf_loop: (fit_for_inline, callback subprog)


class Env:
    """Everything one verification needs; see ebee.verifier.core for the driver."""

    def __init__(self, insns: list[Insn], *, prog_type: int, expected_attach_type: int | None,
                 log_level: int, unpriv: bool, maps, line_info=None, func_info=None,
                 btf=None, ptinfo=None, prog_flags: int = 0, gpl: bool = True,
                 kfuncs=None, attach_btf=None, sleepable: bool = False,
                 attach_target: str | None = None):
        self.insns = insns
        self.insn_cnt = len(insns)
        self.prog_type = prog_type
        self.expected_attach_type = expected_attach_type
        self.ptinfo = ptinfo
        self.log = Log(log_level)
        self.unpriv = unpriv
        # the capabilities bpf_check() derives from the loader's credentials
        self.bpf_capable = not unpriv
        self.allow_ptr_leaks = not unpriv
        self.allow_uninit_stack = not unpriv
        self.bypass_spec_v1 = not unpriv
        self.bypass_spec_v4 = not unpriv
        self.strict_alignment = bool(prog_flags & U.BPF_F_STRICT_ALIGNMENT)
        self.any_alignment = bool(prog_flags & U.BPF_F_ANY_ALIGNMENT)
        self.test_state_freq = bool(prog_flags & U.BPF_F_TEST_STATE_FREQ)
        self.sleepable = sleepable
        self.gpl = gpl
        self.maps = maps
        self.kfuncs = kfuncs
        self.btf = btf
        self.attach_btf = attach_btf
        self.attach_target = attach_target    # tp_btf/fentry/lsm: the kernel function or event
        self._attach_proto = False            # resolved lazily (ebee.verifier.btfctx)
        self.struct_ops_member = None         # struct_ops: the member implemented (.struct_ops)
        self.line_info = line_info or []
        self.func_info = func_info or []
        self.aux = [InsnAux() for _ in range(len(insns))]
        self.subprogs: list[SubprogInfo] = []
        self.used_maps: list = []
        self.id_gen = 0
        self.cur_state: VerifierState | None = None
        self.head: list = []                 # pushed branches: (state, insn_idx, prev_idx, log_pos)
        self.explored: dict[int, list] = {}  # prune.explored_key -> StateList, newest first
        self.insn_idx = 0
        self.prev_insn_idx = -1
        self.insn_processed = 0
        self.jmps_processed = 0
        self.prev_jmps_processed = 0
        self.prev_insn_processed = 0
        self.total_states = 0
        self.peak_states = 0
        self.max_states_per_insn = 0
        self.longest_mark_read_walk = 0
        self.scratched_regs = 0
        self.scratched_stack = 0
        self.prev_log_pos = 0
        self.prev_insn_print_pos = 0
        self.prev_linfo = None
        self.linfo_at: list = []     # _find_linfo per instruction, memoised (_UNSEEN: not yet)
        self.seen_direct_write = False
        self.seen_exception = False
        self.exception_callback_subprog = 0
        self.has_tail_call = False
        self.pass_cnt = 0
        self.explore_alu_limits = False
        self.liveness = None
        self.precision = True
        self.facts = None
        self.cur_hist_ent = None
        self.cur_hist_owner = None
        self.verification_time = 0.0
        self.scc_visits: dict = {}
        self.live_states = 0
        self.last_exc = None
        self.bt_codes = None
        self.callchain_cache = None
        self.changes_pkt_data = False
        self.last_error: str | None = None

    def is_iter_next(self, insn_idx: int) -> bool:
        """The instruction is an open-coded iterator's _next() kfunc call."""
        insn = self.insns[insn_idx]
        if not insn.is_kfunc_call() or self.kfuncs is None:
            return False
        name = self.kfuncs.name(insn.imm, insn.off) if hasattr(self.kfuncs, "name") else None
        return bool(name) and name.startswith("bpf_iter_") and name.endswith("_next")

    def iter_active(self, cur) -> bool:
        """The iterator r1 points to (at an iter_next call) is still active."""
        r1 = cur.regs[1]
        if r1.type != 6:   # PTR_TO_STACK
            return False
        frame = cur.frames[r1.frameno]
        spi = (-(r1.off + r1.bounds.var_off.value) - 1) // 8
        if not 0 <= spi < len(frame.stack):
            return False
        it = frame.stack[spi].reg().iter
        return bool(it) and it[1] == "active"

    # -- logging ---------------------------------------------------------------
    def verbose(self, text: str) -> None:
        if self.log.level:
            self.log(text)

    def reject(self, msg: str, err: int = EACCES, *, newline: bool = True) -> VerifierReject:
        """Log the kernel's message and return the exception to raise.

        ``newline=False`` for the few kernel messages printed without one (the
        statistics line then continues on the same line, as in Linux's log).
        """
        if self.log.level:
            self.log(msg + "\n" if newline else msg)
        return VerifierReject(msg, err)

    def bug(self, msg: str) -> VerifierReject:
        text = f"verifier bug: {msg}"
        if self.log.level:
            self.log(text + "\n")
        return VerifierReject(text, EFAULT)

    def mark_reg_scratched(self, regno: int) -> None:
        self.scratched_regs |= 1 << regno

    def mark_stack_slot_scratched(self, spi: int) -> None:
        self.scratched_stack |= 1 << spi

    def mark_verifier_state_scratched(self) -> None:
        self.scratched_regs = -1
        self.scratched_stack = -1

    def verifier_state_scratched(self) -> bool:
        return bool(self.scratched_regs or self.scratched_stack)

    def print_verifier_state(self, state: VerifierState, frameno: int, print_all: bool) -> None:
        self.log.state(state, frameno, print_all, self.scratched_regs, self.scratched_stack)
        if not print_all:
            self.scratched_regs = 0
            self.scratched_stack = 0

    def print_insn_state(self, state: VerifierState, frameno: int) -> None:
        log = self.log
        if self.prev_log_pos and self.prev_log_pos == log.end:
            log.unwrite(1)
            log(" " * vlog_alignment(self.prev_insn_print_pos) + ";")
        else:
            log(f"{self.insn_idx}:")
        self.print_verifier_state(state, frameno, False)

    def verbose_linfo(self, insn_off: int, prefix: str) -> None:
        """Print the source line of ``insn_off`` once (BTF line_info), like the kernel."""
        if not self.log.level or not self.line_info:
            return
        memo = self.linfo_at
        if not memo:
            memo.extend([_UNSEEN] * (self.insn_cnt + 1))
        li = memo[insn_off] if 0 <= insn_off < len(memo) else _UNSEEN
        if li is _UNSEEN:
            li = _find_linfo(self.line_info, insn_off, self.insn_cnt)
            if 0 <= insn_off < len(memo):
                memo[insn_off] = li
        prev = self.prev_linfo
        if li is None or li is prev:
            return
        if prev is not None and li.file_name == prev.file_name and li.line == prev.line:
            return
        self.log(prefix)
        text = (li.text or "").lstrip()
        fname = (li.file_name or "").rsplit("/", 1)[-1]
        self.log(f"{text} @ {fname}:{li.line}\n")
        self.prev_linfo = li

    # -- registers -----------------------------------------------------------------
    def check_reg_arg(self, regno: int, t: int) -> None:
        """__check_reg_arg: reading an uninitialized register, writing r10."""
        if regno >= 11:
            raise self.reject(f"R{regno} is invalid", EINVAL)
        self.scratched_regs |= 1 << regno
        reg = self.cur_state.frames[self.cur_state.curframe].regs[regno]
        if t == SRC_OP:
            if reg.type == NOT_INIT:
                raise self.reject(f"R{regno} !read_ok")
        else:
            if regno == BPF_REG_FP:
                raise self.reject("frame pointer is read only")
            if t == DST_OP:
                reg.mark_unknown(not self.bpf_capable)

    def mark_reg_unknown(self, regs: list[RegState], regno: int) -> None:
        regs[regno].mark_unknown(not self.bpf_capable)

    def new_id(self) -> int:
        self.id_gen += 1
        return self.id_gen

    def is_pointer_value(self, reg: RegState) -> bool:
        """is_pointer_value(env, regno): a pointer the program may not leak."""
        if self.allow_ptr_leaks:
            return False
        return reg.type != 1   # SCALAR_VALUE

    def cur_regs(self) -> list[RegState]:
        s = self.cur_state
        return s.frames[s.curframe].regs

    def cur_func(self):
        s = self.cur_state
        return s.frames[s.curframe]

    def subprog_of(self, insn_idx: int) -> int:
        lo, hi = 0, len(self.subprogs) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.subprogs[mid].start <= insn_idx:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def subprog_by_start(self, start: int) -> int:
        for i, sp in enumerate(self.subprogs):
            if sp.start == start:
                return i
        return -1


def assign_scalar_id_before_mov(env: Env, src: RegState) -> None:
    """Give a scalar an id before copying it, so a later bounds check on either
    copy refines both (sync_linked_regs)."""
    if src.type != SCALAR_VALUE:
        return
    if src.id & BPF_ADD_CONST:
        src.clear_scalar_id()
    if not src.id and src.bounds.var_off.mask:
        src.id = env.new_id()


_UNSEEN = object()


def _find_linfo(linfo, insn_off: int, insn_cnt: int):
    if not linfo or insn_off >= insn_cnt:
        return None
    lo, hi = 0, len(linfo) - 1
    while lo < hi:
        m = lo + (hi - lo + 1) // 2
        if linfo[m].insn_off <= insn_off:
            lo = m
        else:
            hi = m - 1
    return linfo[lo]


@dataclass
class LineInfo:
    """One BTF line_info record as the verifier uses it."""
    insn_off: int
    file_name: str
    text: str
    line: int
    col: int = 0
