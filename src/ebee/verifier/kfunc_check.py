"""The body of check_kfunc_call for the kfuncs ebee's prototypes describe."""
from __future__ import annotations

from ..protos.kfuncs import KArg, allowed_in
from ..uapi import ProgType
from .calls import push_callback_call
from .env import DST_OP_NO_MARK, Env
from .errors import EACCES, EINVAL
from .kfuncs import CHECKED
from .kfunc_btf import check_btf_kfunc_call, handles
from .kfunc_dynptr import DYNPTR_KFUNCS, check_dynptr_kfunc_call
from .iters import check_iter_kfunc_call, handles_iter
from .graph import (graph_node_arg, graph_root_arg, owning_to_non_owning,
                    set_rbtree_add_callback_state)
from .precision import mark_chain_precision
from .refs import acquire_reference, release_reference
from .types import (MEM_ALLOC, NON_OWN_REF, PTR_MAYBE_NULL, PTR_TO_BTF_ID, PTR_TO_FUNC,
                    PTR_TRUSTED, SCALAR_VALUE)


def check_kfunc_call(env: Env, insn) -> int:
    ks = env.kfuncs
    e = ks.entry(insn.imm) if ks is not None else None
    if e is None:
        raise env.reject(f"calling kernel function {insn.imm} is not allowed", EACCES)
    name = e.name
    # an EXT program calls what its target's type may (resolve_prog_type); not known here
    ext = env.prog_type == ProgType.EXT
    if not ext and not allowed_in(e, ProgType(env.prog_type)):
        raise env.reject(f"calling kernel function {name} is not allowed", EACCES)
    if name in DYNPTR_KFUNCS and not ext:
        check_dynptr_kfunc_call(env, insn, e)
        return 0
    if name not in CHECKED:
        if not ext and handles_iter(e):
            check_iter_kfunc_call(env, insn, e)
            return 0
        if ext or not handles(e, env.prog_type):
            raise env.reject(f"calling kernel function {name} is not allowed", EACCES)
        check_btf_kfunc_call(env, insn, e)
        return 0
    args = getattr(e, "args", ())
    regs = env.cur_regs()
    for i in range(len(args)):
        env.check_reg_arg(1 + i, 0)
    new_obj = _obj_new_type(env, regs, name)
    root, pushed, callback = _graph_args(env, name, args)
    if callback is not None:           # bpf_rbtree_add_impl's `less`, as a sync callback
        push_callback_call(env, insn, env.insn_idx, callback, set_rbtree_add_callback_state)
    acquire = bool(getattr(e, "acquire", False))
    release = bool(getattr(e, "release", False))
    if release:
        r = regs[1]
        if not r.ref_obj_id:
            raise env.reject("R1 must be referenced or trusted", EINVAL)
        if not release_reference(env, r.ref_obj_id):
            raise env.reject(f"kernel function {name} args#0 reference has not been "
                             f"acquired before", EINVAL)
    if pushed:
        owning_to_non_owning(env, pushed)
        release_reference(env, pushed)
    for r in range(6):
        regs[r].mark_not_init(not env.bpf_capable)
        env.check_reg_arg(r, DST_OP_NO_MARK)
    r0 = regs[0]
    ret = getattr(e, "ret", None)
    rname = getattr(ret, "name", "") if ret is not None else ""
    if rname in ("VOID", ""):
        r0.type = 0
    elif rname in ("INT", "INTEGER", "SCALAR"):
        env.mark_reg_unknown(regs, 0)
    else:
        r0.mark_known(0)
        r0.type = PTR_TO_BTF_ID | MEM_ALLOC if "ALLOC" in rname or "NEW" in rname else \
            PTR_TO_BTF_ID | PTR_TRUSTED
        if new_obj is not None:
            r0.btf, r0.btf_id = new_obj
        elif root is not None:         # an element of the list/tree, pointing at its node
            r0.type = PTR_TO_BTF_ID | MEM_ALLOC
            r0.btf, r0.btf_id = env.btf, root.elem_id
            r0.off = root.node_off
            if not acquire:            # bpf_rbtree_first: the tree still owns it
                r0.type |= NON_OWN_REF
        if getattr(e, "ret_null", False):
            r0.type |= PTR_MAYBE_NULL
            r0.id = env.new_id()
        if acquire:
            id_ = acquire_reference(env, env.insn_idx)
            r0.ref_obj_id = id_
            if not r0.id or getattr(e, "ret_null", False):
                r0.id = id_         # the null check then releases the reference
    return 0


def _graph_args(env: Env, name: str, args):
    """bpf_list_*/bpf_rbtree_* arguments: the root's GraphRoot, the ref_obj_id of an
    owned node being added (the call ends its ownership) and the callback subprog."""
    root = pushed = callback = None
    regs = env.cur_regs()
    for i, kind in enumerate(args):
        regno = 1 + i
        if kind is KArg.PTR_TO_LIST_HEAD:
            root = graph_root_arg(env, regno, i, "bpf_list_head")
        elif kind is KArg.PTR_TO_RB_ROOT:
            root = graph_root_arg(env, regno, i, "bpf_rb_root")
        elif kind is KArg.PTR_TO_LIST_NODE and root is not None:
            graph_node_arg(env, regno, i, root, "bpf_list_head", "bpf_list_node")
            pushed = regs[regno].ref_obj_id
        elif kind is KArg.PTR_TO_RB_NODE and root is not None:
            owned = name == "bpf_rbtree_add_impl"
            if not owned and not regs[regno].type & NON_OWN_REF and not regs[regno].ref_obj_id:
                raise env.reject(f"{name} can only take non-owning or refcounted bpf_rb_node "
                                 f"pointer", EINVAL)
            graph_node_arg(env, regno, i, root, "bpf_rb_root", "bpf_rb_node", owned)
            if owned:
                pushed = regs[regno].ref_obj_id
        elif kind is KArg.PTR_TO_CALLBACK:
            if regs[regno].type != PTR_TO_FUNC:
                raise env.reject(f"arg{i} expected pointer to func", EINVAL)
            callback = regs[regno].subprogno
    return root, pushed, callback


def _obj_new_type(env: Env, regs, name: str):
    """bpf_obj_new's object type: a struct of the program's own BTF named by the
    constant local type id in R1 (bpf_core_type_id_local) -- (btf, type id)."""
    if name not in ("bpf_obj_new_impl", "bpf_percpu_obj_new_impl"):
        return None
    r1 = regs[1]
    if r1.type != SCALAR_VALUE or r1.bounds.var_off.mask:
        raise env.reject("R1 must be a known constant", EINVAL)
    mark_chain_precision(env, 1)        # a constant argument (__k): part of the state
    type_id = r1.bounds.var_off.value
    if type_id >> 32:
        raise env.reject("local type ID argument must be in range [0, U32_MAX]", EINVAL)
    if env.btf is None:
        raise env.reject("bpf_obj_new/bpf_percpu_obj_new requires prog BTF", EINVAL)
    try:
        t = env.btf[type_id]
        is_struct = t.kind.name == "STRUCT"
    except Exception:
        is_struct = False
    if not is_struct:
        raise env.reject("bpf_obj_new/bpf_percpu_obj_new type ID argument must be of a struct",
                         EINVAL)
    return env.btf, type_id
