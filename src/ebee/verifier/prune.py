"""State pruning: is_state_visited, states_equal, regsafe, stacksafe, refsafe.

At every pruning point the current state is compared with the states that
were already explored from that instruction.  If an explored state is *at
least as general* (its ranges contain ours, its pointer types match, its
stack holds at least what ours holds...), everything reachable from here
has already been checked and the current path ends.  Loops are handled as
in Linux: a state whose exploration is still in progress (``branches > 0``)
can only prove an infinite loop (exact equality) or converge an iterator /
callback / may_goto loop; states inside a loop (SCC) are compared with
RANGE_WITHIN until the loop is fully explored, with the precision found
later propagated back over the recorded back-edges.
"""
from __future__ import annotations

from .bounds import UNBOUNDED
from .env import BPF_COMPLEXITY_LIMIT_STATES, Env
from .errors import EINVAL, VerifierReject
from .log import format_state
from .precision import (Backtrack, mark_all_scalars_precise, mark_chain_precision_batch,
                        push_jmp_history)
from .state import RegState, StackSlot, VerifierState
from .types import (BPF_ADD_CONST, NOT_INIT, PTR_TO_ARENA, PTR_TO_BUF, PTR_TO_MAP_KEY,
                    PTR_TO_MAP_VALUE, PTR_TO_MEM, PTR_TO_PACKET, PTR_TO_PACKET_META,
                    PTR_TO_STACK, PTR_TO_TP_BUFFER, SCALAR_VALUE, STACK_DYNPTR, STACK_INVALID,
                    STACK_IRQ_FLAG, STACK_ITER, STACK_MISC, STACK_SPILL, STACK_ZERO)

NOT_EXACT, EXACT, RANGE_WITHIN = 0, 1, 2


class StateList:
    """bpf_verifier_state_list: an explored state with its hit/miss counters."""
    __slots__ = ("state", "miss_cnt", "hit_cnt")

    def __init__(self, state: VerifierState):
        self.state = state
        self.miss_cnt = 0
        self.hit_cnt = 0


class IdMap:
    __slots__ = ("old", "cur", "tmp_id_gen")

    def __init__(self, gen: int):
        self.old: dict[int, int] = {}
        self.cur: dict[int, int] = {}
        self.tmp_id_gen = gen


def check_ids(old_id: int, cur_id: int, idmap: IdMap) -> bool:
    if bool(old_id) != bool(cur_id):
        return False
    if not old_id:
        return True
    m = idmap.old.get(old_id)
    if m is not None:
        return m == cur_id
    if cur_id in idmap.cur:
        return False
    idmap.old[old_id] = cur_id
    idmap.cur[cur_id] = old_id
    return True


def check_scalar_ids(old_id: int, cur_id: int, idmap: IdMap) -> bool:
    if not old_id:
        idmap.tmp_id_gen += 1
        old_id = idmap.tmp_id_gen
    if not cur_id:
        idmap.tmp_id_gen += 1
        cur_id = idmap.tmp_id_gen
    return check_ids(old_id, cur_id, idmap)


def _union_eq(a: RegState, b: RegState) -> bool:
    return (a.range == b.range and a.map is b.map and a.map_uid == b.map_uid
            and a.btf is b.btf and a.btf_id == b.btf_id and a.mem_size == b.mem_size
            and a.subprogno == b.subprogno and a.dynptr == b.dynptr and a.iter == b.iter)


def _head_eq(a: RegState, b: RegState) -> bool:
    """memcmp(rold, rcur, offsetof(struct bpf_reg_state, var_off))."""
    return a.type == b.type and a.off == b.off and _union_eq(a, b)


def regs_exact(rold: RegState, rcur: RegState, idmap: IdMap) -> bool:
    return (_head_eq(rold, rcur) and (rold.bounds is rcur.bounds or rold.bounds == rcur.bounds)
            and check_ids(rold.id, rcur.id, idmap)
            and check_ids(rold.ref_obj_id, rcur.ref_obj_id, idmap))


def _within(old, cur) -> bool:
    ob, cb = old.bounds, cur.bounds
    if ob is cb:
        return True
    return ob.range_within(cb) and ob.var_off.contains(cb.var_off)


