"""Conditional jumps: deciding branches, refining both outcomes, null checks, packet ranges.

check_cond_jmp_op and its helpers (is_branch_taken, reg_set_min_max,
mark_ptr_or_null_regs, try_match_pkt_pointers, find_good_pkt_pointers,
collect/sync_linked_regs) of kernel/bpf/verifier.c.
"""
from __future__ import annotations

import weakref

from .. import uapi as U
from .bounds import Bounds, add_const_nosync, flip_opcode, is_scalar_branch_taken, \
    refine_cond_op, rev_opcode
from .branches import push_stack
from .env import SRC_OP, Env
from .errors import EINVAL
from .insn import Insn
from .locks import reg_may_point_to_spin_lock
from .precision import (INSN_F_DST_REG_STACK, INSN_F_SRC_REG_STACK, mark_chain_precision,
                        push_jmp_history)
from .prune import find_prev_entry, widen_imprecise_scalars
from .refs import release_reference_nomark
from .sanitize import sanitize_speculative_path
from .state import RegState, StackSlot, VerifierState, for_each_reg
from .types import (AT_PKT_END, BEYOND_PKT_END, BPF_ADD_CONST, BPF_REG_SIZE, CONST_PTR_TO_MAP,
                    PTR_MAYBE_NULL, PTR_TO_BTF_ID, PTR_TO_MAP_KEY, PTR_TO_MAP_VALUE, PTR_TO_MEM,
                    PTR_TO_PACKET, PTR_TO_PACKET_END, PTR_TO_PACKET_META, PTR_TO_SOCK_COMMON,
                    PTR_TO_SOCKET, PTR_TO_STACK, PTR_TO_TCP_SOCK, PTR_TO_XDP_SOCK,
                    PTR_TRUSTED, PTR_UNTRUSTED, SCALAR_VALUE, STACK_SPILL, base_type,
                    type_is_pkt_pointer)

JMP_NAME = {U.BPF_JEQ: "jeq", U.BPF_JGT: "jgt", U.BPF_JGE: "jge", U.BPF_JSET: "jset",
            U.BPF_JNE: "jne", U.BPF_JSGT: "jsgt", U.BPF_JSGE: "jsge", U.BPF_JLT: "jlt",
            U.BPF_JLE: "jle", U.BPF_JSLT: "jslt", U.BPF_JSLE: "jsle"}
MAX_PACKET_OFF = 0xFFFF
LINKED_REGS_MAX = 6


def reg_not_null(reg: RegState) -> bool:
    t = reg.type
    if t & PTR_MAYBE_NULL:
        return False
    b = base_type(t)
    return (b in (PTR_TO_SOCKET, PTR_TO_TCP_SOCK, PTR_TO_MAP_VALUE, PTR_TO_MAP_KEY,
                  PTR_TO_SOCK_COMMON, CONST_PTR_TO_MAP)
            or (b == PTR_TO_BTF_ID and bool(t & PTR_TRUSTED))
            or (b == PTR_TO_MEM and not t & PTR_UNTRUSTED))


def _is_pkt_ptr_branch_taken(dst: RegState, src: RegState, op: str) -> int:
    if src.type == PTR_TO_PACKET_END:
        pkt = dst
    elif dst.type == PTR_TO_PACKET_END:
        pkt = src
        op = flip_opcode(op)
    else:
        return -1
    if pkt.range >= 0:
        return -1
    if op in ("jle", "jgt"):
        if pkt.range == BEYOND_PKT_END:
            return int(op == "jgt")
    elif op in ("jlt", "jge"):
        if pkt.range in (BEYOND_PKT_END, AT_PKT_END):
            return int(op == "jge")
    return -1


