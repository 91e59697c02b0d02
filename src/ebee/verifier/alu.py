"""ALU instructions: scalar arithmetic, register moves and pointer arithmetic.

check_alu_op, adjust_reg_min_max_vals, adjust_ptr_min_max_vals and
check_reg_sane_offset of kernel/bpf/verifier.c.  Scalar bounds live in
:class:`~ebee.verifier.bounds.Bounds`; this module decides which rule
applies and what the verifier must refuse.
"""
from __future__ import annotations

from .. import uapi as U
from .bounds import S32_MAX, S64_MAX, S64_MIN, U32, U64, Bounds, s64
from .branches import push_stack
from .env import DST_OP, DST_OP_NO_MARK, SRC_OP, Env, assign_scalar_id_before_mov
from .errors import EACCES, EINVAL
from .insn import Insn
from .precision import mark_chain_precision
from .sanitize import sanitize_check_bounds, sanitize_ptr_alu, sanitize_val_alu
from .state import RegState
from .types import (BPF_ADD_CONST, BPF_MAX_VAR_OFF, CONST_PTR_TO_DYNPTR, CONST_PTR_TO_MAP,
                    PTR_MAYBE_NULL, PTR_TO_ARENA, PTR_TO_BTF_ID, PTR_TO_BUF, PTR_TO_CTX,
                    PTR_TO_FLOW_KEYS, PTR_TO_FUNC, PTR_TO_MAP_KEY, PTR_TO_MAP_VALUE, PTR_TO_MEM,
                    PTR_TO_PACKET, PTR_TO_PACKET_META, PTR_TO_STACK, PTR_TO_TP_BUFFER,
                    PTR_UNTRUSTED, SCALAR_VALUE, base_type, reg_type_str, type_is_pkt_pointer)


ALU_STRING = {U.BPF_ADD: "+=", U.BPF_SUB: "-=", U.BPF_MUL: "*=", U.BPF_DIV: "/=",
              U.BPF_OR: "|=", U.BPF_AND: "&=", U.BPF_LSH: "<<=", U.BPF_RSH: ">>=",
              U.BPF_NEG: "neg", U.BPF_MOD: "%=", U.BPF_XOR: "^=", U.BPF_MOV: "=",
              U.BPF_ARSH: "s>>=", U.BPF_END: "endian"}
OP_NAME = {U.BPF_ADD: "add", U.BPF_SUB: "sub", U.BPF_MUL: "mul", U.BPF_DIV: "div",
           U.BPF_OR: "or", U.BPF_AND: "and", U.BPF_LSH: "lsh", U.BPF_RSH: "rsh",
           U.BPF_NEG: "neg", U.BPF_MOD: "mod", U.BPF_XOR: "xor", U.BPF_ARSH: "arsh",
           U.BPF_END: "end"}


