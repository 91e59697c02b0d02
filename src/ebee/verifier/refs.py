"""Reference tracking: objects a program acquired and must release (acquire_reference,
release_reference, check_reference_leak and check_resource_leak of kernel/bpf/verifier.c).

A reference is a ``RefState`` of the current state with an id; every register
holding the object carries that id as ``ref_obj_id``, and releasing it
invalidates them all.  A path may not end while it holds a reference, a lock
or an RCU/preemption/IRQ section.
"""
from __future__ import annotations

from .. import uapi as U
from .env import Env
from .errors import EINVAL
from .state import RefState, RegState, VerifierState, for_each_reg


def acquire_reference(env: Env, insn_idx: int) -> int:
    s = env.cur_state
    id_ = env.new_id()
    s.refs = s.refs + [RefState(RefState.REF_PTR, id_, insn_idx)]
    return id_


def release_reference_nomark(vstate: VerifierState, ref_obj_id: int) -> bool:
    refs = vstate.refs
    for i, r in enumerate(refs):
        if r.type == RefState.REF_PTR and r.id == ref_obj_id:
            new = refs[:]
            last = len(new) - 1
            if last and i != last:
                new[i] = new[last]
            new.pop()
            vstate.refs = new
            return True
    return False


def mark_reg_invalid(env: Env, reg: RegState) -> None:
    if not env.allow_ptr_leaks:
        reg.mark_not_init(not env.bpf_capable)
    else:
        reg.mark_unknown(not env.bpf_capable)


def release_reference(env: Env, ref_obj_id: int) -> bool:
    vs = env.cur_state
    if not release_reference_nomark(vs, ref_obj_id):
        return False

    def fn(frame, reg):
        if reg.ref_obj_id == ref_obj_id:
            mark_reg_invalid(env, reg)
            return True
        return False
    for_each_reg(vs, fn)
    return True


def find_reference_state(vstate: VerifierState, ptr_id: int) -> bool:
    return any(r.type == RefState.REF_PTR and r.id == ptr_id for r in vstate.refs)


def check_reference_leak(env: Env, exception_exit: bool) -> bool:
    s = env.cur_state
    if not exception_exit and s.frames[s.curframe].frameno:
        return False
    leaking = False
    r0 = s.regs[0]
    for r in s.refs:
        if r.type != RefState.REF_PTR:
            continue
        if env.prog_type == U.ProgType.STRUCT_OPS and not exception_exit and \
                r0.ref_obj_id == r.id:
            continue
        env.verbose(f"Unreleased reference id={r.id} alloc_insn={r.insn_idx}\n")
        leaking = True
    return leaking


def check_resource_leak(env: Env, exception_exit: bool, check_lock: bool, prefix: str) -> None:
    s = env.cur_state
    if check_lock and s.active_locks:
        raise env.reject(f"{prefix} cannot be used inside bpf_spin_lock-ed region", EINVAL)
    if check_reference_leak(env, exception_exit):
        raise env.reject(f"{prefix} would lead to reference leak", EINVAL)
    if check_lock and s.active_irq_id:
        raise env.reject(f"{prefix} cannot be used inside bpf_local_irq_save-ed region", EINVAL)
    if check_lock and s.active_rcu_lock:
        raise env.reject(f"{prefix} cannot be used inside bpf_rcu_read_lock-ed region", EINVAL)
    if check_lock and s.active_preempt_locks:
        raise env.reject(f"{prefix} cannot be used inside bpf_preempt_disable-ed region",
                         EINVAL)
