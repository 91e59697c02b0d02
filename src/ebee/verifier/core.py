"""The driver: bpf_check() and do_check(), the depth-first walk over program states.

One path is followed at a time; every conditional branch whose outcome is
unknown pushes the other outcome (a copy of the state) on a stack
(:mod:`.branches`), and when a path ends (exit, or a state already proven
safe) the next one is popped.  At pruning points the current state is
compared with the states already explored there (is_state_visited); an
equivalent one ends the path early.  Global functions are verified on their
own afterwards (do_check_subprogs), each once for any arguments its BTF
prototype allows.
"""
from __future__ import annotations

from .. import uapi as U
from . import alu, calls, jumps, memory
from .branches import init_func_state, pop_stack, push_stack
from .calls import check_return_code, prepare_func_exit
from .env import BPF_COMPLEXITY_LIMIT_INSNS, Env
from .errors import E2BIG, EINVAL, VerifierReject
from .globals import check_main_func_info, prepare_global_args
from .kfunc_check import check_kfunc_call
from .kfuncs import kfunc_spin_allowed
from .log import LOG_LEVEL2, format_insn
from .precision import push_jmp_history
from .prune import is_state_visited, maybe_exit_scc
from .refs import check_resource_leak
from .state import FuncState, VerifierState
from .types import PTR_TO_CTX


PROCESS_BPF_EXIT = 1


def update_branch_counts(env: Env, st: VerifierState | None) -> None:
    while st is not None:
        st.branches -= 1
        if st.branches:
            break
        if env.scc_visits:
            maybe_exit_scc(env, st)
        st = st.parent


def init_state(env: Env, subprog: int) -> VerifierState:
    st = VerifierState()
    st.branches = 1
    f = FuncState()
    init_func_state(env, f, -1, 0, subprog)
    st.frames = [f]
    st.curframe = 0
    st.in_sleepable = env.sleepable
    return st


def do_check(env: Env) -> None:
    pop_log = not (env.log.level & LOG_LEVEL2)
    insns = env.insns
    aux = env.aux
    n = env.insn_cnt
    log = env.log
    do_print_state = False
    prev_insn_idx = -1
    facts = env.facts
    while True:
        state = env.cur_state
        env.cur_hist_ent = None
        env.prev_insn_idx = prev_insn_idx
        idx = env.insn_idx
        if idx >= n:
            raise env.reject(f"invalid insn idx {idx} insn_cnt {n}", 14)
        insn = insns[idx]
        env.insn_processed += 1
        if env.insn_processed > BPF_COMPLEXITY_LIMIT_INSNS:
            raise env.reject(f"BPF program is too large. Processed {env.insn_processed} insn",
                             E2BIG)
        state.last_insn_idx = prev_insn_idx
        state.insn_idx = idx
        a = aux[idx]
        pruned = False
        if a.prune_point:
            if is_state_visited(env, idx):
                if log.level:
                    if do_print_state:
                        log(f"\nfrom {prev_insn_idx} to {idx}"
                            f"{' (speculative execution)' if env.cur_state.speculative else ''}"
                            f": safe\n")
                    else:
                        log(f"{idx}: safe\n")
                pruned = True
        if not pruned:
            state = env.cur_state
            if a.jmp_point:
                push_jmp_history(env, state, 0, None)
            if log.level:
                if log.level & LOG_LEVEL2 and do_print_state:
                    log(f"\nfrom {prev_insn_idx} to {idx}"
                        f"{' (speculative execution)' if state.speculative else ''}:")
                    env.print_verifier_state(state, state.curframe, True)
                    do_print_state = False
                if env.verifier_state_scratched():
                    env.print_insn_state(state, state.curframe)
                env.verbose_linfo(idx, "; ")
                line = f"{idx}: " + format_insn(env, insn) + "\n"
                log(line)
                env.prev_insn_print_pos = len(line) if line.isascii() else len(line.encode())
                env.prev_log_pos = log.end
            # sanitize_mark_insn_seen(): a path walked only under speculation leaves its
            # instructions unseen, so that sanitize_dead_code() still traps them
            if not state.speculative:
                a.seen = True
            prev_insn_idx = idx
            if facts is not None:
                facts.record(idx, state)
            lv = env.liveness
            if lv is not None:
                lv.begin_insn()
            if state.speculative and a.nospec:
                ret = PROCESS_BPF_EXIT
            else:
                try:
                    ret = do_check_insn(env, insn)
                except VerifierReject as e:
                    if state.speculative and e.errno in (1, 13, 22):
                        a.nospec = True
                        a.alu_state = 0
                        ret = PROCESS_BPF_EXIT
                    else:
                        raise
                if lv is not None:
                    lv.commit(idx)
                if state.speculative and a.nospec_result and ret != PROCESS_BPF_EXIT:
                    ret = PROCESS_BPF_EXIT     # the barrier after the store stops this path
                if ret == 2:      # a function exit: the caller's state is printed again
                    do_print_state = True
                    ret = 0
            if ret != PROCESS_BPF_EXIT:
                continue
        # process_bpf_exit
        env.mark_verifier_state_scratched()
        update_branch_counts(env, env.cur_state)
        nxt = pop_stack(env, pop_log)
        if nxt is None:
            break
        env.insn_idx, prev_insn_idx = nxt
        do_print_state = True