def is_branch_taken(r1: RegState, r2: RegState, op: str, is32: bool) -> int:
    if type_is_pkt_pointer(r1.type) or r1.type == PTR_TO_PACKET_END:
        if (type_is_pkt_pointer(r2.type) or r2.type == PTR_TO_PACKET_END) and not is32:
            return _is_pkt_ptr_branch_taken(r1, r2, op)
    if r1.type != SCALAR_VALUE or r2.type != SCALAR_VALUE:
        # a valid pointer's low 32 bits may well be zero: a 32-bit test of a
        # pointer decides nothing, both paths are explored (Linux 6.18)
        if is32:
            return -1
        if not (r2.type == SCALAR_VALUE and r2.bounds.is_reg_const(is32)):
            op = flip_opcode(op)
            r1, r2 = r2, r1
        if not (r2.type == SCALAR_VALUE and r2.bounds.is_reg_const(is32)):
            return -1
        if not reg_not_null(r1):
            return -1
        if r2.bounds.const_value(is32) != 0:
            return -1
        if op == "jeq":
            return 0
        if op == "jne":
            return 1
        return -1
    return is_scalar_branch_taken(r1.bounds, r2.bounds, op, is32)


class InnerMapMeta:
    """What Linux keeps of an inner map's template (``bpf_map_meta_alloc``): its
    shape and flags, not its name -- so the log prints ``map_ptr(ks=4,vs=4)``."""

    name = ""

    def __init__(self, template) -> None:
        self._template = template

    def __getattr__(self, attr: str):
        return getattr(self._template, attr)


_META: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def inner_map_meta(template) -> InnerMapMeta:
    """One meta per template, so that states compare equal (``regsafe`` checks identity)."""
    try:
        meta = _META.get(template)
        if meta is None:
            meta = _META[template] = InnerMapMeta(template)
        return meta
    except TypeError:           # not weak-referenceable
        return template


def mark_ptr_not_null_reg(reg: RegState) -> None:
    if base_type(reg.type) == PTR_TO_MAP_VALUE:
        m = reg.map
        inner = m.inner_map
        mt = int(m.type)
        if inner is not None:
            reg.type = CONST_PTR_TO_MAP
            reg.map = inner_map_meta(inner)
        elif mt == U.MapType.XSKMAP:
            reg.type = PTR_TO_XDP_SOCK
        elif mt in (U.MapType.SOCKMAP, U.MapType.SOCKHASH):
            reg.type = PTR_TO_SOCKET
        else:
            reg.type = PTR_TO_MAP_VALUE
        return
    reg.type &= ~PTR_MAYBE_NULL


def mark_ptr_or_null_regs(env: Env, vstate: VerifierState, regno: int, is_null: bool) -> None:
    regs = vstate.frames[vstate.curframe].regs
    ref_obj_id = regs[regno].ref_obj_id
    id_ = regs[regno].id
    if ref_obj_id and ref_obj_id == id_ and is_null:
        release_reference_nomark(vstate, id_)

    def fn(frame, reg: RegState) -> bool:
        if not (reg.type & PTR_MAYBE_NULL) or reg.id != id_:
            return False
        b = reg.bounds
        if b.smin_value or b.smax_value or b.var_off.mask or b.var_off.value:
            return False
        if is_null:
            reg.type = SCALAR_VALUE
            reg.id = 0
            reg.ref_obj_id = 0
            return True
        mark_ptr_not_null_reg(reg)
        if not reg_may_point_to_spin_lock(reg):
            reg.id = 0
        return True
    for_each_reg(vstate, fn)


def find_good_pkt_pointers(vstate: VerifierState, dst: RegState, type_: int,
                           range_right_open: bool) -> None:
    if dst.off < 0 or (dst.off == 0 and range_right_open):
        return
    umax = dst.bounds.umax_value
    if umax > MAX_PACKET_OFF or umax + dst.off > MAX_PACKET_OFF:
        return
    new_range = dst.off + (1 if range_right_open else 0)
    did = dst.id

    def fn(frame, reg: RegState) -> bool:
        if reg.type == type_ and reg.id == did and reg.range < new_range:
            reg.range = max(reg.range, new_range)
            return True
        return False
    for_each_reg(vstate, fn)


