"""The kfuncs a program may call, as the verifier sees them (``env.kfuncs``).

A kfunc is a kernel function the program calls by BTF id; its prototype and
flags (KF_ACQUIRE, KF_RELEASE, KF_RET_NULL, ...) come from the kfunc
prototypes (``ebee.protos.kfuncs``).  The verifier models the kfuncs that
table knows; any other kfunc call is rejected the way Linux rejects an
unknown one.  The call itself is checked in :mod:`.kfunc_check`.
"""
from __future__ import annotations

from ..protos.kfuncs import KfuncProto, by_id

#: the kfuncs whose calls :mod:`.kfunc_check` checks as Linux does; the table holds every
#: kfunc of the kernel, and a call of any other one is refused (not checked half-way)
CHECKED = frozenset({
    "bpf_obj_new_impl", "bpf_obj_drop_impl", "bpf_refcount_acquire_impl",
    "bpf_list_push_front_impl", "bpf_list_push_back_impl", "bpf_list_pop_front",
    "bpf_list_pop_back", "bpf_rbtree_add_impl", "bpf_rbtree_first", "bpf_rbtree_remove"})
from .env import Env
from .insn import Insn


class KfuncTable:
    """The verifier's view of the kfunc prototypes: names and prototypes by BTF id."""

    def __init__(self, btf=None):
        self.btf = btf

    def entry(self, imm: int) -> KfuncProto | None:
        return by_id(imm)

    def name(self, imm: int, off: int = 0) -> str | None:
        e = self.entry(imm)
        return getattr(e, "name", None) if e is not None else None

    def meta(self, imm: int, off: int = 0):
        return self.entry(imm)


def default_kfuncs(btf=None) -> KfuncTable:
    return KfuncTable(btf)


def kfunc_spin_allowed(env: Env, insn) -> bool:
    name = env.kfuncs.name(insn.imm, insn.off) if env.kfuncs is not None else None
    return name in ("bpf_spin_unlock", "bpf_res_spin_unlock", "bpf_res_spin_unlock_irqrestore",
                    "bpf_list_push_front_impl", "bpf_list_push_back_impl",
                    "bpf_list_pop_front", "bpf_list_pop_back", "bpf_list_front",
                    "bpf_list_back", "bpf_rbtree_add_impl", "bpf_rbtree_remove",
                    "bpf_rbtree_first", "bpf_rbtree_root", "bpf_rbtree_left",
                    "bpf_rbtree_right", "bpf_rcu_read_lock", "bpf_rcu_read_unlock",
                    "bpf_preempt_disable", "bpf_preempt_enable")


def kfunc_meta(env: Env, insn: Insn, quiet: bool = False):
    if env.kfuncs is None:
        return None
    return env.kfuncs.meta(insn.imm, insn.off) if hasattr(env.kfuncs, "meta") else None
