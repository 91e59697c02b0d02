"""Cgroup helpers over a modelled cgroup v2 hierarchy: bpf_skb_cgroup_id,
bpf_skb_ancestor_cgroup_id, bpf_sk_cgroup_id, bpf_sk_ancestor_cgroup_id,
bpf_get_current_ancestor_cgroup_id, bpf_current_task_under_cgroup, bpf_skb_under_cgroup
and bpf_get_cgroup_classid.

The hierarchy is :func:`tree` -- the root (id 1, level 0, as in Linux) and whatever user
space adds::

    cg = ebee.helpers.cgroups.tree().add("/system.slice/nginx.service")   # ids allocated
    ebee.helpers.task.set_current(Task(cgroup_id=cg.id))

A task's cgroup is its ``cgroup_id`` (1: the root, where this host runs its processes on
the default hierarchy); an id the tree does not know is taken as a child of the root.  A
socket belongs to the cgroup of the task that created it: :func:`set_socket_cgroup` says
which, else it is the current task's (as for the socket a test run gives its packet,
which Linux allocates in the test-running task's cgroup).  CGROUP_ARRAY slots hold cgroup
ids or paths of the tree.  ``classid`` is the net_cls (v1) class of a cgroup: 0 unless
set.
"""
from __future__ import annotations

import errno
import threading
from dataclasses import dataclass, field

from ..errors import VMError
from ..layouts.kernel import SOCK
from ..packet.skbuff import from_ctx
from ..uapi import FuncId as F
from .maps import map_of
from .registry import implements
from .task import current_task

M64 = (1 << 64) - 1
TCP_TIME_WAIT, TCP_NEW_SYN_RECV = 6, 12


def neg(e: int) -> int:
    return -e & M64


@dataclass(eq=False)
class Cgroup:
    id: int
    name: str
    parent: "Cgroup | None" = None
    classid: int = 0
    children: dict[str, "Cgroup"] = field(default_factory=dict, repr=False)

    @property
    def level(self) -> int:
        return 0 if self.parent is None else self.parent.level + 1

    @property
    def path(self) -> str:
        if self.parent is None:
            return "/"
        up = self.parent.path
        return (up if up.endswith("/") else up + "/") + self.name

    def ancestor(self, level: int) -> "Cgroup | None":
        """cgroup_ancestor(): the ancestor at ``level`` (0: the root), None past our own."""
        if level < 0 or level > self.level:
            return None
        c = self
        while c.level > level:
            c = c.parent
        return c

    def is_descendant_of(self, other: "Cgroup") -> bool:
        """cgroup_is_descendant(): ``other`` is this cgroup or one of its ancestors."""
        a = self.ancestor(other.level)
        return a is other


class CgroupTree:
    """A cgroup v2 hierarchy: ids are kernfs node ids, the root's is 1."""

    def __init__(self) -> None:
        self.root = Cgroup(1, "")
        self._by_id: dict[int, Cgroup] = {1: self.root}
        self._next = 2
        self._lock = threading.Lock()

    def add(self, path: str, id: int | None = None, classid: int = 0) -> Cgroup:
        """The cgroup at ``path`` ("/a/b"), made with its missing parents."""
        with self._lock:
            c = self.root
            parts = [p for p in path.strip("/").split("/") if p]
            for k, name in enumerate(parts):
                nxt = c.children.get(name)
                if nxt is None:
                    want = id if k == len(parts) - 1 and id is not None else None
                    nxt = Cgroup(self._alloc(want), name, c)
                    c.children[name] = nxt
                    self._by_id[nxt.id] = nxt
                c = nxt
            if classid:
                c.classid = classid
            return c

    def _alloc(self, want: int | None) -> int:
        if want is not None:
            if want in self._by_id:
                raise ValueError(f"cgroup id {want} is taken")
            return want
        while self._next in self._by_id:
            self._next += 1
        return self._next

    def by_id(self, cid: int) -> Cgroup:
        """The cgroup with this id; an unknown id is a child of the root."""
        c = self._by_id.get(cid)
        if c is None:
            with self._lock:
                c = self._by_id.get(cid)
                if c is None:
                    c = Cgroup(cid, f"cgroup-{cid}", self.root)
                    self.root.children[c.name] = c
                    self._by_id[cid] = c
        return c

    def by_path(self, path: str) -> Cgroup | None:
        if path.startswith("/sys/fs/cgroup"):
            path = path[len("/sys/fs/cgroup"):]
        c = self.root
        for name in [p for p in path.strip("/").split("/") if p]:
            c = c.children.get(name)
            if c is None:
                return None
        return c


_tree = CgroupTree()
_socket_cgroup: dict[int, int] = {}


def tree() -> CgroupTree:
    return _tree


