"""Structural checks that run before any abstract interpretation.

The passes of bpf_check() that look at the program as a graph, in Linux's
order: subprogram discovery (add_subprog_and_kfunc, check_subprogs), opcode
and ld_imm64 validation with map resolution (resolve_pseudo_ldimm64), the
depth-first walk that finds unreachable code, out-of-range jumps and, for
unprivileged programs, loops (check_cfg), and the static register liveness
that pruning relies on (compute_live_registers).
"""
from __future__ import annotations

from .. import isa
from .. import uapi as U
from .env import Env, SubprogInfo
from .errors import E2BIG, EINVAL, EPERM
from .func_proto import (helper_changes_pkt_data, helper_proto, is_async_callback_calling_insn,
                         is_sync_callback_calling_insn)
from .insn import Insn
from .kfuncs import kfunc_meta
from .log import format_insn
from .types import BPF_MAX_VAR_OFF

# opcodes Linux accepts (bpf_opcode_in_insntable); callx is LLVM's, not the kernel's
VALID_OPCODES = frozenset(op for op in isa.BY_OPCODE if op != (U.BPF_JMP | U.BPF_CALL | U.BPF_X))
LDIMM64 = U.BPF_LD | U.BPF_IMM | U.BPF_DW
MAX_USED_MAPS = 64
BPF_MAX_SUBPROGS = 256

DISCOVERED, EXPLORED = 0x10, 0x20
FALLTHROUGH, BRANCH = 1, 2
DONE_EXPLORING, KEEP_EXPLORING = 0, 1


def add_subprogs(env: Env) -> None:
    """add_subprog_and_kfunc: every call target and callback is a subprogram start."""
    starts = {0}
    insns = env.insns
    n = env.insn_cnt

    def add(off: int) -> None:
        if off >= n or off < 0:
            raise env.reject("call to invalid destination", EINVAL)
        starts.add(off)

    for i, insn in enumerate(insns):
        if insn.is_pseudo_func():
            if not env.bpf_capable:
                raise env.reject("loading/calling other bpf or kernel functions are allowed "
                                 "for CAP_BPF and CAP_SYS_ADMIN", EPERM)
            add(i + insn.imm + 1)
        elif insn.is_pseudo_call():
            if not env.bpf_capable:
                raise env.reject("loading/calling other bpf or kernel functions are allowed "
                                 "for CAP_BPF and CAP_SYS_ADMIN", EPERM)
            add(i + insn.imm + 1)
        elif insn.is_kfunc_call():
            if not env.bpf_capable:
                raise env.reject("loading/calling other bpf or kernel functions are allowed "
                                 "for CAP_BPF and CAP_SYS_ADMIN", EPERM)
            if env.kfuncs is None:
                raise env.reject("calling kernel functions is not supported without BTF",
                                 EINVAL)
    if len(starts) > BPF_MAX_SUBPROGS:
        raise env.reject("too many subprograms", E2BIG)
    env.subprogs = [SubprogInfo(start=s) for s in sorted(starts)]
    for k, sp in enumerate(env.subprogs):
        if k < len(env.func_info):
            fi = env.func_info[k]
            sp.name = getattr(fi, "name", "") or ""
            sp.linkage = getattr(fi, "linkage", 0) or 0
            sp.is_global = sp.linkage == U.BtfFuncLinkage.GLOBAL
            sp.func_proto = getattr(fi, "proto", None)
    if env.log.level & 2:
        for k, sp in enumerate(env.subprogs):
            env.log(f"func#{k} @{sp.start}\n")


def check_subprogs(env: Env) -> None:
    """Jumps stay inside their subprogram; each subprogram ends in exit or a jump."""
    insns = env.insns
    n = env.insn_cnt
    sps = env.subprogs
    bounds = [sp.start for sp in sps] + [n]
    cur = 0
    start, end = bounds[0], bounds[1]
    for i in range(n):
        insn = insns[i]
        code = insn.code
        cls = code & 7
        if code == (U.BPF_JMP | U.BPF_CALL) and insn.src == 0 and insn.imm == U.FuncId.tail_call:
            sps[cur].has_tail_call = True
            sps[cur].tail_call_reachable = True
        if cls == U.BPF_LD and (code & 0xE0) in (U.BPF_ABS, U.BPF_IND):
            sps[cur].has_ld_abs = True
        if cls in (U.BPF_JMP, U.BPF_JMP32):
            op = code & 0xF0
            if op == U.BPF_EXIT:
                sps[cur].exit_idx = i
            elif op != U.BPF_CALL:
                off = insn.imm if (op == U.BPF_JA and cls == U.BPF_JMP32) else insn.off
                tgt = i + off + 1
                if tgt < start or tgt >= end:
                    raise env.reject(f"jump out of range from insn {i} to {tgt}", EINVAL)
        if i == end - 1:
            if code not in (U.BPF_JMP | U.BPF_EXIT, U.BPF_JMP32 | U.BPF_JA, U.BPF_JMP | U.BPF_JA):
                raise env.reject("last insn is not an exit or jmp", EINVAL)
            start = end
            cur += 1
            if cur < len(sps):
                end = bounds[cur + 1]


