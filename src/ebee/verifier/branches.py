"""The paths still to explore: Linux's ``env->head`` stack (push_stack, pop_stack).

A conditional jump whose outcome is unknown pushes a copy of the state for the
other edge; an async callback (a timer's) pushes a fresh state of its own.
When a path ends the driver (:mod:`.core`) pops the next one.
"""
from __future__ import annotations

from .env import BPF_COMPLEXITY_LIMIT_JMP_SEQ, Env
from .errors import E2BIG
from .state import FuncState, VerifierState
from .types import PTR_TO_STACK

def push_stack(env: Env, insn_idx: int, prev_insn_idx: int, speculative: bool) -> VerifierState:
    cur = env.cur_state
    st = cur.copy()
    st.speculative = st.speculative or speculative
    env.head.append((st, insn_idx, prev_insn_idx, env.log.end))
    if len(env.head) > BPF_COMPLEXITY_LIMIT_JMP_SEQ:
        raise env.reject(f"The sequence of {len(env.head)} jumps is too complex.", E2BIG)
    if st.parent is not None:
        st.parent.branches += 1
    return st


def push_async_cb(env: Env, insn_idx: int, prev_insn_idx: int, subprog: int) -> VerifierState:
    """A new verification root for an async callback (timer), explored later."""
    st = VerifierState()
    st.branches = 1
    st.insn_idx = insn_idx
    st.first_insn_idx = insn_idx
    f = FuncState()
    init_func_state(env, f, prev_insn_idx, 0, subprog)
    st.frames = [f]
    st.curframe = 0
    env.head.append((st, insn_idx, prev_insn_idx, env.log.end))
    if len(env.head) > BPF_COMPLEXITY_LIMIT_JMP_SEQ:
        raise env.reject(f"The sequence of {len(env.head)} jumps is too complex.", E2BIG)
    f.in_async_callback_fn = True
    return st


def pop_stack(env: Env, pop_log: bool) -> tuple[int, int] | None:
    if not env.head:
        return None
    st, insn_idx, prev_idx, log_pos = env.head.pop()
    env.cur_state = st
    if pop_log:
        env.log.reset(log_pos)
    return insn_idx, prev_idx


def init_func_state(env: Env, frame: FuncState, callsite: int, frameno: int,
                    subprogno: int) -> None:
    frame.callsite = callsite
    frame.frameno = frameno
    frame.subprogno = subprogno
    frame.callback_ret_range = (0, 0)
    for r in frame.regs:
        r.mark_not_init(not env.bpf_capable)
    fp = frame.regs[10]
    fp.type = PTR_TO_STACK
    fp.mark_known(0)
    fp.frameno = frameno
    env.mark_verifier_state_scratched()