def do_check_insn(env: Env, insn) -> int:
    """One instruction; returns PROCESS_BPF_EXIT when the path ends, 2 after a
    function exit (the state is printed again), else 0."""
    cls = insn.cls
    if cls == U.BPF_ALU or cls == U.BPF_ALU64:
        alu.check_alu_op(env, insn)
    elif cls == U.BPF_LDX:
        memory.check_load_mem(env, insn, False, insn.mode == U.BPF_MEMSX, True, "ldx")
    elif cls == U.BPF_STX:
        if insn.mode == U.BPF_ATOMIC:
            memory.check_atomic(env, insn)
            env.insn_idx += 1
            return 0
        if insn.mode != U.BPF_MEM or insn.imm:
            raise env.reject("BPF_STX uses reserved fields", EINVAL)
        memory.check_store_reg(env, insn, False)
    elif cls == U.BPF_ST:
        memory.check_st(env, insn)
    elif cls == U.BPF_JMP or cls == U.BPF_JMP32:
        op = insn.op
        env.jmps_processed += 1
        if op == U.BPF_CALL:
            if insn.srcx or (insn.src != U.BPF_PSEUDO_KFUNC_CALL and insn.off) or \
                    insn.src not in (0, U.BPF_PSEUDO_CALL, U.BPF_PSEUDO_KFUNC_CALL) or \
                    insn.dst or cls == U.BPF_JMP32:
                raise env.reject("BPF_CALL uses reserved fields", EINVAL)
            s = env.cur_state
            if s.active_locks:
                if (insn.src == 0 and insn.imm != U.FuncId.spin_unlock) or \
                        (insn.src == U.BPF_PSEUDO_KFUNC_CALL and
                         (insn.off or not kfunc_spin_allowed(env, insn))):
                    raise env.reject("function calls are not allowed while holding a lock",
                                     EINVAL)
            if insn.src == U.BPF_PSEUDO_CALL:
                calls.check_func_call(env, insn)
            elif insn.src == U.BPF_PSEUDO_KFUNC_CALL:
                if check_kfunc_call(env, insn) == PROCESS_BPF_EXIT:
                    return PROCESS_BPF_EXIT
            else:
                calls.check_helper_call(env, insn)
            env.mark_reg_scratched(0)
        elif op == U.BPF_JA:
            if insn.srcx or insn.src or insn.dst or (cls == U.BPF_JMP and insn.imm) or \
                    (cls == U.BPF_JMP32 and insn.off):
                raise env.reject("BPF_JA uses reserved fields", EINVAL)
            env.insn_idx += (insn.off if cls == U.BPF_JMP else insn.imm) + 1
            return 0
        elif op == U.BPF_EXIT:
            if insn.srcx or insn.imm or insn.src or insn.dst or cls == U.BPF_JMP32:
                raise env.reject("BPF_EXIT uses reserved fields", EINVAL)
            return process_bpf_exit_full(env, False)
        else:
            jumps.check_cond_jmp_op(env, insn)
    elif cls == U.BPF_LD:
        mode = insn.mode
        if mode in (U.BPF_ABS, U.BPF_IND):
            memory.check_ld_abs(env, insn)
            if env.cur_state.curframe:
                # bpf_gen_ld_abs() ends the program with R0 = 0 when the load fails:
                # in a subprogram that is a return to the caller, explored on its own
                env.mark_reg_scratched(0)
                push_stack(env, env.insn_idx + 1, env.insn_idx, False)
                env.cur_regs()[0].mark_known(0)
                prepare_func_exit(env)
                env.insn_idx -= 1
        elif mode == U.BPF_IMM:
            memory.check_ld_imm(env, insn)
            env.insn_idx += 1
            if not env.cur_state.speculative:
                env.aux[env.insn_idx].seen = True
        else:
            raise env.reject("invalid BPF_LD mode", EINVAL)
    else:
        raise env.reject(f"unknown insn class {cls}", EINVAL)
    env.insn_idx += 1
    return 0


