"""Context access of BTF-typed tracing programs (btf_ctx_access in kernel/bpf/btf.c).

A tp_btf, fentry/fexit, fmod_ret or LSM program's context is the array of
its target's arguments (u64 each).  Which argument a load reads, and what it
is -- a scalar, or a pointer to a kernel struct the program may then walk --
comes from the target's BTF prototype in the running kernel: the typedef
``btf_trace_<tp>`` for tp_btf, the function itself for fentry/fexit, and
``bpf_lsm_<hook>`` for LSM, and for struct_ops the function pointer type of
the member the program implements (:mod:`.struct_ops`).  A pointer argument
becomes PTR_TO_BTF_ID (trusted for tp_btf and struct_ops, as Linux's
prog_args_trusted says).

Targets only in module BTF are not resolved: such programs' arguments read
as scalars (the kernel needs the target to load them at all).
"""
from __future__ import annotations

from functools import lru_cache

from .. import uapi as U
from ..btf import BTF
from .env import Env
from .struct_ops import member_of, promote
from .types import MEM_RDONLY, PTR_MAYBE_NULL, PTR_TO_BTF_ID, PTR_TO_BUF, PTR_TRUSTED, SCALAR_VALUE

A = U.AttachType
_PREFIX = {A.TRACE_RAW_TP: ("btf_trace_", "TYPEDEF"), A.LSM_MAC: ("bpf_lsm_", "FUNC"),
           A.LSM_CGROUP: ("bpf_lsm_", "FUNC"), A.TRACE_FENTRY: ("", "FUNC"),
           A.TRACE_FEXIT: ("", "FUNC"), A.MODIFY_RETURN: ("", "FUNC"),
           A.TRACE_ITER: ("bpf_iter_", "FUNC")}

# bpf_iter_reg.ctx_arg_info of the iterator targets: argument index -> the register
# type Linux gives the load (PTR_TO_BUF for map keys and values; the object pointers are
# NULL in the final, stop call).  A target not listed here gets every object pointer
# PTR_MAYBE_NULL, the stricter reading.
_BUF_RO, _BUF_RW = PTR_TO_BUF | PTR_MAYBE_NULL | MEM_RDONLY, PTR_TO_BUF | PTR_MAYBE_NULL
_ITER_CTX_ARGS: dict[str, dict[int, int]] = {
    "bpf_map_elem": {1: 0, 2: _BUF_RO, 3: _BUF_RW},
    "bpf_sk_storage_map": {1: 0, 2: PTR_MAYBE_NULL, 3: _BUF_RW},
    "sockmap": {1: 0, 2: _BUF_RO, 3: PTR_MAYBE_NULL},
}


@lru_cache(maxsize=1)
def _vmlinux():
    try:
        return BTF.load_vmlinux()
    except Exception:
        return None


class AttachProto:
    """The target's prototype: BTF, FUNC_PROTO, name, and whether it is a
    tracepoint's btf_trace_ typedef (whose first argument is skipped)."""

    def __init__(self, btf, proto, name: str, trace: bool):
        self.btf, self.proto, self.name, self.trace = btf, proto, name, trace


