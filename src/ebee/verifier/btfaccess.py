"""Accesses through PTR_TO_BTF_ID (kernel objects) and CONST_PTR_TO_MAP.

Reading a kernel structure field through a BTF pointer is allowed by field
(btf_struct_access): the result is a scalar, or another BTF pointer for
pointer members.  Programs here use it for tracing contexts; the layout
comes from the kernel's BTF.

A map pointer (CONST_PTR_TO_MAP) is read as the kernel's struct behind the
map type (``struct bpf_array``, ``struct bpf_htab``, ...: MAP_BTF_STRUCT) with
btf_struct_access, read-only, as Linux does.  What it points at in ebee is the
map's *kernel view* (:func:`map_view`): that struct's bytes, laid out from the
same BTF, holding the members ebee's map can give exactly (MAP_VIEW_MEMBERS:
map_type, key_size, value_size, max_entries, ... at their BTF offsets).  Reads
of any other member -- kernel pointers, reference counts, locks -- are refused
(ENOTSUPP), never served with a made-up value.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ..btf import BTF
from ..uapi import (BPF_ATOMIC, BPF_F_NUMA_NODE, BPF_F_RDONLY, BPF_F_WRONLY, BPF_STX, ENOTSUPP,
                    FuncId, MapType)
from .btfids import btf_struct_ids_match
from .env import Env
from .errors import EACCES, EFAULT, EINVAL, EPERM
from .struct_ops import btf_struct_write
from .func_proto import ARG_PTR_TO_BTF_ID_SOCK_COMMON
from .types import (MEM_ALLOC, MEM_PERCPU, MEM_RCU, MEM_USER, OBJ_RELEASE, PTR_MAYBE_NULL,
                    PTR_TO_BTF_ID, PTR_TRUSTED,
                    PTR_UNTRUSTED, SCALAR_VALUE, reg_type_str)

BPF_WRITE = 2


def _vmlinux():
    return BTF.load_vmlinux()


# BTF_TYPE_SAFE_TRUSTED (kernel/bpf/verifier.c): struct -> pointer fields that are trusted
_SAFE_TRUSTED: dict[str, frozenset[str]] = {
    "bpf_iter_meta": frozenset({"seq"}),
    "bpf_iter__task": frozenset({"meta", "task"}),
    "linux_binprm": frozenset({"file"}),
    "file": frozenset({"f_inode"}),
    "dentry": frozenset({"d_inode"}),
}


def check_ptr_to_btf_access(env: Env, regs, regno: int, off: int, size: int, t: int,
                            value_regno: int) -> None:
    reg = regs[regno]
    btf = reg.btf or _vmlinux()
    try:
        struct = btf.resolve(reg.btf_id)
        tname = struct.name
    except Exception:
        raise env.reject(f"R{regno} invalid mem access '{reg_type_str(reg.type)}'") from None
    if off < 0:
        raise env.reject(f"R{regno} is ptr_{tname} invalid negative access: off={off}")
    if reg.bounds.var_off.mask:
        raise env.reject(f"R{regno} is ptr_{tname} invalid variable offset: off={off}, "
                         f"var_off={reg.bounds.var_off}")
    total = off + reg.bounds.var_off.value
    # program-allocated objects (bpf_obj_new) are the program's to write; kernel ones only
    # where the program type's btf_struct_access allows (struct_ops subsystems)
    if t == BPF_WRITE and not reg.type & MEM_ALLOC:
        btf_struct_write(env, btf, struct, total, size)
        return
    try:
        ssize = btf.sizeof(struct)
    except Exception:
        ssize = 0
    if total + size > ssize:
        raise env.reject(f"access beyond struct {tname} at off {total} size {size}")
    if t == BPF_WRITE or value_regno < 0:
        return
    dst = regs[value_regno]
    member = _member_at(btf, struct, total)
    if member is not None and member[1].kind.name == "PTR" and member[2] == total and size == 8:
        target = btf.skip_mods(member[1].type_id)
        # type_is_trusted(): the BTF_TYPE_SAFE_TRUSTED fields stay trusted when read
        # through a trusted pointer (read before dst, which may be reg, is overwritten)
        trusted = reg.type & PTR_TRUSTED and not reg.type & PTR_UNTRUSTED and \
            member[0].name in _SAFE_TRUSTED.get(tname, ())
        dst.mark_unknown()
        dst.mark_known(0)
        dst.type = PTR_TO_BTF_ID | (reg.type & (PTR_UNTRUSTED | PTR_TRUSTED)) | PTR_UNTRUSTED \
            if target.kind.name == "STRUCT" else SCALAR_VALUE
        if dst.type != SCALAR_VALUE:
            dst.type = PTR_TO_BTF_ID | (PTR_TRUSTED if trusted else PTR_UNTRUSTED)
            dst.btf = btf
            dst.btf_id = target.id
        else:
            env.mark_reg_unknown(regs, value_regno)
        return
    env.mark_reg_unknown(regs, value_regno)


_M = MapType
# the kernel struct behind each map type (its bpf_map_ops.map_btf_id)
MAP_BTF_STRUCT: dict[int, str] = {
    **dict.fromkeys((_M.ARRAY, _M.PERCPU_ARRAY, _M.PROG_ARRAY, _M.PERF_EVENT_ARRAY,
                     _M.CGROUP_ARRAY, _M.ARRAY_OF_MAPS), "bpf_array"),
    **dict.fromkeys((_M.HASH, _M.PERCPU_HASH, _M.LRU_HASH, _M.LRU_PERCPU_HASH,
                     _M.HASH_OF_MAPS), "bpf_htab"),
    _M.STACK_TRACE: "bpf_stack_map", _M.LPM_TRIE: "lpm_trie",
    _M.DEVMAP: "bpf_dtab", _M.DEVMAP_HASH: "bpf_dtab", _M.SOCKMAP: "bpf_stab",
    _M.SOCKHASH: "bpf_shtab", _M.CPUMAP: "bpf_cpu_map", _M.XSKMAP: "xsk_map",
    _M.CGROUP_STORAGE: "bpf_cgroup_storage_map",
    _M.PERCPU_CGROUP_STORAGE: "bpf_cgroup_storage_map",
    _M.REUSEPORT_SOCKARRAY: "reuseport_array", _M.QUEUE: "bpf_queue_stack",
    _M.STACK: "bpf_queue_stack",
    **dict.fromkeys((_M.SK_STORAGE, _M.INODE_STORAGE, _M.TASK_STORAGE, _M.CGRP_STORAGE),
                    "bpf_local_storage_map"),
    _M.STRUCT_OPS: "bpf_struct_ops_map", _M.RINGBUF: "bpf_ringbuf_map",
    _M.USER_RINGBUF: "bpf_ringbuf_map", _M.BLOOM_FILTER: "bpf_bloom_filter",
    _M.ARENA: "bpf_arena",
}

#: The members of a map's kernel struct that ebee's map memory serves, per struct
#: (``bpf_map`` is embedded in every map type's struct): each is a pure function of
#: the map's creation attributes (MapView.pack), so it reads as in Linux.
MAP_VIEW_MEMBERS: dict[str, tuple[str, ...]] = {
    "bpf_map": ("sha", "excl", "map_type", "key_size", "value_size", "max_entries", "map_extra",
                "map_flags", "id", "numa_node", "name"),
    "bpf_array": ("elem_size", "index_mask"),
}
NUMA_NO_NODE = -1


def _index_mask(max_entries: int) -> int:
    # array_map_alloc: (1 << fls_long(max_entries - 1)) - 1, whatever bypass_spec_v1 says
    return (1 << max(max_entries - 1, 0).bit_length()) - 1


#: map attribute -> the member's value (Linux's bpf_map_init_from_attr, array_map_alloc)
_VIEW_VALUES: dict[str, Any] = {
    # the map's SHA-256 is computed only when BPF_OBJ_GET_INFO_BY_FD asks for it (info.hash)
    # and the exclusive program's only when BPF_MAP_CREATE names one: ebee's maps do neither
    "sha": lambda m: b"",
    "excl": lambda m: 0,
    "map_type": lambda m: int(m.type),
    "key_size": lambda m: m.key_size,
    "value_size": lambda m: m.value_size,
    "max_entries": lambda m: m.max_entries,
    "map_extra": lambda m: getattr(m, "map_extra", 0),
    # bpf_map_flags_retain_permanent: the access flags belong to the fd, not the map
    "map_flags": lambda m: m.flags & ~(BPF_F_RDONLY | BPF_F_WRONLY),
    "id": lambda m: m.id,
    "numa_node": lambda m: (getattr(m, "numa_node", 0) if m.flags & BPF_F_NUMA_NODE
                            else NUMA_NO_NODE),
    "name": lambda m: (m.name or "").encode()[:15],
    "elem_size": lambda m: (m.value_size + 7) // 8 * 8,
    "index_mask": lambda m: _index_mask(m.max_entries),
}


@dataclass(frozen=True)
class MapView:
    """What a map pointer points at: the kernel struct ``struct`` of the map type,
    ``size`` bytes, with ``members`` (name -> (offset, size)) served."""
    struct: str
    size: int
    members: dict[str, tuple[int, int]]

    def serving(self, off: int, size: int) -> str | None:
        """The served member holding all of [off, off + size), or None."""
        for name, (moff, msize) in self.members.items():
            if moff <= off and off + size <= moff + msize:
                return name
        return None

    def pack(self, m: Any) -> bytes:
        """The view's bytes for map ``m`` (an ``ebee.maps.Map``); unserved bytes are 0."""
        buf = bytearray(self.size)
        for name, (off, size) in self.members.items():
            v = _VIEW_VALUES[name](m)
            if isinstance(v, bytes):
                buf[off:off + size] = v[:size].ljust(size, b"\0")
            else:
                buf[off:off + size] = (v & ((1 << 8 * size) - 1)).to_bytes(size, "little")
        return bytes(buf)