def regsafe(env: Env, rold: RegState, rcur: RegState, idmap: IdMap, exact: int) -> bool:
    if exact == EXACT:
        return regs_exact(rold, rcur, idmap)
    if rold.type == NOT_INIT:
        if exact == NOT_EXACT or rcur.type == NOT_INIT:
            return True
    if rold.type != rcur.type:
        return False
    bt = rold.type & 0xFF
    if bt == SCALAR_VALUE:
        if env.explore_alu_limits:
            return _head_eq(rold, rcur) and rold.bounds == rcur.bounds and \
                check_scalar_ids(rold.id, rcur.id, idmap)
        if not rold.precise and exact == NOT_EXACT and env.precision:
            return True
        if (rold.id & BPF_ADD_CONST) != (rcur.id & BPF_ADD_CONST):
            return False
        if (rold.id & BPF_ADD_CONST) and rold.off != rcur.off:
            return False
        return check_scalar_ids(rold.id, rcur.id, idmap) and _within(rold, rcur)
    if bt in (PTR_TO_MAP_KEY, PTR_TO_MAP_VALUE, PTR_TO_MEM, PTR_TO_BUF, PTR_TO_TP_BUFFER):
        return (_head_eq(rold, rcur) and _within(rold, rcur)
                and check_ids(rold.id, rcur.id, idmap)
                and check_ids(rold.ref_obj_id, rcur.ref_obj_id, idmap))
    if bt in (PTR_TO_PACKET_META, PTR_TO_PACKET):
        if rold.range > rcur.range:
            return False
        if rold.off != rcur.off:
            return False
        if not check_ids(rold.id, rcur.id, idmap):
            return False
        return _within(rold, rcur)
    if bt == PTR_TO_STACK:
        return regs_exact(rold, rcur, idmap) and rold.frameno == rcur.frameno
    if bt == PTR_TO_ARENA:
        return True
    return regs_exact(rold, rcur, idmap)


_UNBOUND = RegState(SCALAR_VALUE, 0, UNBOUNDED)


def _scalar_reg_for_stack(env: Env, s: StackSlot) -> RegState | None:
    t = s.slot_type
    if t[0] == STACK_SPILL and s.spilled_ptr is not None and s.spilled_ptr.type == SCALAR_VALUE:
        return s.spilled_ptr
    for c in t:
        if c == STACK_MISC or (c == STACK_INVALID and env.allow_uninit_stack):
            continue
        return None
    return _UNBOUND


_EMPTY = STACK_INVALID * 8


def stacksafe(env: Env, old, cur, idmap: IdMap, exact: int) -> bool:
    ostack, cstack = old.stack, cur.stack
    nold, ncur = len(ostack), len(cstack)
    allow_uninit = env.allow_uninit_stack
    for spi in range(nold):
        os = ostack[spi]
        ot = os.slot_type
        if exact == EXACT:
            if spi >= ncur or ot != cstack[spi].slot_type:
                return False
        if ot == _EMPTY:
            continue
        cs = cstack[spi] if spi < ncur else None
        if cs is os and (os.spilled_ptr is None or
                         (not os.spilled_ptr.id and not os.spilled_ptr.ref_obj_id)):
            continue
        ct = cs.slot_type if cs is not None else None
        i = 0
        while i < 8:
            oc = ot[i]
            if oc == STACK_INVALID:
                i += 1
                continue
            if allow_uninit and oc == STACK_MISC:
                i += 1
                continue
            if cs is None:
                return False
            if i == 0:
                orr = _scalar_reg_for_stack(env, os)
                crr = _scalar_reg_for_stack(env, cs)
                if orr is not None and crr is not None:
                    if not regsafe(env, orr, crr, idmap, exact):
                        return False
                    break
            cc = ct[i]
            if oc == STACK_MISC and cc == STACK_ZERO:
                i += 1
                continue
            if oc != cc:
                return False
            if i != 7:
                i += 1
                continue
            last = ot[7]
            if last == STACK_SPILL:
                if not regsafe(env, os.reg(), cs.reg(), idmap, exact):
                    return False
            elif last == STACK_DYNPTR:
                o, c = os.reg(), cs.reg()
                if o.dynptr != c.dynptr or not check_ids(o.id, c.id, idmap) or \
                        not check_ids(o.ref_obj_id, c.ref_obj_id, idmap):
                    return False
            elif last == STACK_ITER:
                o, c = os.reg(), cs.reg()
                if (o.iter or (None, None))[:2] != (c.iter or (None, None))[:2] or \
                        not check_ids(o.ref_obj_id, c.ref_obj_id, idmap):
                    return False
            elif last == STACK_IRQ_FLAG:
                o, c = os.reg(), cs.reg()
                if not check_ids(o.ref_obj_id, c.ref_obj_id, idmap):
                    return False
            elif last not in (STACK_MISC, STACK_ZERO, STACK_INVALID):
                return False
            i += 1
    return True


