"""The helper registry: one entry per Linux helper id.

Each entry carries the helper's uapi id and name, its prototype (the
verifier's view), the program types that may call it (None: any), and the
implementation the engines call as ``impl(machine, r1, r2, r3, r4, r5) -> int``.
Modules in this package register implementations with :func:`helper`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from ..uapi import FuncId, ProgType
from .proto import Arg, Ret

Impl = Callable[..., int]


@dataclass(frozen=True, slots=True)
class Helper:
    id: FuncId
    ret: Ret
    args: tuple[Arg, ...]
    impl: Impl
    prog_types: frozenset[ProgType] | None = None
    gpl_only: bool = False
    # bpf_func_proto flags the verifier needs: packet pointers may be passed as
    # memory arguments (pkt_access); the helper may sleep (might_sleep)
    pkt_access: bool = False
    might_sleep: bool = False
    # the kernel struct a RET_PTR_TO_BTF_ID* return points to (bpf_func_proto.ret_btf_id)
    ret_btf: str | None = None
    # prototypes Linux gives the helper in some program types instead of ``args``
    # (its get_func_proto returns another bpf_func_proto): ((types, args), ...)
    variants: tuple = ()

    def args_for(self, prog_type) -> tuple[Arg, ...]:
        for types, args in self.variants:
            if prog_type in types:
                return args
        return self.args

    @property
    def name(self) -> str:
        return helper_name(self.id)


REGISTRY: dict[int, Helper] = {}


def helper(fid: FuncId, ret: Ret, args: Iterable[Arg] = (), *,
           prog_types: Iterable[ProgType] | None = None, gpl_only: bool = False,
           pkt_access: bool = False, might_sleep: bool = False, ret_btf: str | None = None,
           variants: tuple = ()):
    """Register the decorated function as the implementation of helper ``fid``."""
    def deco(fn: Impl) -> Impl:
        if fid in REGISTRY:
            raise RuntimeError(f"helper {fid.name} registered twice")
        REGISTRY[fid] = Helper(fid, ret, tuple(args), fn,
                               frozenset(prog_types) if prog_types is not None else None, gpl_only,
                               pkt_access, might_sleep, ret_btf, tuple(variants))
        return fn
    return deco


def helper_name(fid: int) -> str:
    """Linux's name for a helper id (``bpf_map_lookup_elem``), or ``unknown``."""
    try:
        return "bpf_" + FuncId(fid).name
    except ValueError:
        return "unknown"


def helper_id(name: str) -> int | None:
    """The id of a helper by name, with or without the ``bpf_`` prefix."""
    key = name[4:] if name.startswith("bpf_") else name
    try:
        return int(FuncId[key])
    except KeyError:
        return None


def get(fid: int) -> Helper | None:
    return REGISTRY.get(fid)


def derive_prog_types() -> None:
    """Fill in ``prog_types`` of helpers that left it open from Linux's own answer:
    the per-program-type helper sets generated from the running kernel
    (``ebee.progtypes.func_protos``, see tools/gen_func_protos.py)."""
    import dataclasses
    try:
        from ..progtypes.func_protos import FUNC_PROTOS
    except ImportError:      # pragma: no cover - program types not installed
        return
    allowed: dict[int, set[ProgType]] = {}
    for (pt, _), fids in FUNC_PROTOS.items():
        for f in fids:
            allowed.setdefault(int(f), set()).add(pt)
    for fid, h in list(REGISTRY.items()):
        if h.prog_types is None and fid in allowed:
            REGISTRY[fid] = dataclasses.replace(h, prog_types=frozenset(allowed[fid]))