def _view_members(btf, t, base: int, out: dict[str, tuple[int, int]]) -> None:
    served = MAP_VIEW_MEMBERS.get(t.name, ())
    for m in t.members:
        if m.bitfield_size:
            continue
        off = base + m.bits_offset // 8
        mt = btf.resolve(m.type_id)
        if mt.kind.name == "STRUCT" and mt.name in MAP_VIEW_MEMBERS:
            _view_members(btf, mt, off, out)
        elif m.name in served:
            out[m.name] = (off, btf.sizeof(mt))


@functools.cache
def map_view(map_type: int) -> MapView | None:
    """The kernel view of a map of ``map_type`` as the running kernel's BTF lays it out;
    None where the type has no kernel struct or there is no kernel BTF."""
    tname = MAP_BTF_STRUCT.get(int(map_type))
    if tname is None:
        return None
    try:
        btf = _vmlinux()
        t = btf.find(tname, "struct")
    except Exception:
        return None
    members: dict[str, tuple[int, int]] = {}
    _view_members(btf, t, 0, members)
    return MapView(tname, t.size, members)


def _member_at(btf, struct, off: int, base: int = 0):
    """(member, its resolved type, offset, size) of the innermost member holding ``off``,
    descending into nested structs and unions as btf_struct_walk does."""
    for m in getattr(struct, "members", ()):
        moff = base + m.bits_offset // 8
        mt = btf.resolve(m.type_id)
        try:
            msz = btf.sizeof(mt)
        except Exception:
            msz = 0
        if moff <= off < moff + msz:
            if mt.kind.name in ("STRUCT", "UNION"):
                inner = _member_at(btf, mt, off, moff)
                if inner is not None:
                    return inner
            return m, mt, moff, msz
    return None