def attach_proto(env: Env) -> AttachProto | None:
    """The BTF prototype of the program's attach target, once per verification."""
    if env._attach_proto is not False:
        return env._attach_proto
    env._attach_proto = None
    so = member_of(env)
    if so is not None:
        env._attach_proto = AttachProto(so.btf, so.proto, so.name, False)
        return env._attach_proto
    target = env.attach_target
    try:
        at = A(int(env.expected_attach_type)) if env.expected_attach_type is not None else None
    except ValueError:
        at = None
    if not target or at not in _PREFIX or ":" in target:
        return None
    btf = _vmlinux()
    if btf is None:
        return None
    prefix, kind = _PREFIX[at]
    try:
        t = btf.find(prefix + target, kind.lower())
    except Exception:
        return None
    t = btf[t.type_id]
    if at == A.TRACE_RAW_TP:
        while t.kind.name in ("PTR", "TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
            t = btf[t.type_id]
    if t.kind.name != "FUNC_PROTO":
        return None
    name = prefix + target if at == A.TRACE_ITER else target     # bpf_iter_task
    env._attach_proto = AttachProto(btf, t, name, at == A.TRACE_RAW_TP)
    return env._attach_proto


def _skip_mods(btf, t):
    while t.kind.name in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
        t = btf[t.type_id]
    return t


def _kind_str(t) -> str:
    return "UNKNOWN" if t.kind.name == "UNKN" else t.kind.name


def btf_ctx_access(env: Env, off: int, size: int) -> tuple[int, object, int] | None:
    """tracing_prog_is_valid_access + btf_ctx_access: (reg type, btf, btf id) of the
    loaded value, or None (invalid).  The kernel's diagnostics are logged."""
    if off < 0 or off >= 8 * U.MAX_BPF_FUNC_ARGS or off % size:
        return None
    ap = attach_proto(env)
    if ap is None:
        return SCALAR_VALUE, None, 0
    btf, tname = ap.btf, ap.name
    log = env.log
    if off % 8:
        if log.level:
            log(f"func '{tname}' offset {off} is not multiple of 8\n")
        return None
    args = list(ap.proto.params)
    if ap.trace:
        args = args[1:]
    nr_args = len(args)
    arg = off // 8
    if arg == nr_args and not ap.proto.return_type_id:
        arg += 1        # get_ctx_arg_idx(): a void return takes no slot
    if arg > nr_args:
        if log.level:
            log(f"func '{tname}' doesn't have {arg + 1}-th argument\n")
        return None
    at = env.expected_attach_type
    so = member_of(env)
    if so is not None:
        at = None                   # a member index, not an attach type
    if arg == nr_args:
        if at in (A.LSM_MAC, A.LSM_CGROUP, A.TRACE_FEXIT):
            t = btf[ap.proto.return_type_id]
        elif at == A.MODIFY_RETURN:
            t = _skip_mods(btf, btf[ap.proto.return_type_id])
            if t.kind.name != "INT" or t.size > 8:
                if log.level:
                    log(f"ret type {_kind_str(t)} not allowed for fmod_ret\n")
                return None
        else:
            if log.level:
                log(f"func '{tname}' doesn't have {arg + 1}-th argument\n")
            return None
    else:
        t = btf[args[arg].type_id]
    t = _skip_mods(btf, t)
    k = t.kind.name
    if (k == "INT" and t.size <= 8) or k in ("ENUM", "ENUM64", "STRUCT", "UNION"):
        return SCALAR_VALUE, None, 0
    if k != "PTR":
        if log.level:
            log(f"func '{tname}' arg{arg} '{t.name}' has type {_kind_str(t)}. "
                f"Only pointer access is allowed\n")
        return None
    if size != 8:
        if log.level:
            log(f"func '{tname}' size {size} must be 8\n")
        return None
    iter_arg = None
    if at == A.TRACE_ITER and arg > 0:
        iter_arg = _ITER_CTX_ARGS.get(env.attach_target, {}).get(arg, PTR_MAYBE_NULL)
        if iter_arg & PTR_TO_BUF:
            return iter_arg, None, 0
    pointee = _skip_mods(btf, btf[t.type_id]) if t.type_id else None
    if pointee is None or pointee.kind.name in ("INT", "UNKN"):
        return SCALAR_VALUE, None, 0       # void * / int *: a scalar to the verifier
    reg_type = PTR_TO_BTF_ID
    if at in (A.TRACE_RAW_TP, A.TRACE_ITER) or so is not None:
        reg_type |= PTR_TRUSTED
    # ctx_arg_info entries are typed without a log line (btf_ctx_access returns early)
    iter_null = iter_arg is not None
    if arg < nr_args and getattr(args[arg], "name", "").endswith("__nullable") or \
            so is not None and arg in so.nullable:
        reg_type |= PTR_MAYBE_NULL
    if iter_arg:
        reg_type |= iter_arg
    btf_id = t.type_id
    t = btf[t.type_id]
    while t.kind.name in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
        btf_id = t.type_id
        t = btf[t.type_id]
    if t.kind.name not in ("STRUCT", "UNION"):
        if log.level:
            log(f"func '{tname}' arg{arg} type {_kind_str(t)} is not a struct\n")
        return None
    # struct_ops arguments of the member's ctx_arg_info (__nullable) are typed silently
    if log.level and not (so is not None and arg in so.nullable) and not iter_null:
        log(f"func '{tname}' arg{arg} has btf_id {btf_id} type {_kind_str(t)} '{t.name}'\n")
    if so is not None:
        btf_id = promote(env, btf, btf_id)
    return reg_type, btf, btf_id


# struct bpf_nf_ctx { const struct nf_hook_state *state; struct sk_buff *skb; }
_NF_CTX_FIELDS = {0: "nf_hook_state", 8: "sk_buff"}


def nf_ctx_access(env: Env, off: int, size: int, write: bool) -> tuple[int, object, int] | None:
    """nf_is_valid_access: the two pointers of bpf_nf_ctx, read whole, are trusted
    pointers to the kernel's structs; nothing else is accessible."""
    name = _NF_CTX_FIELDS.get(off)
    if write or name is None or size != 8:
        return None
    try:
        btf = BTF.load_vmlinux()
        tid = btf.find(name, "struct").id
    except Exception:
        return None
    return PTR_TO_BTF_ID | PTR_TRUSTED, btf, tid

