"""bpf_list_head arguments of kfuncs: the lock that guards a list, the element type
it holds, and owning versus non-owning references to its nodes.

Linux's rules (``__process_kf_arg_ptr_to_graph_root``/``_node``,
``ref_convert_owning_non_owning``, ``invalidate_non_owning_refs``): a list head
sits at a constant offset of a map value (a global ``private(..)`` section) or an
allocated object, and its ``bpf_spin_lock`` must be held; a node pushed onto it
must be the ``__contains(elem, node)`` node of an owned ``bpf_obj_new`` object,
which the push turns into a non-owning reference, valid until the unlock; a pop
returns a new owned reference to the element, pointing at its node.
"""
from __future__ import annotations

from ..btf.record import SPECIAL_FIELDS, graph_roots, value_record
from .env import Env
from .errors import EINVAL
from .refs import mark_reg_invalid
from .state import for_each_reg
from .types import MEM_ALLOC, NON_OWN_REF, PTR_TO_BTF_ID, PTR_TO_MAP_VALUE, base_type

ALLOC_OBJ = PTR_TO_BTF_ID | MEM_ALLOC


def graph_root_arg(env: Env, regno: int, argno: int, kind: str):
    """The ``GraphRoot`` a head argument points at, after Linux's checks."""
    reg = env.cur_regs()[regno]
    if reg.type != PTR_TO_MAP_VALUE and reg.type != ALLOC_OBJ:
        raise env.reject(f"arg#{argno} expected pointer to map value or allocated object",
                         EINVAL)
    if reg.type == ALLOC_OBJ and not reg.ref_obj_id:
        raise env.reject("allocated object must be referenced", EINVAL)
    if reg.bounds.var_off.mask:
        raise env.reject(f"R{regno} doesn't have constant offset. {kind} has to be at the "
                         f"constant offset", EINVAL)
    off = reg.off + reg.bounds.var_off.value
    roots, lock_off = _roots_of(reg)
    root = roots.get(off)
    if root is None or root.kind != kind:
        raise env.reject(f"{kind} not found at offset={off}", EINVAL)
    s = env.cur_state
    owner = reg.map if base_type(reg.type) == PTR_TO_MAP_VALUE else reg.btf
    if not s.active_locks or s.active_lock_ptr is not owner or s.active_lock_id != reg.id:
        if s.active_locks:
            env.verbose("held lock and object are not in the same allocation\n")
        raise env.reject(f"bpf_spin_lock at off={lock_off} must be held for {kind}", EINVAL)
    return root


def graph_node_arg(env: Env, regno: int, argno: int, root, head: str, node: str,
                   owned: bool = True) -> None:
    """Check a node argument against the root it goes into (``owned``: one being
    added, which must be an allocated object the program owns)."""
    reg = env.cur_regs()[regno]
    if owned and reg.type != ALLOC_OBJ:
        raise env.reject(f"arg#{argno} expected pointer to allocated object", EINVAL)
    if owned and not reg.ref_obj_id:
        raise env.reject("allocated object must be referenced", EINVAL)
    if reg.bounds.var_off.mask:
        raise env.reject(f"R{regno} doesn't have constant offset. {node} has to be at the "
                         f"constant offset", EINVAL)
    off = reg.off + reg.bounds.var_off.value
    btf = reg.btf
    if (node, off) not in _fields(btf, reg.btf_id):
        raise env.reject(f"{node} not found at offset={off}", EINVAL)
    if btf is not env.btf or reg.btf_id != root.elem_id:
        raise env.reject(f"operation on {head} expects arg#1 {node} at offset={root.node_off} "
                         f"in struct {root.elem}, but arg is at offset={off} in struct "
                         f"{_name(btf, reg.btf_id)}", EINVAL)
    if off != root.node_off:
        raise env.reject(f"arg#1 offset={off}, but expected {node} at offset={root.node_off} "
                         f"in struct {root.elem}", EINVAL)


def owning_to_non_owning(env: Env, ref_obj_id: int) -> None:
    """After a push the program still sees the node, but no longer owns it."""
    def fn(frame, reg):
        if reg.ref_obj_id == ref_obj_id:
            reg.ref_obj_id = 0
            reg.type |= NON_OWN_REF
            return True
        return False
    for_each_reg(env.cur_state, fn)


def invalidate_non_owning_refs(env: Env) -> None:
    """At bpf_spin_unlock: nodes reached under the lock may be gone."""
    def fn(frame, reg):
        if reg.type & NON_OWN_REF and base_type(reg.type) == PTR_TO_BTF_ID:
            mark_reg_invalid(env, reg)
            return True
        return False
    for_each_reg(env.cur_state, fn)


def set_rbtree_add_callback_state(env: Env, caller, callee, insn_idx: int) -> None:
    """``less(a, b)`` sees two nodes of the tree, neither of them owned."""
    head = caller.regs[1]
    roots, _ = _roots_of(head)
    root = roots.get(head.off + head.bounds.var_off.value)
    if root is None:
        raise env.bug("rbtree_add callback without its root")
    for r in (1, 2):
        reg = callee.regs[r]
        reg.mark_known(0)
        reg.type = ALLOC_OBJ | NON_OWN_REF
        reg.btf, reg.btf_id, reg.off = env.btf, root.elem_id, root.node_off
    for r in (3, 4, 5):
        callee.regs[r].mark_not_init(not env.bpf_capable)
    callee.in_callback_fn = True
    callee.callback_ret_range = (0, 1)


def _roots_of(reg):
    if base_type(reg.type) == PTR_TO_MAP_VALUE:
        m = reg.map
        return m.graph_roots or {}, m.spin_lock_off
    rec = value_record(reg.btf, reg.btf_id)
    return graph_roots(reg.btf, [(reg.btf_id, 0)]), rec.get("bpf_spin_lock", -1)


def _fields(btf, type_id: int) -> set[tuple[str, int]]:
    """Every (special field kind, byte offset) of a struct, nested ones included."""
    out: set[tuple[str, int]] = set()

    def walk(tid: int, base: int, depth: int) -> None:
        t = btf.resolve(tid)
        if getattr(t, "name", "") in SPECIAL_FIELDS:
            out.add((t.name, base))
            return
        if depth < 8:
            for m in getattr(t, "members", ()) or ():
                walk(m.type_id, base + m.bits_offset // 8, depth + 1)
    try:
        walk(type_id, 0, 0)
    except (KeyError, AttributeError, IndexError):
        pass
    return out


def _name(btf, type_id: int) -> str:
    try:
        return btf[type_id].name
    except Exception:
        return ""
