"""Pointer comparisons: what the verifier may decide, against the running kernel.

A non-null pointer compared with zero decides a 64-bit ``==``/``!=``; a 32-bit
one decides nothing (the low half of a valid pointer may well be zero), so
Linux 6.18 explores both paths.  Deciding it skips a path the program can
take at run time: an unsound accept.  The regression programs are
the reported ones; the property test generates 32- and 64-bit comparisons (every
jump op) of each pointer type against constants and registers, on either
side, with a poisoned or harmless body on each path, and compares verdict,
error line and the level-2 log with the kernel's.  ``EBEE_SLOW=1`` runs more
examples (``EBEE_SAFETY_EXAMPLES`` sets the count).
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebee.uapi import ProgType

from safety_kernel import LOOKUP, NULL_CHECK, assert_same, ebee_verdict, emaps, insns_of, kmaps
from verifier_kernel import last_error_line

__all__ = ["emaps", "kmaps"]          # fixtures

SLOW = os.environ.get("EBEE_SLOW") == "1"
N = int(os.environ.get("EBEE_SAFETY_EXAMPLES", "5000" if SLOW else "200"))

POISON_R1 = "r1 = 0\nr1 = *(u64 *)(r1 +0)\n"

# (name, program, the kernel's error line): each skipped path, when taken, fails
REGRESSIONS = [
    ("w0 != 0, map value", LOOKUP + NULL_CHECK + "if w0 != 0 goto l1\n" + POISON_R1 +
     "l1:\nr0 |= 1\nout:\nr0 = 0\nexit\n", "R1 invalid mem access 'scalar'"),
    ("w0 == 0, map value", LOOKUP + NULL_CHECK + "if w0 == 0 goto l1\nr0 = 0\nexit\n"
     "l1:\nr0 |= 1\nout:\nr0 = 0\nexit\n", "R0 bitwise operator |= on pointer prohibited"),
    ("w0 == w1 (w1 = 0), map value", LOOKUP + NULL_CHECK + "w1 = 0\nif w0 == w1 goto l1\n"
     "r0 = 0\nexit\nl1:\nr0 |= 1\nout:\nr0 = 0\nexit\n",
     "R0 bitwise operator |= on pointer prohibited"),
    ("w2 != w0 (w2 = 0), map value", LOOKUP + NULL_CHECK + "w2 = 0\nif w2 != w0 goto l1\n"
     "r0 |= 1\nl1:\nout:\nr0 = 0\nexit\n", "R0 bitwise operator |= on pointer prohibited"),
    ("w1 != 0, map pointer", "r1 = map[fd:{ARRAY}]\nif w1 != 0 goto l1\n" + POISON_R1 +
     "l1:\nr0 = 0\nexit\n", "R1 invalid mem access 'scalar'"),
    ("w10 == 0, frame pointer", "r1 = 1\nif w10 == 0 goto l1\nr0 = 0\nexit\nl1:\n"
     "r1 = *(u64 *)(r1 +0)\nr0 = 0\nexit\n", "R1 invalid mem access 'scalar'"),
    ("w1 != 0, context", "if w1 != 0 goto l1\n" + POISON_R1 + "l1:\nr0 = 0\nexit\n",
     "R1 invalid mem access 'scalar'"),
    ("w0 != 0, ring buffer record",
     "r1 = map[fd:{RINGBUF}]\nr2 = 8\nr3 = 0\ncall bpf_ringbuf_reserve\n" + NULL_CHECK +
     "r6 = r0\nif w6 != 0 goto l1\nr2 = 0\nr2 = *(u64 *)(r2 +0)\nl1:\n"
     "r1 = r6\nr2 = 0\ncall bpf_ringbuf_discard\nout:\nr0 = 0\nexit\n",
     "R2 invalid mem access 'scalar'"),
]


@pytest.mark.parametrize("name,text,error", REGRESSIONS, ids=[r[0] for r in REGRESSIONS])
def test_32bit_pointer_test_explores_both_paths(emaps, name, text, error):
    r = ebee_verdict(insns_of(text, emaps), ProgType.SCHED_CLS, 1, emaps)
    assert not r.accepted and r.error == error


@pytest.mark.parametrize("name,text,error", REGRESSIONS, ids=[r[0] for r in REGRESSIONS])
def test_32bit_pointer_test_matches_kernel(kmaps, name, text, error):
    insns = insns_of(text, kmaps)
    for level in (1, 2):
        kacc, klog = assert_same(insns, ProgType.SCHED_CLS, kmaps, level, name)
        assert not kacc and last_error_line(klog) == error


def test_64bit_null_test_of_non_null_pointer_is_decided(kmaps):
    """The 64-bit form stays decided (and marks the zero register precise), as Linux."""
    text = LOOKUP + NULL_CHECK + "r1 = 0\nif r0 != r1 goto l1\n" + POISON_R1 + \
        "l1:\nout:\nr0 = 0\nexit\n"
    insns = insns_of(text, kmaps)
    for level in (1, 2):
        kacc, _ = assert_same(insns, ProgType.SCHED_CLS, kmaps, level, "64-bit")
        assert kacc


# -- generated comparisons ------------------------------------------------------------------

JMP_OPS = ["==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<=", "&"]
# pointer setups: the pointer ends in r7; `release` runs where the paths meet
POINTERS = {
    "ctx": ("r7 = r6\n", ""),
    "fp": ("r7 = r10\n", ""),
    "fp-8": ("r7 = r10\nr7 += -8\n", ""),
    "map_ptr": ("r7 = map[fd:{ARRAY}]\n", ""),
    "map_value": (LOOKUP + NULL_CHECK + "r7 = r0\n", ""),
    "map_value+4": (LOOKUP + NULL_CHECK + "r7 = r0\nr7 += 4\n", ""),
    "map_value_or_null": (LOOKUP + "r7 = r0\n", ""),
    "ringbuf_mem": ("r1 = map[fd:{RINGBUF}]\nr2 = 8\nr3 = 0\ncall bpf_ringbuf_reserve\n" +
                    NULL_CHECK + "r7 = r0\n", "r1 = r7\nr2 = 0\ncall bpf_ringbuf_discard\n"),
    "pkt": ("r7 = *(u32 *)(r6 +76)\n", ""),
    "pkt_end": ("r7 = *(u32 *)(r6 +80)\n", ""),
    "pkt_meta": ("r7 = *(u32 *)(r6 +140)\n", ""),
}
CONSTS = st.sampled_from([0, 0, 0, 0, 0, 0, 1, -1, 0x100000000 - 1, 0x80000000 - 1, -(1 << 31), 4096])
# what a path does: nothing, fail outright (a scalar dereference naming the path),
# use the pointer as a pointer, or do what only a scalar may
BODIES = {
    "none": lambda tag: "",
    "poison": lambda tag: f"r{tag} = 0\nr{tag} = *(u8 *)(r{tag} +0)\n",
    "deref": lambda tag: "r3 = *(u8 *)(r7 +0)\n",
    "bitwise": lambda tag: "r7 |= 1\n",
}


@st.composite
def pointer_comparisons(draw):
    ptr = draw(st.sampled_from(sorted(POINTERS)))
    setup, release = POINTERS[ptr]
    w = draw(st.sampled_from(["w", "r"]))
    # equality with zero is what a pointer's non-nullness may decide: drawn most
    op = draw(st.sampled_from(JMP_OPS + ["==", "!="] * 4))
    lines = ["r6 = r1", "call bpf_get_prandom_u32", "r8 = r0", setup.rstrip("\n")]
    form = draw(st.sampled_from(["imm", "reg_const", "reg_const", "reg_unknown", "reg_ptr"]))
    ptr_left = draw(st.booleans())
    if form == "imm":
        cond = f"if {w}7 {op} {draw(CONSTS)} goto taken"
    else:
        if form == "reg_const":
            k = draw(CONSTS)
            # `w2 = 0` is a 32-bit constant only; `r2 = 0` is both
            lines.append(f"{draw(st.sampled_from(['r', 'w']))}2 = {k}")
        elif form == "reg_unknown":
            lines.append("r2 = r8")
        else:
            lines.append(draw(st.sampled_from(["r2 = r10", "r2 = r6", "r2 = r7",
                                               "r2 = *(u32 *)(r6 +80)"])))
        a, b = (f"{w}7", f"{w}2") if ptr_left else (f"{w}2", f"{w}7")
        cond = f"if {a} {op} {b} goto taken"
    fall = BODIES[draw(st.sampled_from(sorted(BODIES)))](8)
    taken = BODIES[draw(st.sampled_from(sorted(BODIES)))](9)
    lines += [cond, fall.rstrip("\n"), "goto join", "taken:", taken.rstrip("\n"), "join:",
              release.rstrip("\n"), "out:", "r0 = 0", "exit"]
    return "\n".join(ln for ln in lines if ln) + "\n"


@settings(max_examples=N, deadline=None, database=None, derandomize=not SLOW,
          suppress_health_check=list(HealthCheck))
@given(text=pointer_comparisons(), level=st.sampled_from([1, 2]))
def test_generated_pointer_comparisons_match_kernel(kmaps, text, level):
    assert_same(insns_of(text, kmaps), ProgType.SCHED_CLS, kmaps, level, text)
