"""check_kfunc_call for the dynptr kfuncs of packets: bpf_dynptr_from_skb and
bpf_dynptr_from_xdp create a dynptr over the program's packet, bpf_dynptr_slice and
bpf_dynptr_slice_rdwr return a pointer into a dynptr's data (or into the buffer
the program passes, when the bytes are not linear).

A slice of a packet dynptr is packet memory: it carries the dynptr's type
(DYNPTR_TYPE_SKB/XDP) so that whatever changes packet data invalidates it with
the packet pointers (clear_all_pkt_pointers), as Linux does.
"""
from __future__ import annotations

from .. import uapi as U
from ..btf import BTF
from .btfids import btf_struct_ids_match
from .calls import check_func_arg_reg_off, check_mem_size_reg
from .dynptr import dynptr_at, process_dynptr_func
from .env import DST_OP_NO_MARK, Env
from .errors import EACCES, EINVAL
from .globals import canonical_ctx_type
from .func_proto import ARG_DONTCARE, ARG_PTR_TO_DYNPTR, CallArgMeta
from .memory import BPF_READ, BPF_WRITE, may_access_direct_pkt_data, register_is_null
from .precision import mark_chain_precision
from .state import RegState
from .types import (CONST_PTR_TO_DYNPTR, DYNPTR_TYPE_LOCAL, DYNPTR_TYPE_RINGBUF, DYNPTR_TYPE_SKB,
                    DYNPTR_TYPE_XDP, MEM_RDONLY, MEM_UNINIT, PTR_MAYBE_NULL, PTR_TO_BTF_ID,
                    PTR_TO_CTX, PTR_TO_MEM, PTR_TRUSTED, SCALAR_VALUE, reg_type_str)

FROM_PKT = {"bpf_dynptr_from_skb": "skb", "bpf_dynptr_from_xdp": "xdp"}
SLICES = ("bpf_dynptr_slice", "bpf_dynptr_slice_rdwr")
DYNPTR_KFUNCS = frozenset(FROM_PKT) | frozenset(SLICES)
_TYPE_FLAG = {"local": DYNPTR_TYPE_LOCAL, "ringbuf": DYNPTR_TYPE_RINGBUF, "skb": DYNPTR_TYPE_SKB,
              "xdp": DYNPTR_TYPE_XDP}
# the uapi context struct each packet kfunc takes, and the kernel struct behind it
_CTX = {"skb": ("__sk_buff", "sk_buff"), "xdp": ("xdp_md", "xdp_buff")}


def _scalar_arg(env: Env, regno: int) -> None:
    if env.cur_regs()[regno].type != SCALAR_VALUE:
        raise env.reject(f"R{regno} is not a scalar", EINVAL)


def _ctx_arg(env: Env, name: str, e, kind: str) -> None:
    """The packet argument: the program's own context when the kfunc's parameter is
    the program type's context struct (KF_ARG_PTR_TO_CTX), else a kernel pointer to
    the struct behind it (the projection: a netfilter program's ``ctx->skb``)."""
    reg = env.cur_regs()[1]
    trusted = bool(e.flags & U.KF_TRUSTED_ARGS)
    if trusted and (register_is_null(reg) or reg.type & PTR_MAYBE_NULL):
        raise env.reject("Possibly NULL pointer passed to trusted arg0", EACCES)
    uapi, kern = _CTX[kind]
    if _prog_ctx_name(env) == uapi:
        check_func_arg_reg_off(env, reg, 1, ARG_DONTCARE, 0)
        if reg.type != PTR_TO_CTX:
            raise env.reject(f"arg#0 expected pointer to ctx, but got {reg_type_str(reg.type)}",
                             EINVAL)
        return
    if reg.type != PTR_TO_BTF_ID | PTR_TRUSTED and not (reg.type == PTR_TO_BTF_ID and
                                                        reg.ref_obj_id):
        raise env.reject("R1 must be referenced or trusted", EINVAL)
    vml = reg.btf
    try:
        have = vml[reg.btf_id].name if vml is not None else ""
        want = vml.find(kern, "struct").id
    except Exception:
        raise env.reject(f"calling kernel function {name} is not allowed", EACCES) from None
    check_func_arg_reg_off(env, reg, 1, ARG_DONTCARE, 0)
    if not btf_struct_ids_match(vml, reg.btf_id, reg.off, want, False):
        raise env.reject(f"kernel function {name} args#0 expected pointer to STRUCT {uapi} but "
                         f"R1 has a pointer to STRUCT {have}", EINVAL)


