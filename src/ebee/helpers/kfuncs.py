"""kfuncs: kernel functions called by BTF id (``call`` with src_reg 2), registered by name.

The loader resolves a kfunc a program calls by its name (``bpf_obj_new_impl``)
with :func:`kfunc_id` and writes that id into the call instruction; engines
find the implementation with :func:`by_id` (``Machine.kfunc_impl``).  ids are
ebee's own (``KFUNC_ID_BASE + n``), distinct from any vmlinux BTF id.

Each entry carries its prototype for the verifier in the kernel's vocabulary:
argument kinds (``KF_ARG_PTR_TO_LIST_HEAD``, ``__k`` constants, ``__ign``
ignored arguments, ...), the return kind and the ``KF_*`` flags
(``KF_ACQUIRE``, ``KF_RELEASE``, ``KF_RET_NULL``, ...).

Implemented: the graph/allocation kfuncs -- bpf_obj_new / bpf_obj_drop,
bpf_refcount_acquire, bpf_list_push_front / push_back / pop_front / pop_back,
bpf_rbtree_add / first / remove.  Objects are zeroed regions of ``SHARED``
sized from the *program's* BTF (``machine.btf``, set by the runner from the
loaded Program); lists and trees are kept by the runtime, keyed by the
address of their ``bpf_list_head`` / ``bpf_rb_root``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from .. import uapi as U
from ..errors import VMError
from ..memory import SHARED, Region

KFUNC_ID_BASE = 0x7EB00000
M64 = (1 << 64) - 1


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
class Kfunc:
    id: int
    name: str
    args: tuple[KArg, ...]
    ret: KRet
    flags: int
    impl: Callable[..., int]

    @property
    def acquire(self) -> bool:
        return bool(self.flags & U.KF_ACQUIRE)

    @property
    def release(self) -> bool:
        return bool(self.flags & U.KF_RELEASE)

    @property
    def ret_null(self) -> bool:
        return bool(self.flags & U.KF_RET_NULL)


KFUNCS: dict[str, Kfunc] = {}
_BY_ID: dict[int, Kfunc] = {}


def kfunc(name: str, args: tuple[KArg, ...], ret: KRet, flags: int = 0):
    def deco(fn):
        k = Kfunc(KFUNC_ID_BASE + len(KFUNCS), name, args, ret, flags, fn)
        KFUNCS[name] = k
        _BY_ID[k.id] = k
        return fn
    return deco


def kfunc_id(name: str) -> int | None:
    """The id the loader writes into a call to kfunc ``name`` (None if ebee lacks it)."""
    k = KFUNCS.get(name)
    return k.id if k else None


def by_id(btf_id: int) -> Kfunc | None:
    return _BY_ID.get(btf_id)


def get(name: str) -> Kfunc | None:
    return KFUNCS.get(name)


# ---------------------------------------------------------------------------------------
# allocated objects
# ---------------------------------------------------------------------------------------

@dataclass(eq=False)
class Obj:
    region: Region
    type_id: int
    refcount: int = 1

    @property
    def addr(self) -> int:
        return self.region.start


_objs: dict[int, Obj] = {}
_owner: dict[int, int] = {}            # node address -> head/root address holding it
_lists: dict[int, list[int]] = {}      # bpf_list_head address -> node addresses, front first
_trees: dict[int, list[int]] = {}      # bpf_rb_root address -> node addresses, in order


def live_objects() -> list[Obj]:
    return list(_objs.values())


def _obj_of(addr: int) -> Obj:
    o = _objs.get(addr)
    if o is None:
        raise VMError(f"{addr:#x} is not an object from bpf_obj_new")
    return o


def _free(o: Obj) -> None:
    _objs.pop(o.addr, None)
    SHARED.remove(o.region)


@kfunc("bpf_obj_new_impl", (KArg.SCALAR_CONST, KArg.IGNORED), KRet.PTR_TO_ALLOC_OBJ,
       U.KF_ACQUIRE | U.KF_RET_NULL)
def bpf_obj_new_impl(m, type_id, meta, *_):
    btf = m.btf
    if btf is None:
        raise VMError("bpf_obj_new needs the program's BTF (machine.btf) to size the object")
    try:
        size = btf.sizeof(type_id)
    except Exception as e:
        raise VMError(f"bpf_obj_new: BTF type {type_id} has no size: {e}") from None
    r = SHARED.add(Region(max(size, 1), f"bpf_obj_new type {type_id}"))
    o = Obj(r, type_id)
    _objs[o.addr] = o
    return o.addr


def _drop(addr: int) -> None:
    o = _obj_of(addr)
    o.refcount -= 1
    if o.refcount <= 0:
        _free(o)


@kfunc("bpf_obj_drop_impl", (KArg.PTR_TO_ALLOC_BTF_ID, KArg.IGNORED), KRet.VOID, U.KF_RELEASE)
def bpf_obj_drop_impl(m, p, meta, *_):
    _drop(p)
    return 0


@kfunc("bpf_refcount_acquire_impl", (KArg.PTR_TO_REFCOUNTED_KPTR, KArg.IGNORED),
       KRet.PTR_TO_ALLOC_OBJ, U.KF_ACQUIRE | U.KF_RET_NULL | U.KF_RCU)
def bpf_refcount_acquire_impl(m, p, meta, *_):
    o = _obj_of(p)
    if o.refcount <= 0:
        return 0
    o.refcount += 1
    return p


def _take_node(node: int, off: int) -> bool:
    """A node may be in one collection at a time; a second insertion drops the object."""
    if node in _owner:
        _drop(node - off)
        return False
    return True


def _push(head, node, off, front: bool) -> int:
    if not _take_node(node, off):
        return -22 & M64
    lst = _lists.setdefault(head, [])
    lst.insert(0, node) if front else lst.append(node)
    _owner[node] = head
    return 0


_LIST_PUSH = (KArg.PTR_TO_LIST_HEAD, KArg.PTR_TO_LIST_NODE, KArg.IGNORED, KArg.SCALAR_CONST)


@kfunc("bpf_list_push_front_impl", _LIST_PUSH, KRet.INTEGER)
def bpf_list_push_front_impl(m, head, node, meta, off, _):
    return _push(head, node, off, True)


@kfunc("bpf_list_push_back_impl", _LIST_PUSH, KRet.INTEGER)
def bpf_list_push_back_impl(m, head, node, meta, off, _):
    return _push(head, node, off, False)


def _pop(head, front: bool) -> int:
    lst = _lists.get(head)
    if not lst:
        return 0
    node = lst.pop(0 if front else -1)
    _owner.pop(node, None)
    return node


@kfunc("bpf_list_pop_front", (KArg.PTR_TO_LIST_HEAD,), KRet.PTR_TO_LIST_NODE,
       U.KF_ACQUIRE | U.KF_RET_NULL)
def bpf_list_pop_front(m, head, *_):
    return _pop(head, True)


@kfunc("bpf_list_pop_back", (KArg.PTR_TO_LIST_HEAD,), KRet.PTR_TO_LIST_NODE,
       U.KF_ACQUIRE | U.KF_RET_NULL)
def bpf_list_pop_back(m, head, *_):
    return _pop(head, False)


@kfunc("bpf_rbtree_add_impl", (KArg.PTR_TO_RB_ROOT, KArg.PTR_TO_RB_NODE, KArg.PTR_TO_CALLBACK,
                               KArg.IGNORED, KArg.SCALAR_CONST), KRet.INTEGER)
def bpf_rbtree_add_impl(m, root, node, less, meta, off):
    if not _take_node(node, off):
        return -22 & M64
    tree = _trees.setdefault(root, [])
    fn = m.find_function(less)
    # rb_add_cached(): walk left while less(node, parent), so equal keys go after
    lo, hi = 0, len(tree)
    while lo < hi:
        mid = (lo + hi) // 2
        if m.call_function(less, node, tree[mid], fn=fn) & 0xFF:
            hi = mid
        else:
            lo = mid + 1
    tree.insert(lo, node)
    _owner[node] = root
    return 0


@kfunc("bpf_rbtree_first", (KArg.PTR_TO_RB_ROOT,), KRet.PTR_TO_RB_NODE, U.KF_RET_NULL)
def bpf_rbtree_first(m, root, *_):
    tree = _trees.get(root)
    return tree[0] if tree else 0


@kfunc("bpf_rbtree_remove", (KArg.PTR_TO_RB_ROOT, KArg.PTR_TO_RB_NODE), KRet.PTR_TO_RB_NODE,
       U.KF_ACQUIRE | U.KF_RET_NULL)
def bpf_rbtree_remove(m, root, node, *_):
    tree = _trees.get(root)
    if not tree or _owner.get(node) != root:
        return 0
    tree.remove(node)
    _owner.pop(node, None)
    return node


def collection(addr: int) -> list[int]:
    """Node addresses in the list or tree whose head/root is at ``addr`` (for tests and tools)."""
    return list(_lists.get(addr) or _trees.get(addr) or [])
