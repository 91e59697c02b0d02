"""Accesses through PTR_TO_BTF_ID (kernel objects) and CONST_PTR_TO_MAP.

Reading a kernel structure field through a BTF pointer is allowed by field
(btf_struct_access): the result is a scalar, or another BTF pointer for
pointer members.  Programs here use it for tracing contexts; the layout
comes from the kernel's BTF.
"""
from __future__ import annotations

from ..btf import BTF
from ..uapi import ENOTSUPP, FuncId, MapType
from .btfids import btf_struct_ids_match
from .env import Env
from .errors import EACCES, EPERM
from .struct_ops import btf_struct_write
from .func_proto import ARG_PTR_TO_BTF_ID_SOCK_COMMON
from .types import (MEM_ALLOC, MEM_PERCPU, OBJ_RELEASE, PTR_MAYBE_NULL, PTR_TO_BTF_ID, PTR_TRUSTED,
                    PTR_UNTRUSTED, SCALAR_VALUE, reg_type_str)

BPF_WRITE = 2


def _vmlinux():
    return BTF.load_vmlinux()


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
        dst.mark_unknown()
        dst.mark_known(0)
        dst.type = PTR_TO_BTF_ID | (reg.type & (PTR_UNTRUSTED | PTR_TRUSTED)) | PTR_UNTRUSTED \
            if target.kind.name == "STRUCT" else SCALAR_VALUE
        if dst.type != SCALAR_VALUE:
            dst.type = PTR_TO_BTF_ID | PTR_UNTRUSTED
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


def check_ptr_to_map_access(env: Env, regs, regno: int, off: int, size: int, t: int,
                            value_regno: int) -> None:
    m = getattr(regs[regno], "map", None)
    mtype = int(m.type) if m is not None else int(_M.ARRAY)
    tname = MAP_BTF_STRUCT.get(mtype)
    if tname is None:
        raise env.reject(f"map_ptr access not supported for map type {mtype}", ENOTSUPP)
    # reading the kernel's struct bpf_map leaks kernel pointers
    if not env.allow_ptr_leaks:
        raise env.reject(f"'struct {tname}' access is allowed only to CAP_PERFMON and "
                         f"CAP_SYS_ADMIN", EPERM)
    if off < 0:
        raise env.reject(f"R{regno} is {tname} invalid negative access: off={off}", EACCES)
    if t == BPF_WRITE:
        raise env.reject(f"only read from {tname} is supported", EACCES)
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