def check_alu_op(env: Env, insn: Insn) -> None:
    regs = env.cur_regs()
    op = insn.op
    alu64 = insn.cls == U.BPF_ALU64
    if op in (U.BPF_END, U.BPF_NEG):
        if op == U.BPF_NEG:
            if insn.srcx or insn.src or insn.off or insn.imm:
                raise env.reject("BPF_NEG uses reserved fields", EINVAL)
        else:
            if insn.src or insn.off or insn.imm not in (16, 32, 64) or \
                    (alu64 and insn.srcx):
                raise env.reject("BPF_END uses reserved fields", EINVAL)
        env.check_reg_arg(insn.dst, SRC_OP)
        dst = regs[insn.dst]
        if env.is_pointer_value(dst):
            raise env.reject(f"R{insn.dst} pointer arithmetic prohibited")
        if op == U.BPF_NEG and dst.type == SCALAR_VALUE:
            env.check_reg_arg(insn.dst, DST_OP_NO_MARK)
            dst.bounds = dst.bounds.alu("neg", dst.bounds, not alu64)
            dst.clear_scalar_id()
        elif op == U.BPF_END and dst.type == SCALAR_VALUE:
            env.check_reg_arg(insn.dst, DST_OP_NO_MARK)
            dst.bounds = _bswap(dst.bounds, insn)
            dst.clear_scalar_id()
        else:
            env.check_reg_arg(insn.dst, DST_OP)
    elif op == U.BPF_MOV:
        _check_mov(env, insn, regs, alu64)
    elif op > U.BPF_END:
        raise env.reject(f"invalid BPF_ALU opcode {op >> 4:x}", EINVAL)
    else:
        if insn.srcx:
            if insn.imm or insn.off not in (0, 1) or \
                    (insn.off == 1 and op not in (U.BPF_MOD, U.BPF_DIV)):
                raise env.reject("BPF_ALU uses reserved fields", EINVAL)
            env.check_reg_arg(insn.src, SRC_OP)
        else:
            if insn.src or insn.off not in (0, 1) or \
                    (insn.off == 1 and op not in (U.BPF_MOD, U.BPF_DIV)):
                raise env.reject("BPF_ALU uses reserved fields", EINVAL)
        env.check_reg_arg(insn.dst, SRC_OP)
        if op in (U.BPF_MOD, U.BPF_DIV) and not insn.srcx and insn.imm == 0:
            raise env.reject("div by zero", EINVAL)
        if op in (U.BPF_LSH, U.BPF_RSH, U.BPF_ARSH) and not insn.srcx:
            size = 64 if alu64 else 32
            if insn.imm < 0 or insn.imm >= size:
                raise env.reject(f"invalid shift {insn.imm}", EINVAL)
        env.check_reg_arg(insn.dst, DST_OP_NO_MARK)
        adjust_reg_min_max_vals(env, insn)
    viol = regs[insn.dst].bounds.invariant_violation() \
        if regs[insn.dst].type == SCALAR_VALUE else None
    if viol:
        raise env.bug(f"REG INVARIANTS VIOLATION (alu): {viol}")


def _bswap(b: Bounds, insn: Insn) -> Bounds:
    """to_le/to_be/bswap: only to_be (and bswap) swap bytes on a little-endian machine."""
    swap = insn.cls == U.BPF_ALU64 or insn.srcx   # BPF_TO_BE is the BPF_X bit
    return b.byte_swap(insn.imm, bool(swap))


def _check_mov(env: Env, insn: Insn, regs: list[RegState], alu64: bool) -> None:
    if insn.srcx:
        if not alu64:
            if insn.off not in (0, 8, 16) or insn.imm:
                raise env.reject("BPF_MOV uses reserved fields", EINVAL)
        elif insn.off == 1:   # BPF_ADDR_SPACE_CAST
            if insn.imm not in (1, 1 << 16):
                raise env.reject("addr_space_cast insn can only convert between address "
                                 "space 1 and 0", EINVAL)
            if not any(int(m.type) == U.MapType.ARENA for m in env.used_maps):
                raise env.reject("addr_space_cast insn can only be used in a program that has "
                                 "an associated arena", EINVAL)
        else:
            if insn.off not in (0, 8, 16, 32) or insn.imm:
                raise env.reject("BPF_MOV uses reserved fields", EINVAL)
        env.check_reg_arg(insn.src, SRC_OP)
    else:
        if insn.src or insn.off:
            raise env.reject("BPF_MOV uses reserved fields", EINVAL)
    env.check_reg_arg(insn.dst, DST_OP_NO_MARK)
    dst = regs[insn.dst]
    if insn.srcx:
        src = regs[insn.src]
        if alu64:
            if insn.imm:   # addr_space_cast
                env.mark_reg_unknown(regs, insn.dst)
                if insn.imm == 1:
                    dst.type = PTR_TO_ARENA
            elif insn.off == 0:
                assign_scalar_id_before_mov(env, src)
                dst.assign(src)
            else:
                if env.is_pointer_value(src) or (src.type != SCALAR_VALUE
                                                 and not env.allow_ptr_leaks):
                    raise env.reject(f"R{insn.src} sign-extension part of pointer")
                if src.type == SCALAR_VALUE:
                    no_sext = src.bounds.umax_value < (1 << (insn.off - 1))
                    if no_sext:
                        assign_scalar_id_before_mov(env, src)
                    dst.assign(src)
                    if not no_sext:
                        dst.clear_scalar_id()
                    dst.bounds = dst.bounds.sign_extend(insn.off >> 3)
                else:
                    env.mark_reg_unknown(regs, insn.dst)
        else:
            if env.is_pointer_value(src):
                raise env.reject(f"R{insn.src} partial copy of pointer")
            if src.type == SCALAR_VALUE:
                if insn.off == 0:
                    is_u32 = src.bounds.width() <= 32
                    if is_u32:
                        assign_scalar_id_before_mov(env, src)
                    dst.assign(src)
                    if not is_u32:
                        dst.clear_scalar_id()
                    dst.bounds = dst.bounds.zext()
                else:
                    no_sext = src.bounds.umax_value < (1 << (insn.off - 1))
                    if no_sext:
                        assign_scalar_id_before_mov(env, src)
                    dst.assign(src)
                    if not no_sext:
                        dst.clear_scalar_id()
                    dst.bounds = dst.bounds.sign_extend32(insn.off >> 3)
            else:
                env.mark_reg_unknown(regs, insn.dst)
                dst.bounds = dst.bounds.zext()
    else:
        env.mark_reg_unknown(regs, insn.dst)
        dst.type = SCALAR_VALUE
        if alu64:
            dst.mark_known(insn.imm)
        else:
            dst.mark_known(insn.imm & U32)


