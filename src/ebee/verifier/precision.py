"""Precision tracking: which scalars must keep their exact bounds for pruning.

Scalars are compared loosely when pruning (any value matches) unless they
are *precise*: some decision depended on their value (a pointer offset, a
helper size, a decided branch, a return value).  When that happens,
:func:`mark_chain_precision` walks the current path backwards through its
jump history (and on through the parent checkpoints) to find every register
and stack slot the value came from, and marks those precise in the
checkpoint states (Linux's __mark_chain_precision and backtrack_insn).  The
current state itself is not marked, as in Linux.
"""
from __future__ import annotations

from .. import uapi as U
from ..uapi import ENOTSUPP, MAX_CALL_FRAMES
from .env import Env
from .func_proto import is_sync_callback_calling_insn
from .log import format_insn
from .state import StackSlot, VerifierState
from .types import SCALAR_VALUE, STACK_SPILL

# struct bpf_jmp_history_entry flags
INSN_F_FRAMENO_MASK = 0x7
INSN_F_SPI_SHIFT = 3
INSN_F_SPI_MASK = 0x3F
INSN_F_STACK_ACCESS = 1 << 9
INSN_F_DST_REG_STACK = 1 << 10
INSN_F_SRC_REG_STACK = 1 << 11
REGMASK_ARGS = 0x3E


def stack_access_flags(frameno: int, spi: int) -> int:
    return INSN_F_STACK_ACCESS | (spi << INSN_F_SPI_SHIFT) | frameno


def push_jmp_history(env: Env, cur: VerifierState, flags: int, linked) -> None:
    ent = env.cur_hist_ent
    if ent is not None and ent[0] == env.insn_idx and env.cur_hist_owner is cur:
        ent[2] |= flags
        if linked:
            ent[3] = linked
        return
    ent = [env.insn_idx, env.prev_insn_idx, flags, linked]
    cur.jmp_history.append(ent)
    env.cur_hist_ent = ent
    env.cur_hist_owner = cur


class Backtrack:
    """backtrack_state: per-frame register and stack-slot masks being chased."""
    __slots__ = ("frame", "reg_masks", "stack_masks")

    def __init__(self, frame: int):
        self.frame = frame
        self.reg_masks = [0] * MAX_CALL_FRAMES
        self.stack_masks = [0] * MAX_CALL_FRAMES

    def empty(self) -> bool:
        return not any(self.reg_masks) and not any(self.stack_masks)

    def set_reg(self, r: int) -> None:
        self.reg_masks[self.frame] |= 1 << r

    def clear_reg(self, r: int) -> None:
        self.reg_masks[self.frame] &= ~(1 << r)

    def is_reg_set(self, r: int) -> bool:
        return bool(self.reg_masks[self.frame] >> r & 1)

    def reg_mask(self) -> int:
        return self.reg_masks[self.frame]

    def stack_mask(self) -> int:
        return self.stack_masks[self.frame]


def _fmt_reg_mask(mask: int) -> str:
    return ",".join(f"r{i}" for i in range(11) if mask >> i & 1)


def _fmt_stack_mask(mask: int) -> str:
    return ",".join(f"{-(i + 1) * 8}" for i in range(64) if mask >> i & 1)


def mark_chain_precision(env: Env, regno: int) -> None:
    if not env.bpf_capable or regno < 0:
        return
    st = env.cur_state
    if not env.precision:
        return
    bt = Backtrack(st.curframe)
    reg = st.frames[st.curframe].regs[regno]
    if reg.type != SCALAR_VALUE:
        raise env.bug("backtracking misuse")
    bt.set_reg(regno)
    _mark_chain(env, st, bt)


def mark_chain_precision_stack(env: Env, frameno: int, spi: int) -> None:
    if not env.bpf_capable or not env.precision:
        return
    st = env.cur_state
    bt = Backtrack(st.curframe)
    bt.stack_masks[frameno] |= 1 << spi
    _mark_chain(env, st, bt)


def mark_chain_precision_batch(env: Env, st: VerifierState, bt: Backtrack) -> bool:
    return _mark_chain(env, st, bt)


_NOP, _DEF, _ALU_X, _MOV_X, _JCC_X, _STORE, _CALL, _SLOW = range(8)


