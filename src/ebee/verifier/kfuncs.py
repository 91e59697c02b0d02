"""kfunc calls (check_kfunc_call), checked against their BTF prototypes.

A kfunc is a kernel function the program calls by BTF id; its prototype and
flags (KF_ACQUIRE, KF_RELEASE, KF_RET_NULL, ...) come from the kfunc
prototypes (``ebee.protos.kfuncs``).  The verifier models the kfuncs that
table knows; any other kfunc call is rejected the way Linux rejects an
unknown one.
"""
from __future__ import annotations

import functools

from ..protos.kfuncs import KfuncProto, by_id
from .env import Env


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


@functools.lru_cache(maxsize=256)
def kernel_btf_id(name: str) -> int | None:
    """The id of kernel function ``name`` in the host's vmlinux BTF (what Linux's log
    prints after a kfunc's name), or None without one."""
    try:
        from ..btf import BTF
        return BTF.load_vmlinux().find(name, "FUNC").id
    except Exception:
        return None


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


def check_kfunc_call(env: Env, insn) -> int:
    return impl(env, insn)


def _bind() -> None:
    """Bind names from modules that import this one (import cycles)."""
    global impl
    from .kfunc_check import check_kfunc_call as impl