def _mark_pkt_end(vstate: VerifierState, regno: int, range_open: bool) -> None:
    reg = vstate.frames[vstate.curframe].regs[regno]
    if reg.type != PTR_TO_PACKET:
        return
    reg.range = BEYOND_PKT_END if range_open else AT_PKT_END


def _init_pkt(reg: RegState, which: int) -> bool:
    return reg.type == which and reg.id == 0 and reg.off == 0 and \
        reg.bounds.var_off.mask == 0 and reg.bounds.var_off.value == 0


def try_match_pkt_pointers(insn: Insn, dst: RegState, src: RegState, this: VerifierState,
                           other: VerifierState) -> bool:
    if not insn.srcx or insn.cls == U.BPF_JMP32:
        return False
    op = JMP_NAME.get(insn.op)
    if op not in ("jgt", "jlt", "jge", "jle"):
        return False
    left = (dst.type == PTR_TO_PACKET and src.type == PTR_TO_PACKET_END) or \
        (dst.type == PTR_TO_PACKET_META and _init_pkt(src, PTR_TO_PACKET))
    right = (dst.type == PTR_TO_PACKET_END and src.type == PTR_TO_PACKET) or \
        (_init_pkt(dst, PTR_TO_PACKET) and src.type == PTR_TO_PACKET_META)
    if not left and not right:
        return False
    if right:
        # normalise to "pkt' OP end" on the source register
        op = flip_opcode(op)
        ptr, regno = src, insn.src
    else:
        ptr, regno = dst, insn.dst
    # which branch learns what: (branch where pkt' is in bounds, right-open?)
    if op == "jgt":      # pkt' > end: taken is beyond, fall-through pkt' <= end
        find_good_pkt_pointers(this, ptr, ptr.type, False)
        _mark_pkt_end(other, regno, True)
    elif op == "jlt":    # pkt' < end: taken in bounds (open), fall-through pkt' >= end
        find_good_pkt_pointers(other, ptr, ptr.type, True)
        _mark_pkt_end(this, regno, False)
    elif op == "jge":    # pkt' >= end: taken at/beyond, fall-through pkt' < end
        find_good_pkt_pointers(this, ptr, ptr.type, True)
        _mark_pkt_end(other, regno, False)
    elif op == "jle":    # pkt' <= end: taken in bounds, fall-through pkt' > end
        find_good_pkt_pointers(other, ptr, ptr.type, False)
        _mark_pkt_end(this, regno, True)
    return True


def collect_linked_regs(env: Env, vstate: VerifierState, id_: int, out: list) -> None:
    """The registers (live ones only, as Linux 6.18) and spilled scalars sharing ``id_``."""
    id_ &= ~BPF_ADD_CONST
    aux = env.aux
    for fi in range(vstate.curframe, -1, -1):
        f = vstate.frames[fi]
        ip = env.insn_idx if fi == vstate.curframe else vstate.frames[fi + 1].callsite
        live = aux[ip].live_regs_before
        for j in range(10):
            if not live >> j & 1:
                continue
            r = f.regs[j]
            if r.type == SCALAR_VALUE and (r.id & ~BPF_ADD_CONST) == id_:
                e = (fi, j, True)
                if e not in out and len(out) < LINKED_REGS_MAX:
                    out.append(e)
        for j, s in enumerate(f.stack):
            if s.slot_type[BPF_REG_SIZE - 1] != STACK_SPILL or s.spilled_ptr is None:
                continue
            r = s.spilled_ptr
            if r.type == SCALAR_VALUE and (r.id & ~BPF_ADD_CONST) == id_:
                e = (fi, j, False)
                if e not in out and len(out) < LINKED_REGS_MAX:
                    out.append(e)