def refsafe(old: VerifierState, cur: VerifierState, idmap: IdMap) -> bool:
    if len(old.refs) != len(cur.refs):
        return False
    if old.active_locks != cur.active_locks:
        return False
    if old.active_preempt_locks != cur.active_preempt_locks:
        return False
    if old.active_rcu_lock != cur.active_rcu_lock:
        return False
    if not check_ids(old.active_irq_id, cur.active_irq_id, idmap):
        return False
    if not check_ids(old.active_lock_id, cur.active_lock_id, idmap) or \
            old.active_lock_ptr is not cur.active_lock_ptr:
        return False
    for o, c in zip(old.refs, cur.refs):
        if not check_ids(o.id, c.id, idmap) or o.type != c.type:
            return False
        if o.type not in (1, 8) and o.ptr is not c.ptr:
            return False
    return True


def frame_insn_idx(st: VerifierState, i: int) -> int:
    return st.insn_idx if i == st.curframe else st.frames[i + 1].callsite


def func_states_equal(env: Env, old, cur, insn_idx: int, exact: int, idmap: IdMap) -> bool:
    live = env.aux[insn_idx].live_regs_before
    if old.callback_depth > cur.callback_depth:
        return False
    oregs, cregs = old.regs, cur.regs
    for i in range(11):
        if live >> i & 1 and not regsafe(env, oregs[i], cregs[i], idmap, exact):
            return False
    return stacksafe(env, old, cur, idmap, exact)


def states_equal(env: Env, old: VerifierState, cur: VerifierState, exact: int) -> bool:
    if old.curframe != cur.curframe:
        return False
    idmap = IdMap(env.id_gen)
    if old.speculative and not cur.speculative:
        return False
    if old.in_sleepable != cur.in_sleepable:
        return False
    if not refsafe(old, cur, idmap):
        return False
    for i in range(old.curframe + 1):
        if old.frames[i].callsite != cur.frames[i].callsite:
            return False
        if not func_states_equal(env, old.frames[i], cur.frames[i], frame_insn_idx(old, i),
                                 exact, idmap):
            return False
    return True


def same_callsites(a: VerifierState, b: VerifierState) -> bool:
    if a.curframe != b.curframe:
        return False
    for fr in range(a.curframe, -1, -1):
        if a.frames[fr].callsite != b.frames[fr].callsite:
            return False
    return True


def states_maybe_looping(old: VerifierState, cur: VerifierState) -> bool:
    fr = cur.curframe
    if old.curframe != fr:
        return False
    fo, fc = old.frames[fr], cur.frames[fr]
    pairs = tuple(zip(fo.regs, fc.regs))
    # _head_eq, bounds, ids: every register's bounds first, as they tell loop states
    # apart (and are mostly shared objects where equal)
    for a, b in pairs:
        ab, bb = a.bounds, b.bounds
        if ab is not bb and ab != bb:
            return False
    for a, b in pairs:
        if (a.type != b.type or a.off != b.off or a.id != b.id
                or a.ref_obj_id != b.ref_obj_id or a.range != b.range or a.map is not b.map
                or a.map_uid != b.map_uid or a.btf is not b.btf or a.btf_id != b.btf_id
                or a.mem_size != b.mem_size or a.subprogno != b.subprogno
                or a.dynptr != b.dynptr or a.iter != b.iter):
            return False
    return True


def _iter_active_depths_differ(old: VerifierState, cur: VerifierState) -> bool:
    for fr in range(old.curframe, -1, -1):
        for i, s in enumerate(old.frames[fr].stack):
            if s.slot_type[0] != STACK_ITER:
                continue
            o = s.reg()
            if not o.iter or o.iter[1] != "active":
                continue
            c = cur.frames[fr].stack[i].reg() if i < len(cur.frames[fr].stack) else None
            if c is None or not c.iter or c.iter[2] != o.iter[2]:
                return True
    return False


