"""check_kfunc_call for kfuncs on kernel objects: scalars in, kernel structs in and out.

The kfuncs whose prototype (``ebee.protos.kfuncs``) takes only scalars and
pointers to kernel structs and returns nothing, a scalar or a pointer to a
kernel struct -- ``bpf_task_from_pid``, ``bpf_task_acquire``/``release``,
``bpf_cgroup_from_id``, ``bpf_cpumask_create``/``set_cpu``/``test_cpu`` and
the like -- are checked here as ``check_kfunc_args``/``check_kfunc_call``
check them: the pointer arguments of a kfunc that takes trusted or RCU
arguments (every KF_RELEASE one does) must be non-NULL, trusted (referenced
or PTR_TRUSTED) or RCU, and point to the struct the prototype names, or to a
struct that holds it at offset 0 (``btf_struct_ids_match``; exactly the struct
for a release); KF_ACQUIRE returns a reference, KF_RET_NULL a pointer to
check, KF_RELEASE drops the argument's reference.  ``bpf_cast_to_kern_ctx``
and ``bpf_rdonly_cast`` return the kernel's own view of the context and a
read-only untrusted pointer of the type id given.

Only kfuncs whose every flag is modelled here are taken (:func:`handles`):
not sleepable, destructive, RCU-protected or iterator ones, and none that a
kfunc filter may refuse for the program's hook.  Arguments of kfuncs without
KF_TRUSTED_ARGS/KF_RCU/KF_RELEASE are refused, since Linux accepts any
legacy pointer there and ebee does not model which.
"""
from __future__ import annotations

from .. import uapi as U
from ..btf import BTF
from ..protos.kfuncs import HOOK_OF_PROG_TYPE, KArg, KfuncProto, KRet
from ..uapi import ProgType
from .btfids import btf_struct_ids_match
from .calls import check_func_arg_reg_off
from .env import DST_OP_NO_MARK, Env
from .errors import EACCES, EINVAL
from .memory import check_ptr_off_reg, register_is_null
from .precision import mark_chain_precision
from .refs import acquire_reference, release_reference
from .types import (MEM_ALLOC, MEM_RCU, NON_OWN_REF, PTR_MAYBE_NULL, PTR_TO_BTF_ID, PTR_TO_CTX,
                    PTR_TRUSTED, PTR_UNTRUSTED, SCALAR_VALUE, base_type, reg_type_str)

_TRUSTED_MODIFIERS = MEM_ALLOC | PTR_TRUSTED | NON_OWN_REF
_SIMPLE_ARGS = {KArg.SCALAR, KArg.PTR_TO_BTF_ID}
_CASTS = {"bpf_cast_to_kern_ctx", "bpf_rdonly_cast"}
#: kfuncs the verifier gives treatment of their own beyond their prototype (the kernel's
#: special_kfunc_list and the 6.18 additions: RCU/preemption/IRQ sections, exceptions,
#: dynptr slices, callbacks...): a prototype check alone would accept them unchecked
_SPECIAL = frozenset({
    "bpf_rcu_read_lock", "bpf_rcu_read_unlock", "bpf_preempt_disable", "bpf_preempt_enable",
    "bpf_local_irq_save", "bpf_local_irq_restore", "bpf_throw", "bpf_dynptr_from_skb",
    "bpf_dynptr_from_xdp", "bpf_dynptr_slice", "bpf_dynptr_slice_rdwr", "bpf_dynptr_clone",
    "bpf_wq_set_callback_impl", "bpf_session_cookie", "bpf_get_kmem_cache",
    "bpf_iter_css_task_new", "bpf_percpu_obj_new_impl", "bpf_percpu_obj_drop_impl",
    "bpf_res_spin_lock", "bpf_res_spin_unlock", "bpf_res_spin_lock_irqsave",
    "bpf_res_spin_unlock_irqrestore", "bpf_set_dentry_xattr", "bpf_remove_dentry_xattr",
    "bpf_task_work_schedule_signal", "bpf_task_work_schedule_resume"})
_FLAGS = U.KF_ACQUIRE | U.KF_RELEASE | U.KF_RET_NULL | U.KF_TRUSTED_ARGS | U.KF_RCU


def _vmlinux() -> BTF:
    return BTF.load_vmlinux()


