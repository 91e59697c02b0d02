"""bpf_spin_lock pairing, timers and kptr exchange (process_spin_lock & co)."""
from __future__ import annotations

from .env import Env
from .errors import EINVAL
from .graph import invalidate_non_owning_refs
from .memory import map_record
from .state import RefState, RegState
from .types import PTR_TO_MAP_VALUE, base_type


def _field(env: Env, regno: int, kind: str, what: str):
    reg = env.cur_regs()[regno]
    if reg.bounds.var_off.mask:
        raise env.reject(f"R{regno} doesn't have constant offset. {what} has to be at the "
                         f"constant offset", EINVAL)
    if reg.type != PTR_TO_MAP_VALUE or reg.map is None:
        raise env.reject(f"R{regno} is not a map value", EINVAL)
    rec = [f for f in map_record(reg.map) if f[2] == kind]
    if not rec:
        raise env.reject(f"map '{getattr(reg.map, 'name', '')}' has no valid {what}", EINVAL)
    val = reg.bounds.var_off.value + reg.off
    if rec[0][0] != val:
        raise env.reject(f"off {val} doesn't point to 'struct {kind}' that is at {rec[0][0]}",
                         EINVAL)
    return reg


def process_spin_lock(env: Env, regno: int, lock: bool) -> None:
    reg = _field(env, regno, "bpf_spin_lock", "bpf_spin_lock")
    s = env.cur_state
    if lock:
        if s.active_locks:
            raise env.reject("Locking two bpf_spin_locks are not allowed", EINVAL)
        s.refs = s.refs + [RefState(RefState.LOCK, reg.id, env.insn_idx, reg.map)]
        s.active_locks += 1
        s.active_lock_id = reg.id
        s.active_lock_ptr = reg.map
    else:
        if not s.active_locks:
            raise env.reject("bpf_spin_unlock without taking a lock", EINVAL)
        if s.active_lock_ptr is not reg.map or s.active_lock_id != reg.id:
            raise env.reject("bpf_spin_unlock of different lock", EINVAL)
        s.refs = [r for r in s.refs if not (r.type == RefState.LOCK and r.id == reg.id)]
        s.active_locks -= 1
        s.active_lock_id = 0
        s.active_lock_ptr = None
        invalidate_non_owning_refs(env)


def process_timer_helper(env: Env, regno: int, meta) -> None:
    reg = _field(env, regno, "bpf_timer", "bpf_timer")
    meta.map_ptr = reg.map
    meta.map_uid = reg.map_uid


def process_kptr_func(env: Env, regno: int, meta) -> None:
    reg = env.cur_regs()[regno]
    if reg.type != PTR_TO_MAP_VALUE:
        return
    rec = [f for f in map_record(reg.map) if f[2] in ("kptr", "kptr_ref", "percpu_kptr")]
    if not rec:
        raise env.reject(f"R{regno} has no valid kptr", EINVAL)
    meta.kptr_field = rec[0]


def reg_may_point_to_spin_lock(reg: RegState) -> bool:
    if base_type(reg.type) != PTR_TO_MAP_VALUE or reg.map is None:
        return False
    return any(k in ("bpf_spin_lock", "bpf_res_spin_lock") for (_, _, k) in map_record(reg.map))
