"""Open-coded iterators: the bpf_iter_<type>_new/_next/_destroy kfuncs (process_iter_arg,
process_iter_next_call of kernel/bpf/verifier.c).

An iterator lives in the stack slots its struct covers (``struct bpf_iter_num``: one,
``struct bpf_iter_bits``: two), marked STACK_ITER; the first slot holds a reference
(``_new`` acquires it, ``_destroy`` releases it, a path that exits with it leaks).
``_next`` forks the path: the current one sees the iterator drained and R0 = NULL,
the queued one an active iterator one level deeper and R0 non-NULL; the loop
converges where ``is_state_visited`` finds an equal state at the ``_next`` call
with the iterator still active.

Taken here are the iterator kfuncs whose only other arguments are scalars or
``__ign`` ones (``bpf_iter_num_*``, ``bpf_iter_bits_*``): the iterators over kernel
objects (tasks, css, vmas, ...) take trusted pointers and need RCU sections and are
refused as before.
"""
from __future__ import annotations

from .. import uapi as U
from ..btf import BTF
from ..protos.kfuncs import KArg, KfuncProto, KRet
from .branches import push_stack
from .env import DST_OP_NO_MARK, Env
from .errors import EINVAL, EPROTO
from .jumps import mark_ptr_not_null_reg
from .memory import check_mem_access
from .prune import find_prev_entry, widen_imprecise_scalars
from .refs import acquire_reference, release_reference
from .state import RegState, StackSlot
from .types import (BPF_REG_SIZE, MEM_RDONLY, PTR_MAYBE_NULL, PTR_TO_MEM, PTR_TO_STACK,
                    PTR_UNTRUSTED, SCALAR_VALUE, STACK_INVALID, STACK_ITER)

BPF_WRITE = 2
_ITER_FLAGS = U.KF_ITER_NEW | U.KF_ITER_NEXT | U.KF_ITER_DESTROY


def _iter_struct(e: KfuncProto):
    p = e.params[0]
    name = (p.pointee or "").removeprefix("const ").removeprefix("struct ").strip()
    try:
        return BTF.load_vmlinux().find(name, "struct")
    except Exception:
        return None


def handles_iter(e: KfuncProto) -> bool:
    """An iterator kfunc whose every argument after the iterator is a scalar or ignored."""
    if not e.flags_known or not e.flags & _ITER_FLAGS or \
            e.flags & ~(_ITER_FLAGS | U.KF_RET_NULL):
        return False
    if not e.args or e.args[0] is not KArg.PTR_TO_ITER or \
            any(k not in (KArg.SCALAR, KArg.IGNORED) for k in e.args[1:]):
        return False
    t = _iter_struct(e)
    if t is None or not t.name.startswith("bpf_iter_") or t.size % BPF_REG_SIZE or not t.size:
        return False
    if e.flags & U.KF_ITER_NEXT:
        return e.ret is KRet.PTR_TO_MEM and e.ret_type in ("int *", "unsigned int *")
    return e.ret in (KRet.VOID, KRet.INTEGER)