def _struct_id(ctype: str | None) -> int | None:
    """The vmlinux id of the struct a parameter or return type points to."""
    if not ctype:
        return None
    name = ctype.removeprefix("const ").strip()
    if not name.startswith("struct ") or name.endswith("*"):
        return None
    try:
        return _vmlinux().find(name.removeprefix("struct ").strip(), "struct").id
    except Exception:
        return None


def handles(e: KfuncProto, prog_type: int) -> bool:
    """Whether this module checks every aspect of ``e`` that Linux checks."""
    if not e.flags_known or e.flags & ~_FLAGS or e.name in _SPECIAL:
        return False
    hook = HOOK_OF_PROG_TYPE.get(ProgType(prog_type))
    if any(h == hook or h == "common" for h, _ in e.filters):
        return False
    if e.name in _CASTS:
        return True
    if any(k not in _SIMPLE_ARGS for k in e.args) or len(e.args) > 5:
        return False
    for p in e.params:
        if p.kind is KArg.PTR_TO_BTF_ID and (p.suffix or _struct_id(p.pointee) is None):
            return False
    if e.ret is KRet.PTR_TO_BTF_ID:
        return _struct_id(e.ret_type.removesuffix("*").strip()) is not None
    return e.ret in (KRet.VOID, KRet.INTEGER)


def _unsafe_modifiers(t: int) -> bool:
    return bool((t & ~0xFF) & ~_TRUSTED_MODIFIERS)


def _is_trusted(reg) -> bool:
    if reg.ref_obj_id:
        return True
    return bool(reg.type & _TRUSTED_MODIFIERS) and not _unsafe_modifiers(reg.type)


def _nocast_alias(a: str, b: str) -> bool:
    """btf_type_ids_nocast_alias: ``nf_conn`` and ``nf_conn___init`` share an essential
    name, so one is never taken for the other by walking into its first member."""
    return a.rsplit("___", 1)[0] == b.rsplit("___", 1)[0]


def _struct_name(btf: BTF, tid: int) -> str:
    try:
        return btf.resolve(tid).name or ""
    except Exception:
        return ""


def _kern_ctx_id(env: Env) -> int | None:
    """get_kern_ctx_btf_id: the kernel's context struct of the program type, as
    vmlinux's ``struct bpf_ctx_convert`` pairs them."""
    try:
        name = f"BPF_PROG_TYPE_{ProgType(env.prog_type).name}_kern"
        conv = _vmlinux().find("bpf_ctx_convert", "struct")
        for m in conv.members:
            if m.name == name:
                return _vmlinux().resolve(m.type_id).id
    except Exception:
        return None
    return None


