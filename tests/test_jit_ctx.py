"""Both engines read every readable context field the same way.

Context rewrites may use the kernel's auxiliary register r11 (BPF_REG_AX),
so this covers engines handling rewritten programs, not just raw ones.
"""
from __future__ import annotations

import pytest

import ebee
from ebee import Program  # noqa: E402
from ebee.progtypes import CtxAccessError, RegType, get
from ebee.testrun import run
from ebee.uapi import ProgType

pytest.importorskip("llvmlite")

PACKET = bytes.fromhex("ffffffffffff0200000000010800") + bytes.fromhex(
    "4500002e000100004011f96ac0a80001c0a80002") + bytes.fromhex("04d2162e001a0000") + bytes(18)


def _scalar_reads(prog_type):
    info = get(prog_type)
    for f in info.ctx.fields:
        if f.reg_type is not RegType.SCALAR_VALUE:
            continue
        size = f.sizes[0] if f.sizes else f.size
        try:
            if info.ctx_access(f.off, size, False) is None:
                continue
        except CtxAccessError:
            continue
        yield f.name, f.off, size


@pytest.mark.parametrize("prog_type", [ProgType.SCHED_CLS, ProgType.XDP, ProgType.SOCKET_FILTER])
def test_every_scalar_ctx_field_reads_the_same_in_both_engines(prog_type):
    sz = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}
    fields = list(_scalar_reads(prog_type))
    assert fields
    for name, off, size in fields:
        insns = ebee.assemble(f"r0 = *({sz[size]} *)(r1 + {off})\nexit", "kernel")
        a = run(Program.from_insns(insns, prog_type), PACKET, engine="interp").retval
        b = run(Program.from_insns(insns, prog_type), PACKET, engine="jit").retval
        assert a == b, (prog_type.name, name)
