"""Map helpers: lookup/update/delete, queues, per-CPU lookups, local storage, stack traces.

A map argument is the map pointer a program got from ``lddw rX, map[id:N]``:
the address of the map's kernel view (its handle just before), which
:func:`ebee.maps.by_addr` maps back.
"""
from __future__ import annotations

import errno as E
import functools

from .. import uapi as U
from ..errors import VMError
from ..uapi import FuncId
from .registry import implements
from ..maps import by_addr
from ..maps.errors import MapError
from .task import current_task, task_at


def map_of(ptr: int):
    mp = by_addr(ptr)
    if mp is None:
        raise VMError(f"{ptr:#x} is not a map pointer (no live map has its handle there)")
    return mp


def map_op(fn):
    """A map helper: a map the helper does not apply to (what the verifier's
    check_map_func_compatibility refuses) ends the run with a VMError naming both."""
    @functools.wraps(fn)
    def impl(m, *args):
        try:
            return fn(m, *args)
        except MapError as e:
            raise VMError(f"bpf_{fn.__name__}: {e.strerror}") from None
    return impl


def _rdonly_prog(mp) -> None:
    if mp.flags & U.BPF_F_RDONLY_PROG:
        raise VMError(f"map {mp.id} is read-only for programs (BPF_F_RDONLY_PROG): the "
                      f"verifier rejects this write")


@implements(FuncId.map_lookup_elem)
@map_op
def map_lookup_elem(m, mp, key, *_):
    mp = map_of(mp)
    return mp.prog_lookup(m.read(key, mp.key_size), mp.cpu_slot(m.cpu))


@implements(FuncId.map_update_elem)
@map_op
def map_update_elem(m, mp, key, value, flags, _):
    mp = map_of(mp)
    _rdonly_prog(mp)
    if getattr(mp, "holds_sockets", False):     # the value is a socket pointer
        return mp.prog_update_sock(m.read(key, mp.key_size), value, flags) & ((1 << 64) - 1)
    return mp.prog_update(m.read(key, mp.key_size), m.read(value, mp.value_size), flags,
                          mp.cpu_slot(m.cpu))


@implements(FuncId.map_delete_elem)
@map_op
def map_delete_elem(m, mp, key, *_):
    mp = map_of(mp)
    _rdonly_prog(mp)
    return mp.prog_delete(m.read(key, mp.key_size), mp.cpu_slot(m.cpu))


@implements(FuncId.map_push_elem)
@map_op
def map_push_elem(m, mp, value, flags, *_):
    mp = map_of(mp)
    return mp.prog_push(m.read(value, mp.value_size), flags, mp.cpu_slot(m.cpu))


def _pop_or_peek(m, mp, value, pop: bool) -> int:
    mp = map_of(mp)
    if mp.type is U.MapType.BLOOM_FILTER:
        return -E.EOPNOTSUPP if pop else mp.prog_peek(mp.cpu_slot(m.cpu),
                                                      m.read(value, mp.value_size))
    got = mp.prog_pop(mp.cpu_slot(m.cpu)) if pop else mp.prog_peek(mp.cpu_slot(m.cpu))
    if isinstance(got, int):
        return got
    m.write(value, got)
    return 0


@implements(FuncId.map_pop_elem)
@map_op
def map_pop_elem(m, mp, value, *_):
    return _pop_or_peek(m, mp, value, True)


@implements(FuncId.map_peek_elem)
@map_op
def map_peek_elem(m, mp, value, *_):
    return _pop_or_peek(m, mp, value, False)


@implements(FuncId.map_lookup_percpu_elem)
@map_op
def map_lookup_percpu_elem(m, mp, key, cpu, *_):
    mp = map_of(mp)
    return mp.prog_lookup_percpu(m.read(key, mp.key_size), cpu & 0xFFFFFFFF)


@implements(FuncId.tail_call)
def tail_call(m, ctx, mp, index, *_):
    # Engines turn this call into a jump (see Machine.tail_call_target); reaching the
    # implementation means a helper table was used where the call instruction should be.
    raise VMError("bpf_tail_call is executed by the engine, not called as a function")


# -- local storage -------------------------------------------------------------------

def _storage(kind: U.MapType):
    def get(m, mp, owner, value, flags, _):
        mp = map_of(mp)
        if mp.type is not kind:
            raise VMError(f"map {mp.id} is a {mp.type.name}, not {kind.name}")
        if not owner:
            return 0
        init = m.read(value, mp.value_size) if value else None
        return mp.storage_get(owner, init, flags)

    def delete(m, mp, owner, *_):
        mp = map_of(mp)
        if mp.type is not kind:
            raise VMError(f"map {mp.id} is a {mp.type.name}, not {kind.name}")
        if not owner:
            return -E.EINVAL
        return mp.storage_delete(owner)
    return get, delete


for _kind, _get, _del in (
        (U.MapType.TASK_STORAGE, FuncId.task_storage_get, FuncId.task_storage_delete),
        (U.MapType.INODE_STORAGE, FuncId.inode_storage_get, FuncId.inode_storage_delete),
        (U.MapType.SK_STORAGE, FuncId.sk_storage_get, FuncId.sk_storage_delete),
        (U.MapType.CGRP_STORAGE, FuncId.cgrp_storage_get, FuncId.cgrp_storage_delete)):
    _g, _d = _storage(_kind)
    implements(_get)(_g)
    implements(_del)(_d)


# -- stack traces (from the simulated task) ------------------------------------------------

def _stack(m, flags: int, t=None) -> list[int]:
    t = t if t is not None else current_task(m)
    ips = t.user_stack if flags & U.BPF_F_USER_STACK else t.kernel_stack
    return list(ips[flags & U.BPF_F_SKIP_FIELD_MASK:])


@implements(FuncId.get_stackid)
@map_op
def get_stackid(m, ctx, mp, flags, *_):
    mp = map_of(mp)
    if mp.type is not U.MapType.STACK_TRACE:
        raise VMError(f"bpf_get_stackid: map {mp.id} is a {mp.type.name}, not STACK_TRACE")
    return mp.get_stackid(_stack(m, flags), flags)


@implements(FuncId.get_stack)
def get_stack(m, ctx, buf, size, flags, _):
    return _get_stack(m, None, buf, size, flags)


@implements(FuncId.get_task_stack)
def get_task_stack(m, task, buf, size, flags, _):
    size &= 0xFFFFFFFF                  # u32 size
    t = task_at(task)
    if t is None:           # not a task ebee made: nothing to unwind
        m.zero(buf, size)
        return -E.EFAULT
    if flags & U.BPF_F_USER_STACK and t.kthread:
        # a kernel thread has no user-mode registers to unwind from
        m.zero(buf, size)
        return -E.EFAULT
    return _get_stack(m, t, buf, size, flags)


def _get_stack(m, t, buf, size, flags):
    size &= 0xFFFFFFFF                  # u32 size
    if flags & ~(U.BPF_F_SKIP_FIELD_MASK | U.BPF_F_USER_STACK | U.BPF_F_USER_BUILD_ID) or \
            flags & U.BPF_F_USER_BUILD_ID or size % 8:
        m.zero(buf, size)
        return -E.EINVAL
    ips = _stack(m, flags, t)[:size // 8]
    data = b"".join(ip.to_bytes(8, "little") for ip in ips)
    m.zero(buf, size)                   # checks the whole buffer before filling it
    m.write(buf, data)
    return len(data)