def adjust_reg_min_max_vals(env: Env, insn: Insn) -> None:
    regs = env.cur_regs()
    alu32 = insn.cls != U.BPF_ALU64
    op = insn.op
    dst = regs[insn.dst]
    if dst.type == PTR_TO_ARENA:
        return
    ptr = dst if dst.type != SCALAR_VALUE else None
    if insn.srcx:
        src = regs[insn.src]
        if src.type != SCALAR_VALUE:
            if dst.type != SCALAR_VALUE:
                if op == U.BPF_SUB and env.allow_ptr_leaks:
                    env.mark_reg_unknown(regs, insn.dst)
                    return
                raise env.reject(f"R{insn.dst} pointer {ALU_STRING[op]} pointer prohibited")
            mark_chain_precision(env, insn.dst)
            adjust_ptr_min_max_vals(env, insn, src, dst)
            return
        if ptr is not None:
            mark_chain_precision(env, insn.src)
            adjust_ptr_min_max_vals(env, insn, dst, src)
            return
        if dst.precise:
            mark_chain_precision(env, insn.src)
        src_b = src.bounds
    else:
        src_b = Bounds.const(insn.imm)
        if ptr is not None:
            off = RegState(SCALAR_VALUE, 0, src_b)
            adjust_ptr_min_max_vals(env, insn, ptr, off)
            return
    if not env.bypass_spec_v1 and op in (U.BPF_ADD, U.BPF_SUB):
        sanitize_val_alu(env, insn)
    if op in (U.BPF_AND, U.BPF_OR) and not src_b.var_off.mask:
        maybe_fork_scalars(env, insn, dst)
    opname = OP_NAME[op]
    dst.bounds = dst.bounds.alu(opname, src_b, alu32)
    # rX += K / rX -= K keeps rX linked to its copies, K apart (BPF_ADD_CONST);
    # Linux 6.18 does this for 64-bit add and sub (checked against the kernel)
    if env.bpf_capable and op in (U.BPF_ADD, U.BPF_SUB) and not alu32 and dst.id and \
            src_b.is_const():
        val = s64(src_b.var_off.value)
        off = val if op == U.BPF_ADD else -val
        if (dst.id & BPF_ADD_CONST) or not -(1 << 31) <= val <= S32_MAX or off > S32_MAX:
            dst.clear_scalar_id()
        else:
            dst.id |= BPF_ADD_CONST
            dst.off = off
    else:
        dst.clear_scalar_id()


def maybe_fork_scalars(env: Env, insn: Insn, dst: RegState) -> None:
    """maybe_fork_scalars: ``x & K`` / ``x | K`` with x in [-1, 0] (LLVM's ``s>>= 63``
    select idiom) is explored twice, with x = -1 here and x = 0 in a pushed state
    that re-executes this instruction."""
    b = dst.bounds
    if b.smin_value == -1 and b.smax_value == 0:
        alu32 = False
    elif b.s32_min_value == -1 and b.s32_max_value == 0:
        alu32 = True
    else:
        return
    branch = push_stack(env, env.insn_idx, env.insn_idx, False)
    other = branch.frames[branch.curframe].regs[insn.dst]
    if alu32:
        other.bounds = other.bounds.with_known32(0)
        dst.bounds = b.with_known32(U32)
    else:
        other.mark_known(0)
        dst.mark_known(-1)