def check_btf_kfunc_call(env: Env, insn, e: KfuncProto) -> None:
    name = e.name
    regs = env.cur_regs()
    trusted = bool(e.flags & (U.KF_TRUSTED_ARGS | U.KF_RELEASE))
    rcu = bool(e.flags & U.KF_RCU)
    vml = _vmlinux()
    release_regno = 0
    ref_obj_id = 0
    const_arg = None
    for i, p in enumerate(e.params):
        regno = 1 + i
        if p.kind is KArg.IGNORED:
            continue
        env.check_reg_arg(regno, 0)
        reg = regs[regno]
        if p.kind in (KArg.SCALAR, KArg.SCALAR_CONST):
            if reg.type != SCALAR_VALUE:
                raise env.reject(f"R{regno} is not a scalar", EINVAL)
            if p.kind is KArg.SCALAR_CONST:
                if reg.bounds.var_off.mask:
                    raise env.reject(f"R{regno} must be a known constant", EINVAL)
                mark_chain_precision(env, regno)
                const_arg = reg.bounds.var_off.value
            continue
        # a pointer
        if (trusted or rcu) and (register_is_null(reg) or reg.type & PTR_MAYBE_NULL):
            raise env.reject(f"Possibly NULL pointer passed to trusted arg{i}", EACCES)
        if reg.ref_obj_id:
            if e.release and ref_obj_id:
                raise env.bug(f"more than one arg with ref_obj_id R{regno} {reg.ref_obj_id} "
                              f"{ref_obj_id}")
            ref_obj_id = reg.ref_obj_id
            if e.release:
                release_regno = regno
        if name == "bpf_cast_to_kern_ctx":
            check_func_arg_reg_off(env, reg, regno, 0, 0)
            if reg.type != PTR_TO_CTX:
                raise env.reject(f"arg#{i} expected pointer to ctx, but got "
                                 f"{reg_type_str(reg.type)}", EINVAL)
            continue
        need = _struct_id(p.pointee)
        if base_type(reg.type) != PTR_TO_BTF_ID or (_unsafe_modifiers(reg.type) and
                                                    not reg.type & MEM_RCU):
            raise env.reject(f"arg#{i} is {reg_type_str(reg.type)} expected "
                             f"{reg_type_str(base_type(reg.type) | (reg.type & _TRUSTED_MODIFIERS))}"
                             f" or socket", EINVAL)
        if not trusted and not rcu:
            # Linux takes a legacy (untrusted) pointer here; which of those are safe to
            # hand over is not modelled, so the call is refused rather than half-checked
            raise env.reject(f"calling kernel function {name} is not allowed", EACCES)
        if not _is_trusted(reg):
            if not rcu:
                raise env.reject(f"R{regno} must be referenced or trusted", EINVAL)
            if not reg.type & MEM_RCU:
                raise env.reject(f"R{regno} must be a rcu pointer", EINVAL)
        if reg.type & MEM_ALLOC or (reg.btf is not None and reg.btf is not vml):
            raise env.reject(f"calling kernel function {name} is not allowed", EACCES)
        if e.release and reg.ref_obj_id:
            if reg.off or reg.bounds.var_off.mask or reg.bounds.var_off.value:
                raise env.reject(f"R{regno} must have zero offset when passed to release "
                                 f"func or trusted arg to kfunc", EINVAL)
        else:
            check_ptr_off_reg(env, reg, regno, True)
        strict = bool(e.release and reg.ref_obj_id) or \
            _nocast_alias(_struct_name(vml, reg.btf_id), _struct_name(vml, need))
        if not btf_struct_ids_match(vml, reg.btf_id, reg.off, need, strict):
            raise env.reject(f"kernel function {name} args#{i} expected pointer to STRUCT "
                             f"{_struct_name(vml, need)} but R{regno} has a pointer to STRUCT "
                             f"{_struct_name(vml, reg.btf_id)}", EINVAL)
    if e.release and not release_regno:
        raise env.reject(f"release kernel function {name} expects refcounted PTR_TO_BTF_ID",
                         EINVAL)
    ret_btf_id = None
    if name == "bpf_cast_to_kern_ctx":
        ret_btf_id = _kern_ctx_id(env)
        if ret_btf_id is None:
            raise env.reject(f"calling kernel function {name} is not allowed", EACCES)
    elif name == "bpf_rdonly_cast":
        try:
            t = vml.resolve(const_arg) if const_arg is not None and const_arg >> 32 == 0 else None
        except Exception:
            t = None
        if t is None or t.kind.name not in ("STRUCT", "UNION"):
            raise env.reject("kfunc bpf_rdonly_cast type ID argument must be of a struct",
                             EINVAL)
        ret_btf_id = t.id
    if release_regno:
        if not release_reference(env, regs[release_regno].ref_obj_id):
            raise env.reject(f"kfunc {name}#{insn.imm} reference has not been acquired before",
                             EINVAL)
    for r in range(6):
        regs[r].mark_not_init(not env.bpf_capable)
        env.check_reg_arg(r, DST_OP_NO_MARK)
    r0 = regs[0]
    if name in _CASTS:
        r0.mark_unknown()
        r0.mark_known(0)
        r0.type = PTR_TO_BTF_ID | (PTR_TRUSTED if name == "bpf_cast_to_kern_ctx" else
                                   PTR_UNTRUSTED)
        r0.btf, r0.btf_id = vml, ret_btf_id
        return
    if e.ret is KRet.VOID:
        r0.type = 0
        return
    if e.ret is KRet.INTEGER:
        env.mark_reg_unknown(regs, 0)
        return
    r0.mark_unknown()
    r0.mark_known(0)
    r0.type = PTR_TO_BTF_ID
    r0.btf, r0.btf_id = vml, _struct_id(e.ret_type.removesuffix("*").strip())
    if e.ret_null:
        r0.type |= PTR_MAYBE_NULL
        r0.id = env.new_id()
    if e.acquire:
        id_ = acquire_reference(env, env.insn_idx)
        if e.ret_null:
            r0.id = id_
        r0.ref_obj_id = id_
