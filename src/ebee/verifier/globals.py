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
from ..btf import BTF
from ..btf.btf import essential_name
from .env import Env
from .errors import E2BIG, EACCES, EFAULT, EINVAL, ENOENT, EOPNOTSUPP, ESRCH, VerifierReject
from .state import RegState
from .types import (CONST_PTR_TO_DYNPTR, MEM_RDONLY, PTR_MAYBE_NULL, PTR_TO_BTF_ID, PTR_TO_CTX,
                    PTR_TO_MEM, PTR_TRUSTED, PTR_UNTRUSTED)

# what a global function's argument register must hold (bpf_subprog_arg_info.arg_type)
ARG_ANYTHING, ARG_PTR_TO_CTX, ARG_PTR_TO_MEM = "anything", "ctx", "mem"
ARG_PTR_TO_BTF_ID, ARG_PTR_TO_DYNPTR, ARG_PTR_TO_ARENA = "btf_id", "dynptr", "arena"


@dataclass(frozen=True)
class SubprogArg:
    """One argument of a global function as btf_prepare_func_args derives it."""
    kind: str
    flags: int = 0          # PTR_MAYBE_NULL, PTR_TRUSTED, PTR_UNTRUSTED, MEM_RDONLY
    mem_size: int = 0
    btf_id: int = 0         # ARG_PTR_TO_BTF_ID: the vmlinux struct


@dataclass
class FuncInfoRec:
    """A subprogram's BTF func_info, resolved: name, linkage and prototype."""
    insn: int
    name: str
    linkage: int
    proto: object
    btf: object
    type_id: int = 0        # the FUNC's BTF id (its arg:<tag> decl tags point at it)


def func_info_records(btf, func_info) -> list[FuncInfoRec]:
    """The program's func_info records resolved through its BTF (none without BTF)."""
    out = []
    for fi in func_info or ():
        try:
            f = btf[fi.type_id]
            proto = btf[f.type_id]
            out.append(FuncInfoRec(fi.insn, f.name, int(f.linkage), proto, btf, fi.type_id))
        except Exception:
            continue
    return out


# btf_is_projection_of: the kernel structs the uapi context structs stand for
_PROJECTIONS = {"__sk_buff": "sk_buff", "xdp_md": "xdp_buff"}
_SCALAR_KINDS = ("INT", "ENUM", "ENUM64")


def _vmlinux() -> BTF:
    return BTF.load_vmlinux()


def _kind_str(t) -> str:
    """btf_type_str: the kernel's name of a BTF kind."""
    return "UNKNOWN" if t.kind.name == "UNKN" else t.kind.name


def canonical_ctx_type(prog_type):
    """find_canonical_prog_ctx_type: the context type the program type's uapi names
    (the ``_prog`` member of vmlinux's ``struct bpf_ctx_convert``), or None."""
    try:
        vml = _vmlinux()
        name = f"BPF_PROG_TYPE_{U.ProgType(prog_type).name}_prog"
        for m in vml.find("bpf_ctx_convert", "struct").members:
            if m.name == name:
                return vml[m.type_id]
    except Exception:
        return None
    return None


def _is_prog_ctx_type(env: Env, btf, ptr, prog_type, arg: int) -> bool:
    """btf_is_prog_ctx_type: does this pointer argument point to the program's context?"""
    t = btf[ptr.type_id]
    if prog_type == U.ProgType.KPROBE:
        t = btf.skip_mods(t)
        if t.kind.name == "TYPEDEF" and t.name == "bpf_user_pt_regs_t":
            return True
    t = btf.resolve(t)
    if t.kind.name not in ("STRUCT", "UNION"):
        return False
    ctx = canonical_ctx_type(prog_type)
    if ctx is None:
        env.verbose("btf_vmlinux is malformed\n")
        return False
    vml = _vmlinux()
    while True:
        if not ctx.name:
            return False        # program types without a named context: only arg:ctx
        if _PROJECTIONS.get(ctx.name) == t.name and t.name:
            return True
        if ctx.name == t.name:
            return True
        if ctx.kind.name != "TYPEDEF" and ctx.kind.name not in _MODIFIER_KINDS:
            return False
        ctx = vml.resolve(ctx)