def sync_linked_regs(env: Env, vstate: VerifierState, known: RegState, linked: list) -> None:
    for (fi, idx, is_reg) in linked:
        f = vstate.frames[fi]
        if is_reg:
            reg = f.regs[idx]
        else:
            s = f.stack[idx]
            if s.spilled_ptr is None:
                continue
            reg = s.spilled_ptr
        if reg.type != SCALAR_VALUE or reg is known:
            continue
        if (reg.id & ~BPF_ADD_CONST) != (known.id & ~BPF_ADD_CONST):
            continue
        if not is_reg:
            reg = reg.copy()
            f.stack[idx] = StackSlot(f.stack[idx].slot_type, reg)
        if (not (reg.id & BPF_ADD_CONST) and not (known.id & BPF_ADD_CONST)) or \
                reg.off == known.off:
            sub = reg.subreg_def
            reg.assign(known)
            reg.subreg_def = sub
        else:
            sub, off, rid = reg.subreg_def, reg.off, reg.id
            delta = off - known.off
            reg.assign(known)
            reg.off, reg.id, reg.subreg_def = off, rid, sub
            reg.bounds = add_const_nosync(known.bounds, delta)


def check_cond_jmp_op(env: Env, insn: Insn) -> None:
    this = env.cur_state
    regs = this.frames[this.curframe].regs
    opc = insn.op
    if opc == U.BPF_JA or opc > U.BPF_JCOND:
        raise env.reject(f"invalid BPF_JMP/JMP32 opcode {opc:x}", EINVAL)
    if opc == U.BPF_JCOND:
        _check_may_goto(env, insn)
        return
    env.check_reg_arg(insn.dst, SRC_OP)
    dst = regs[insn.dst]
    insn_flags = 0
    if insn.srcx:
        if insn.imm:
            raise env.reject("BPF_JMP/JMP32 uses reserved fields", EINVAL)
        env.check_reg_arg(insn.src, SRC_OP)
        src = regs[insn.src]
        if not ((type_is_pkt_pointer(dst.type) or dst.type == PTR_TO_PACKET_END) and
                (type_is_pkt_pointer(src.type) or src.type == PTR_TO_PACKET_END)) and \
                env.is_pointer_value(src):
            raise env.reject(f"R{insn.src} pointer comparison prohibited")
        if src.type == PTR_TO_STACK:
            insn_flags |= INSN_F_SRC_REG_STACK
        if dst.type == PTR_TO_STACK:
            insn_flags |= INSN_F_DST_REG_STACK
    else:
        if insn.src:
            raise env.reject("BPF_JMP/JMP32 uses reserved fields", EINVAL)
        src = RegState(SCALAR_VALUE, 0, Bounds.const(insn.imm))
        if dst.type == PTR_TO_STACK:
            insn_flags |= INSN_F_DST_REG_STACK
    if insn_flags:
        push_jmp_history(env, this, insn_flags, None)
    is32 = insn.cls == U.BPF_JMP32
    op = JMP_NAME[opc]
    pred = is_branch_taken(dst, src, op, is32)
    if pred >= 0:
        if dst.type == SCALAR_VALUE:
            mark_chain_precision(env, insn.dst)
        if insn.srcx and src.type == SCALAR_VALUE:
            mark_chain_precision(env, insn.src)
    if pred == 1:
        if not env.bypass_spec_v1:
            sanitize_speculative_path(env, insn, env.insn_idx + 1, env.insn_idx)
        if env.log.level:
            env.print_insn_state(this, this.curframe)
        env.insn_idx += insn.off
        return
    if pred == 0:
        if not env.bypass_spec_v1:
            sanitize_speculative_path(env, insn, env.insn_idx + insn.off + 1, env.insn_idx)
        if env.log.level:
            env.print_insn_state(this, this.curframe)
        return
    linked: list = []
    if insn.srcx and src.type == SCALAR_VALUE and src.id:
        collect_linked_regs(env, this, src.id, linked)
    if dst.type == SCALAR_VALUE and dst.id:
        collect_linked_regs(env, this, dst.id, linked)
    if len(linked) > 1:
        push_jmp_history(env, this, 0, tuple(linked))
    other = push_stack(env, env.insn_idx + insn.off + 1, env.insn_idx, False)
    oregs = other.frames[other.curframe].regs
    if dst.type == SCALAR_VALUE and src.type == SCALAR_VALUE:
        if insn.srcx:
            _reg_set_min_max(env, oregs[insn.dst], oregs[insn.src], dst, src, op, is32)
        else:
            fake = RegState(SCALAR_VALUE, 0, src.bounds)
            fake2 = RegState(SCALAR_VALUE, 0, src.bounds)
            _reg_set_min_max(env, oregs[insn.dst], fake, dst, fake2, op, is32)
    if insn.srcx and src.type == SCALAR_VALUE and src.id and \
            src.id == oregs[insn.src].id:
        sync_linked_regs(env, this, src, linked)
        sync_linked_regs(env, other, oregs[insn.src], linked)
    if dst.type == SCALAR_VALUE and dst.id and dst.id == oregs[insn.dst].id:
        sync_linked_regs(env, this, dst, linked)
        sync_linked_regs(env, other, oregs[insn.dst], linked)
    if not is32 and insn.srcx and src.type != SCALAR_VALUE and dst.type != SCALAR_VALUE and \
            bool(src.type & PTR_MAYBE_NULL) != bool(dst.type & PTR_MAYBE_NULL) and \
            base_type(src.type) != PTR_TO_BTF_ID and base_type(dst.type) != PTR_TO_BTF_ID:
        eq = oregs if op == "jeq" else regs if op == "jne" else None
        if eq is not None:
            if src.type & PTR_MAYBE_NULL:
                mark_ptr_not_null_reg(eq[insn.src])
            else:
                mark_ptr_not_null_reg(eq[insn.dst])
    if not is32 and not insn.srcx and insn.imm == 0 and op in ("jeq", "jne") and \
            dst.type & PTR_MAYBE_NULL:
        mark_ptr_or_null_regs(env, this, insn.dst, op == "jne")
        mark_ptr_or_null_regs(env, other, insn.dst, op == "jeq")
    elif not try_match_pkt_pointers(insn, dst, regs[insn.src] if insn.srcx else src, this,
                                    other) and env.is_pointer_value(dst):
        raise env.reject(f"R{insn.dst} pointer comparison prohibited")
    if env.log.level:
        env.print_insn_state(this, this.curframe)