def set_socket_cgroup(sk_addr: int, cgroup_id: int | None) -> None:
    """Say which cgroup the socket at ``sk_addr`` belongs to (None: the current task's)."""
    if cgroup_id is None:
        _socket_cgroup.pop(sk_addr, None)
    else:
        _socket_cgroup[sk_addr] = cgroup_id


def _task_cgroup(m) -> Cgroup:
    return _tree.by_id(current_task(m).cgroup_id)


def socket_cgroup(m, sk: int) -> Cgroup | None:
    """sk_to_full_sk + sk_fullsock + sock_cgroup_ptr: None for no socket, a timewait one or
    a request socket (whose listener ebee does not model)."""
    if not sk:
        return None
    state = m.read(sk + SOCK.off("skc_state"), 1)[0]
    if state in (TCP_TIME_WAIT, TCP_NEW_SYN_RECV):
        return None
    cid = _socket_cgroup.get(sk)
    return _tree.by_id(cid) if cid is not None else _task_cgroup(m)


def _skb_sk(ctx: int) -> int:
    return from_ctx(ctx).sk_ptr


def _slot_cgroup(m, mp: int, idx: int) -> Cgroup | int:
    """The cgroup in CGROUP_ARRAY slot ``idx``, or the errno Linux returns."""
    mo = map_of(mp)
    idx &= 0xFFFFFFFF
    if idx >= mo.max_entries:
        return errno.E2BIG
    v = mo.slots[idx]
    if v is None:
        return errno.EAGAIN
    c = _tree.by_path(v) if isinstance(v, str) else _tree.by_id(v)
    if c is None:
        raise VMError(f"cgroup array slot {idx} names {v!r}, which the modelled cgroup tree "
                      f"(ebee.helpers.cgroups.tree()) does not have")
    return c


def _id(c: Cgroup | None) -> int:
    return c.id if c is not None else 0


def _level(level: int) -> int:
    level &= 0xFFFFFFFF                 # an int argument
    return level - (1 << 32) if level >> 31 else level


@implements(F.get_current_ancestor_cgroup_id)
def get_current_ancestor_cgroup_id(m, level, *_):
    return _id(_task_cgroup(m).ancestor(_level(level)))


@implements(F.skb_cgroup_id)
def skb_cgroup_id(m, ctx, *_):
    return _id(socket_cgroup(m, _skb_sk(ctx)))


@implements(F.skb_ancestor_cgroup_id)
def skb_ancestor_cgroup_id(m, ctx, level, *_):
    c = socket_cgroup(m, _skb_sk(ctx))
    return _id(c.ancestor(_level(level))) if c is not None else 0


@implements(F.sk_cgroup_id)
def sk_cgroup_id(m, sk, *_):
    return _id(socket_cgroup(m, sk))


@implements(F.sk_ancestor_cgroup_id)
def sk_ancestor_cgroup_id(m, sk, level, *_):
    c = socket_cgroup(m, sk)
    return _id(c.ancestor(_level(level))) if c is not None else 0


@implements(F.current_task_under_cgroup)
def current_task_under_cgroup(m, mp, idx, *_):
    c = _slot_cgroup(m, mp, idx)
    if isinstance(c, int):
        return neg(c)
    return int(_task_cgroup(m).is_descendant_of(c))


@implements(F.skb_under_cgroup)
def skb_under_cgroup(m, ctx, mp, idx, *_):
    own = socket_cgroup(m, _skb_sk(ctx))
    if own is None:
        return neg(errno.ENOENT)
    c = _slot_cgroup(m, mp, idx)
    if isinstance(c, int):
        return neg(c)
    return int(own.is_descendant_of(c))


@implements(F.get_cgroup_classid)
def get_cgroup_classid(m, *_):
    # both prototypes: the packet's socket's class (task_get_classid) or the current
    # task's; sockets take their creator's, so both are the task's cgroup's here
    return _task_cgroup(m).classid


# ------------------------------------------------------------------------------ retval

@implements(F.get_retval)
def get_retval(m, *_):
    return m.cg_retval & M64


@implements(F.set_retval)
def set_retval(m, retval, *_):
    retval &= 0xFFFFFFFF                 # an int
    m.cg_retval = retval - (1 << 32) if retval >> 31 else retval
    return 0


@implements(F.get_local_storage)
def get_local_storage(m, mp, flags, *_):
    """The running program's storage in a CGROUP_STORAGE / PERCPU_CGROUP_STORAGE map
    (this CPU's value for the per-CPU one); flags are refused by the verifier."""
    mo = map_of(mp)
    addr = m.cgroup_storage.get(mo.id)
    if addr is None:
        raise VMError(f"bpf_get_local_storage: the program runs without storage in map "
                      f"{mo.id} (only test runs and attached runs have one)")
    if mo.percpu:
        addr += mo.cpu_slot(m.cpu) * mo.elem_size
    return addr
