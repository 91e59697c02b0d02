"""Loads, stores and atomics: check_mem_access and the per-pointer-type rules.

Stack slots are tracked byte by byte (STACK_MISC / STACK_ZERO / STACK_SPILL /
STACK_INVALID) with whole spilled registers, as in Linux; map values, map
keys, packets, context, sockets and memory regions each get their own
bounds rules; check_helper_mem_access applies them to the memory a helper (or
a global function) is passed.  Messages are the kernel's.
"""
from __future__ import annotations

from .. import uapi as U
from ..btf import BTF
from ..uapi import MAX_BPF_STACK
from . import types as T
from .bounds import S64_MIN, U64, s64
from .btfaccess import check_map_kptr_access, check_ptr_to_btf_access, check_ptr_to_map_access
from .btfctx import attach_proto, btf_ctx_access, nf_ctx_access
from .env import DST_OP, DST_OP_NO_MARK, SRC_OP, Env, assign_scalar_id_before_mov
from .errors import EACCES, EFAULT, EINVAL, VerifierReject
from .func_proto import CallArgMeta
from .insn import Insn
from .log import tnum_str
from .precision import mark_chain_precision, push_jmp_history, stack_access_flags
from .refs import check_resource_leak
from .sock import check_sock_access
from .state import FuncState, RegState, StackSlot
from .tnum import const
from .types import (BPF_MAX_VAR_OFF, BPF_REG_SIZE, CONST_PTR_TO_MAP, MEM_RDONLY, NOT_INIT,
                    PTR_MAYBE_NULL, PTR_TO_ARENA, PTR_TO_BTF_ID, PTR_TO_BUF, PTR_TO_CTX,
                    PTR_TO_FLOW_KEYS, PTR_TO_FUNC, PTR_TO_MAP_KEY, PTR_TO_MAP_VALUE, PTR_TO_MEM,
                    PTR_TO_PACKET, PTR_TO_PACKET_END, PTR_TO_PACKET_META, PTR_TO_SOCK_COMMON,
                    PTR_TO_SOCKET, PTR_TO_STACK, PTR_TO_TCP_SOCK, PTR_TO_TP_BUFFER,
                    PTR_TO_XDP_SOCK, PTR_UNTRUSTED, SCALAR_VALUE, STACK_DYNPTR, STACK_INVALID,
                    STACK_IRQ_FLAG, STACK_ITER, STACK_MISC, STACK_SPILL, STACK_ZERO,
                    base_type, reg_type_str, type_is_pkt_pointer, type_is_sk_pointer)

BPF_READ, BPF_WRITE = 1, 2
SIZE_BYTES = {U.BPF_W: 4, U.BPF_H: 2, U.BPF_B: 1, U.BPF_DW: 8}

_SPILLABLE = {PTR_TO_MAP_VALUE, PTR_TO_STACK, PTR_TO_CTX, PTR_TO_PACKET, PTR_TO_PACKET_META,
              PTR_TO_PACKET_END, PTR_TO_FLOW_KEYS, CONST_PTR_TO_MAP, PTR_TO_SOCKET,
              PTR_TO_SOCK_COMMON, PTR_TO_TCP_SOCK, PTR_TO_XDP_SOCK, PTR_TO_BTF_ID, PTR_TO_BUF,
              PTR_TO_MEM, 20, PTR_TO_MAP_KEY, PTR_TO_ARENA}


def is_spillable_regtype(t: int) -> bool:
    return base_type(t) in _SPILLABLE


def reg_state_frame(env: Env, reg: RegState) -> FuncState:
    """func(env, reg): the frame a stack pointer points into."""
    return env.cur_state.frames[reg.frameno]


# ---------------------------------------------------------------------------
# stack slot editing (slots are immutable; writers store new ones)


def set_slot(env: Env, frame: FuncState, spi: int, types: str, reg: RegState | None) -> None:
    frame.stack[spi] = StackSlot(types, reg)


def _set_byte(types: str, k: int, c: str) -> str:
    return types[:k] + c + types[k + 1:]


def _misc_unless_zero(env: Env, c: str) -> str:
    """mark_stack_slot_misc."""
    if c == STACK_ZERO:
        return c
    if c == STACK_INVALID and env.allow_ptr_leaks:
        return c
    return STACK_MISC


def _is_special(slot: StackSlot) -> bool:
    return slot.slot_type[7] in (STACK_SPILL, STACK_DYNPTR, STACK_ITER, STACK_IRQ_FLAG)


def save_register_state(env: Env, frame: FuncState, spi: int, reg: RegState, size: int) -> None:
    old = frame.stack[spi].slot_type
    t = list(old)
    for i in range(BPF_REG_SIZE, BPF_REG_SIZE - size, -1):
        t[i - 1] = STACK_SPILL
    for i in range(BPF_REG_SIZE - size, 0, -1):
        t[i - 1] = _misc_unless_zero(env, t[i - 1])
    set_slot(env, frame, spi, "".join(t), reg.copy())


# ---------------------------------------------------------------------------
# alignment


def check_ptr_alignment(env: Env, reg: RegState, off: int, size: int, strict_once: bool) -> None:
    strict = env.strict_alignment or strict_once
    t = reg.type
    desc = ""
    if t in (PTR_TO_PACKET, PTR_TO_PACKET_META):
        if not strict or size == 1:
            return
        ro = reg.bounds.var_off.add(_const(2 + reg.off + off))
        if not ro.is_aligned(size):
            raise env.reject(f"misaligned packet access off 2+{tnum_str(reg.bounds.var_off)}+"
                             f"{reg.off}+{off} size {size}")
        return
    if t == PTR_TO_FLOW_KEYS:
        desc = "flow keys "
    elif t == PTR_TO_MAP_KEY:
        desc = "key "
    elif t == PTR_TO_MAP_VALUE:
        desc = "value "
    elif t == PTR_TO_CTX:
        desc = "context "
    elif t == PTR_TO_STACK:
        desc = "stack "
        strict = True
    elif t == PTR_TO_SOCKET:
        desc = "sock "
    elif t == PTR_TO_SOCK_COMMON:
        desc = "sock_common "
    elif t == PTR_TO_TCP_SOCK:
        desc = "tcp_sock "
    elif t == PTR_TO_XDP_SOCK:
        desc = "xdp_sock "
    elif t == PTR_TO_ARENA:
        return
    if env.any_alignment and t != PTR_TO_STACK:
        strict = strict_once
    if not strict or size == 1:
        return
    ro = reg.bounds.var_off.add(_const(reg.off + off))
    if not ro.is_aligned(size):
        raise env.reject(f"misaligned {desc}access off {tnum_str(reg.bounds.var_off)}+{reg.off}+"
                         f"{off} size {size}")


def _const(v: int):
    return const(v)


# ---------------------------------------------------------------------------
# bounded regions: map values and keys, memory, packets