def process_bpf_exit_full(env: Env, exception_exit: bool) -> int:
    check_resource_leak(env, exception_exit, not env.cur_state.curframe,
                        "BPF_EXIT instruction in main prog")
    if exception_exit:
        return PROCESS_BPF_EXIT
    if env.cur_state.curframe:
        prepare_func_exit(env)
        return 2
    check_return_code(env, 0, "R0")
    return PROCESS_BPF_EXIT


def do_check_common(env: Env, subprog: int) -> None:
    env.cur_state = init_state(env, subprog)
    env.insn_idx = env.subprogs[subprog].start
    env.cur_state.first_insn_idx = env.insn_idx
    env.cur_state.last_insn_idx = -1
    regs = env.cur_state.regs
    sp = env.subprogs[subprog]
    if subprog or env.prog_type == U.ProgType.EXT:
        prepare_global_args(env, subprog, regs)
    else:
        check_main_func_info(env)
        regs[1].type = PTR_TO_CTX
        regs[1].mark_known(0)
        regs[1].type = PTR_TO_CTX
    do_check(env)
    # a verified function's log is dropped at level 1: the log keeps failures
    if env.log.level and not env.log.level & LOG_LEVEL2:
        env.log.reset(0)


def do_check_subprogs(env: Env) -> None:
    if not env.func_info:
        return
    while True:
        new = 0
        for i in range(1, len(env.subprogs)):
            sp = env.subprogs[i]
            if not sp.is_global or not sp.visited or getattr(sp, "verified", False):
                continue
            env.explored = {}
            env.scc_visits = {}
            env.head = []
            do_check_common(env, i)
            if env.log.level:
                env.log(f"Func#{i} ('{sp.name}') is safe for any args that match its prototype\n")
            sp.verified = True
            new += 1
        if not new:
            break


def print_verification_stats(env: Env) -> None:
    if env.log.level & 4:
        env.log(f"verification time {int(env.verification_time * 1e6)} usec\n")
        env.log("stack depth " + "+".join(str(sp.stack_depth) for sp in env.subprogs) + "\n")
    env.log(f"processed {env.insn_processed} insns (limit {BPF_COMPLEXITY_LIMIT_INSNS}) "
            f"max_states_per_insn {env.max_states_per_insn} total_states {env.total_states} "
            f"peak_states {env.peak_states} mark_read {env.longest_mark_read_walk}\n")