def check_reg_sane_offset(env: Env, reg: RegState, type_: int) -> None:
    b = reg.bounds
    known = not b.var_off.mask
    val = s64(b.var_off.value)
    smin = b.smin_value
    ts = reg_type_str(type_)
    if known and (val >= BPF_MAX_VAR_OFF or val <= -BPF_MAX_VAR_OFF):
        raise env.reject(f"math between {ts} pointer and {val} is not allowed", EINVAL)
    if reg.off >= BPF_MAX_VAR_OFF or reg.off <= -BPF_MAX_VAR_OFF:
        raise env.reject(f"{ts} pointer offset {reg.off} is not allowed", EINVAL)
    if smin == S64_MIN:
        raise env.reject(f"math between {ts} pointer and register with unbounded min value "
                         f"is not allowed", EINVAL)
    if smin >= BPF_MAX_VAR_OFF or smin <= -BPF_MAX_VAR_OFF:
        raise env.reject(f"value {smin} makes {ts} pointer be out of bounds", EINVAL)


_PTR_ARITH_OK = {PTR_TO_CTX, PTR_TO_MAP_VALUE, PTR_TO_MAP_KEY, PTR_TO_STACK, PTR_TO_PACKET_META,
                 PTR_TO_PACKET, PTR_TO_TP_BUFFER, PTR_TO_BTF_ID, PTR_TO_MEM, PTR_TO_BUF,
                 PTR_TO_FUNC, CONST_PTR_TO_DYNPTR}


def _copy_raw(dst: RegState, ptr: RegState) -> None:
    dst.range = ptr.range
    dst.map = ptr.map
    dst.map_uid = ptr.map_uid
    dst.btf = ptr.btf
    dst.btf_id = ptr.btf_id
    dst.mem_size = ptr.mem_size
    dst.subprogno = ptr.subprogno
    dst.dynptr = ptr.dynptr
    dst.frameno = ptr.frameno
    dst.ref_obj_id = ptr.ref_obj_id


def _clear_raw(dst: RegState) -> None:
    dst.range = 0
    dst.map = None
    dst.map_uid = 0
    dst.btf = None
    dst.btf_id = 0
    dst.mem_size = 0
    dst.subprogno = 0
    dst.dynptr = None