def _check_mem_access_msg(env: Env, regno: int, off: int, size: int, mem_size: int,
                          zero_ok: bool) -> bool:
    """__check_mem_access: True if [off, off+size) is inside [0, mem_size)."""
    size_ok = size > 0 or (size == 0 and zero_ok)
    if off >= 0 and size_ok and off + size <= mem_size:
        return True
    reg = env.cur_regs()[regno]
    off = _s32(off)
    if reg.type == PTR_TO_MAP_KEY:
        env.verbose(f"invalid access to map key, key_size={mem_size} off={off} size={size}\n")
    elif reg.type == PTR_TO_MAP_VALUE:
        env.verbose(f"invalid access to map value, value_size={mem_size} off={off} size={size}\n")
    elif reg.type in (PTR_TO_PACKET, PTR_TO_PACKET_META, PTR_TO_PACKET_END):
        env.verbose(f"invalid access to packet, off={off} size={size}, R{regno}(id={reg.id},"
                    f"off={off},r={_s32(mem_size)})\n")
    else:
        env.verbose(f"invalid access to memory, mem_size={mem_size & 0xFFFFFFFF} off={off} "
                    f"size={size}\n")
    return False


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def check_mem_region_access(env: Env, regno: int, off: int, size: int, mem_size: int,
                            zero_ok: bool) -> None:
    reg = env.cur_regs()[regno]
    b = reg.bounds
    smin = b.smin_value
    if smin < 0 and (smin == S64_MIN or not (-(1 << 31) <= off + smin < (1 << 31))
                     or smin + off < 0):
        raise env.reject(f"R{regno} min value is negative, either use unsigned index or do a "
                         f"if (index >=0) check.")
    if not _check_mem_access_msg(env, regno, smin + off, size, mem_size, zero_ok):
        raise env.reject(f"R{regno} min value is outside of the allowed memory range")
    if b.umax_value >= BPF_MAX_VAR_OFF:
        raise env.reject(f"R{regno} unbounded memory access, make sure to bounds check any such "
                         f"access")
    if not _check_mem_access_msg(env, regno, b.umax_value + off, size, mem_size, zero_ok):
        raise env.reject(f"R{regno} max value is outside of the allowed memory range")


_FIELD_SIZE: dict[str, int] = {}


def _special_size(name: str) -> int:
    """sizeof(struct bpf_spin_lock) & co, from the kernel's BTF."""
    n = _FIELD_SIZE.get(name)
    if n is None:
        try:
            btf = BTF.load_vmlinux()
            n = btf.sizeof(btf.find(name, "STRUCT"))
        except Exception:
            n = 4 if name in ("bpf_spin_lock", "bpf_refcount") else 16
        _FIELD_SIZE[name] = n
    return n


def map_record(m) -> tuple:
    """The special fields of a map's value (the kernel's ``map->record``) as
    ``((offset, size, kind), ...)``, from the map's own ``record`` (offsets by
    kind, computed from its BTF value type when the map was created)."""
    rec = m.record
    if not rec:
        return ()
    return tuple(sorted((off, _special_size(kind), kind) for kind, off in rec.items()
                        if off is not None and off >= 0))


def check_map_access(env: Env, regno: int, off: int, size: int, zero_ok: bool,
                     direct: bool = True) -> None:
    reg = env.cur_regs()[regno]
    m = reg.map
    check_mem_region_access(env, regno, off, size, m.value_size, zero_ok)
    b = reg.bounds
    for (p, fsize, kind) in map_record(m):
        if b.smin_value + off < p + fsize and p < b.umax_value + off + size:
            if kind in ("kptr", "kptr_ref", "percpu_kptr", "uptr"):
                if not direct:
                    raise env.reject(f"{kind} cannot be accessed indirectly by helper")
                if b.var_off.mask:
                    raise env.reject(f"{kind} access cannot have variable offset")
                if p != off + b.var_off.value:
                    raise env.reject(f"{kind} access misaligned expected={p} "
                                     f"off={off + b.var_off.value}")
                if size != 8:
                    raise env.reject(f"{kind} access size must be BPF_DW")
            else:
                raise env.reject(f"{kind} cannot be accessed directly by load/store")


def check_map_access_type(env: Env, regno: int, off: int, size: int, t: int) -> None:
    reg = env.cur_regs()[regno]
    m = reg.map
    flags = m.flags
    if t == BPF_WRITE and flags & U.BPF_F_RDONLY_PROG:
        raise env.reject(f"write into map forbidden, value_size={m.value_size} "
                         f"off={reg.off if False else off} size={size}")
    if t == BPF_READ and flags & U.BPF_F_WRONLY_PROG:
        raise env.reject(f"read from map forbidden, value_size={m.value_size} off={off} "
                         f"size={size}")


def check_packet_access(env: Env, regno: int, off: int, size: int, zero_ok: bool) -> None:
    reg = env.cur_regs()[regno]
    if reg.bounds.smin_value < 0:
        raise env.reject(f"R{regno} min value is negative, either use unsigned index or do a "
                         f"if (index >=0) check.")
    ok = reg.range >= 0 and _check_mem_access_msg(env, regno, off, size, reg.range, zero_ok)
    if not ok:
        raise env.reject(f"R{regno} offset is outside of the packet")


def may_access_direct_pkt_data(env: Env, pkt_access_meta, t: int) -> bool:
    pt = env.prog_type
    P = U.ProgType
    if pt in (P.LWT_IN, P.LWT_OUT, P.LWT_SEG6LOCAL, P.SK_REUSEPORT, P.FLOW_DISSECTOR,
              P.CGROUP_SKB):
        if t == BPF_WRITE:
            return False
        return pkt_access_meta if pkt_access_meta is not None else True
    if pt in (P.SCHED_CLS, P.SCHED_ACT, P.XDP, P.LWT_XMIT, P.SK_SKB, P.SK_MSG):
        if pkt_access_meta is not None:
            return pkt_access_meta
        env.seen_direct_write = True
        return True
    if pt == P.CGROUP_SOCKOPT:
        return True
    return False


def check_ptr_off_reg(env: Env, reg: RegState, regno: int, fixed_off_ok: bool = False) -> None:
    """__check_ptr_off_reg: the pointer must be unmodified (or only fixed-offset)."""
    if reg.off < 0:
        raise env.reject(f"negative offset {reg_type_str(reg.type)} ptr R{regno} off={reg.off} "
                         f"disallowed")
    if not fixed_off_ok and reg.off:
        raise env.reject(f"dereference of modified {reg_type_str(reg.type)} ptr R{regno} "
                         f"off={reg.off} disallowed")
    vo = reg.bounds.var_off
    if vo.mask or vo.value:
        raise env.reject(f"variable {reg_type_str(reg.type)} access var_off={tnum_str(vo)} "
                         f"disallowed")


# ---------------------------------------------------------------------------
# context


