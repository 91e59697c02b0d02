"""kfunc prototypes: kernel functions a program calls by BTF id (``call`` with src_reg 2).

The loader resolves a kfunc a program calls by its name (``bpf_obj_new_impl``)
with :func:`kfunc_id` and writes that id into the call instruction; the
verifier finds the prototype with :func:`by_id`, the engines the
implementation (``ebee.helpers.kfuncs``).  ids are ebee's own
(``KFUNC_ID_BASE + n``, in table order), distinct from any vmlinux BTF id.

Each prototype is in the kernel's vocabulary: argument kinds
(``KF_ARG_PTR_TO_LIST_HEAD``, ``__k`` constants, ``__ign`` ignored
arguments, ...), the return kind and the ``KF_*`` flags (``KF_ACQUIRE``,
``KF_RELEASE``, ``KF_RET_NULL``, ...).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from .. import uapi as U

KFUNC_ID_BASE = 0x7EB00000


class KArg(enum.Enum):
    """Kinds of kfunc arguments (the verifier's ``enum kfunc_ptr_arg_type`` and suffixes)."""
    SCALAR = "scalar"
    SCALAR_CONST = "__k"                       # must be a known constant (a BTF type id)
    IGNORED = "__ign"                          # the verifier supplies it (meta)
    PTR_TO_ALLOC_BTF_ID = "KF_ARG_PTR_TO_ALLOC_BTF_ID"
    PTR_TO_REFCOUNTED_KPTR = "KF_ARG_PTR_TO_REFCOUNTED_KPTR"
    PTR_TO_LIST_HEAD = "KF_ARG_PTR_TO_LIST_HEAD"
    PTR_TO_LIST_NODE = "KF_ARG_PTR_TO_LIST_NODE"
    PTR_TO_RB_ROOT = "KF_ARG_PTR_TO_RB_ROOT"
    PTR_TO_RB_NODE = "KF_ARG_PTR_TO_RB_NODE"
    PTR_TO_CALLBACK = "KF_ARG_PTR_TO_CALLBACK"
    PTR_TO_BTF_ID = "KF_ARG_PTR_TO_BTF_ID"
    PTR_TO_MEM = "KF_ARG_PTR_TO_MEM"


class KRet(enum.Enum):
    VOID = "void"
    INTEGER = "int"
    PTR_TO_ALLOC_OBJ = "PTR_TO_BTF_ID | MEM_ALLOC"   # a program-local allocated object
    PTR_TO_LIST_NODE = "struct bpf_list_node *"
    PTR_TO_RB_NODE = "struct bpf_rb_node *"


@dataclass(frozen=True)
class KfuncProto:
    id: int
    name: str
    args: tuple[KArg, ...]
    ret: KRet
    flags: int = 0

    @property
    def acquire(self) -> bool:
        return bool(self.flags & U.KF_ACQUIRE)

    @property
    def release(self) -> bool:
        return bool(self.flags & U.KF_RELEASE)

    @property
    def ret_null(self) -> bool:
        return bool(self.flags & U.KF_RET_NULL)


def _table(*rows: tuple) -> dict[str, KfuncProto]:
    return {name: KfuncProto(KFUNC_ID_BASE + n, name, *rest)
            for n, (name, *rest) in enumerate(rows)}


_LIST_PUSH = (KArg.PTR_TO_LIST_HEAD, KArg.PTR_TO_LIST_NODE, KArg.IGNORED, KArg.SCALAR_CONST)

#: by name, in id order: (name, args, ret, flags)
KFUNCS: dict[str, KfuncProto] = _table(
    ("bpf_obj_new_impl", (KArg.SCALAR_CONST, KArg.IGNORED), KRet.PTR_TO_ALLOC_OBJ,
     U.KF_ACQUIRE | U.KF_RET_NULL),
    ("bpf_obj_drop_impl", (KArg.PTR_TO_ALLOC_BTF_ID, KArg.IGNORED), KRet.VOID, U.KF_RELEASE),
    ("bpf_refcount_acquire_impl", (KArg.PTR_TO_REFCOUNTED_KPTR, KArg.IGNORED),
     KRet.PTR_TO_ALLOC_OBJ, U.KF_ACQUIRE | U.KF_RET_NULL | U.KF_RCU),
    ("bpf_list_push_front_impl", _LIST_PUSH, KRet.INTEGER),
    ("bpf_list_push_back_impl", _LIST_PUSH, KRet.INTEGER),
    ("bpf_list_pop_front", (KArg.PTR_TO_LIST_HEAD,), KRet.PTR_TO_LIST_NODE,
     U.KF_ACQUIRE | U.KF_RET_NULL),
    ("bpf_list_pop_back", (KArg.PTR_TO_LIST_HEAD,), KRet.PTR_TO_LIST_NODE,
     U.KF_ACQUIRE | U.KF_RET_NULL),
    ("bpf_rbtree_add_impl", (KArg.PTR_TO_RB_ROOT, KArg.PTR_TO_RB_NODE, KArg.PTR_TO_CALLBACK,
                             KArg.IGNORED, KArg.SCALAR_CONST), KRet.INTEGER),
    ("bpf_rbtree_first", (KArg.PTR_TO_RB_ROOT,), KRet.PTR_TO_RB_NODE, U.KF_RET_NULL),
    ("bpf_rbtree_remove", (KArg.PTR_TO_RB_ROOT, KArg.PTR_TO_RB_NODE), KRet.PTR_TO_RB_NODE,
     U.KF_ACQUIRE | U.KF_RET_NULL),
)
_BY_ID: dict[int, KfuncProto] = {k.id: k for k in KFUNCS.values()}


def kfunc_id(name: str) -> int | None:
    """The id the loader writes into a call to kfunc ``name`` (None if ebee lacks it)."""
    k = KFUNCS.get(name)
    return k.id if k else None


def by_id(kid: int) -> KfuncProto | None:
    return _BY_ID.get(kid)