# ---------------------------------------------------------------------------
# liveness-based cleaning of explored states


def clean_func_state(env: Env, st, ip: int) -> None:
    live = env.aux[ip].live_regs_before
    for i in range(10):
        if not live >> i & 1:
            st.regs[i].mark_not_init(not env.bpf_capable)
    lv = env.liveness
    if lv is None:
        return
    for i in range(len(st.stack)):
        if not lv.slot_alive(env, st.frameno, i):
            if st.stack[i] is not None and st.stack[i].slot_type != _EMPTY:
                st.stack[i] = StackSlot(_EMPTY, None)


def clean_verifier_state(env: Env, st: VerifierState) -> None:
    if env.liveness is not None:
        env.liveness.query_init(env, st)
    st.cleaned = True
    for i in range(st.curframe + 1):
        clean_func_state(env, st.frames[i], frame_insn_idx(st, i))


def explored_key(env: Env, insn_idx: int) -> int:
    """Linux's explored_state() bucket: insn index xor the current frame's call site,
    modulo the program length.  A bucket also holds states of other instructions
    (skipped when compared, but counted in max_states_per_insn, as Linux does)."""
    cur = env.cur_state
    callsite = cur.frames[cur.curframe].callsite
    return ((insn_idx ^ callsite) & 0xFFFFFFFF) % max(env.insn_cnt, 1)


def clean_live_states(env: Env, insn: int, cur: VerifierState) -> None:
    for sl in env.explored.get(explored_key(env, insn), ()):
        st = sl.state
        if st.branches or st.cleaned:
            continue
        if st.insn_idx != insn or not same_callsites(st, cur):
            continue
        if incomplete_read_marks(env, st):
            continue
        clean_verifier_state(env, st)


# ---------------------------------------------------------------------------
# loops: strongly connected components and their back-edges


def _scc_callchain(env: Env, st: VerifierState):
    sites = []
    for i in range(st.curframe + 1):
        idx = frame_insn_idx(st, i)
        scc = env.aux[idx].scc
        if scc:
            return (tuple(sites), scc)
        if i < st.curframe:
            sites.append(idx)
        else:
            return None
    return None


class SccVisit:
    __slots__ = ("entry_state", "backedges")

    def __init__(self):
        self.entry_state = None
        self.backedges: list = []


def maybe_enter_scc(env: Env, st: VerifierState) -> None:
    cc = _scc_callchain(env, st)
    if cc is None:
        return
    v = env.scc_visits.get(cc)
    if v is None:
        v = env.scc_visits[cc] = SccVisit()
    if v.entry_state is None:
        v.entry_state = st
        if env.log.level & 2:
            env.log(f"SCC enter {_fmt_cc(cc)}\n")


def _fmt_cc(cc) -> str:
    return "(" + "".join(f"{s}," for s in cc[0]) + f"{cc[1]})"


def maybe_exit_scc(env: Env, st: VerifierState) -> None:
    cc = _scc_callchain(env, st)
    if cc is None:
        return
    v = env.scc_visits.get(cc)
    if v is None or v.entry_state is not st:
        return
    if env.log.level & 2:
        env.log(f"SCC exit {_fmt_cc(cc)}\n")
    v.entry_state = None
    _propagate_backedges(env, v)


def _add_scc_backedge(env: Env, st: VerifierState, backedge: VerifierState) -> None:
    cc = _scc_callchain(env, st)
    if cc is None:
        raise env.bug(f"add backedge: no SCC in verification path, insn_idx {st.insn_idx}")
    v = env.scc_visits.get(cc)
    if v is None:
        raise env.bug(f"add backedge: no visit info for call chain {_fmt_cc(cc)}")
    if env.log.level & 2:
        env.log(f"SCC backedge {_fmt_cc(cc)}\n")
    v.backedges.append(backedge)


def incomplete_read_marks(env: Env, st: VerifierState) -> bool:
    if not env.scc_visits:
        return False
    cc = _scc_callchain(env, st)
    if cc is None:
        return False
    v = env.scc_visits.get(cc)
    return bool(v is not None and v.backedges)


