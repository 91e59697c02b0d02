"""Program types as data: one row per ``enum bpf_prog_type`` (and attach type where Linux's
rules depend on it) -- the context structure and its access rules, the helpers offered,
the return range, the test-run kind -- plus libbpf's SEC() table and the synthetic
events of the tracing types.

``get(prog_type, expected_attach_type)`` is the registry lookup (see :mod:`.registry`).
The rewrite of context accesses is the runtime's (``ebee.runtime.rewrite``); test runs
are ``ebee.testrun``.
"""
from .ctx import Access, CtxAccessError, CtxRules, CtxStruct, Field, RegType
from .registry import ProgTypeInfo, RetRange, all_types, by_name, get
from .tracing import btf_args, pt_regs, tracepoint_format, u64_args

__all__ = ["Access", "CtxAccessError", "CtxRules", "CtxStruct", "Field", "ProgTypeInfo",
           "RegType", "RetRange", "all_types", "btf_args", "by_name", "get", "pt_regs",
           "tracepoint_format", "u64_args"]
