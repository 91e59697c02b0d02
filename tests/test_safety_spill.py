"""Stack spills and fills, against the running kernel.

Registers of every kind (pointers, constants, bounded and unknown scalars,
32-bit values) are stored to the stack at every width -- plain stores,
``store_release``, atomics, immediates, through the frame pointer or a
fixed- or variable-offset pointer into the stack -- and read back at every
width.  What the verifier tracks of each slot (a spilled register, a
partial spill, zeros, misc bytes) decides which later reads and uses are
allowed; the kernel is the authority on each verdict and error line
(``invalid size of register spill``, ``invalid size of register fill``,
misaligned accesses, reads of scrubbed slots).  ``EBEE_SLOW=1`` runs more.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebee.uapi import ProgType

from safety_kernel import LOOKUP, NULL_CHECK, assert_same, ebee_verdict, emaps, insns_of, kmaps

__all__ = ["emaps", "kmaps"]          # fixtures

SLOW = os.environ.get("EBEE_SLOW") == "1"
N = int(os.environ.get("EBEE_SAFETY_EXAMPLES", "5000" if SLOW else "200"))

PRELUDE = "r6 = r1\ncall bpf_get_prandom_u32\nr8 = r0\n" + \
    "".join(f"*(u64 *)(r10 -{8 * i}) = 0\n" for i in range(1, 5)) + LOOKUP + NULL_CHECK + \
    "r9 = r0\n"
TAIL = "out:\nr0 = 0\nexit\n"
# r1 in [-24, -16]: a variable-offset pointer into the stack
VAR_FP = "r1 = r8\nr1 &= 8\nr1 += -24\nr1 += r10\n"

REGRESSIONS = [
    # a pointer spill narrower than a register
    ("u32 spill of fp", PRELUDE + "*(u32 *)(r10 -8) = r10\n" + TAIL, False,
     "invalid size of register spill"),
    ("u16 spill of a map value", PRELUDE + "*(u16 *)(r10 -16) = r9\n" + TAIL, False,
     "invalid size of register spill"),
    ("u8 spill of ctx", PRELUDE + "*(u8 *)(r10 -24) = r6\n" + TAIL, False,
     "invalid size of register spill"),
    ("u32 store_release of a map value", PRELUDE + "store_release((u32 *)(r10 -8), r9)\n" +
     TAIL, False, "invalid size of register spill"),
    ("u32 spill of fp through a stack pointer",
     PRELUDE + "r2 = r10\nr2 += -16\n*(u32 *)(r2 +8) = r10\n" + TAIL, False,
     "invalid size of register spill"),
    # a partial fill of a spilled pointer
    ("u32 fill of a spilled pointer", PRELUDE + "*(u64 *)(r10 -8) = r9\n"
     "r0 = *(u32 *)(r10 -8)\nr0 = *(u8 *)(r0 +0)\n" + TAIL, False,
     "invalid size of register fill"),
    # a variable-offset write over part of a spill scrubs the whole spill (the
    # slot then reads as misc bytes, not as a spill with no register behind it)
    ("var-off write over a zero spill, then var-off read", PRELUDE + VAR_FP +
     "r2 = r1\n*(u16 *)(r1 -4) = 0\n*(u16 *)(r1 -4) = r9\nr0 = *(u8 *)(r2 +0)\n" + TAIL,
     True, None),
    ("var-off write over a pointer spill, then fixed fill", PRELUDE + VAR_FP +
     "*(u64 *)(r10 -24) = r9\n*(u8 *)(r1 +0) = r8\nr0 = *(u64 *)(r10 -24)\n"
     "r0 = *(u8 *)(r0 +0)\n" + TAIL, False, "R0 invalid mem access 'scalar'"),
]


@pytest.mark.parametrize("name,text,ok,error", REGRESSIONS, ids=[r[0] for r in REGRESSIONS])
def test_spill_verdict(emaps, name, text, ok, error):
    r = ebee_verdict(insns_of(text, emaps), ProgType.SCHED_CLS, 1, emaps)
    assert r.accepted == ok and r.error == error


@pytest.mark.parametrize("name,text,ok,error", REGRESSIONS, ids=[r[0] for r in REGRESSIONS])
def test_spill_matches_kernel(kmaps, name, text, ok, error):
    insns = insns_of(text, kmaps)
    for level in (1, 2):
        assert assert_same(insns, ProgType.SCHED_CLS, kmaps, level, name)[0] == ok


# -- generated spills ------------------------------------------------------------------------

VALUES = ["r10", "r6", "r9", "r9\n{r} += 8", "*(u32 *)(r6 +76)", "*(u32 *)(r6 +80)",
          "*(u32 *)(r6 +140)", "map[fd:{{ARRAY}}]", "0", "-1", "r8", "r8\n{r} &= 255",
          "r8\n{r} <<= 40", "r10\n{r} += -16"]
SIZES = ["u8", "u16", "u32", "u64"]
OFFS = [-8, -16, -24, -32, -4, -12, -20, -28, -2, -1, -6]
SRCS = ["r2", "r3", "r4", "r5", "r6", "r8", "r9", "r10"]


def _set(r: str, v: str, w: bool) -> str:
    if w and v in ("r8", "0", "-1"):
        return f"w{r[1:]} = {'w8' if v == 'r8' else v}"
    return f"{r} = " + v.format(r=r)


@st.composite
def spill_programs(draw):
    lines = [PRELUDE.rstrip("\n")]
    # r7: where stores go besides r10 -- the frame, a fixed or a variable offset into it
    lines.append(draw(st.sampled_from(["r7 = r10", "r7 = r10\nr7 += -8",
                                       "r7 = r8\nr7 &= 8\nr7 += r10"])))
    for r in SRCS[:4]:
        lines.append(_set(r, draw(st.sampled_from(VALUES)), draw(st.booleans())))
    for _ in range(draw(st.integers(1, 8))):
        k = draw(st.sampled_from(["set", "store", "store", "store", "load", "load", "atomic",
                                  "use"]))
        r = draw(st.sampled_from(SRCS[:4]))
        base = draw(st.sampled_from(["r10", "r10", "r7"]))
        sz = draw(st.sampled_from(SIZES))
        off = draw(st.sampled_from(OFFS))
        if k == "set":
            lines.append(_set(r, draw(st.sampled_from(VALUES)), draw(st.booleans())))
        elif k == "store":
            src = draw(st.sampled_from(SRCS))
            form = draw(st.sampled_from(["stx", "stx", "st", "release"]))
            if form == "st":
                lines.append(f"*({sz} *)({base} {off:+d}) = "
                             f"{draw(st.sampled_from([0, 1, -1, 0x7FFFFFFF]))}")
            elif form == "release":
                lines.append(f"store_release(({sz} *)({base} {off:+d}), {src})")
            else:
                lines.append(f"*({sz} *)({base} {off:+d}) = {src}")
        elif k == "load":
            lines.append(f"{r} = *({sz} *)({base} {off:+d})")
        elif k == "atomic":
            src = draw(st.sampled_from(SRCS))
            asz = draw(st.sampled_from(["u32", "u64"]))
            lines.append(draw(st.sampled_from([
                f"lock *({asz} *)(r10 {off:+d}) += {src}",
                f"{src} = atomic_fetch_add(({asz} *)(r10 {off:+d}), {src})"])))
        else:
            lines.append(f"r0 = *(u8 *)({r} +0)")
    return "\n".join(lines) + "\n" + TAIL


@settings(max_examples=N, deadline=None, database=None, derandomize=not SLOW,
          suppress_health_check=list(HealthCheck))
@given(text=spill_programs(), level=st.sampled_from([1, 2]))
def test_generated_spills_match_kernel(kmaps, text, level):
    assert_same(insns_of(text, kmaps), ProgType.SCHED_CLS, kmaps, level, text)
