"""Global (non-static) subprograms and the whole-program stack limit.

A global function is verified once, on its own, for any arguments that match
its BTF prototype (btf_prepare_func_args here; the walk itself is
core.do_check_subprogs); call sites only check that their arguments match
(btf_check_subprog_call).  After all paths are verified, the deepest chain
of calls must fit the 512-byte stack (check_max_stack_depth).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import uapi as U
from ..uapi import MAX_BPF_STACK, MAX_CALL_FRAMES
from .env import Env
from .errors import E2BIG, EACCES, EINVAL, VerifierReject
from .memory import check_helper_mem_access
from .state import RegState
from .types import PTR_MAYBE_NULL, PTR_TO_CTX, PTR_TO_MEM, SCALAR_VALUE

ARG_ANYTHING, ARG_PTR_TO_CTX, ARG_PTR_TO_MEM = "anything", "ctx", "mem"


@dataclass
class FuncInfoRec:
    """A subprogram's BTF func_info, resolved: name, linkage and prototype."""
    insn: int
    name: str
    linkage: int
    proto: object
    btf: object


def func_info_records(btf, func_info) -> list[FuncInfoRec]:
    """The program's func_info records resolved through its BTF (none without BTF)."""
    out = []
    for fi in func_info or ():
        try:
            f = btf[fi.type_id]
            proto = btf[f.type_id]
            out.append(FuncInfoRec(fi.insn, f.name, int(f.linkage), proto, btf))
        except Exception:
            continue
    return out


# The context struct each program type's BTF names (bpf_ctx_convert in
# include/linux/bpf_types.h), after typedefs (KPROBE: bpf_user_pt_regs_t).
_CTX_NAMES = {
    U.ProgType.SOCKET_FILTER: "__sk_buff", U.ProgType.SCHED_CLS: "__sk_buff",
    U.ProgType.SCHED_ACT: "__sk_buff", U.ProgType.CGROUP_SKB: "__sk_buff",
    U.ProgType.LWT_IN: "__sk_buff", U.ProgType.LWT_OUT: "__sk_buff",
    U.ProgType.LWT_XMIT: "__sk_buff", U.ProgType.LWT_SEG6LOCAL: "__sk_buff",
    U.ProgType.SK_SKB: "__sk_buff", U.ProgType.XDP: "xdp_md",
    U.ProgType.CGROUP_SOCK: "bpf_sock", U.ProgType.CGROUP_SOCK_ADDR: "bpf_sock_addr",
    U.ProgType.SOCK_OPS: "bpf_sock_ops", U.ProgType.SK_MSG: "sk_msg_md",
    U.ProgType.FLOW_DISSECTOR: "__sk_buff", U.ProgType.KPROBE: "pt_regs",
    U.ProgType.PERF_EVENT: "bpf_perf_event_data", U.ProgType.SK_REUSEPORT: "sk_reuseport_md",
    U.ProgType.SK_LOOKUP: "bpf_sk_lookup", U.ProgType.CGROUP_SYSCTL: "bpf_sysctl",
    U.ProgType.CGROUP_SOCKOPT: "bpf_sockopt", U.ProgType.CGROUP_DEVICE: "bpf_cgroup_dev_ctx",
    U.ProgType.RAW_TRACEPOINT: "bpf_raw_tracepoint_args",
    U.ProgType.RAW_TRACEPOINT_WRITABLE: "bpf_raw_tracepoint_args",
    U.ProgType.NETFILTER: "bpf_nf_ctx",
}
# btf_is_projection_of: the kernel structs the uapi context structs stand for
_PROJECTIONS = {"__sk_buff": "sk_buff", "xdp_md": "xdp_buff"}


def _kind_str(t) -> str:
    """btf_type_str: the kernel's name of a BTF kind."""
    return "UNKNOWN" if t.kind.name == "UNKN" else t.kind.name


def _is_prog_ctx_type(btf, ptr, prog_type) -> bool:
    """btf_is_prog_ctx_type: does this pointer argument point to the program's context?"""
    t = btf.skip_mods(ptr.type_id)
    if prog_type == U.ProgType.KPROBE and t.kind.name == "TYPEDEF" and \
            t.name == "bpf_user_pt_regs_t":
        return True
    t = btf.resolve(t)
    if t.kind.name not in ("STRUCT", "UNION"):
        return False
    ctx = _CTX_NAMES.get(prog_type)
    if not ctx:
        return False
    return t.name == ctx or _PROJECTIONS.get(ctx) == t.name


