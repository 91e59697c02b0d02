"""Helper and kfunc prototypes: what a call must pass and what it returns (the spec).

The verifier checks calls against these tables; the engines' implementations
(``ebee.helpers``) bind to them by id.  Keeping prototypes apart from
implementations lets everything that only needs to know *about* a helper
(the verifier, the assembler and disassembler, the loader) do without the
runtime.  Both tables are generated from the kernel (tools/gen_helper_protos.py,
tools/gen_kfuncs.py).
"""
from __future__ import annotations

from ..uapi import helper_id, helper_name
from .helper_types import HelperProto, ProtoArg
from .helpers import HELPERS
from .kfuncs import KFUNCS, KArg, KfuncProto, KRet, kfunc_id
from .vocab import Arg, Flag, Ret

__all__ = ["Arg", "Flag", "HELPERS", "HelperProto", "KArg", "KFUNCS", "KRet", "KfuncProto",
           "ProtoArg", "Ret", "helper_id", "helper_name", "kfunc_id"]