def _bt_codes(env: Env) -> list[tuple[int, int, int]]:
    """Per instruction, how backtrack_insn treats it when no history flags are
    involved: (code, dst, src); _SLOW sends it through backtrack_insn."""
    out = []
    for insn in env.insns:
        cls, op = insn.cls, insn.op
        code = _SLOW
        if insn.code == 0:
            code = _NOP
        elif cls in (U.BPF_ALU, U.BPF_ALU64):
            if op in (U.BPF_END, U.BPF_NEG):
                code = _NOP
            elif op == U.BPF_MOV:
                code = _MOV_X if insn.srcx else _DEF
            else:
                code = _ALU_X if insn.srcx else _NOP
        elif cls == U.BPF_LD and insn.mode == U.BPF_IMM:
            code = _DEF
        elif cls == U.BPF_LDX:
            code = _DEF
        elif cls in (U.BPF_STX, U.BPF_ST) and not (cls == U.BPF_STX and
                                                   insn.mode == U.BPF_ATOMIC):
            code = _STORE
        elif cls in (U.BPF_JMP, U.BPF_JMP32):
            if op == U.BPF_CALL:
                if insn.src == 0 and not is_sync_callback_calling_insn(insn):
                    code = _CALL
            elif op in (U.BPF_JA, U.BPF_JCOND):
                code = _NOP
            elif op != U.BPF_EXIT:
                code = _JCC_X if insn.srcx else _NOP
        out.append((code, insn.dst, insn.src))
    return out


def _get_hist(st: VerifierState, hist_end: int, insn_idx: int):
    if hist_end > 0 and st.jmp_history[hist_end - 1][0] == insn_idx:
        return st.jmp_history[hist_end - 1]
    return None


def _mark_chain(env: Env, starting: VerifierState, bt: Backtrack) -> bool:
    """__mark_chain_precision; returns whether any mark changed."""
    log2 = env.log.level & 2
    st = starting
    first_idx = st.first_insn_idx
    last_idx = st.insn_idx
    subseq_idx = -1
    skip_first = True
    changed = False
    if bt.empty():
        return False
    while True:
        history = len(st.jmp_history)
        if log2:
            env.log(f"mark_precise: frame{bt.frame}: last_idx {last_idx} first_idx {first_idx} "
                    f"subseq_idx {subseq_idx} \n")
        if last_idx < 0:
            if st.curframe == 0 and st.frames[0].subprogno > 0 and \
                    st.frames[0].callsite == -1 and not bt.stack_mask() and \
                    not (bt.reg_mask() & ~REGMASK_ARGS):
                for i in range(11):
                    if bt.reg_mask() >> i & 1:
                        bt.clear_reg(i)
                        r = st.frames[0].regs[i]
                        if r.type == SCALAR_VALUE and not r.precise:
                            r.precise = True
                            changed = True
                return changed
            raise env.bug(f"backtracking func entry subprog {st.frames[0].subprogno} reg_mask "
                          f"{bt.reg_mask():x} stack_mask {bt.stack_mask():x}")
        i = last_idx
        hist_list = st.jmp_history
        codes = env.bt_codes
        if codes is None:
            codes = env.bt_codes = _bt_codes(env)
        while True:
            if skip_first:
                skip_first = False
                err = 0
            else:
                hist = hist_list[history - 1] if history and hist_list[history - 1][0] == i \
                    else None
                code, d, sr = codes[i]
                fr = bt.frame
                m = bt.reg_masks[fr]
                if not log2 and (hist is None or not (hist[2] or hist[3])) and code < _SLOW:
                    # the common instructions, inline (backtrack_insn's simple cases)
                    if code == _NOP:
                        pass
                    elif code == _DEF:
                        m &= ~(1 << d)
                    elif code == _ALU_X:
                        if m >> d & 1 and sr != 10:
                            m |= 1 << sr
                    elif code == _MOV_X:
                        if m >> d & 1:
                            m &= ~(1 << d)
                            if sr != 10:
                                m |= 1 << sr
                    elif code == _JCC_X:
                        if m >> d & 1 or m >> sr & 1:
                            m |= (1 << d) | (1 << sr)
                    elif code == _STORE:
                        if m >> d & 1:
                            mark_all_scalars_precise(env, starting)
                            return True
                    elif code == _CALL:
                        m &= ~1
                        if m & REGMASK_ARGS:
                            raise env.bug(f"backtracking call unexpected regs {m:x}")
                    bt.reg_masks[fr] = m
                    err = 0
                else:
                    err = backtrack_insn(env, i, subseq_idx, hist, bt)
                    m = bt.reg_masks[bt.frame]
                if err == ENOTSUPP:
                    mark_all_scalars_precise(env, starting)
                    return True
                if not m and bt.empty():
                    return changed
            subseq_idx = i
            # get_prev_insn_idx
            if i == st.first_insn_idx:
                if history == 0:
                    break
                if history == 1 and st.jmp_history[0][0] == i:
                    break
            if history and st.jmp_history[history - 1][0] == i:
                i = st.jmp_history[history - 1][1]
                history -= 1
            else:
                i -= 1
            if i >= env.insn_cnt or i < 0:
                raise env.bug(f"backtracking idx {i}")
        st = st.parent
        if st is None:
            break
        for fr in range(bt.frame, -1, -1):
            func = st.frames[fr]
            mask = bt.reg_masks[fr]
            for r in range(11):
                if not mask >> r & 1:
                    continue
                reg = func.regs[r]
                if reg.type != SCALAR_VALUE:
                    bt.reg_masks[fr] &= ~(1 << r)
                    continue
                if reg.precise:
                    bt.reg_masks[fr] &= ~(1 << r)
                else:
                    reg.precise = True
                    changed = True
            smask = bt.stack_masks[fr]
            spi = 0
            while smask >> spi:
                if smask >> spi & 1:
                    if spi >= len(func.stack):
                        raise env.bug(f"stack slot {spi}, total slots {len(func.stack)}")
                    s = func.stack[spi]
                    if not (s.slot_type[7] == STACK_SPILL and s.spilled_ptr is not None and
                            s.spilled_ptr.type == SCALAR_VALUE):
                        bt.stack_masks[fr] &= ~(1 << spi)
                    else:
                        reg = s.spilled_ptr
                        if reg.precise:
                            bt.stack_masks[fr] &= ~(1 << spi)
                        else:
                            nr = reg.copy()
                            nr.precise = True
                            func.stack[spi] = StackSlot(s.slot_type, nr)
                            changed = True
                spi += 1
            if log2:
                env.log(f"mark_precise: frame{fr}: parent state regs="
                        f"{_fmt_reg_mask(bt.reg_masks[fr])} "
                        f"stack={_fmt_stack_mask(bt.stack_masks[fr])}: ")
                env.print_verifier_state(st, fr, True)
        if bt.empty():
            return changed
        subseq_idx = first_idx
        last_idx = st.last_insn_idx
        first_idx = st.first_insn_idx
    if not bt.empty():
        mark_all_scalars_precise(env, starting)
        changed = True
    return changed