def _prepare_func_args(env: Env, subprog: int) -> list[tuple[str, int, int]]:
    """btf_prepare_func_args: (kind, flags, mem_size) per argument register.

    Messages are logged as Linux logs them; a static function's problems are
    silent (the caller decides what an error means)."""
    sp = env.subprogs[subprog]
    proto = sp.func_proto
    is_global = sp.is_global
    if proto is None:
        raise env.reject("Global functions need valid BTF", EINVAL)
    btf = env.btf
    params = getattr(proto, "params", ())
    if len(params) > 5:
        if not is_global:
            raise VerifierReject("too many args", EINVAL)
        raise env.reject(f"Global function {sp.name}() with {len(params)} > 5 args. "
                         f"Buggy compiler.", EINVAL)
    ret = btf.resolve(proto.return_type_id) if proto.return_type_id else None
    if ret is None or ret.kind.name not in ("INT", "ENUM", "ENUM64"):
        if not is_global:
            raise VerifierReject("non-scalar return", EINVAL)
        raise env.reject(f"Global function {sp.name}() doesn't return scalar. "
                         f"Only those are supported.", EINVAL)
    args = []
    for i, p in enumerate(params):
        t = btf.resolve(p.type_id)
        kname = t.kind.name
        if kname == "PTR":
            if _is_prog_ctx_type(btf, t, env.prog_type):
                args.append((ARG_PTR_TO_CTX, 0, 0))
                continue
            if is_global:
                target = btf.resolve(t.type_id)
                try:
                    size = btf.sizeof(target)
                except Exception:
                    raise env.reject(f"arg#{i} reference type('{_kind_str(target)} "
                                     f"{target.name}') size cannot be determined: -22",
                                     EINVAL) from None
                args.append((ARG_PTR_TO_MEM, PTR_MAYBE_NULL, size))
                continue
        if kname in ("INT", "ENUM", "ENUM64"):
            args.append((ARG_ANYTHING, 0, 0))
            continue
        if not is_global:
            raise VerifierReject("unsupported arg", EINVAL)
        raise env.reject(f"Arg#{i} type {_kind_str(t)} in {sp.name}() is not supported yet.",
                         EINVAL)
    sp.arg_types = tuple(args)
    return args


def check_btf_func(env: Env) -> None:
    """check_btf_func: a subprogram that may end the program early (LD_ABS/LD_IND's
    hidden exit, a tail call) returns what it leaves in R0 as the program's result,
    so it must be declared to return a scalar."""
    if env.btf is None:
        return
    for i, sp in enumerate(env.subprogs):
        if not i or not (sp.has_ld_abs or sp.has_tail_call) or sp.func_proto is None:
            continue
        tid = sp.func_proto.return_type_id
        ret = env.btf.resolve(tid) if tid else None
        kind = ret.kind.name if ret is not None else "VOID"
        scalar = (kind == "INT" and ret.size <= 8) or kind in ("ENUM", "ENUM64")
        if scalar:
            continue
        what = "LD_ABS" if sp.has_ld_abs else "tail_call"
        raise env.reject(f"{what} is only allowed in functions that return 'int'.", EINVAL)


def check_main_func_info(env: Env) -> None:
    """The main program's BTF prototype is checked as a global function's (the
    result only decides whether its BTF is reliable, but what is wrong is logged)."""
    sp = env.subprogs[0]
    if sp.func_proto is None or env.btf is None:
        return
    try:
        _prepare_func_args(env, 0)
    except VerifierReject:
        pass
    except Exception:
        pass


def prepare_global_args(env: Env, subprog: int, regs: list[RegState]) -> None:
    sp = env.subprogs[subprog]
    if env.log.level:
        env.log(f"Validating {sp.name}() func#{subprog}...\n")
    args = _prepare_func_args(env, subprog)
    for i, (kind, flags, size) in enumerate(args, start=1):
        reg = regs[i]
        if kind == ARG_PTR_TO_CTX:
            reg.mark_known(0)
            reg.type = PTR_TO_CTX
        elif kind == ARG_ANYTHING:
            reg.mark_unknown(not env.bpf_capable)
        else:
            reg.mark_known(0)
            reg.type = PTR_TO_MEM | flags
            reg.mem_size = size
            if flags & PTR_MAYBE_NULL:
                reg.id = env.new_id()