_MODIFIER_KINDS = ("CONST", "VOLATILE", "RESTRICT", "TYPE_TAG")


def _validate_prog_ctx_type(env: Env, btf, ptr, arg: int) -> bool:
    """btf_validate_prog_ctx_type: may an ``__arg_ctx`` argument have this type?  The
    message is logged when it may not."""
    prog_type, attach = env.prog_type, env.expected_attach_type
    P, A = U.ProgType, U.AttachType
    t = btf[ptr.type_id]
    if prog_type in (P.KPROBE, P.PERF_EVENT):
        t = btf.skip_mods(t)
        if t.kind.name == "TYPEDEF" and t.name == "bpf_user_pt_regs_t":
            return True
    t = btf.resolve(t)
    if t.id == 0:
        return True             # void *ctx __arg_ctx is always valid
    if not t.name:
        env.verbose(f"arg#{arg} type doesn't have a name\n")
        return False
    is_struct = t.kind.name == "STRUCT"
    u64 = t.kind.name == "INT" and t.size == 8
    if prog_type == P.KPROBE and is_struct and t.name == "pt_regs":
        return True
    if prog_type == P.PERF_EVENT and is_struct and t.name == "pt_regs":
        return True             # bpf_user_pt_regs_t is struct pt_regs on x86
    if prog_type in (P.RAW_TRACEPOINT, P.RAW_TRACEPOINT_WRITABLE) and u64:
        return True
    if prog_type == P.TRACING:
        if attach == A.TRACE_RAW_TP and (u64 or (is_struct and
                                                 t.name == "bpf_raw_tracepoint_args")):
            return True
        if attach == A.TRACE_ITER and is_struct and t.name.startswith("bpf_iter__"):
            return True
        if attach in (A.TRACE_FENTRY, A.TRACE_FEXIT, A.MODIFY_RETURN) and u64:
            return True
    if prog_type in (P.LSM, P.STRUCT_OPS) and u64:
        return True
    if prog_type in (P.TRACEPOINT, P.SYSCALL, P.EXT):
        return True             # anything goes
    ctx = canonical_ctx_type(prog_type)
    if ctx is None:
        env.verbose("btf_vmlinux is malformed\n")
        return False
    ctx = _vmlinux().resolve(ctx)
    if ctx.kind.name != "STRUCT":
        env.verbose(f"arg#{arg} should be void pointer\n")
        return False
    if not is_struct or ctx.name != t.name:
        env.verbose(f"arg#{arg} should be `struct {ctx.name} *`\n")
        return False
    return True


def _is_dynptr_ptr(btf, ptr) -> bool:
    t = btf.resolve(ptr.type_id)
    if t.kind.name == "STRUCT" or (t.kind.name == "FWD" and not t.is_union):
        return t.name == "bpf_dynptr"
    return False


def _arg_tags(btf, fn_id: int, arg: int) -> list[str]:
    """The ``arg:<tag>`` decl tags on argument ``arg`` of FUNC ``fn_id``, in id order
    (btf_find_next_decl_tag), without their prefix."""
    out = []
    if not fn_id:
        return out
    for tid in range(btf.start_id, btf.type_count):
        if btf.kind(tid).name != "DECL_TAG":
            continue
        t = btf[tid]
        if t.type_id == fn_id and t.component_idx == arg and t.name.startswith("arg:"):
            out.append(t.name[4:])
    return out


def _ptr_to_btf_id(env: Env, btf, ptr, arg: int) -> int:
    """btf_get_ptr_to_btf_id: the one vmlinux type of the pointee's kind whose name
    (flavour suffix ``___x`` dropped) is the pointee's, as CO-RE finds candidates."""
    t = btf.resolve(ptr.type_id)
    if not t.name:
        raise env.reject(f"arg#{arg} reference type('{_kind_str(t)} ') candidate matching "
                         f"error: -22", EINVAL)
    name = essential_name(t.name)
    vml = _vmlinux()
    cands = [c for c in vml.find_all(name) if c.kind is t.kind]
    if len(cands) != 1:
        what = "has no matches" if not cands else "is ambiguous"
        raise env.reject(f"arg#{arg} reference type('{_kind_str(t)} {t.name}') {what}",
                         ENOENT if not cands else ESRCH)
    return cands[0].id


