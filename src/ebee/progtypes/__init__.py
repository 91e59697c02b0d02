"""Program types: contexts, their access rules and rewrites, helpers, return values, test runs.

``get(prog_type, expected_attach_type)`` is the registry lookup (see
:mod:`.registry`); ``run(...)`` runs a program with BPF_PROG_TEST_RUN
semantics (see :mod:`.testrun`).
"""
from .ctx import Access, CtxAccessError, CtxRules, CtxStruct, Field, RegType
from .registry import ProgTypeInfo, RetRange, all_types, by_name, get
from ..runtime.rewrite import find_ctx_accesses, rewrite, rewrite_map

# The test-run machinery needs ebee.packet and the VM, which sit above program types:
# imported on first use.
_LAZY = {name: "testrun" for name in ("Redirect", "RunResult", "Runner", "TestRunError",
                                      "prepare", "run", "run_event")}
_LAZY["xlated"] = "testrun"
_LAZY.update({name: "tracing" for name in ("btf_args", "pt_regs", "tracepoint_format",
                                           "u64_args")})


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'ebee.progtypes' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f".{mod}", __name__), name)

__all__ = ["Access", "CtxAccessError", "CtxRules", "CtxStruct", "Field", "ProgTypeInfo",
           "RegType", "RetRange", "Redirect", "RunResult", "Runner", "TestRunError", "all_types",
           "by_name", "find_ctx_accesses", "get", "prepare",
           "rewrite_map", "xlated", "btf_args", "pt_regs", "rewrite", "run",
           "run_event", "tracepoint_format", "u64_args"]