def _get_spi(env: Env, reg: RegState, nr_slots: int) -> int | None:
    """stack_slot_obj_get_spi: the first slot's index; None (after the kernel's message)
    for a variable or misaligned offset; -1 for slots beyond the allocated stack."""
    vo = reg.bounds.var_off
    if vo.mask:
        env.verbose("iter has to be at a constant offset\n")
        return None
    off = reg.off + vo.value
    if off % BPF_REG_SIZE:
        env.verbose(f"cannot pass in iter at an offset={off}\n")
        return None
    spi = (-off - 1) // BPF_REG_SIZE
    if spi + 1 < nr_slots:
        env.verbose(f"cannot pass in iter at an offset={off}\n")
        return None
    frame = env.cur_state.frames[reg.frameno]
    if not (spi - nr_slots + 1 >= 0 and spi < frame.allocated_stack // BPF_REG_SIZE):
        return -1
    return spi


def _valid_init(frame, spi: int, nr_slots: int, tname: str) -> int:
    for i in range(nr_slots):
        slot = frame.stack[spi - i]
        r = slot.reg() if slot is not None else None
        if slot is None or r is None or any(c != STACK_ITER for c in slot.slot_type):
            return EINVAL
        if r.type & PTR_UNTRUSTED:
            return EPROTO
        if (i == 0) != bool(r.ref_obj_id):
            return EINVAL
        if not r.iter or r.iter[0] != tname:
            return EINVAL
    return 0


def _set_iter(frame, spi: int, state: str, depth_inc: int) -> None:
    slot = frame.stack[spi]
    r = slot.reg().copy()
    name, _, depth = r.iter
    r.iter = (name, state, depth + depth_inc)
    frame.stack[spi] = StackSlot(slot.slot_type, r)


def check_iter_kfunc_call(env: Env, insn, e: KfuncProto) -> None:
    regs = env.cur_regs()
    insn_idx = env.insn_idx
    t = _iter_struct(e)
    tname = t.name.removeprefix("bpf_iter_")
    nr_slots = t.size // BPF_REG_SIZE
    reg = regs[1]
    if reg.type != PTR_TO_STACK:
        raise env.reject("arg#0 expected pointer to an iterator on stack", EINVAL)
    frame = env.cur_state.frames[reg.frameno]
    lv = env.liveness
    if e.iter_new:
        spi = _get_spi(env, reg, nr_slots)
        if spi is None or (spi >= 0 and any(
                frame.stack[spi - i] is not None and
                STACK_ITER in frame.stack[spi - i].slot_type for i in range(nr_slots))):
            raise env.reject(f"expected uninitialized iter_{tname} as arg #0", EINVAL)
        for off in range(0, nr_slots * BPF_REG_SIZE, BPF_REG_SIZE):
            check_mem_access(env, insn_idx, 1, off, U.BPF_DW, BPF_WRITE, -1, False, False)
        spi = _get_spi(env, reg, nr_slots)
        ref = acquire_reference(env, insn_idx)
        for i in range(nr_slots):
            r = RegState(PTR_TO_STACK)
            r.mark_known(0)
            r.type = PTR_TO_STACK        # Linux has no register type of its own for it
            r.ref_obj_id = ref if i == 0 else 0
            r.iter = (tname, "active", 0)
            frame.stack[spi - i] = StackSlot(STACK_ITER * BPF_REG_SIZE, r)
            env.mark_stack_slot_scratched(spi - i)
        iter_ref = 0
    else:
        spi = _get_spi(env, reg, nr_slots)
        err = EINVAL if spi is None or spi < 0 else _valid_init(frame, spi, nr_slots, tname)
        if err == EPROTO:
            raise env.reject(f"expected an RCU CS when using {e.name}", EPROTO)
        if err:
            raise env.reject(f"expected an initialized iter_{tname} as arg #0", EINVAL)
        if lv is not None:
            for i in range(nr_slots):
                lv.mark_read(env, reg.frameno, spi - i)
        iter_ref = frame.stack[spi].reg().ref_obj_id
        if e.iter_destroy:
            release_reference(env, iter_ref)
            for i in range(nr_slots):
                frame.stack[spi - i] = StackSlot(STACK_INVALID * BPF_REG_SIZE, None)
                env.mark_stack_slot_scratched(spi - i)
    for i, k in enumerate(e.args[1:], start=2):
        if k is KArg.SCALAR and regs[i].type != SCALAR_VALUE:
            raise env.reject(f"R{i} is not a scalar", EINVAL)
    for r in range(6):
        regs[r].mark_not_init(not env.bpf_capable)
        env.check_reg_arg(r, DST_OP_NO_MARK)
    r0 = regs[0]
    if e.ret is KRet.VOID:
        r0.type = 0
        return
    if e.ret is KRet.INTEGER:
        env.mark_reg_unknown(regs, 0)
        return
    r0.mark_unknown()
    r0.mark_known(0)
    r0.type = PTR_TO_MEM | MEM_RDONLY
    r0.mem_size = 4
    r0.ref_obj_id = iter_ref
    if e.ret_null:
        r0.type |= PTR_MAYBE_NULL
        r0.id = env.new_id()
    _iter_next(env, insn_idx, reg.frameno, spi)


def _iter_next(env: Env, insn_idx: int, frameno: int, spi: int) -> None:
    """process_iter_next_call."""
    cur = env.cur_state
    it = cur.frames[frameno].stack[spi].reg()
    if it.iter[1] == "active":
        prev = find_prev_entry(env, cur.parent, insn_idx)
        queued = push_stack(env, insn_idx + 1, insn_idx, False)
        _set_iter(queued.frames[frameno], spi, "active", 1)
        if prev is not None:
            widen_imprecise_scalars(env, prev, queued)
        mark_ptr_not_null_reg(queued.frames[queued.curframe].regs[0])
    _set_iter(cur.frames[frameno], spi, "drained", 0)
    cur.frames[cur.curframe].regs[0].mark_const_scalar(0)