def btf_check_subprog_call(env: Env, subprog: int, regs: list[RegState]) -> bool:
    """Do the caller's registers match the global function's prototype?  True = mismatch."""
    try:
        args = _prepare_func_args(env, subprog)
    except VerifierReject:
        return True
    for i, (kind, flags, size) in enumerate(args, start=1):
        reg = regs[i]
        if kind == ARG_ANYTHING:
            if reg.type != SCALAR_VALUE:
                env.verbose(f"R{i} is not a scalar\n")
                return True
        elif kind == ARG_PTR_TO_CTX:
            if reg.type != PTR_TO_CTX:
                env.verbose(f"arg#{i - 1} expects pointer to ctx\n")
                return True
        else:
            if reg.type == SCALAR_VALUE and reg.is_const() and reg.bounds.var_off.value == 0:
                continue
            try:
                check_helper_mem_access(env, i, size, 1, False, None)
            except VerifierReject:
                return True
    return False


def _round_up_stack_depth(depth: int) -> int:
    return (depth + 15) // 16 * 16       # JITed programs: 16-byte granularity


_PRIV_STACK_TYPES = {U.ProgType.KPROBE, U.ProgType.TRACEPOINT, U.ProgType.PERF_EVENT,
                     U.ProgType.RAW_TRACEPOINT}


def check_max_stack_depth(env: Env) -> None:
    sps = env.subprogs
    adaptive = env.prog_type in _PRIV_STACK_TYPES and not any(sp.has_tail_call for sp in sps)
    priv = [None] * len(sps)
    for i in range(len(sps) - 1, -1, -1):
        if i == 0 or sps[i].is_async_cb:
            _check_subprog_depth(env, i, adaptive and i == 0, priv)


def _check_subprog_depth(env: Env, idx: int, priv_ok: bool, priv: list) -> None:
    sps = env.subprogs
    insns = env.insns
    ends = [sp.start for sp in sps] + [env.insn_cnt]
    depth = 0
    frame = 0
    ret_insn = [0] * MAX_CALL_FRAMES
    ret_prog = [0] * MAX_CALL_FRAMES
    i = sps[idx].start
    if not priv_ok:
        priv[idx] = False
    while True:
        # process_func
        if idx and sps[idx].has_tail_call and depth >= 256:
            raise env.reject(f"tail_calls are not allowed when call stack of previous frames "
                             f"is {depth} bytes. Too large", EACCES)
        sd = _round_up_stack_depth(sps[idx].stack_depth)
        if priv_ok and priv[idx] is None and sd >= 64:
            priv[idx] = True
        if priv[idx]:
            if sd > MAX_BPF_STACK:
                raise env.reject(f"stack size of subprog {idx} is {sd}. Too large", EACCES)
        else:
            depth += sd
            if depth > MAX_BPF_STACK:
                raise env.reject(f"combined stack size of {frame + 1} calls is {depth}. "
                                 f"Too large", EACCES)
        # continue_func
        while True:
            end = ends[idx + 1]
            called = False
            while i < end:
                insn = insns[i]
                if insn.is_pseudo_call() or insn.is_pseudo_func():
                    nxt = i + insn.imm + 1
                    sidx = env.subprog_by_start(nxt)
                    if sidx < 0:
                        raise env.bug(f"callee not found at insn {nxt}")
                    if sps[sidx].is_async_cb and not insn.is_pseudo_call():
                        i += 1
                        continue
                    if not insn.is_pseudo_call() and not sps[sidx].is_cb:
                        pass
                    ret_insn[frame] = i + 1
                    ret_prog[frame] = idx
                    i = nxt
                    idx = sidx
                    if not priv_ok:
                        priv[idx] = False
                    frame += 1
                    if frame >= MAX_CALL_FRAMES:
                        raise env.reject(f"the call stack of {frame} frames is too deep !", E2BIG)
                    called = True
                    break
                i += 1
            if called:
                break
            if frame == 0:
                return
            if not priv[idx]:
                depth -= _round_up_stack_depth(sps[idx].stack_depth)
            frame -= 1
            i = ret_insn[frame]
            idx = ret_prog[frame]