_TAGS = ("ctx", "trusted", "untrusted", "nonnull", "nullable", "arena")


def _prepare_func_args(env: Env, subprog: int) -> tuple[SubprogArg, ...]:
    """btf_prepare_func_args: what each argument register must hold, from the BTF
    prototype and its ``arg:<tag>`` decl tags (``__arg_ctx``, ``__arg_nonnull``,
    ``__arg_nullable``, ``__arg_trusted``, ``__arg_untrusted``, ``__arg_arena``).

    Cached once it succeeds, as the kernel caches it (so its messages are logged
    once).  Messages are logged as Linux logs them; a static function's problems
    are silent (the caller decides what an error means)."""
    sp = env.subprogs[subprog]
    if sp.args_cached:
        return sp.arg_types
    proto = sp.func_proto
    is_global = sp.is_global
    if proto is None:
        raise env.reject("Global functions need valid BTF", EINVAL)
    btf = env.btf
    fi = env.func_info[subprog] if subprog < len(env.func_info) else None
    fn_id = getattr(fi, "type_id", 0)
    params = getattr(proto, "params", ())
    if len(params) > 5:
        if not is_global:
            raise VerifierReject("too many args", EINVAL)
        raise env.reject(f"Global function {sp.name}() with {len(params)} > 5 args. "
                         f"Buggy compiler.", EINVAL)
    ret = btf.resolve(proto.return_type_id) if proto.return_type_id else None
    if ret is None or ret.kind.name not in _SCALAR_KINDS:
        if not is_global:
            raise VerifierReject("non-scalar return", EINVAL)
        raise env.reject(f"Global function {sp.name}() doesn't return scalar. "
                         f"Only those are supported.", EINVAL)
    args = []
    for i, p in enumerate(params):
        tags = set()
        for tag in _arg_tags(btf, fn_id, i):
            if not is_global:
                raise env.reject(f"arg#{i} type tag is not supported in static functions",
                                 EOPNOTSUPP)
            if tag not in _TAGS:
                raise env.reject(f"arg#{i} has unsupported set of tags", EOPNOTSUPP)
            tags.add(tag)
        t = btf.resolve(p.type_id)
        if t.kind.name == "PTR":
            if "ctx" in tags or _is_prog_ctx_type(env, btf, t, env.prog_type, i):
                if tags - {"ctx"}:
                    raise env.reject(f"arg#{i} has invalid combination of tags", EINVAL)
                if "ctx" in tags and not _validate_prog_ctx_type(env, btf, t, i):
                    raise VerifierReject(f"arg#{i} is not the program's context", EINVAL)
                args.append(SubprogArg(ARG_PTR_TO_CTX))
                continue
            if _is_dynptr_ptr(btf, t):
                if tags:
                    raise env.reject(f"arg#{i} has invalid combination of tags", EINVAL)
                args.append(SubprogArg(ARG_PTR_TO_DYNPTR, MEM_RDONLY))
                continue
            if "trusted" in tags:
                if "nonnull" in tags:
                    raise env.reject(f"arg#{i} has invalid combination of tags", EINVAL)
                kid = _ptr_to_btf_id(env, btf, t, i)
                flags = PTR_TRUSTED | (PTR_MAYBE_NULL if "nullable" in tags else 0)
                args.append(SubprogArg(ARG_PTR_TO_BTF_ID, flags, btf_id=kid))
                continue
            if "untrusted" in tags:
                if tags - {"untrusted"}:
                    raise env.reject(f"arg#{i} untrusted cannot be combined with any other "
                                     f"tags", EINVAL)
                ref = btf.resolve(t.type_id)
                if ref.id == 0 or ref.kind.name in _SCALAR_KINDS:
                    args.append(SubprogArg(ARG_PTR_TO_MEM, MEM_RDONLY | PTR_UNTRUSTED))
                    continue
                kid = _ptr_to_btf_id(env, btf, t, i)
                kt = _vmlinux()[kid]
                if kt.kind.name not in ("STRUCT", "UNION"):
                    raise env.reject(f"arg#{i} has type {_kind_str(kt)} '{kt.name}', but only "
                                     f"struct or primitive types are allowed", EINVAL)
                args.append(SubprogArg(ARG_PTR_TO_BTF_ID, PTR_UNTRUSTED, btf_id=kid))
                continue
            if "arena" in tags:
                if tags - {"arena"}:
                    raise env.reject(f"arg#{i} arena cannot be combined with any other tags",
                                     EINVAL)
                args.append(SubprogArg(ARG_PTR_TO_ARENA))
                continue
            if is_global:       # generic user data pointer
                if "nullable" in tags:
                    raise env.reject(f"arg#{i} has invalid combination of tags", EINVAL)
                target = btf.resolve(t.type_id)
                try:
                    size = btf.sizeof(target)
                except Exception:
                    raise env.reject(f"arg#{i} reference type('{_kind_str(target)} "
                                     f"{target.name}') size cannot be determined: -22",
                                     EINVAL) from None
                flags = 0 if "nonnull" in tags else PTR_MAYBE_NULL
                args.append(SubprogArg(ARG_PTR_TO_MEM, flags, size))
                continue
        if tags:
            raise env.reject(f"arg#{i} has pointer tag, but is not a pointer type", EINVAL)
        if t.kind.name in _SCALAR_KINDS:
            args.append(SubprogArg(ARG_ANYTHING))
            continue
        if not is_global:
            raise VerifierReject("unsupported arg", EINVAL)
        raise env.reject(f"Arg#{i} type {_kind_str(t)} in {sp.name}() is not supported yet.",
                         EINVAL)
    sp.arg_types = tuple(args)
    sp.args_cached = True
    return sp.arg_types


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
    """do_check_common for a global function: its argument registers as its
    prototype promises them."""
    sp = env.subprogs[subprog]
    if env.log.level:
        env.log(f"Validating {sp.name}() func#{subprog}...\n")
    args = _prepare_func_args(env, subprog)
    for i, arg in enumerate(args, start=1):
        reg = regs[i]
        if arg.kind == ARG_PTR_TO_CTX:
            reg.mark_known(0)
            reg.type = PTR_TO_CTX
        elif arg.kind == ARG_ANYTHING:
            reg.mark_unknown(not env.bpf_capable)
        elif arg.kind == ARG_PTR_TO_DYNPTR:
            # assumed a local dynptr: what the caller passes is checked at the call
            reg.mark_known(0)
            reg.type = CONST_PTR_TO_DYNPTR
            reg.dynptr = ("skb", True)     # as Linux 6.18 marks it: packet-like, conservatively
            reg.id = env.new_id()
        elif arg.kind == ARG_PTR_TO_MEM:
            reg.mark_known(0)
            reg.type = PTR_TO_MEM | (arg.flags & (PTR_MAYBE_NULL | PTR_UNTRUSTED | MEM_RDONLY))
            reg.mem_size = arg.mem_size
            if arg.flags & PTR_MAYBE_NULL:
                reg.id = env.new_id()
        elif arg.kind == ARG_PTR_TO_BTF_ID:
            reg.mark_known(0)
            reg.type = PTR_TO_BTF_ID | (arg.flags & (PTR_MAYBE_NULL | PTR_UNTRUSTED |
                                                     PTR_TRUSTED))
            reg.btf, reg.btf_id = _vmlinux(), arg.btf_id
            reg.id = env.new_id()
        elif arg.kind == ARG_PTR_TO_ARENA:
            reg.mark_unknown(not env.bpf_capable)     # a PTR_TO_ARENA or a scalar
        else:
            raise env.bug(f"unhandled arg#{i - 1} type {arg.kind}")


def prepare_subprog_args(env: Env, subprog: int) -> tuple[SubprogArg, ...] | None:
    """btf_prepare_func_args at a call: the arguments, or None when the prototype
    cannot be converted (its message logged)."""
    try:
        return _prepare_func_args(env, subprog)
    except VerifierReject as e:
        if e.errno == EFAULT:
            raise
        return None


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
