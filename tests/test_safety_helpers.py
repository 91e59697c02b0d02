"""Helpers never raise Python exceptions on what a program passes them.

Every helper in the registry is called, from an unverified program, with
hostile arguments -- plain values (zero, negative, huge, every flag bit),
pointers into the stack, the context, the packet and maps of every kind, at
hostile offsets -- in the interpreter and the (checked) JIT.  A call may
return (the kernel's errno where Linux checks at run time) or end the run
with an ebee ``VMError`` (a map or memory the verifier would have refused:
the program stays confined); any other exception is a failure.
``EBEE_SLOW=1`` sweeps more argument sets per helper.
"""
from __future__ import annotations

import os
import random

import pytest

import ebee
from ebee.asm import assemble
from ebee.errors import VMError
from ebee.program import Program
from ebee.testrun.common import TestRunError
from ebee.testrun.runner import Runner
from ebee.uapi import MapType, ProgType, helper_name

import helper_sweep as H

SLOW = os.environ.get("EBEE_SLOW") == "1"
PER_HELPER = int(os.environ.get("EBEE_HELPER_SWEEP", "200" if SLOW else "6"))
VALUES = [0, 1, -1, 4, 8, 16, 64, 255, 512, 4096, 1 << 16, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 31,
          1 << 32, (1 << 32) + 8, 1 << 40, 1 << 62, -(1 << 63), -8, -64, -512, -513, -4096]
STACK_OFFS = [-8, -16, -64, -256, -512, -520, 0, 8, -4, -1, -(1 << 20)]
PTR_OFFS = [0, 4, 8, 64, 200, -8, 1 << 20, -(1 << 40)]


@pytest.fixture(scope="module")
def sweep_maps():
    made = [ebee.Map(MapType.ARRAY, 4, 64, 4), ebee.Map(MapType.HASH, 4, 16, 8),
            ebee.Map(MapType.RINGBUF, 0, 0, 4096), ebee.Map(MapType.PERF_EVENT_ARRAY, 4, 4, 4),
            ebee.Map(MapType.PERCPU_ARRAY, 4, 8, 2),
            ebee.Map(MapType.STACK_TRACE, 4, 8 * 16, 4), ebee.Map(MapType.QUEUE, 0, 8, 4),
            ebee.Map(MapType.PROG_ARRAY, 4, 4, 4), ebee.Map(MapType.LRU_HASH, 8, 8, 4)]
    yield made
    for m in made:
        m.close()


def hostile_args(r: random.Random, nmaps: int):
    out = []
    for _ in range(5):
        tag = r.choice([H.PLAIN, H.PLAIN, H.STACK, H.STACK, H.CTX, H.PKT] +
                       [H.MAP0 + k for k in range(nmaps)])
        pool = STACK_OFFS if tag == H.STACK else PTR_OFFS if tag in (H.CTX, H.PKT) else \
            [0, 0, 8, 64, -8] if tag >= H.MAP0 else VALUES
        out.append((tag, r.choice(pool)))
    return out


@pytest.mark.parametrize("engine", ["interp", "jit"])
@pytest.mark.parametrize("prog_type", [ProgType.XDP, ProgType.SCHED_CLS], ids=lambda p: p.name)
def test_every_helper_survives_hostile_arguments(sweep_maps, prog_type, engine):
    prog = Program.from_insns(assemble(H.program(prog_type, [m.id for m in sweep_maps])),
                              prog_type)
    r = random.Random(f"{prog_type.name}")       # both engines get the same arguments
    tracebacks: list[str] = []
    outcomes = {"returned": 0, "refused": 0}
    with Runner(prog, engine=engine) as run:
        for fid in H.HELPERS:
            for _ in range(PER_HELPER):
                args = hostile_args(r, len(sweep_maps))
                try:
                    run.run(H.packet(fid, args))
                    outcomes["returned"] += 1
                except (VMError, TestRunError):
                    outcomes["refused"] += 1
                except Exception as e:      # noqa: BLE001 -- what the sweep looks for
                    tracebacks.append(f"{helper_name(fid)}{args}: {type(e).__name__}: {e}")
    assert not tracebacks, "\n".join(tracebacks[:20])
    assert sum(outcomes.values()) == len(H.HELPERS) * PER_HELPER
    assert outcomes["returned"] > len(H.HELPERS) * PER_HELPER // 5