def _prog_ctx_name(env: Env) -> str:
    """The name of the program type's uapi context struct (bpf_ctx_convert)."""
    ctx = canonical_ctx_type(env.prog_type)
    try:
        return BTF.load_vmlinux().resolve(ctx).name if ctx is not None else ""
    except Exception:
        return ""


def check_dynptr_kfunc_call(env: Env, insn, e) -> None:
    name = e.name
    regs = env.cur_regs()
    for r in range(1, 1 + len(e.params)):
        env.check_reg_arg(r, 0)
    slice_type = None
    if name in FROM_PKT:
        kind = FROM_PKT[name]
        _ctx_arg(env, name, e, kind)
        _scalar_arg(env, 2)
        check_func_arg_reg_off(env, regs[3], 3, ARG_DONTCARE, 0)
        process_dynptr_func(env, 3, env.insn_idx, ARG_PTR_TO_DYNPTR | MEM_UNINIT, 0, dtype=kind)
    else:
        reg = regs[1]
        check_func_arg_reg_off(env, reg, 1, ARG_DONTCARE, 0)
        flags = ARG_PTR_TO_DYNPTR | (MEM_RDONLY if reg.type == CONST_PTR_TO_DYNPTR else 0)
        process_dynptr_func(env, 1, env.insn_idx, flags, 0)
        dyn = dynptr_at(env, reg)
        if dyn is None or not dyn.id:
            raise env.bug("no dynptr id")
        slice_type = dyn.dynptr[0]
        if slice_type not in ("local", "skb", "xdp"):
            # a ring buffer's slices would have to be dropped with its reservation
            raise env.reject(f"calling kernel function {name} is not allowed", EACCES)
        _scalar_arg(env, 2)
        buf, size = regs[3], regs[4]
        check_func_arg_reg_off(env, buf, 3, ARG_DONTCARE, 0)
        if not register_is_null(buf):
            _check_kfunc_mem_size_reg(env, buf, size)
        if size.type != SCALAR_VALUE or size.bounds.var_off.mask:
            raise env.reject("R4 must be a known constant", EINVAL)
        mark_chain_precision(env, 4)
        mem_size = size.bounds.var_off.value
        if name == "bpf_dynptr_slice_rdwr" and \
                not may_access_direct_pkt_data(env, None, BPF_WRITE):
            raise env.reject("the prog does not allow writes to packet data", EINVAL)
        dyn_id = dyn.id
    for r in range(6):
        regs[r].mark_not_init(not env.bpf_capable)
        env.check_reg_arg(r, DST_OP_NO_MARK)
    r0 = regs[0]
    if slice_type is None:
        env.mark_reg_unknown(regs, 0)
        return
    r0.mark_unknown()
    r0.mark_known(0)
    r0.type = PTR_TO_MEM | _TYPE_FLAG[slice_type] | PTR_MAYBE_NULL
    if name == "bpf_dynptr_slice":
        r0.type |= MEM_RDONLY
    r0.mem_size = mem_size
    r0.dynptr = dyn_id
    r0.id = env.new_id()


def _check_kfunc_mem_size_reg(env: Env, buf: RegState, size: RegState) -> None:
    """check_kfunc_mem_size_reg: the buffer holds ``size`` readable and writable
    bytes (a maybe-NULL buffer checked as if it were not NULL)."""
    saved = None
    if buf.type & PTR_MAYBE_NULL:
        saved = buf.copy()
        buf.type &= ~PTR_MAYBE_NULL
    try:
        meta = CallArgMeta()
        check_mem_size_reg(env, size, 4, BPF_READ, True, meta)
        check_mem_size_reg(env, size, 4, BPF_WRITE, True, meta)
    except Exception:
        env.verbose("arg#2 arg#3 memory, len pair leads to invalid memory access\n")
        raise
    finally:
        if saved is not None:
            buf.assign(saved)