def _ctx_reg_type(rt) -> int:
    """A progtypes.RegType (kernel name) as this package's register type."""
    name = rt.name
    flags = 0
    if name.endswith("_OR_NULL"):
        name = name[:-len("_OR_NULL")]
        flags = PTR_MAYBE_NULL
    return int(getattr(T, name)) | flags


def _btf_typed_ctx(env: Env) -> bool:
    """Is the context the BTF-typed argument array of a trampoline/tp_btf/LSM program?"""
    if env.prog_type == U.ProgType.TRACING and env.expected_attach_type == \
            U.AttachType.TRACE_ITER:
        return attach_proto(env) is not None     # an iterator target typed in btfctx
    return env.prog_type in (U.ProgType.TRACING, U.ProgType.LSM) and \
        env.expected_attach_type in _BTF_CTX_ATTACH or env.struct_ops_member is not None


_BTF_CTX_ATTACH = {U.AttachType.TRACE_RAW_TP, U.AttachType.TRACE_FENTRY,
                   U.AttachType.TRACE_FEXIT, U.AttachType.MODIFY_RETURN,
                   U.AttachType.LSM_MAC, U.AttachType.LSM_CGROUP, U.AttachType.TRACE_ITER}


def check_ctx_access(env: Env, insn_idx: int, off: int, size: int, t: int,
                     is_ldsx: bool = False):
    info = env.ptinfo
    acc = info.ctx_access(off, size, t == BPF_WRITE, bpf_capable=env.bpf_capable) \
        if info is not None else None
    # a sign-extended pointer is no pointer: the is_valid_access of every context
    # with a 4-byte pointer field (__sk_buff, xdp_md, the flow dissector's data and
    # data_end) refuses info->is_ldsx there
    if acc is None or (is_ldsx and acc.reg_type is not None and
                       _ctx_reg_type(acc.reg_type) != SCALAR_VALUE):
        raise env.reject(f"invalid bpf_context access off={off} size={size}")
    env.aux[insn_idx].ctx_field_size = acc.ctx_field_size
    return acc


# ---------------------------------------------------------------------------
# the stack


def check_stack_slot_within_bounds(env: Env, off: int, frame: FuncState, t: int) -> bool:
    if t == BPF_WRITE or env.allow_uninit_stack:
        min_valid = -MAX_BPF_STACK
    else:
        min_valid = -frame.allocated_stack
    return min_valid <= off <= -1


def grow_stack_state(env: Env, frame: FuncState, size: int) -> None:
    size = (size + BPF_REG_SIZE - 1) // BPF_REG_SIZE * BPF_REG_SIZE
    if size <= frame.allocated_stack:
        return
    frame.grow_stack(size)
    sp = env.subprogs[frame.subprogno]
    if sp.stack_depth < size:
        sp.stack_depth = size


def check_stack_access_within_bounds(env: Env, regno: int, off: int, size: int, t: int) -> None:
    reg = env.cur_regs()[regno]
    frame = reg_state_frame(env, reg)
    extra = " read from" if t == BPF_READ else " write to"
    b = reg.bounds
    if not b.var_off.mask:
        min_off = s64(b.var_off.value) + off
        max_off = min_off + size
    else:
        if b.smax_value >= BPF_MAX_VAR_OFF or b.smin_value <= -BPF_MAX_VAR_OFF:
            raise env.reject(f"invalid unbounded variable-offset{extra} stack R{regno}")
        min_off = b.smin_value + off
        max_off = b.smax_value + off + size
    err = None
    if not check_stack_slot_within_bounds(env, min_off, frame, t):
        err = EACCES
    elif max_off > 0:
        err = EINVAL
    elif size < 0:
        err = EFAULT
    if err:
        if not b.var_off.mask:
            raise env.reject(f"invalid{extra} stack R{regno} off={off} size={size}", err)
        raise env.reject(f"invalid variable-offset{extra} stack R{regno} "
                         f"var_off={tnum_str(b.var_off)} off={off} size={size}", err)
    grow_stack_state(env, frame, -min_off)


def check_stack_write(env: Env, ptr_regno: int, off: int, size: int, value_regno: int,
                      insn_idx: int) -> None:
    reg = env.cur_regs()[ptr_regno]
    frame = reg_state_frame(env, reg)
    if not reg.bounds.var_off.mask:
        off += s64(reg.bounds.var_off.value)
        check_stack_write_fixed_off(env, frame, off, size, value_regno, insn_idx)
    else:
        check_stack_write_var_off(env, frame, ptr_regno, off, size, value_regno, insn_idx)


def check_stack_write_fixed_off(env: Env, frame: FuncState, off: int, size: int,
                                value_regno: int, insn_idx: int) -> None:
    slot = -off - 1
    spi = slot // BPF_REG_SIZE
    cur_slot = frame.stack[spi]
    insn_flags = stack_access_flags(frame.frameno, spi)
    if not env.allow_ptr_leaks and cur_slot.is_spill() and cur_slot.spilled_ptr is not None \
            and cur_slot.spilled_ptr.type != SCALAR_VALUE and size != BPF_REG_SIZE:
        raise env.reject("attempt to corrupt spilled pointer on stack")
    cur = env.cur_func()
    reg = cur.regs[value_regno] if value_regno >= 0 else None
    insn = env.insns[insn_idx]
    if not env.bypass_spec_v4:
        # Spectre v4: a store that may be bypassed speculatively (over a spilled
        # pointer or uninitialised bytes) gets a barrier after it, so speculative
        # paths end here
        if (reg is not None and is_spillable_regtype(reg.type)) or \
                any(t not in (STACK_MISC, STACK_ZERO) for t in frame.stack[spi].slot_type[:size]):
            env.aux[insn_idx].nospec_result = True
    destroy_if_dynptr_stack_slot(env, frame, spi)
    if off % BPF_REG_SIZE == 0 and size == BPF_REG_SIZE and env.liveness is not None:
        env.liveness.mark_write(env, frame.frameno, spi)
    env.mark_stack_slot_scratched(spi)
    is_st = insn.cls == U.BPF_ST and insn.mode == U.BPF_MEM
    if reg is not None and off % BPF_REG_SIZE == 0 and reg.type == SCALAR_VALUE \
            and env.bpf_capable:
        fits = reg.bounds.width() <= 8 * size
        if fits:
            assign_scalar_id_before_mov(env, reg)
        save_register_state(env, frame, spi, reg, size)
        if not fits:
            frame.stack[spi].spilled_ptr.id = 0
    elif reg is None and off % BPF_REG_SIZE == 0 and is_st and env.bpf_capable:
        tmp = RegState(SCALAR_VALUE)
        tmp.mark_known(insn.imm)
        tmp.type = SCALAR_VALUE
        save_register_state(env, frame, spi, tmp, size)
    elif reg is not None and is_spillable_regtype(reg.type):
        if size != BPF_REG_SIZE:
            env.verbose_linfo(insn_idx, "; ")
            raise env.reject("invalid size of register spill")
        if frame is not cur and reg.type == PTR_TO_STACK:
            raise env.reject("cannot spill pointers to stack into stack frame of the caller",
                             EINVAL)
        save_register_state(env, frame, spi, reg, size)
    else:
        typ = STACK_MISC
        cs = frame.stack[spi]
        types = cs.slot_type
        if _is_special(cs):
            types = "".join(c if c == STACK_INVALID else STACK_MISC for c in types)
        if (reg is not None and reg.type == SCALAR_VALUE and reg.bounds.var_off.mask == 0
                and reg.bounds.var_off.value == 0) or \
                (reg is None and is_st and insn.imm == 0):
            mark_chain_precision(env, value_regno)
            typ = STACK_ZERO
        t = list(types)
        for i in range(size):
            t[(slot - i) % BPF_REG_SIZE] = typ
        set_slot(env, frame, spi, "".join(t), None)
        insn_flags = 0
    if insn_flags:
        push_jmp_history(env, env.cur_state, insn_flags, 0)