def mark_all_scalars_precise(env: Env, st: VerifierState) -> None:
    log2 = env.log.level & 2
    if log2:
        env.log(f"mark_precise: frame{st.curframe}: falling back to forcing all scalars "
                f"precise\n")
    st = st.parent
    while st is not None:
        for fi in range(st.curframe + 1):
            func = st.frames[fi]
            for j in range(10):
                reg = func.regs[j]
                if reg.type != SCALAR_VALUE or reg.precise:
                    continue
                reg.precise = True
                if log2:
                    env.log(f"force_precise: frame{fi}: forcing r{j} to be precise\n")
            for j, s in enumerate(func.stack):
                if s.slot_type[7] != STACK_SPILL or s.spilled_ptr is None:
                    continue
                reg = s.spilled_ptr
                if reg.type != SCALAR_VALUE or reg.precise:
                    continue
                nr = reg.copy()
                nr.precise = True
                func.stack[j] = StackSlot(s.slot_type, nr)
                if log2:
                    env.log(f"force_precise: frame{fi}: forcing fp{-(j + 1) * 8} to be "
                            f"precise\n")
        st = st.parent


def _bt_sync_linked_regs(bt: Backtrack, hist) -> None:
    if hist is None or not hist[3]:
        return
    linked = hist[3]
    some = False
    for (fr, idx, is_reg) in linked:
        if is_reg and bt.reg_masks[fr] >> idx & 1:
            some = True
            break
        if not is_reg and bt.stack_masks[fr] >> idx & 1:
            some = True
            break
    if not some:
        return
    for (fr, idx, is_reg) in linked:
        if is_reg:
            bt.reg_masks[fr] |= 1 << idx
        else:
            bt.stack_masks[fr] |= 1 << idx