def _reg_set_min_max(env: Env, t1: RegState, t2: RegState, f1: RegState, f2: RegState,
                     op: str, is32: bool) -> None:
    """reg_set_min_max: refine the fall-through (f*) and jump (t*) copies."""
    # `if r6 >= r6`: Linux refines one register through two aliases, each write
    # seen by the next read; the refinement must do the same on one value
    alias = f1 is f2
    f1.bounds, f2.bounds = refine_cond_op(f1.bounds, f2.bounds, rev_opcode(op), is32, alias)
    t1.bounds, t2.bounds = refine_cond_op(t1.bounds, t2.bounds, op, is32, alias)
    for name, r in (("true_reg1", t1), ("true_reg2", t2), ("false_reg1", f1),
                    ("false_reg2", f2)):
        v = r.bounds.invariant_violation()
        if v:
            raise env.bug(f"REG INVARIANTS VIOLATION ({name}): {v}")


def _check_may_goto(env: Env, insn: Insn) -> None:
    if insn.code != (U.BPF_JMP | U.BPF_JCOND) or insn.src != U.CondPseudoJmp.MAY_GOTO or \
            insn.dst or insn.imm:
        raise env.reject(f"invalid may_goto imm {insn.imm}", EINVAL)
    cur = env.cur_state
    idx = env.insn_idx
    prev = find_prev_entry(env, cur.parent, idx)
    queued = push_stack(env, idx + 1, idx, False)
    queued.may_goto_depth += 1
    if prev is not None:
        widen_imprecise_scalars(env, prev, queued)
    env.insn_idx += insn.off