def adjust_ptr_min_max_vals(env: Env, insn: Insn, ptr: RegState, offr: RegState) -> None:
    regs = env.cur_regs()
    dst = regs[insn.dst]
    ob, pb = offr.bounds, ptr.bounds
    known = not ob.var_off.mask
    smin_val, smax_val, umin_val, umax_val = ob.smin_value, ob.smax_value, ob.umin_value, ob.umax_value
    smin_ptr, smax_ptr, umin_ptr, umax_ptr = pb.smin_value, pb.smax_value, pb.umin_value, pb.umax_value
    op = insn.op
    if (known and (smin_val != smax_val or umin_val != umax_val)) or smin_val > smax_val \
            or umin_val > umax_val:
        dst.mark_unknown(not env.bpf_capable)
        return
    if insn.cls != U.BPF_ALU64:
        if op == U.BPF_SUB and env.allow_ptr_leaks:
            dst.mark_unknown(not env.bpf_capable)
            return
        raise env.reject(f"R{insn.dst} 32-bit pointer arithmetic prohibited")
    ptype = ptr.type
    if ptype & PTR_MAYBE_NULL:
        raise env.reject(f"R{insn.dst} pointer arithmetic on {reg_type_str(ptype)} "
                         f"prohibited, null-check it first")
    bt = base_type(ptype)
    if bt == PTR_TO_MEM and ptype & PTR_UNTRUSTED:
        return
    if bt not in _PTR_ARITH_OK:
        ok = False
        if bt == PTR_TO_FLOW_KEYS and known:
            ok = True
        elif bt in (PTR_TO_FLOW_KEYS, CONST_PTR_TO_MAP) and known and smin_val == 0 \
                and op == U.BPF_ADD:
            ok = True
        if not ok:
            raise env.reject(f"R{insn.dst} pointer arithmetic on {reg_type_str(ptype)} "
                             f"prohibited")
    ptr_off, ptr_id, ptr_var = ptr.off, ptr.id, pb.var_off
    ptr_is_dst = ptr is dst
    off_is_dst = offr is dst
    saved = ptr.copy()
    if off_is_dst:
        offr = offr.copy()
    dst.type = ptype
    dst.id = ptr_id
    check_reg_sane_offset(env, offr, ptype)
    check_reg_sane_offset(env, saved, ptype)
    sanitize = not env.bypass_spec_v1 and op in (U.BPF_ADD, U.BPF_SUB)
    if sanitize:
        info = sanitize_ptr_alu(env, insn, saved, offr, dst, None, False, ptr_is_dst, off_is_dst)
    nb = Bounds.unknown().copy()
    if op == U.BPF_ADD:
        if known and -(1 << 31) <= ptr_off + smin_val <= S32_MAX:
            nb.smin_value, nb.smax_value = smin_ptr, smax_ptr
            nb.umin_value, nb.umax_value = umin_ptr, umax_ptr
            nb.var_off = ptr_var
            dst.off = ptr_off + smin_val
            _copy_raw(dst, saved)
        else:
            lo, hi = smin_ptr + smin_val, smax_ptr + smax_val
            if lo < S64_MIN or lo > S64_MAX or hi < S64_MIN or hi > S64_MAX:
                nb.smin_value, nb.smax_value = S64_MIN, S64_MAX
            else:
                nb.smin_value, nb.smax_value = lo, hi
            lo, hi = umin_ptr + umin_val, umax_ptr + umax_val
            if lo > U64 or hi > U64:
                nb.umin_value, nb.umax_value = 0, U64
            else:
                nb.umin_value, nb.umax_value = lo, hi
            nb.var_off = ptr_var.add(ob.var_off)
            dst.off = ptr_off
            _copy_raw(dst, saved)
            if type_is_pkt_pointer(ptype):
                dst.id = env.new_id()
                _clear_raw(dst)
    elif op == U.BPF_SUB:
        if off_is_dst:
            raise env.reject(f"R{insn.dst} tried to subtract pointer from scalar")
        if ptype == PTR_TO_STACK:
            raise env.reject(f"R{insn.dst} subtraction from stack pointer prohibited")
        if known and -(1 << 31) <= ptr_off - smin_val <= S32_MAX:
            nb.smin_value, nb.smax_value = smin_ptr, smax_ptr
            nb.umin_value, nb.umax_value = umin_ptr, umax_ptr
            nb.var_off = ptr_var
            dst.id = ptr_id
            dst.off = ptr_off - smin_val
            _copy_raw(dst, saved)
        else:
            lo, hi = smin_ptr - smax_val, smax_ptr - smin_val
            if lo < S64_MIN or lo > S64_MAX or hi < S64_MIN or hi > S64_MAX:
                nb.smin_value, nb.smax_value = S64_MIN, S64_MAX
            else:
                nb.smin_value, nb.smax_value = lo, hi
            if umin_ptr < umax_val:
                nb.umin_value, nb.umax_value = 0, U64
            else:
                nb.umin_value, nb.umax_value = umin_ptr - umax_val, umax_ptr - umin_val
            nb.var_off = ptr_var.sub(ob.var_off)
            dst.off = ptr_off
            _copy_raw(dst, saved)
            if type_is_pkt_pointer(ptype):
                dst.id = env.new_id()
                if smin_val < 0:
                    _clear_raw(dst)
    elif op in (U.BPF_AND, U.BPF_OR, U.BPF_XOR):
        raise env.reject(f"R{insn.dst} bitwise operator {ALU_STRING[op]} on pointer prohibited")
    else:
        raise env.reject(f"R{insn.dst} pointer arithmetic with {ALU_STRING[op]} operator "
                         f"prohibited")
    nb.s32_min_value, nb.s32_max_value = -(1 << 31), S32_MAX
    nb.u32_min_value, nb.u32_max_value = 0, U32
    dst.bounds = nb
    check_reg_sane_offset(env, dst, ptype)
    dst.bounds = nb.sync()
    if not env.bypass_spec_v1:
        if sanitize_check_bounds(env, insn, dst) == -EACCES:
            raise env.last_exc
        if sanitize:
            sanitize_ptr_alu(env, insn, dst, offr, dst, info, True, True, off_is_dst)
