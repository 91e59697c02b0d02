"""Test utilities: run one program against ebee maps and against kernel maps.

ebee's instructions carry map ids (``lddw rX, map[id:N]``); the kernel wants
file descriptors there.  :func:`kernelize` rewrites the one into the other.
"""
from __future__ import annotations

import dataclasses

from ebee import uapi as U
from ebee.isa import Instruction, Kind
from ebee.kernel.maps import KernelMap
from ebee.maps import Map


def kernelize(insns: list[Instruction], fds: dict[int, int]) -> list[Instruction]:
    """Copy of ``insns`` with every map id in ``lddw src=1/2`` replaced by its fd."""
    out = []
    for i in insns:
        if i.kind is Kind.LD_IMM64 and i.src in (U.BPF_PSEUDO_MAP_FD, U.BPF_PSEUDO_MAP_VALUE):
            i = dataclasses.replace(i, imm=fds[i.imm & 0xFFFFFFFF])
        out.append(i)
    return out


def func_info(insns: list[Instruction]):
    """(btf, func_info) that lets the kernel load a program with callbacks: one FUNC per
    subprogram entry (the kernel wants BTF func_info as soon as a program has any)."""
    from ebee.btf.builder import BTFBuilder
    from ebee.kernel.btf import KernelBTF
    entries = {0}
    for i in insns:
        if (i.kind is Kind.LD_IMM64 and i.src == U.BPF_PSEUDO_FUNC) or i.kind is Kind.CALL_LOCAL:
            entries.add(i.pc + 1 + i.imm)
    b = BTFBuilder()
    long_t = b.add_int("long", 8, signed=True)
    void_p = b.add_ptr(0)
    recs = []
    for n, pc in enumerate(sorted(entries)):
        params = [("ctx", void_p)] if pc == 0 else [(f"a{k}", long_t) for k in range(5)]
        proto = b.add_func_proto(long_t, params)
        fid = b.add_func("main" if pc == 0 else f"f{pc}", proto, 1 if pc == 0 else 0)
        recs.append((pc, fid))
    return KernelBTF(b.to_bytes()), recs


class MapPair:
    """The same map in ebee and in the kernel (``ebee``, ``kernel``)."""

    def __init__(self, *args, **kw):
        self.ebee = Map(*args, **kw)
        self.kernel = KernelMap(*args, **kw)

    @property
    def id(self) -> int:
        return self.ebee.id

    def close(self) -> None:
        self.ebee.close()
        self.kernel.close()

    def contents(self) -> tuple[dict, dict]:
        ours = {}
        for k in self.ebee._raw_keys():
            ours[k] = self.ebee._sys_lookup(k, 0)
        theirs = {k: self.kernel.lookup(k) for k in self.kernel.keys()}
        return ours, theirs