def resolve_pseudo_ldimm64(env: Env) -> None:
    """Validate opcodes and ld_imm64 pairs; resolve map file descriptors."""
    insns = env.insns
    n = env.insn_cnt
    i = 0
    while i < n:
        insn = insns[i]
        if insn.cls == U.BPF_LDX and ((insn.mode not in (U.BPF_MEM, U.BPF_MEMSX)) or insn.imm):
            raise env.reject("BPF_LDX uses reserved fields", EINVAL)
        if insn.code == LDIMM64:
            if i == n - 1 or insns[i + 1].code or insns[i + 1].dst or insns[i + 1].src \
                    or insns[i + 1].off:
                raise env.reject("invalid bpf_ld_imm64 insn", EINVAL)
            src = insn.src
            if src in (0, U.BPF_PSEUDO_BTF_ID, U.BPF_PSEUDO_FUNC):
                if src == U.BPF_PSEUDO_FUNC:
                    env.aux[i].ptr_type = 20   # PTR_TO_FUNC
                if src == U.BPF_PSEUDO_BTF_ID:
                    _check_pseudo_btf_id(env, insn, i)
                i += 2
                continue
            if src in (U.BPF_PSEUDO_MAP_VALUE, U.BPF_PSEUDO_MAP_IDX_VALUE):
                pass
            elif src in (U.BPF_PSEUDO_MAP_FD, U.BPF_PSEUDO_MAP_IDX) and insns[i + 1].imm == 0:
                pass
            else:
                raise env.reject("unrecognized bpf_ld_imm64 insn", EINVAL)
            if src in (U.BPF_PSEUDO_MAP_IDX_VALUE, U.BPF_PSEUDO_MAP_IDX):
                raise env.reject("fd_idx without fd_array is invalid", 71)  # EPROTO
            m = resolve_map(env, insn.imm)
            if m is None:
                raise env.reject(f"fd {insn.imm} is not pointing to valid bpf_map", 9)
            check_map_prog_compatibility(env, m)
            if src == U.BPF_PSEUDO_MAP_VALUE:
                off = insns[i + 1].imm & 0xFFFFFFFF
                if off >= BPF_MAX_VAR_OFF:
                    raise env.reject(f"direct value offset of {off} is not allowed", EINVAL)
                mt = int(m.type)
                if mt not in (U.MapType.ARRAY,):
                    raise env.reject("no direct value access support for this map type", EINVAL)
                if m.max_entries != 1 or off >= m.value_size:
                    raise env.reject(f"invalid access to map value pointer, "
                                     f"value_size={m.value_size} off={off}",
                                     524 if m.max_entries != 1 else EINVAL)
            if all(m is not u for u in env.used_maps):
                if len(env.used_maps) >= MAX_USED_MAPS:
                    raise env.reject(f"too many maps, max is {MAX_USED_MAPS}", E2BIG)
                env.used_maps.append(m)
            env.aux[i].map_ptr = m
            i += 2
            continue
        if insn.code not in VALID_OPCODES:
            raise env.reject(f"unknown opcode {insn.code:02x}", EINVAL)
        i += 1


def resolve_map(env: Env, fd: int):
    """The map an instruction's fd (ebee: map id) names, or None."""
    if env.maps is None:
        return None
    if callable(env.maps):
        return env.maps(fd)
    return env.maps.get(fd)