def _propagate_backedges(env: Env, v: SccVisit) -> None:
    for it in range(66):
        if it > 64:
            if env.log.level & 2:
                env.log("propagate_backedges: too many iterations\n")
            for st in v.backedges:
                mark_all_scalars_precise(env, st)
            break
        changed = False
        for st in v.backedges:
            if propagate_precision(env, st.equal_state, st):
                changed = True
        if not changed:
            break
    v.backedges = []


def propagate_precision(env: Env, old: VerifierState, cur: VerifierState) -> bool:
    if not env.bpf_capable or not env.precision:
        return False
    bt = Backtrack(cur.curframe)
    log2 = env.log.level & 2
    for fr in range(old.curframe, -1, -1):
        f = old.frames[fr]
        first = True
        for i in range(10):
            r = f.regs[i]
            if r.type != SCALAR_VALUE or not r.precise:
                continue
            if log2:
                env.log(f"frame {fr}: propagating r{i}" if first else f",r{i}")
            bt.reg_masks[fr] |= 1 << i
            first = False
        for i, s in enumerate(f.stack):
            if s.slot_type[7] != STACK_SPILL or s.spilled_ptr is None:
                continue
            r = s.spilled_ptr
            if r.type != SCALAR_VALUE or not r.precise:
                continue
            if log2:
                env.log(f"frame {fr}: propagating fp{(-i - 1) * 8}" if first
                        else f",fp{(-i - 1) * 8}")
            bt.stack_masks[fr] |= 1 << i
            first = False
        if not first and log2:
            env.log("\n")
    return mark_chain_precision_batch(env, cur, bt)


def mark_all_scalars_imprecise(st: VerifierState) -> None:
    for i in range(st.curframe + 1):
        f = st.frames[i]
        for r in f.regs:
            if r.type == SCALAR_VALUE:
                r.precise = False
        for j, s in enumerate(f.stack):
            if s.slot_type[7] != STACK_SPILL or s.spilled_ptr is None:
                continue
            r = s.spilled_ptr
            if r.type == SCALAR_VALUE and r.precise:
                nr = r.copy()
                nr.precise = False
                f.stack[j] = StackSlot(s.slot_type, nr)


def find_prev_entry(env: Env, cur: VerifierState | None, insn_idx: int):
    if cur is None:
        return None
    for sl in env.explored.get(explored_key(env, insn_idx), ()):
        st = sl.state
        if st.insn_idx == insn_idx and st.branches and same_callsites(st, cur) and \
                st.dfs_depth < cur.dfs_depth:
            return st
    return None


def widen_imprecise_scalars(env: Env, old: VerifierState, cur: VerifierState) -> None:
    idmap = IdMap(env.id_gen)
    for fr in range(old.curframe, -1, -1):
        fo, fc = old.frames[fr], cur.frames[fr]
        for ro, rc in zip(fo.regs, fc.regs):
            _maybe_widen(env, ro, rc, idmap)
        for i in range(min(len(fo.stack), len(fc.stack))):
            so, sc = fo.stack[i], fc.stack[i]
            if so.slot_type[7] != STACK_SPILL or sc.slot_type[7] != STACK_SPILL:
                continue
            if so.spilled_ptr is None or sc.spilled_ptr is None:
                continue
            rc = sc.spilled_ptr.copy()
            if _maybe_widen(env, so.spilled_ptr, rc, idmap):
                fc.stack[i] = StackSlot(sc.slot_type, rc)


def _maybe_widen(env: Env, rold: RegState, rcur: RegState, idmap: IdMap) -> bool:
    if rold.type != SCALAR_VALUE or rold.type != rcur.type:
        return False
    if rold.precise or rcur.precise or regs_exact(rold, rcur, idmap):
        return False
    rcur.mark_unknown(not env.bpf_capable)
    return True


# ---------------------------------------------------------------------------
# is_state_visited