class _WalkError(Exception):
    def __init__(self, msg: str, errno: int) -> None:
        super().__init__(msg)
        self.errno = errno


ANON = "(anon)"
_TAG_FLAGS = {"user": MEM_USER, "percpu": MEM_PERCPU, "rcu": MEM_RCU}


def _resolve_size(btf, tid: int):
    """__btf_resolve_size: (type or first array, total size, element type, element id,
    element count, resolved id)."""
    t, array_type, nelems, rid, elem_id = btf[tid], None, 1, tid, 0
    for _ in range(32):
        k = t.kind.name
        if k in ("INT", "STRUCT", "UNION", "ENUM", "FLOAT", "ENUM64"):
            size = t.size
            break
        if k == "PTR":
            size = 8
            break
        if k in ("TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG"):
            rid = t.type_id
            t = btf[t.type_id]
        elif k == "ARRAY":
            array_type = array_type or t
            nelems *= t.nelems
            elem_id = t.type_id
            t = btf[t.type_id]
        else:
            return None
    else:
        return None
    return (array_type or t), nelems * size, t, elem_id, nelems, rid


def _struct_walk(btf, t, off: int, size: int, flag: int, walk_flex: bool):
    """btf_struct_walk: ("scalar", ...), ("ptr", id, flag) or ("struct", id, flag)."""
    while True:
        t = btf.resolve(t)
        tname = t.name or ANON     # __btf_name_by_offset
        if t.kind.name not in ("STRUCT", "UNION"):
            raise _WalkError(f"Type '{tname}' is not a struct", EINVAL)
        members = t.members
        if t.kind.name == "UNION" and len(members) != 1:
            flag |= PTR_UNTRUSTED       # walking unions yields untrusted pointers
        if off + size > t.size:
            last = members[-1] if walk_flex and members else None
            at = btf.resolve(last.type_id) if last is not None else None
            if at is not None and at.kind.name == "ARRAY" and at.nelems == 0 \
                    and off >= last.bits_offset // 8:
                et = btf.resolve(at.type_id)
                if et.kind.name == "INT":
                    return ("scalar", 0, flag)
                if et.kind.name in ("STRUCT", "UNION") and et.size:
                    off = (off - last.bits_offset // 8) % et.size
                    t = et
                    continue
            raise _WalkError(f"access beyond struct {tname} at off {off} size {size}", EACCES)
        descend = False
        for m in members:
            moff = m.bits_offset // 8
            if off + size <= moff:
                break
            if m.bitfield_size:
                end_bit = m.bits_offset + m.bitfield_size
                if off <= moff and (end_bit + 7) // 8 <= off + size:
                    return ("scalar", 0, flag)
                continue
            if off < moff:
                break       # a hole
            rs = _resolve_size(btf, m.type_id)
            if rs is None:
                raise _WalkError(f"field {m.name or ANON} doesn't have size", EFAULT)
            mtype, msize, elem_type, elem_id, total, mid = rs
            mtrue_end = moff + msize
            if off >= mtrue_end:
                continue
            if mtype.kind.name == "ARRAY":
                if moff == mtrue_end:
                    continue
                msize //= total
                moff += (off - moff) // msize * msize
                mtype, mid = elem_type, elem_id
            if mtype.kind.name in ("STRUCT", "UNION"):
                if off == moff:
                    return ("struct", mid, flag)
                off -= moff
                t, descend = mtype, True
                break
            if mtype.kind.name == "PTR":
                if msize != size or off != moff:
                    raise _WalkError(f"cannot access ptr member {m.name or ANON} with moff {moff} in "
                                     f"struct {tname} with off {off} size {size}", EACCES)
                tag = btf[mtype.type_id]
                tmp = _TAG_FLAGS.get(tag.name, 0) if tag.kind.name == "TYPE_TAG" else 0
                st = btf.resolve(mtype.type_id)
                if st.kind.name in ("STRUCT", "UNION"):
                    return ("ptr", st.id, flag | tmp)
            if off + size > mtrue_end and not flag & PTR_UNTRUSTED:
                raise _WalkError(f"access beyond the end of member {m.name or ANON} (mend:{mtrue_end}) "
                                 f"in struct {tname} with off {off} size {size}", EACCES)
            return ("scalar", 0, flag)
        if not descend:
            raise _WalkError(f"struct {tname} doesn't have field at offset {off}", EINVAL)


def btf_struct_access(btf, tid: int, off: int, size: int, walk_flex: bool = True):
    """btf_struct_access for a kernel (non-allocated) object: (SCALAR_VALUE, 0, 0) or
    (PTR_TO_BTF_ID, btf_id, flag); _WalkError with the kernel's message otherwise."""
    t, flag = btf[tid], 0
    while True:
        kind, nid, flag = _struct_walk(btf, t, off, size, flag, walk_flex)
        if kind == "ptr":
            return PTR_TO_BTF_ID, nid, flag
        if kind == "scalar":
            return SCALAR_VALUE, 0, 0
        t, off = btf[nid], 0


def check_ptr_to_map_access(env: Env, regs, regno: int, off: int, size: int, t: int,
                            value_regno: int) -> None:
    m = getattr(regs[regno], "map", None)
    mtype = int(m.type) if m is not None else int(_M.ARRAY)
    tname = MAP_BTF_STRUCT.get(mtype)
    if tname is None:
        raise env.reject(f"map_ptr access not supported for map type {mtype}", ENOTSUPP)
    try:
        btf = _vmlinux()
        struct = btf.find(tname, "struct")
    except Exception:
        raise env.reject("map_ptr access not supported without CONFIG_DEBUG_INFO_BTF",
                         ENOTSUPP) from None
    # reading the kernel's struct bpf_map leaks kernel pointers
    if not env.allow_ptr_leaks:
        raise env.reject(f"'struct {tname}' access is allowed only to CAP_PERFMON and "
                         f"CAP_SYS_ADMIN", EPERM)
    if off < 0:
        raise env.reject(f"R{regno} is {tname} invalid negative access: off={off}", EACCES)
    if t == BPF_WRITE:
        raise env.reject(f"only read from {tname} is supported", EACCES)
    try:
        rtype, _btf_id, _flag = btf_struct_access(btf, struct.id, off, size)
    except _WalkError as e:
        raise env.reject(str(e), e.errno) from None
    # At run time a map pointer points at the map's kernel view: only the members it
    # serves hold the kernel's values, and a pointer read there would be NULL (or worse)
    # where Linux has a real object the program could follow.
    view = map_view(mtype)
    insn = env.insns[env.insn_idx]
    if insn.cls == BPF_STX and insn.mode == BPF_ATOMIC:
        return          # the read-modify-write's write is refused next, as in Linux
    if rtype != SCALAR_VALUE or view is None or view.serving(off, size) is None:
        served = ", ".join(view.members) if view else "nothing"
        raise env.reject(f"ebee: reading struct {tname} at off {off} size {size} through a "
                         f"map pointer is not supported (only {served} are served)", ENOTSUPP)
    if value_regno >= 0:
        env.mark_reg_unknown(regs, value_regno)


def check_btf_id_arg(env: Env, regno: int, reg, arg_base: int, meta, arg_flags: int = 0,
                     arg_btf: str | None = None) -> None:
    """check_reg_type's BTF part: a kernel pointer passed to a helper points to the
    struct its prototype names (sock_common for the socket ones), or one holding it
    at the pointer's offset; exactly it for a release.  Per-cpu, allocated and
    kptr_xchg pointers are checked by their helpers."""
    t = reg.type
    if t & (MEM_ALLOC | MEM_PERCPU) or meta.func_id == FuncId.kptr_xchg:
        return
    release = bool(arg_flags & OBJ_RELEASE)
    if t & PTR_MAYBE_NULL and (not arg_flags & PTR_MAYBE_NULL or release):
        raise env.reject(f"Possibly NULL pointer passed to helper arg{regno}")
    name = arg_btf or ("sock_common" if arg_base == ARG_PTR_TO_BTF_ID_SOCK_COMMON else None)
    if name is None:
        raise env.bug("missing arg compatible BTF ID")
    vml = _vmlinux()
    need = vml.find(name, "struct").id
    strict = release and meta.func_id != FuncId.sk_release
    if reg.btf is not vml or not btf_struct_ids_match(vml, reg.btf_id, reg.off, need, strict):
        have = reg.btf[reg.btf_id].name if reg.btf is not None else ""
        raise env.reject(f"R{regno} is of type {have} but {name} is expected")


def helper_ret_btf(env: Env, fn, meta, r0, rb: int, rflag: int) -> None:
    """RET_PTR_TO_BTF_ID: R0 points to the kernel struct the prototype names
    (bpf_func_proto.ret_btf_id, resolved in the running kernel's BTF)."""
    r0.mark_known(0)
    r0.type = PTR_TO_BTF_ID | rflag
    r0.btf = None
    r0.btf_id = 0
    name = getattr(fn, "ret_btf_id", None)
    if name:
        try:
            btf = _vmlinux()
            r0.btf, r0.btf_id = btf, btf.find(name, "struct").id
        except Exception:
            pass


def check_map_kptr_access(env: Env, regno: int, value_regno: int, insn_idx: int, kptr) -> None:
    regs = env.cur_regs()
    if value_regno >= 0:
        env.mark_reg_unknown(regs, value_regno)