def check_stack_write_var_off(env: Env, frame: FuncState, ptr_regno: int, off: int, size: int,
                              value_regno: int, insn_idx: int) -> None:
    cur = env.cur_func()
    ptr = cur.regs[ptr_regno]
    min_off = ptr.bounds.smin_value + off
    max_off = ptr.bounds.smax_value + off + size
    vreg = cur.regs[value_regno] if value_regno >= 0 else None
    insn = env.insns[insn_idx]
    writing_zero = (vreg is not None and vreg.type == SCALAR_VALUE and vreg.is_const()
                    and vreg.bounds.var_off.value == 0) or \
        (vreg is None and insn.cls == U.BPF_ST and insn.imm == 0)
    for i in range(min_off, max_off):
        destroy_if_dynptr_stack_slot(env, frame, (-i - 1) // BPF_REG_SIZE)
    zero_used = False
    for i in range(min_off, max_off):
        slot = -i - 1
        spi = slot // BPF_REG_SIZE
        k = slot % BPF_REG_SIZE
        s = frame.stack[spi]
        stype = s.slot_type[k]
        env.mark_stack_slot_scratched(spi)
        if not env.allow_ptr_leaks and stype not in (STACK_MISC, STACK_ZERO):
            raise env.reject(f"spilled ptr in range of var-offset stack write; insn {insn_idx}, "
                             f"ptr off: {i}", EINVAL)
        if writing_zero and stype == STACK_SPILL and s.spilled_ptr is not None and \
                s.spilled_ptr.type == SCALAR_VALUE and s.spilled_ptr.is_const() and \
                s.spilled_ptr.bounds.var_off.value == 0:
            zero_used = True
            continue
        # a write over part of a spill destroys the whole spill (scrub_special_slot):
        # a slot left looking spilled with no register behind it would be read as one
        types = s.slot_type
        if _is_special(s):
            types = "".join(c if c == STACK_INVALID else STACK_MISC for c in types)
        stype = types[k]
        new_type = STACK_MISC
        if writing_zero and stype == STACK_ZERO:
            new_type = STACK_ZERO
            zero_used = True
        if stype == STACK_INVALID and not env.allow_uninit_stack:
            raise env.reject(f"uninit stack in range of var-offset write prohibited for !root; "
                             f"insn {insn_idx}, off: {i}", EINVAL)
        set_slot(env, frame, spi, _set_byte(types, k, new_type), None)
    if zero_used:
        mark_chain_precision(env, value_regno)


def check_stack_read(env: Env, ptr_regno: int, off: int, size: int, dst_regno: int) -> None:
    reg = env.cur_regs()[ptr_regno]
    frame = reg_state_frame(env, reg)
    var_off = bool(reg.bounds.var_off.mask)
    if dst_regno < 0 and var_off:
        raise env.reject(f"variable offset stack pointer cannot be passed into helper function; "
                         f"var_off={tnum_str(reg.bounds.var_off)} off={off} size={size}")
    if not var_off:
        off += s64(reg.bounds.var_off.value)
        check_stack_read_fixed_off(env, frame, off, size, dst_regno)
    else:
        check_stack_range_initialized(env, ptr_regno, off, size, False, BPF_READ, None)
        min_off = reg.bounds.smin_value + off
        max_off = reg.bounds.smax_value + off
        mark_reg_stack_read(env, frame, min_off, max_off + size, dst_regno)


def mark_reg_stack_read(env: Env, frame: FuncState, min_off: int, max_off: int,
                        dst_regno: int) -> None:
    regs = env.cur_regs()
    zeros = 0
    for i in range(min_off, max_off):
        slot = -i - 1
        spi = slot // BPF_REG_SIZE
        env.mark_stack_slot_scratched(spi)
        if frame.stack[spi].slot_type[slot % BPF_REG_SIZE] != STACK_ZERO:
            break
        zeros += 1
    if zeros == max_off - min_off:
        mark_reg_const_zero(env, regs[dst_regno])
    else:
        env.mark_reg_unknown(regs, dst_regno)


def mark_reg_const_zero(env: Env, reg: RegState) -> None:
    reg.mark_known(0)
    reg.type = SCALAR_VALUE
    reg.precise = not env.bpf_capable


def check_stack_read_fixed_off(env: Env, frame: FuncState, off: int, size: int,
                               dst_regno: int) -> None:
    state = env.cur_func()
    slot = -off - 1
    spi = slot // BPF_REG_SIZE
    s = frame.stack[spi]
    stype = s.slot_type
    insn_flags = stack_access_flags(frame.frameno, spi)
    env.mark_stack_slot_scratched(spi)
    if env.liveness is not None:
        env.liveness.mark_read(env, frame.frameno, spi)
    if stype[7] == STACK_SPILL:
        reg = s.reg()
        spill_size = 1
        i = BPF_REG_SIZE - 1
        while i > 0 and stype[i - 1] == STACK_SPILL:
            spill_size += 1
            i -= 1
        if size != BPF_REG_SIZE or spill_size != BPF_REG_SIZE:
            if reg.type != SCALAR_VALUE:
                env.verbose_linfo(env.insn_idx, "; ")
                raise env.reject("invalid size of register fill")
            if dst_regno < 0:
                return
            if size <= spill_size and off % BPF_REG_SIZE == 0:
                if env.bpf_capable and size == 4 and spill_size == 4 and reg.bounds.width() <= 32:
                    reg = _own_spilled(frame, spi)
                    assign_scalar_id_before_mov(env, reg)
                dst = state.regs[dst_regno]
                sub = dst.subreg_def
                dst.assign(reg)
                dst.subreg_def = sub
                if reg.bounds.width() > size * 8:
                    dst.clear_scalar_id()
            else:
                spill_cnt = zero_cnt = 0
                for i in range(size):
                    t = stype[(slot - i) % BPF_REG_SIZE]
                    if t == STACK_SPILL:
                        spill_cnt += 1
                        continue
                    if t == STACK_MISC:
                        continue
                    if t == STACK_ZERO:
                        zero_cnt += 1
                        continue
                    if t == STACK_INVALID and env.allow_uninit_stack:
                        continue
                    raise env.reject(f"invalid read from stack off {off}+{i} size {size}")
                if spill_cnt == size and reg.is_const() and reg.bounds.var_off.value == 0:
                    mark_reg_const_zero(env, state.regs[dst_regno])
                elif zero_cnt == size:
                    mark_reg_const_zero(env, state.regs[dst_regno])
                    insn_flags = 0
                else:
                    env.mark_reg_unknown(state.regs, dst_regno)
                    insn_flags = 0
        elif dst_regno >= 0:
            # Linux 6.18 gives a scalar its id when it is spilled, not when it is
            # filled: a spilled scalar that lost its id (widened at a callback
            # return) fills without one (checked against the host kernel).
            state.regs[dst_regno].assign(reg)
        elif reg.type != SCALAR_VALUE and not env.allow_ptr_leaks:
            raise env.reject(f"leaking pointer from stack off {off}")
    else:
        for i in range(size):
            t = stype[(slot - i) % BPF_REG_SIZE]
            if t == STACK_MISC or t == STACK_ZERO:
                continue
            if t == STACK_INVALID and env.allow_uninit_stack:
                continue
            raise env.reject(f"invalid read from stack off {off}+{i} size {size}")
        if dst_regno >= 0:
            mark_reg_stack_read(env, frame, off, off + size, dst_regno)
        insn_flags = 0
    if insn_flags:
        push_jmp_history(env, env.cur_state, insn_flags, 0)


def _own_spilled(frame: FuncState, spi: int) -> RegState:
    """A private copy of a spilled register, stored back, so it may be edited."""
    s = frame.stack[spi]
    r = s.spilled_ptr.copy()
    frame.stack[spi] = StackSlot(s.slot_type, r)
    return r


def check_stack_range_initialized(env: Env, regno: int, off: int, access_size: int,
                                  zero_size_allowed: bool, t: int, meta) -> None:
    reg = env.cur_regs()[regno]
    frame = reg_state_frame(env, reg)
    clobber = t == BPF_WRITE
    if access_size == 0 and not zero_size_allowed:
        raise env.reject("invalid zero-sized read")
    check_stack_access_within_bounds(env, regno, off, access_size, t)
    b = reg.bounds
    if not b.var_off.mask:
        min_off = max_off = s64(b.var_off.value) + off
    else:
        if not env.bypass_spec_v1:
            raise env.reject(f"R{regno} variable offset stack access prohibited for !root, "
                             f"var_off={tnum_str(b.var_off)}")
        if meta is not None and meta.raw_mode:
            meta = None
        min_off = b.smin_value + off
        max_off = b.smax_value + off
    if meta is not None and meta.raw_mode:
        for i in range(min_off, max_off + access_size):
            stack_off = -i - 1
            if frame.allocated_stack <= stack_off:
                continue
            if frame.stack[stack_off // BPF_REG_SIZE].slot_type[stack_off % BPF_REG_SIZE] \
                    == STACK_DYNPTR:
                raise env.reject(f"potential write to dynptr at off={i} disallowed")
        meta.access_size = access_size
        meta.regno = regno
        return
    for i in range(min_off, max_off + access_size):
        slot = -i - 1
        spi = slot // BPF_REG_SIZE
        if frame.allocated_stack <= slot:
            raise env.reject("allocated_stack too small", EFAULT)
        s = frame.stack[spi]
        k = slot % BPF_REG_SIZE
        c = s.slot_type[k]
        ok = False
        if c == STACK_MISC:
            ok = True
        elif c == STACK_ZERO or (c == STACK_INVALID and env.allow_uninit_stack):
            if clobber:
                set_slot(env, frame, spi, _set_byte(s.slot_type, k, STACK_MISC), s.spilled_ptr)
            ok = True
        elif s.is_spill() and s.spilled_ptr is not None and \
                (s.spilled_ptr.type == SCALAR_VALUE or env.allow_ptr_leaks):
            if clobber:
                r = RegState()
                r.mark_unknown(not env.bpf_capable)
                set_slot(env, frame, spi,
                         "".join(x if x == STACK_INVALID else STACK_MISC for x in s.slot_type), r)
            ok = True
        if not ok:
            if not b.var_off.mask:
                raise env.reject(f"invalid read from stack R{regno} off {min_off}+{i - min_off} "
                                 f"size {access_size}")
            raise env.reject(f"invalid read from stack R{regno} var_off {tnum_str(b.var_off)}+"
                             f"{i - min_off} size {access_size}")
        if env.liveness is not None:
            env.liveness.mark_read(env, reg.frameno, spi)


def destroy_dynptr_slot(env: Env, frame, spi: int) -> None:
    r = frame.stack[spi].reg()
    if r.ref_obj_id:
        raise env.reject("cannot overwrite referenced dynptr", EINVAL)
    first = r.dynptr[1] if r.dynptr else True
    other = spi - 1 if first else spi + 1
    for k in (spi, other):
        if 0 <= k < len(frame.stack):
            frame.stack[k] = StackSlot(STACK_MISC * BPF_REG_SIZE, None)


def destroy_if_dynptr_stack_slot(env: Env, frame: FuncState, spi: int) -> None:
    if spi < 0 or spi >= len(frame.stack):
        return
    s = frame.stack[spi]
    if s.slot_type[0] != STACK_DYNPTR:
        return
    destroy_dynptr_slot(env, frame, spi)


# ---------------------------------------------------------------------------
# memory passed to helpers and global functions


def register_is_null(reg: RegState) -> bool:
    return reg.type == SCALAR_VALUE and reg.is_const() and reg.bounds.var_off.value == 0


def check_helper_mem_access(env: Env, regno: int, access_size: int, access_type: int,
                            zero_ok: bool, meta: CallArgMeta | None) -> None:
    regs = env.cur_regs()
    reg = regs[regno]
    bt = base_type(reg.type)
    if bt in (PTR_TO_PACKET, PTR_TO_PACKET_META):
        check_packet_access(env, regno, reg.off, access_size, zero_ok)
    elif bt == PTR_TO_MAP_KEY:
        if access_type == BPF_WRITE:
            raise env.reject(f"R{regno} cannot write into {reg_type_str(reg.type)}")
        check_mem_region_access(env, regno, reg.off, access_size, reg.map.key_size, False)
    elif bt == PTR_TO_MAP_VALUE:
        check_map_access_type(env, regno, reg.off, access_size, access_type)
        check_map_access(env, regno, reg.off, access_size, zero_ok, False)
    elif bt == PTR_TO_MEM:
        if reg.type & MEM_RDONLY and access_type == BPF_WRITE:
            raise env.reject(f"R{regno} cannot write into {reg_type_str(reg.type)}")
        check_mem_region_access(env, regno, reg.off, access_size, reg.mem_size, zero_ok)
    elif bt == PTR_TO_BUF:
        if reg.type & MEM_RDONLY and access_type == BPF_WRITE:
            raise env.reject(f"R{regno} cannot write into {reg_type_str(reg.type)}")
        check_buffer_access(env, reg, regno, reg.off, access_size)
    elif bt == PTR_TO_STACK:
        check_stack_range_initialized(env, regno, reg.off, access_size, zero_ok, access_type,
                                      meta)
    elif bt == PTR_TO_BTF_ID:
        check_ptr_to_btf_access(env, regs, regno, reg.off, access_size, BPF_READ, -1)
    else:
        if zero_ok and access_size == 0 and register_is_null(reg):
            return
        raise env.reject(f"R{regno} type={reg_type_str(reg.type)} "
                         f"expected={reg_type_str(PTR_TO_STACK)}")


# ---------------------------------------------------------------------------
# check_mem_access


def check_mem_access(env: Env, insn_idx: int, regno: int, off: int, bpf_size: int, t: int,
                     value_regno: int, strict_once: bool, is_ldsx: bool) -> None:
    regs = env.cur_regs()
    reg = regs[regno]
    size = SIZE_BYTES[bpf_size]
    check_ptr_alignment(env, reg, off, size, strict_once)
    off += reg.off
    rt = reg.type
    bt = base_type(rt)
    if rt == PTR_TO_MAP_KEY:
        if t == BPF_WRITE:
            raise env.reject(f"write to change key R{regno} not allowed")
        check_mem_region_access(env, regno, off, size, reg.map.key_size, False)
        if value_regno >= 0:
            env.mark_reg_unknown(regs, value_regno)
    elif rt == PTR_TO_MAP_VALUE:
        if t == BPF_WRITE and value_regno >= 0 and env.is_pointer_value(regs[value_regno]):
            raise env.reject(f"R{value_regno} leaks addr into map")
        check_map_access_type(env, regno, off, size, t)
        check_map_access(env, regno, off, size, False, True)
        kptr = None
        if not reg.bounds.var_off.mask:
            at = off + reg.bounds.var_off.value
            for (p, fsize, kind) in map_record(reg.map):
                if p == at and kind in ("kptr", "kptr_ref", "percpu_kptr", "uptr"):
                    kptr = (p, fsize, kind)
        if kptr is not None:
            check_map_kptr_access(env, regno, value_regno, insn_idx, kptr)
        elif t == BPF_READ and value_regno >= 0:
            m = reg.map
            if not reg.bounds.var_off.mask and _map_is_rdonly(m) and \
                    int(m.type) == U.MapType.ARRAY:
                # array_map_direct_value_addr() fails for more than one entry, and the
                # kernel gives up on the program then, with no log line of its own
                at = off + reg.bounds.var_off.value
                if m.max_entries != 1:
                    raise VerifierReject(f"R{regno} read of a frozen read-only array map with "
                                         f"{m.max_entries} entries (direct value access needs "
                                         f"1)", U.ENOTSUPP)
                if at >= m.value_size:
                    raise VerifierReject(f"R{regno} read at off={at} of a frozen read-only "
                                         f"array map with value_size={m.value_size}", EINVAL)
                val = _map_direct_read(m, at, size, is_ldsx)
                if val is None:
                    env.mark_reg_unknown(regs, value_regno)
                else:
                    regs[value_regno].type = SCALAR_VALUE
                    regs[value_regno].mark_known(val)
            else:
                env.mark_reg_unknown(regs, value_regno)
    elif bt == PTR_TO_MEM:
        rdonly = bool(rt & MEM_RDONLY)
        if rt & PTR_MAYBE_NULL:
            raise env.reject(f"R{regno} invalid mem access '{reg_type_str(rt)}'")
        if t == BPF_WRITE and rdonly:
            raise env.reject(f"R{regno} cannot write into {reg_type_str(rt)}")
        if t == BPF_WRITE and value_regno >= 0 and env.is_pointer_value(regs[value_regno]):
            raise env.reject(f"R{value_regno} leaks addr into mem")
        if not (rdonly and rt & PTR_UNTRUSTED):
            check_mem_region_access(env, regno, off, size, reg.mem_size, False)
        if value_regno >= 0 and (t == BPF_READ or rdonly):
            env.mark_reg_unknown(regs, value_regno)
    elif rt == PTR_TO_CTX:
        if t == BPF_WRITE and value_regno >= 0 and env.is_pointer_value(regs[value_regno]):
            raise env.reject(f"R{value_regno} leaks addr into ctx")
        check_ptr_off_reg(env, reg, regno)
        try:
            if _btf_typed_ctx(env):
                acc = None
                bt = btf_ctx_access(env, off, size) if t == BPF_READ else None
                if bt is None:
                    raise env.reject(f"invalid bpf_context access off={off} size={size}")
            elif env.prog_type == U.ProgType.NETFILTER:
                acc = None
                bt = nf_ctx_access(env, off, size, t == BPF_WRITE)
                if bt is None:
                    raise env.reject(f"invalid bpf_context access off={off} size={size}")
            else:
                acc = check_ctx_access(env, insn_idx, off, size, t, is_ldsx)
        except Exception:
            env.verbose_linfo(insn_idx, "; ")
            raise
        if acc is None:
            if value_regno >= 0:
                vt, bbtf, bid = bt
                dst = regs[value_regno]
                if vt == SCALAR_VALUE:
                    env.mark_reg_unknown(regs, value_regno)
                else:
                    dst.mark_unknown()
                    dst.mark_known(0)
                    dst.type = vt
                    dst.btf, dst.btf_id = bbtf, bid
                    if vt & PTR_MAYBE_NULL:
                        dst.id = env.new_id()
        elif t == BPF_READ and value_regno >= 0:
            vt = _ctx_reg_type(acc.reg_type) if acc.reg_type is not None else SCALAR_VALUE
            dst = regs[value_regno]
            if vt == SCALAR_VALUE:
                env.mark_reg_unknown(regs, value_regno)
            else:
                dst.mark_unknown()
                dst.mark_known(0)
                if vt & PTR_MAYBE_NULL:
                    dst.id = env.new_id()
                if base_type(vt) == PTR_TO_BTF_ID:
                    dst.btf = getattr(acc, "btf", None)
                    dst.btf_id = getattr(acc, "btf_id", 0)
            dst.type = vt
    elif rt == PTR_TO_STACK:
        check_stack_access_within_bounds(env, regno, off, size, t)
        if t == BPF_READ:
            check_stack_read(env, regno, off, size, value_regno)
        else:
            check_stack_write(env, regno, off, size, value_regno, insn_idx)
    elif type_is_pkt_pointer(rt):
        if t == BPF_WRITE and not may_access_direct_pkt_data(env, None, t):
            raise env.reject("cannot write into packet")
        if t == BPF_WRITE and value_regno >= 0 and env.is_pointer_value(regs[value_regno]):
            raise env.reject(f"R{value_regno} leaks addr into packet")
        check_packet_access(env, regno, off, size, False)
        if t == BPF_READ and value_regno >= 0:
            env.mark_reg_unknown(regs, value_regno)
    elif rt == PTR_TO_FLOW_KEYS:
        if t == BPF_WRITE and value_regno >= 0 and env.is_pointer_value(regs[value_regno]):
            raise env.reject(f"R{value_regno} leaks addr into flow keys")
        flow_keys_size = 56   # sizeof(struct bpf_flow_keys)
        if size < 0 or off < 0 or off + size > flow_keys_size:
            raise env.reject(f"invalid access to flow keys off={off} size={size}")
        if t == BPF_READ and value_regno >= 0:
            env.mark_reg_unknown(regs, value_regno)
    elif type_is_sk_pointer(rt):
        if t == BPF_WRITE:
            raise env.reject(f"R{regno} cannot write into {reg_type_str(rt)}")
        check_sock_access(env, insn_idx, regno, off, size, t)
        if value_regno >= 0:
            env.mark_reg_unknown(regs, value_regno)
    elif rt == PTR_TO_TP_BUFFER:
        check_tp_buffer_access(env, reg, regno, off, size)
        if t == BPF_READ and value_regno >= 0:
            env.mark_reg_unknown(regs, value_regno)
    elif bt == PTR_TO_BTF_ID and not rt & PTR_MAYBE_NULL:
        check_ptr_to_btf_access(env, regs, regno, off, size, t, value_regno)
    elif rt == CONST_PTR_TO_MAP:
        check_ptr_to_map_access(env, regs, regno, off, size, t, value_regno)
    elif bt == PTR_TO_BUF:
        rdonly = bool(rt & MEM_RDONLY)
        if rdonly and t == BPF_WRITE:
            raise env.reject(f"R{regno} cannot write into {reg_type_str(rt)}")
        check_buffer_access(env, reg, regno, off, size)
        if value_regno >= 0 and (rdonly or t == BPF_READ):
            env.mark_reg_unknown(regs, value_regno)
    elif rt == PTR_TO_ARENA:
        if t == BPF_READ and value_regno >= 0:
            env.mark_reg_unknown(regs, value_regno)
    else:
        raise env.reject(f"R{regno} invalid mem access '{reg_type_str(rt)}'")
    if size < BPF_REG_SIZE and value_regno >= 0 and t == BPF_READ and \
            regs[value_regno].type == SCALAR_VALUE:
        dst = regs[value_regno]
        dst.bounds = dst.bounds.sign_extend(size) if is_ldsx else dst.bounds.truncate(size)


def _map_is_rdonly(m) -> bool:
    return bool(m.flags & U.BPF_F_RDONLY_PROG) and m.frozen


def _map_direct_read(m, off: int, size: int, is_ldsx: bool) -> int | None:
    """bpf_map_direct_read: a frozen read-only array's bytes become known scalars."""
    try:
        data = m.lookup(b"\0\0\0\0")
    except Exception:
        return None
    if data is None or off + size > len(data):
        return None
    v = int.from_bytes(bytes(data[off:off + size]), "little", signed=is_ldsx)
    return v & U64


def check_tp_buffer_access(env: Env, reg: RegState, regno: int, off: int, size: int) -> None:
    b = reg.bounds
    if off < 0:
        raise env.reject(f"R{regno} invalid tracepoint buffer access: off={off}, size={size}")
    if b.var_off.mask or b.var_off.value:
        raise env.reject(f"R{regno} invalid variable buffer offset: off={off}, "
                         f"var_off={tnum_str(b.var_off)}")


def check_buffer_access(env: Env, reg: RegState, regno: int, off: int, size: int) -> None:
    b = reg.bounds
    if off < 0:
        raise env.reject(f"R{regno} invalid rdonly buffer access: off={off}, size={size}"
                         if reg.type & MEM_RDONLY else
                         f"R{regno} invalid rdwr buffer access: off={off}, size={size}")
    if b.var_off.mask or b.var_off.value:
        raise env.reject(f"R{regno} invalid variable buffer offset: off={off}, "
                         f"var_off={tnum_str(b.var_off)}")


# ---------------------------------------------------------------------------
# instruction-level entry points


def save_aux_ptr_type(env: Env, t: int, allow_trust_mismatch: bool) -> None:
    aux = env.aux[env.insn_idx]
    prev = aux.ptr_type
    if prev is None or prev == NOT_INIT:
        aux.ptr_type = t
        return
    if t != prev and (not _mismatch_ok(t) or not _mismatch_ok(prev)):
        if allow_trust_mismatch and base_type(t) in (PTR_TO_MEM, PTR_TO_BTF_ID) and \
                base_type(prev) in (PTR_TO_MEM, PTR_TO_BTF_ID):
            merged = PTR_TO_MEM if PTR_TO_MEM in (base_type(t), base_type(prev)) else PTR_TO_BTF_ID
            if (t | prev) & PTR_UNTRUSTED:
                merged |= PTR_UNTRUSTED
            if (t | prev) & MEM_RDONLY:
                merged |= MEM_RDONLY
            aux.ptr_type = merged
            return
        raise env.reject("same insn cannot be used with different pointers", EINVAL)


def _mismatch_ok(t: int) -> bool:
    return base_type(t) not in (PTR_TO_CTX, PTR_TO_SOCKET, PTR_TO_SOCK_COMMON, PTR_TO_TCP_SOCK,
                                PTR_TO_XDP_SOCK, PTR_TO_BTF_ID, PTR_TO_ARENA)


def check_load_mem(env: Env, insn: Insn, strict_once: bool, is_ldsx: bool,
                   allow_trust_mismatch: bool, ctx: str) -> None:
    regs = env.cur_regs()
    env.check_reg_arg(insn.src, SRC_OP)
    env.check_reg_arg(insn.dst, DST_OP_NO_MARK)
    src_type = regs[insn.src].type
    check_mem_access(env, env.insn_idx, insn.src, insn.off, insn.size, BPF_READ, insn.dst,
                     strict_once, is_ldsx)
    save_aux_ptr_type(env, src_type, allow_trust_mismatch)
    d = regs[insn.dst]
    if d.type == SCALAR_VALUE:
        v = d.bounds.invariant_violation()
        if v:
            raise env.bug(f"REG INVARIANTS VIOLATION ({ctx}): {v}")


def check_store_reg(env: Env, insn: Insn, strict_once: bool) -> None:
    regs = env.cur_regs()
    env.check_reg_arg(insn.src, SRC_OP)
    env.check_reg_arg(insn.dst, SRC_OP)
    dst_type = regs[insn.dst].type
    check_mem_access(env, env.insn_idx, insn.dst, insn.off, insn.size, BPF_WRITE, insn.src,
                     strict_once, False)
    save_aux_ptr_type(env, dst_type, False)


def check_st(env: Env, insn: Insn) -> None:
    if insn.mode != U.BPF_MEM or insn.src != 0:
        raise env.reject("BPF_ST uses reserved fields", EINVAL)
    env.check_reg_arg(insn.dst, SRC_OP)
    dst_type = env.cur_regs()[insn.dst].type
    check_mem_access(env, env.insn_idx, insn.dst, insn.off, insn.size, BPF_WRITE, -1,
                     False, False)
    save_aux_ptr_type(env, dst_type, False)


def _atomic_ptr_type_ok(env: Env, regno: int) -> bool:
    t = env.cur_regs()[regno].type
    if t == PTR_TO_CTX or type_is_pkt_pointer(t) or t == PTR_TO_FLOW_KEYS \
            or type_is_sk_pointer(t):
        return False
    return True


def check_atomic(env: Env, insn: Insn) -> None:
    imm = insn.imm
    rmw = {U.BPF_ADD, U.BPF_ADD | U.BPF_FETCH, U.BPF_AND, U.BPF_AND | U.BPF_FETCH, U.BPF_OR,
           U.BPF_OR | U.BPF_FETCH, U.BPF_XOR, U.BPF_XOR | U.BPF_FETCH, U.BPF_XCHG,
           U.BPF_CMPXCHG}
    if imm in rmw:
        _check_atomic_rmw(env, insn)
    elif imm == U.BPF_LOAD_ACQ:
        check_load_mem(env, insn, True, False, False, "atomic_load")
        if not _atomic_ptr_type_ok(env, insn.src):
            raise env.reject(f"BPF_ATOMIC loads from R{insn.src} "
                             f"{reg_type_str(env.cur_regs()[insn.src].type)} is not allowed")
    elif imm == U.BPF_STORE_REL:
        check_store_reg(env, insn, True)
        if not _atomic_ptr_type_ok(env, insn.dst):
            raise env.reject(f"BPF_ATOMIC stores into R{insn.dst} "
                             f"{reg_type_str(env.cur_regs()[insn.dst].type)} is not allowed")
    else:
        raise env.reject(f"BPF_ATOMIC uses invalid atomic opcode {imm & 0xFFFFFFFF:02x}", EINVAL)


def _check_atomic_rmw(env: Env, insn: Insn) -> None:
    if insn.size not in (U.BPF_W, U.BPF_DW):
        raise env.reject("invalid atomic operand size", EINVAL)
    regs = env.cur_regs()
    env.check_reg_arg(insn.src, SRC_OP)
    env.check_reg_arg(insn.dst, SRC_OP)
    if insn.imm == U.BPF_CMPXCHG:
        env.check_reg_arg(0, SRC_OP)
        if env.is_pointer_value(regs[0]):
            raise env.reject("R0 leaks addr into mem")
    if env.is_pointer_value(regs[insn.src]):
        raise env.reject(f"R{insn.src} leaks addr into mem")
    if not _atomic_ptr_type_ok(env, insn.dst):
        raise env.reject(f"BPF_ATOMIC stores into R{insn.dst} "
                         f"{reg_type_str(regs[insn.dst].type)} is not allowed")
    if insn.imm & U.BPF_FETCH:
        load_reg = 0 if insn.imm == U.BPF_CMPXCHG else insn.src
        env.check_reg_arg(load_reg, DST_OP)
    else:
        load_reg = -1
    check_mem_access(env, env.insn_idx, insn.dst, insn.off, insn.size, BPF_READ, -1, True, False)
    if load_reg >= 0:
        check_mem_access(env, env.insn_idx, insn.dst, insn.off, insn.size, BPF_READ, load_reg,
                         True, False)
    check_mem_access(env, env.insn_idx, insn.dst, insn.off, insn.size, BPF_WRITE, -1, True, False)


def check_ld_imm(env: Env, insn: Insn) -> None:
    regs = env.cur_regs()
    if insn.size != U.BPF_DW:
        raise env.reject("invalid BPF_LD_IMM insn", EINVAL)
    if insn.off:
        raise env.reject("BPF_LD_IMM64 uses reserved fields", EINVAL)
    env.check_reg_arg(insn.dst, DST_OP)
    dst = regs[insn.dst]
    if insn.src == 0:
        dst.type = SCALAR_VALUE
        dst.mark_known(insn.imm64)
        return
    dst.mark_known(0)
    aux = env.aux[env.insn_idx]
    if insn.src == U.BPF_PSEUDO_BTF_ID:
        var = aux.map_ptr
        dst.type = var.reg_type
        if base_type(dst.type) == PTR_TO_MEM:
            dst.mem_size = var.mem_size
        else:
            dst.btf = var.btf
            dst.btf_id = var.btf_id
        return
    if insn.src == U.BPF_PSEUDO_FUNC:
        target = env.insn_idx + insn.imm + 1
        subprogno = env.subprog_by_start(target)
        if not env.func_info:
            raise env.reject("missing btf func_info", EINVAL)
        if env.subprogs[subprogno].linkage != U.BtfFuncLinkage.STATIC:
            raise env.reject("callback function not static", EINVAL)
        dst.type = PTR_TO_FUNC
        dst.subprogno = subprogno
        return
    m = aux.map_ptr
    dst.map = m
    if insn.src in (U.BPF_PSEUDO_MAP_VALUE, U.BPF_PSEUDO_MAP_IDX_VALUE):
        if int(m.type) == U.MapType.ARENA:
            dst.mark_unknown(not env.bpf_capable)
            dst.map = m
            return
        dst.type = PTR_TO_MAP_VALUE
        dst.off = insn.imm_hi & 0xFFFFFFFF
    else:
        dst.type = CONST_PTR_TO_MAP


def check_ld_abs(env: Env, insn: Insn) -> None:
    regs = env.cur_regs()
    P = U.ProgType
    if env.prog_type not in (P.SOCKET_FILTER, P.SCHED_CLS, P.SCHED_ACT):
        raise env.reject("BPF_LD_[ABS|IND] instructions not allowed for this program type",
                         EINVAL)
    if insn.dst or insn.off or insn.size == U.BPF_DW or (insn.mode == U.BPF_ABS and insn.src):
        raise env.reject("BPF_LD_[ABS|IND] uses reserved fields", EINVAL)
    env.check_reg_arg(6, SRC_OP)
    check_resource_leak(env, False, True, "BPF_LD_[ABS|IND]")
    if regs[6].type != PTR_TO_CTX:
        raise env.reject("at the time of BPF_LD_ABS|IND R6 != pointer to skb", EINVAL)
    if insn.mode == U.BPF_IND:
        env.check_reg_arg(insn.src, SRC_OP)
    check_ptr_off_reg(env, regs[6], 6)
    for r in range(6):
        regs[r].mark_not_init(not env.bpf_capable)
        env.check_reg_arg(r, DST_OP_NO_MARK)
    env.mark_reg_unknown(regs, 0)