def check_map_prog_compatibility(env: Env, m) -> None:
    """check_map_prog_compatibility: map types some program types may not use."""
    pt = env.prog_type
    rec = m.record if isinstance(m.record, dict) else {}
    tracing = pt in (U.ProgType.KPROBE, U.ProgType.TRACEPOINT, U.ProgType.PERF_EVENT,
                     U.ProgType.RAW_TRACEPOINT, U.ProgType.RAW_TRACEPOINT_WRITABLE)
    if tracing and ("bpf_list_head" in rec or "bpf_rb_root" in rec):
        raise env.reject("tracing progs cannot use bpf_{list_head,rb_root} yet", EINVAL)
    if "bpf_spin_lock" in rec or "bpf_res_spin_lock" in rec:
        if pt == U.ProgType.SOCKET_FILTER:
            raise env.reject("socket filter progs cannot use bpf_spin_lock yet", EINVAL)
        if tracing:
            raise env.reject("tracing progs cannot use bpf_spin_lock yet", EINVAL)
    if tracing and "bpf_timer" in rec:
        raise env.reject("tracing progs cannot use bpf_timer yet", EINVAL)
    if tracing and "bpf_wq" in rec:
        raise env.reject("tracing progs cannot use bpf_wq yet", EINVAL)
    if int(m.type) == U.MapType.STRUCT_OPS:
        raise env.reject("bpf_struct_ops map cannot be used in prog", EINVAL)
    if env.sleepable:
        mt = int(m.type)
        ok = {U.MapType.HASH, U.MapType.LRU_HASH, U.MapType.ARRAY, U.MapType.PERCPU_HASH,
              U.MapType.PERCPU_ARRAY, U.MapType.LRU_PERCPU_HASH, U.MapType.ARRAY_OF_MAPS,
              U.MapType.HASH_OF_MAPS, U.MapType.RINGBUF, U.MapType.USER_RINGBUF,
              U.MapType.INODE_STORAGE, U.MapType.SK_STORAGE, U.MapType.TASK_STORAGE,
              U.MapType.CGRP_STORAGE, U.MapType.QUEUE, U.MapType.STACK, U.MapType.ARENA,
              U.MapType.BLOOM_FILTER}
        if mt not in ok:
            raise env.reject("Sleepable programs can only use array, hash, ringbuf and local "
                             "storage maps", EINVAL)


def _check_pseudo_btf_id(env: Env, insn: Insn, idx: int) -> None:
    ks = env.kfuncs
    if ks is None or not hasattr(ks, "ksym"):
        raise env.reject("kernel is missing BTF, make sure CONFIG_DEBUG_INFO_BTF=y is specified "
                         "in Kconfig.", EINVAL)
    res = ks.ksym(insn.imm, insn.imm_hi)
    if isinstance(res, str):
        raise env.reject(res, EINVAL)
    env.aux[idx].map_ptr = res


# ---------------------------------------------------------------------------
# check_cfg