def backtrack_insn(env: Env, idx: int, subseq_idx: int, hist, bt: Backtrack) -> int:
    insn = env.insns[idx]
    cls = insn.cls
    op = insn.op
    dreg, sreg = insn.dst, insn.src
    if insn.code == 0:
        return 0
    if env.log.level & 2:
        env.log(f"mark_precise: frame{bt.frame}: regs={_fmt_reg_mask(bt.reg_mask())} "
                f"stack={_fmt_stack_mask(bt.stack_mask())} before {idx}: "
                f"{format_insn(env, insn)}\n")
    _bt_sync_linked_regs(bt, hist)
    is_atomic_load = cls == U.BPF_STX and insn.mode == U.BPF_ATOMIC and insn.imm == U.BPF_LOAD_ACQ
    if cls in (U.BPF_ALU, U.BPF_ALU64):
        if not bt.is_reg_set(dreg):
            return 0
        if op in (U.BPF_END, U.BPF_NEG):
            return 0
        if op == U.BPF_MOV:
            if insn.srcx:
                bt.clear_reg(dreg)
                if sreg != 10:
                    bt.set_reg(sreg)
            else:
                bt.clear_reg(dreg)
        elif insn.srcx:
            if sreg != 10:
                bt.set_reg(sreg)
    elif cls == U.BPF_LDX or is_atomic_load:
        if not bt.is_reg_set(dreg):
            return 0
        bt.clear_reg(dreg)
        if hist is None or not hist[2] & INSN_F_STACK_ACCESS:
            return 0
        spi = (hist[2] >> INSN_F_SPI_SHIFT) & INSN_F_SPI_MASK
        fr = hist[2] & INSN_F_FRAMENO_MASK
        bt.stack_masks[fr] |= 1 << spi
    elif cls in (U.BPF_STX, U.BPF_ST):
        if bt.is_reg_set(dreg):
            return ENOTSUPP
        if hist is None or not hist[2] & INSN_F_STACK_ACCESS:
            return 0
        spi = (hist[2] >> INSN_F_SPI_SHIFT) & INSN_F_SPI_MASK
        fr = hist[2] & INSN_F_FRAMENO_MASK
        if not bt.stack_masks[fr] >> spi & 1:
            return 0
        bt.stack_masks[fr] &= ~(1 << spi)
        if cls == U.BPF_STX:
            bt.set_reg(sreg)
    elif cls in (U.BPF_JMP, U.BPF_JMP32):
        if insn.is_pseudo_call():
            sub = env.subprog_by_start(idx + insn.imm + 1)
            if sub < 0:
                raise env.bug("backtracking call to unknown subprog")
            if env.subprogs[sub].is_global:
                if bt.reg_mask() & REGMASK_ARGS:
                    raise env.bug(f"global subprog unexpected regs {bt.reg_mask():x}")
                bt.clear_reg(0)
                return 0
            if bt.reg_mask() & ~REGMASK_ARGS:
                raise env.bug(f"static subprog unexpected regs {bt.reg_mask():x}")
            if bt.stack_mask():
                raise env.bug(f"static subprog leftover stack slots {bt.stack_mask():x}")
            for i in range(1, 6):
                if bt.is_reg_set(i):
                    bt.clear_reg(i)
                    bt.reg_masks[bt.frame - 1] |= 1 << i
            if bt.frame == 0:
                raise env.bug("subprog exit from frame 0")
            bt.frame -= 1
            return 0
        if is_sync_callback_calling_insn(insn) and idx != subseq_idx - 1:
            if bt.reg_mask() & ~REGMASK_ARGS:
                raise env.bug(f"callback unexpected regs {bt.reg_mask():x}")
            if bt.stack_mask():
                raise env.bug(f"callback leftover stack slots {bt.stack_mask():x}")
            for i in range(1, 6):
                bt.clear_reg(i)
            if bt.frame == 0:
                raise env.bug("subprog exit from frame 0")
            bt.frame -= 1
            return 0
        if op == U.BPF_CALL:
            if insn.src == U.BPF_PSEUDO_KFUNC_CALL and insn.imm == 0:
                return ENOTSUPP
            bt.clear_reg(0)
            if bt.reg_mask() & REGMASK_ARGS:
                raise env.bug(f"backtracking call unexpected regs {bt.reg_mask():x}")
        elif op == U.BPF_EXIT:
            # Leaving a callback backwards, the caller's r1-r5 stay marked: the
            # kernel this models keeps chasing them through the callback body
            # and drops them only at the callback-calling instruction (upstream
            # clears them here; the 6.18.44 builds' logs show they survive)
            if not (subseq_idx >= 0 and env.aux[subseq_idx].calls_callback) and \
                    bt.reg_mask() & REGMASK_ARGS:
                raise env.bug(f"backtracking exit unexpected regs {bt.reg_mask():x}")
            r0_precise = subseq_idx - 1 >= 0 and env.insns[subseq_idx - 1].is_pseudo_call() \
                and bt.is_reg_set(0)
            bt.clear_reg(0)
            if bt.frame + 1 >= MAX_CALL_FRAMES:
                raise env.bug("subprog enter from frame 7")
            bt.frame += 1
            if r0_precise:
                bt.set_reg(0)
            return 0
        elif insn.srcx:
            if not bt.is_reg_set(dreg) and not bt.is_reg_set(sreg):
                return 0
            if hist is None or not hist[2] & INSN_F_SRC_REG_STACK:
                bt.set_reg(sreg)
            if hist is None or not hist[2] & INSN_F_DST_REG_STACK:
                bt.set_reg(dreg)
    elif cls == U.BPF_LD:
        if not bt.is_reg_set(dreg):
            return 0
        bt.clear_reg(dreg)
        if insn.mode in (U.BPF_IND, U.BPF_ABS):
            return ENOTSUPP
    _bt_sync_linked_regs(bt, hist)
    return 0