def is_state_visited(env: Env, insn_idx: int) -> bool:
    cur = env.cur_state
    aux = env.aux[insn_idx]
    force_new = env.test_state_freq or aux.force_checkpoint or len(cur.jmp_history) > 40
    add_new = force_new
    if env.jmps_processed - env.prev_jmps_processed >= 2 and \
            env.insn_processed - env.prev_insn_processed >= 8:
        add_new = True
    key = explored_key(env, insn_idx)
    lst = env.explored.get(key)
    if lst:
        clean_live_states(env, insn_idx, cur)
    states_cnt = 0
    if lst:
        # what the loop asks of this instruction, once
        iter_next = env.is_iter_next(insn_idx)
        may_goto = env.insns[insn_idx].is_may_goto()
        k = 0
        while k < len(lst):
            sl = lst[k]
            states_cnt += 1
            st = sl.state
            loop = False
            hit = False
            if st.insn_idx != insn_idx:
                k += 1
                continue
            if st.branches:
                frame = st.frames[st.curframe]
                skip_inf = False
                if frame.in_async_callback_fn and \
                        frame.async_entry_cnt != cur.frames[cur.curframe].async_entry_cnt:
                    skip_inf = True
                elif iter_next:
                    if states_equal(env, st, cur, RANGE_WITHIN) and \
                            env.iter_active(cur):
                        loop = hit = True
                    skip_inf = True
                else:
                    if may_goto:
                        if st.may_goto_depth != cur.may_goto_depth and \
                                states_equal(env, st, cur, RANGE_WITHIN):
                            loop = hit = True
                    if not hit and aux.calls_callback:
                        # Linux 6.18: a hit, but not a loop back-edge (no SCC here)
                        if states_equal(env, st, cur, RANGE_WITHIN):
                            hit = True
                        skip_inf = True
                    if not hit and not skip_inf:
                        if states_maybe_looping(st, cur) and \
                                states_equal(env, st, cur, EXACT) and \
                                not _iter_active_depths_differ(st, cur) and \
                                st.may_goto_depth == cur.may_goto_depth and \
                                st.callback_unroll_depth == cur.callback_unroll_depth:
                            env.verbose_linfo(insn_idx, "; ")
                            env.verbose(f"infinite loop detected at insn {insn_idx}\n")
                            if env.log.level:
                                env.log("cur state:")
                                env.print_verifier_state(cur, cur.curframe, True)
                                env.log("old state:")
                                env.print_verifier_state(st, cur.curframe, True)
                            raise VerifierReject("old state:" + format_state(st, cur.curframe,
                                                                             True), EINVAL)
                if not hit:
                    if not force_new and env.jmps_processed - env.prev_jmps_processed < 20 \
                            and env.insn_processed - env.prev_insn_processed < 100:
                        add_new = False
            else:
                loop = incomplete_read_marks(env, st)
                if states_equal(env, st, cur, RANGE_WITHIN if loop else NOT_EXACT):
                    hit = True
            if hit:
                sl.hit_cnt += 1
                if aux.jmp_point:
                    push_jmp_history(env, cur, 0, None)
                propagate_precision(env, st, cur)
                if loop:
                    be = cur.copy()
                    be.equal_state = st
                    be.insn_idx = insn_idx
                    be.parent = cur.parent
                    _add_scc_backedge(env, st, be)
                return True
            # miss
            if add_new:
                sl.miss_cnt += 1
            n = 64 if aux.force_checkpoint and st.branches > 0 else 3
            if sl.miss_cnt > sl.hit_cnt * n + n:
                del lst[k]
                continue
            k += 1
    if env.max_states_per_insn < states_cnt:
        env.max_states_per_insn = states_cnt
    if not env.bpf_capable and states_cnt > BPF_COMPLEXITY_LIMIT_STATES:
        return False
    if not add_new:
        return False
    env.total_states += 1
    env.live_states += 1
    if env.live_states > env.peak_states:
        env.peak_states = env.live_states
    env.prev_jmps_processed = env.jmps_processed
    env.prev_insn_processed = env.insn_processed
    if env.bpf_capable:
        mark_all_scalars_imprecise(cur)
    new = cur.copy()
    new.insn_idx = insn_idx
    new.branches = cur.branches
    new.parent = cur.parent
    maybe_enter_scc(env, new)
    cur.parent = new
    cur.first_insn_idx = insn_idx
    cur.dfs_depth = new.dfs_depth + 1
    cur.jmp_history = []
    env.cur_hist_ent = None
    if lst is None:
        lst = env.explored[key] = []
    lst.insert(0, StateList(new))
    return False
