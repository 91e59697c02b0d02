"""The body of check_kfunc_call for the kfuncs ebee's registry describes."""
from __future__ import annotations

from .env import DST_OP_NO_MARK, Env
from .errors import EACCES, EINVAL
from .state import RefState
from .types import (MEM_ALLOC, PTR_MAYBE_NULL, PTR_TO_BTF_ID, PTR_TO_MEM, PTR_TRUSTED,
                    SCALAR_VALUE)


def check_kfunc_call(env: Env, insn) -> int:
    ks = env.kfuncs
    e = ks.entry(insn.imm) if ks is not None else None
    if e is None:
        raise env.reject(f"calling kernel function {insn.imm} is not allowed", EACCES)
    name = e.name
    args = getattr(e, "args", ())
    regs = env.cur_regs()
    for i in range(len(args)):
        env.check_reg_arg(1 + i, 0)
    acquire = bool(getattr(e, "acquire", False))
    release = bool(getattr(e, "release", False))
    if release:
        r = regs[1]
        if not r.ref_obj_id:
            raise env.reject(f"R1 must be referenced or trusted", EINVAL)
        if not release_reference(env, r.ref_obj_id):
            raise env.reject(f"kernel function {name} args#0 reference has not been "
                             f"acquired before", EINVAL)
    for r in range(6):
        regs[r].mark_not_init()
        env.check_reg_arg(r, DST_OP_NO_MARK)
    r0 = regs[0]
    ret = getattr(e, "ret", None)
    rname = getattr(ret, "name", "") if ret is not None else ""
    if rname in ("VOID", ""):
        r0.type = 0
    elif rname in ("INT", "INTEGER", "SCALAR"):
        env.mark_reg_unknown(regs, 0)
    else:
        r0.mark_known(0)
        r0.type = PTR_TO_BTF_ID | MEM_ALLOC if "ALLOC" in rname or "NEW" in rname else \
            PTR_TO_BTF_ID | PTR_TRUSTED
        if getattr(e, "ret_null", False):
            r0.type |= PTR_MAYBE_NULL
            r0.id = env.new_id()
        if acquire:
            id_ = acquire_reference(env, env.insn_idx)
            r0.ref_obj_id = id_
            if not r0.id:
                r0.id = id_
    return 0


def _bind() -> None:
    """Bind names from modules that import this one (import cycles)."""
    global acquire_reference, release_reference
    from .calls import acquire_reference, release_reference
