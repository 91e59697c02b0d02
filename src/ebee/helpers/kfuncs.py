"""kfunc implementations: what the engines run for a call by BTF id (``call`` with src_reg 2).

The prototypes, and the ids the loader writes into call instructions, are
``ebee.protos.kfuncs``; an implementation binds to its kfunc by name with
:func:`implements_kfunc` and the engines find it by id with :func:`impl_of`
(``Machine.kfunc_impl``).

Implemented: the graph/allocation kfuncs -- bpf_obj_new / bpf_obj_drop,
bpf_refcount_acquire, bpf_list_push_front / push_back / pop_front / pop_back,
bpf_rbtree_add / first / remove -- and the numbers iterator (bpf_iter_num_*).
Objects are zeroed regions of ``SHARED`` sized from the *program's* BTF
(``machine.btf``, set by the runner from the loaded Program); lists and trees are kept by the runtime, keyed by the
address of their ``bpf_list_head`` / ``bpf_rb_root``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from ..errors import VMError
from ..memory import SHARED, Region
from ..protos.kfuncs import KFUNCS

M64 = (1 << 64) - 1

_IMPLS: dict[int, Callable[..., int]] = {}


def implements_kfunc(name: str):
    """Register the decorated function as the implementation of kfunc ``name``."""
    proto = KFUNCS.get(name)
    if proto is None:
        raise RuntimeError(f"kfunc {name} has no prototype in ebee.protos.kfuncs")

    def deco(fn):
        if proto.id in _IMPLS:
            raise RuntimeError(f"kfunc {name} implemented twice")
        _IMPLS[proto.id] = fn
        return fn
    return deco


def impl_of(kid: int) -> Callable[..., int] | None:
    """The implementation of the kfunc with id ``kid`` (None: ebee has none)."""
    return _IMPLS.get(kid)


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


@implements_kfunc("bpf_obj_new_impl")
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


@implements_kfunc("bpf_obj_drop_impl")
def bpf_obj_drop_impl(m, p, meta, *_):
    _drop(p)
    return 0


@implements_kfunc("bpf_refcount_acquire_impl")
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


@implements_kfunc("bpf_list_push_front_impl")
def bpf_list_push_front_impl(m, head, node, meta, off, _):
    return _push(head, node, off, True)


@implements_kfunc("bpf_list_push_back_impl")
def bpf_list_push_back_impl(m, head, node, meta, off, _):
    return _push(head, node, off, False)


def _pop(head, front: bool) -> int:
    lst = _lists.get(head)
    if not lst:
        return 0
    node = lst.pop(0 if front else -1)
    _owner.pop(node, None)
    return node


@implements_kfunc("bpf_list_pop_front")
def bpf_list_pop_front(m, head, *_):
    return _pop(head, True)


@implements_kfunc("bpf_list_pop_back")
def bpf_list_pop_back(m, head, *_):
    return _pop(head, False)


@implements_kfunc("bpf_rbtree_add_impl")
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


@implements_kfunc("bpf_rbtree_first")
def bpf_rbtree_first(m, root, *_):
    tree = _trees.get(root)
    return tree[0] if tree else 0


@implements_kfunc("bpf_rbtree_remove")
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


# ---------------------------------------------------------------------------------------
# bpf_iter_num: the numbers iterator behind bpf_for() / bpf_repeat() (kernel/bpf/bpf_iter.c)
# ---------------------------------------------------------------------------------------

_NUM = struct.Struct("<ii")      # struct bpf_iter_num_kern { int cur; int end; }
BPF_MAX_LOOPS = 8 * 1024 * 1024


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


@implements_kfunc("bpf_iter_num_new")
def bpf_iter_num_new(m, it, start, end, *_):
    start, end = _s32(start), _s32(end)
    if start > end:
        m.write(it, _NUM.pack(0, 0))
        return -22 & M64
    if end - start > BPF_MAX_LOOPS:
        m.write(it, _NUM.pack(0, 0))
        return -7 & M64
    m.write(it, _NUM.pack(_s32(start - 1), end))
    return 0


@implements_kfunc("bpf_iter_num_next")
def bpf_iter_num_next(m, it, *_):
    cur, end = _NUM.unpack(m.read(it, 8))
    if _s32(cur + 1) >= end:        # the int addition wraps, as the kernel's does
        m.write(it, _NUM.pack(0, 0))
        return 0
    m.write(it, _NUM.pack(_s32(cur + 1), end))
    return it                       # &s->cur: the first member


@implements_kfunc("bpf_iter_num_destroy")
def bpf_iter_num_destroy(m, it, *_):
    m.write(it, _NUM.pack(0, 0))
    return 0