def check_cfg(env: Env) -> None:
    insns = env.insns
    n = env.insn_cnt
    aux = env.aux
    state = [0] * n
    stack = [0]
    state[0] = DISCOVERED

    def push(t: int, w: int, e: int) -> int:
        if e == FALLTHROUGH and state[t] >= (DISCOVERED | FALLTHROUGH):
            return DONE_EXPLORING
        if e == BRANCH and state[t] >= (DISCOVERED | BRANCH):
            return DONE_EXPLORING
        if w < 0 or w >= n:
            env.verbose_linfo(t, f"{t}: ")
            raise env.reject(f"jump out of range from insn {t} to {w}", EINVAL)
        if e == BRANCH:
            aux[w].prune_point = True
            aux[w].jmp_point = True
        if state[w] == 0:
            state[t] = DISCOVERED | e
            state[w] = DISCOVERED
            if len(stack) >= n:
                raise env.reject("too many instructions on the cfg stack", E2BIG)
            stack.append(w)
            return KEEP_EXPLORING
        if (state[w] & 0xF0) == DISCOVERED:
            if env.bpf_capable:
                return DONE_EXPLORING
            env.verbose_linfo(t, f"{t}: ")
            env.verbose_linfo(w, f"{w}: ")
            raise env.reject(f"back-edge from insn {t} to {w}", EINVAL)
        if state[w] == EXPLORED:
            state[t] = DISCOVERED | e
        return DONE_EXPLORING

    def visit_call(t: int, visit_callee: bool) -> int:
        sz = 2 if insns[t].code == LDIMM64 else 1
        ret = push(t, t + sz, FALLTHROUGH)
        if ret:
            return ret
        aux[t + sz].prune_point = True if t + sz < n else aux[t].prune_point
        if t + sz < n:
            aux[t + sz].jmp_point = True
        if visit_callee:
            w = t + insns[t].imm + 1
            aux[t].prune_point = True
            # merge_callee_effects: the DFS comes back here once the callee is
            # explored, so what it (transitively) does is known by then
            if env.subprogs[env.subprog_of(w)].changes_pkt_data:
                env.subprogs[env.subprog_of(t)].changes_pkt_data = True
            ret = push(t, w, BRANCH)
        return ret


    def visit(t: int) -> int:
        insn = insns[t]
        if insn.is_pseudo_func():
            return visit_call(t, True)
        cls = insn.cls
        if cls not in (U.BPF_JMP, U.BPF_JMP32):
            sz = 2 if insn.code == LDIMM64 else 1
            return push(t, t + sz, FALLTHROUGH)
        op = insn.op
        if op == U.BPF_EXIT:
            return DONE_EXPLORING
        if op == U.BPF_CALL:
            if is_async_callback_calling_insn(insn):
                aux[t].prune_point = True
            if is_sync_callback_calling_insn(insn):
                aux[t].calls_callback = True
                aux[t].force_checkpoint = True
                aux[t].prune_point = True
                aux[t].jmp_point = True
            if env.is_iter_next(t):
                # the _next() call of an open-coded iterator is where its loop converges
                aux[t].prune_point = True
                aux[t].force_checkpoint = True
            if insn.is_helper_call():
                if helper_changes_pkt_data(insn.imm):
                    env.subprogs[env.subprog_of(t)].changes_pkt_data = True
            return visit_call(t, insn.src == U.BPF_PSEUDO_CALL)
        if op == U.BPF_JA:
            off = insn.off if cls == U.BPF_JMP else insn.imm
            ret = push(t, t + off + 1, FALLTHROUGH)
            if ret:
                return ret
            aux[t + off + 1].prune_point = True
            aux[t + off + 1].jmp_point = True
            return ret
        aux[t].prune_point = True
        if insn.is_may_goto():
            aux[t].force_checkpoint = True
        ret = push(t, t + 1, FALLTHROUGH)
        if ret:
            return ret
        return push(t, t + insn.off + 1, BRANCH)

    while stack:
        t = stack[-1]
        ret = visit(t)
        if ret == DONE_EXPLORING:
            state[t] = EXPLORED
            stack.pop()

    i = 0
    while i < n:
        if state[i] != EXPLORED:
            raise env.reject(f"unreachable insn {i}", EINVAL)
        if insns[i].code == LDIMM64:
            if state[i + 1] != 0:
                raise env.reject(f"jump into the middle of ldimm64 insn {i}", EINVAL)
            i += 1
        i += 1


# ---------------------------------------------------------------------------
# static register liveness


def successors(env: Env, t: int) -> tuple[int, ...]:
    """bpf_insn_successors: where control may go after insn t (calls return)."""
    insn = env.insns[t]
    cls = insn.cls
    if insn.code == LDIMM64:
        return (t + 2,)
    if cls not in (U.BPF_JMP, U.BPF_JMP32):
        return (t + 1,)
    op = insn.op
    if op == U.BPF_EXIT:
        return ()
    if op == U.BPF_CALL:
        return (t + 1,)
    if op == U.BPF_JA:
        off = insn.off if cls == U.BPF_JMP else insn.imm
        return (t + off + 1,)
    if insn.off == 0:
        return (t + 1,)
    return (t + insn.off + 1, t + 1)


ALL_CALLER_SAVED = 0x3F


def insn_use_def(env: Env, insn: Insn) -> tuple[int, int]:
    """compute_insn_live_regs: (registers read, registers written) by insn."""
    cls, op, mode = insn.cls, insn.op, insn.mode
    src, dst = 1 << insn.src, 1 << insn.dst
    use, d = 0xFFFF, 0
    if cls == U.BPF_LD:
        if mode == U.BPF_IMM and insn.size == U.BPF_DW:
            d, use = dst, 0
    elif cls == U.BPF_LDX:
        if mode in (U.BPF_MEM, U.BPF_MEMSX):
            d, use = dst, src
    elif cls == U.BPF_ST:
        if mode == U.BPF_MEM:
            d, use = 0, dst
    elif cls == U.BPF_STX:
        if mode == U.BPF_MEM:
            d, use = 0, dst | src
        elif mode == U.BPF_ATOMIC:
            imm = insn.imm
            if imm == U.BPF_CMPXCHG:
                use, d = 1 | dst | src, 1
            elif imm == U.BPF_LOAD_ACQ:
                d, use = dst, src
            elif imm == U.BPF_STORE_REL:
                d, use = 0, dst | src
            else:
                use = dst | src
                d = src if imm & U.BPF_FETCH else 0
    elif cls in (U.BPF_ALU, U.BPF_ALU64):
        if op == U.BPF_END:
            use = d = dst
        elif op == U.BPF_MOV:
            d = dst
            use = 0 if not insn.srcx else src
        else:
            d = dst
            use = dst if not insn.srcx else dst | src
    elif cls in (U.BPF_JMP, U.BPF_JMP32):
        if op == U.BPF_JA:
            d, use = 0, 0
        elif op == U.BPF_JCOND:
            d, use = 0, 0
        elif op == U.BPF_EXIT:
            d, use = 0, 1
        elif op == U.BPF_CALL:
            d = ALL_CALLER_SAVED
            use = d & ~1
            nparams = call_num_params(env, insn)
            if nparams is not None:
                use = ((1 << nparams) - 1) << 1
        else:
            d = 0
            use = dst if not insn.srcx else dst | src
    return use, d


