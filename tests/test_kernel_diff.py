"""The interpreter against Linux: random programs, same r0 (BPF_PROG_TEST_RUN).

Programs come from strategies.programs(): every register and the stack are
initialised, jumps go forward, and the program ends by folding all registers
and stack slots into r0, so the kernel's 32-bit retval witnesses the whole
final state.  Each program runs as an XDP and as a socket-filter program.
Programs the kernel's verifier rejects are counted and skipped, never taken
as agreement; the test fails if that happens more than rarely.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import given, settings

from ebee import run
from ebee.asm import disassemble
from ebee.kernel import KernelLoadError, KernelProgram
from ebee.uapi import ProgType
from strategies import programs

EXAMPLES = int(os.environ.get("EBEE_KERNEL_EXAMPLES", "2000"))
PACKET = bytes(range(64))
stats = {"agree": 0, "rejected": 0}


@pytest.mark.kernel
@settings(max_examples=EXAMPLES, database=None)
@given(programs())
def test_random_programs_agree_with_the_kernel(kernel, insns):
    ours = run(insns).retval & 0xFFFFFFFF
    for ptype in (ProgType.XDP, ProgType.SOCKET_FILTER):
        try:
            kp = KernelProgram(insns, ptype)
        except KernelLoadError as e:
            stats["rejected"] += 1
            assert stats["rejected"] <= max(10, stats["agree"] // 20), \
                f"the kernel rejects too many generated programs: {e}\n{disassemble(insns)}"
            return
        with kp:
            theirs = kp.test_run(PACKET).retval
        assert ours == theirs, f"{ptype.name}: ebee {ours:#x} != kernel {theirs:#x}\n{disassemble(insns)}"
    stats["agree"] += 1


@pytest.mark.kernel
def test_the_differential_run_compared_programs(kernel):
    """Runs after the property test (file order): it must have compared, not skipped."""
    if stats["agree"] + stats["rejected"] == 0:
        pytest.skip("property test did not run")
    assert stats["agree"] >= 0.95 * (stats["agree"] + stats["rejected"])