def call_num_params(env: Env, insn: Insn) -> int | None:
    if insn.is_helper_call():
        fn = helper_proto(env, insn.imm)
        if fn is None:
            return None
        return len(fn.args)
    if insn.is_kfunc_call():
        meta = kfunc_meta(env, insn, quiet=True)
        if meta is None:
            return None
        return len(meta.args)
    return None


def compute_postorder(env: Env, succ: list[tuple[int, ...]] | None = None) -> list[int]:
    n = env.insn_cnt
    if succ is None:
        succ = [successors(env, t) for t in range(n)]
    state = [0] * n
    order: list[int] = []
    for sp in env.subprogs:
        stack = [sp.start]
        while stack:
            top = stack[-1]
            state[top] |= 1
            if state[top] & 2:
                order.append(top)
                stack.pop()
                continue
            for s in succ[top]:
                if s < n and not state[s]:
                    stack.append(s)
                    state[s] |= 1
            state[top] |= 2
    return order


def compute_live_registers(env: Env) -> None:
    n = env.insn_cnt
    insns = env.insns
    use = [0] * n
    dfn = [0] * n
    for i in range(n):
        use[i], dfn[i] = insn_use_def(env, insns[i])
    live_in = [0] * n
    live_out = [0] * n
    succ = [successors(env, t) for t in range(n)]
    order = compute_postorder(env, succ)
    changed = True
    while changed:
        changed = False
        for t in order:
            out = 0
            for s in succ[t]:
                if s < n:
                    out |= live_in[s]
            new_in = (out & ~dfn[t]) | use[t]
            if out != live_out[t] or new_in != live_in[t]:
                live_in[t] = new_in
                live_out[t] = out
                changed = True
    for i in range(n):
        env.aux[i].live_regs_before = live_in[i]
    if env.log.level & 2:
        env.log("Live regs before insn:\n")
        i = 0
        while i < n:
            scc = env.aux[i].scc
            env.log(f"{scc:3d} " if scc else "    ")
            env.log(f"{i:3d}: ")
            env.log("".join(str(j) if live_in[i] & (1 << j) else "." for j in range(10)))
            env.log(" " + format_insn(env, insns[i]) + "\n")
            i += 2 if insns[i].code == LDIMM64 else 1


def compute_scc(env: Env) -> None:
    """Number the strongly connected components (loops) like compute_scc: non-trivial
    components get ids from 1 in the order Tarjan's algorithm closes them."""
    n = env.insn_cnt
    index = [0] * n
    low = [0] * n
    onstack = [False] * n
    counter = [1]
    stk: list[int] = []
    next_scc = 1
    starts = set()
    j = 0
    while j < n:
        starts.add(j)
        j += 2 if env.insns[j].code == LDIMM64 else 1
    succ = [successors(env, t) for t in range(n)]
    for root in range(n):
        if index[root] or root not in starts:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stk.append(root)
        onstack[root] = True
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w >= n:
                    continue
                if not index[w]:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stk.append(w)
                    onstack[w] = True
                    work.append((w, iter(succ[w])))
                    advanced = True
                    break
                if onstack[w]:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stk.pop()
                    onstack[w] = False
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in succ[v]:
                    for w in comp:
                        env.aux[w].scc = next_scc
                    next_scc += 1


def _is_insn_start(env: Env, i: int) -> bool:
    j = 0
    while j < i:
        j += 2 if env.insns[j].code == LDIMM64 else 1
    return j == i
