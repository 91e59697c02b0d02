"""The kernel's passes over code its verifier never reached (ebee.runtime.deadcode), as
``ebee prog dump xlated`` shows them: removed for a CAP_BPF loader
(opt_hard_wire_dead_code_branches, opt_remove_dead_code, opt_remove_nops), each slot a
``goto -1`` for an unprivileged one (sanitize_dead_code) -- checked by hand on small
programs, then against the running kernel's xlated image, privileged and as uid 65534,
on hand-written and generated programs."""
from __future__ import annotations

import os
import socket

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ebee import Program, assemble
from ebee.isa import Instruction
from ebee.kernel.info import prog_xlated
from ebee.kernel.prog import KernelLoadError, KernelProgram, bpf_available
from ebee.kernel.xlated import decode_xlated
from ebee.runtime.deadcode import Pruned, adjust_func_info, adjust_line_info, prune_dead_code
from ebee.session.xlated import kernel_xlated
from ebee.uapi import ProgType

from kernel_helpers import run_unprivileged, unprivileged_bpf

XDP, SK = ProgType.XDP, ProgType.SOCKET_FILTER


def _text(insns: list[Instruction]) -> list[str]:
    return [str(i) for i in insns]


def _pruned(src: str, privileged: bool = True, pt=XDP) -> Pruned:
    insns = assemble(src)
    r = Program.from_insns(insns, pt, privileged=privileged).verdict()
    assert r.accepted, r.log
    return prune_dead_code(insns, {}, r.dead_insns, privileged=privileged)


DECIDED = """
r0 = 1
r1 = 5
if r1 > 3 goto +2
r0 = 2
r0 += 7
exit
"""


def test_a_decided_branch_is_wired_and_its_dead_side_removed():
    p = _pruned(DECIDED)
    # `if r1 > 3 goto +2` became `goto +2`, its unreached fall-through went, then the
    # `goto +0` left behind went too
    assert _text(p.insns) == ["r0 = 1", "r1 = 5", "exit"]
    assert p.removed == {2, 3, 4}
    assert p.moved[2] == p.moved[3] == p.moved[4] == p.moved[5] == 2


# an unprivileged verifier walks the untaken side of a decided branch, but only under
# speculation, which leaves it unseen (sanitize_mark_insn_seen): trapped all the same
SPECULATIVE = """
r0 = 0
r1 = 1
if r1 == 1 goto +2
r0 = *(u64 *)(r9 + 0)
r0 = 2
exit
"""


def test_unprivileged_dead_slots_become_traps_and_keep_their_place():
    p = _pruned(DECIDED, privileged=False, pt=SK)
    assert _text(p.insns) == ["r0 = 1", "r1 = 5", "if r1 > 0x3 goto pc+2",
                              "goto pc-1", "goto pc-1", "exit"]
    assert not p.removed
    # an error on the speculative path (the uninitialised r9) only ends that walk
    p = _pruned(SPECULATIVE, privileged=False, pt=SK)
    assert _text(p.insns)[3:] == ["goto pc-1", "goto pc-1", "exit"]


def test_a_dead_lddw_is_two_traps():
    src = SPECULATIVE.replace("goto +2", "goto +3").replace("r0 = 2", "r0 = 0x1122334455667788 ll")
    p = _pruned(src, privileged=False, pt=SK)
    assert _text(p.insns)[3:] == ["goto pc-1"] * 3 + ["exit"]


def test_may_goto_zero_and_the_one_before_it_go():
    # may_goto +1 over may_goto +0: removing the second makes the first a may_goto +0
    p = _pruned("r0 = 0\nmay_goto +1\nmay_goto +0\nexit\n")
    assert _text(p.insns) == ["r0 = 0", "exit"]


GOTO_ZERO = """
r2 = *(u32 *)(r1 + 0)
if r2 == 0 goto +1
goto +1
goto +0
r0 = 0
exit
"""


def test_a_plain_goto_zero_in_live_code_goes_but_not_the_one_it_leaves():
    # the kernel scans forward once: `goto +1; goto +0` loses the second, and the
    # first, now `goto +0`, stays (only may_goto looks back)
    p = _pruned(GOTO_ZERO)
    assert _text(p.insns)[1:] == ["if r2 == 0x0 goto pc+1", "goto pc+0", "r0 = 0", "exit"]


class _Rec:
    def __init__(self, insn: int, tag: str):
        self.insn, self.tag = insn, tag

    def __repr__(self) -> str:
        return f"{self.tag}@{self.insn}"


def test_line_info_of_removed_code_moves_on_only_where_none_is():
    p = _pruned(DECIDED)
    recs = [_Rec(0, "a"), _Rec(2, "b"), _Rec(3, "c"), _Rec(4, "d"), _Rec(5, "e")]
    # 5 (exit) has its own record: the removed ones' go
    assert [(at, r.tag) for at, r in adjust_line_info(recs, p, 6)] == [(0, "a"), (2, "e")]
    # without one of its own, exit inherits the last removed record
    recs = recs[:-1]
    assert [(at, r.tag) for at, r in adjust_line_info(recs, p, 6)] == [(0, "a"), (2, "d")]


def test_func_info_of_a_function_left_empty_goes():
    src = """
    r0 = 0
    r1 = 1
    if r1 == 1 goto +1
    call pc+1
    exit
    r0 = 1
    exit
    """
    p = _pruned(src)
    funcs = [_Rec(0, "main"), _Rec(5, "never")]
    assert [(at, r.tag) for at, r in adjust_func_info(funcs, p, 7)] == [(0, "main")]
    assert _text(p.insns) == ["r0 = 0", "r1 = 1", "exit"]


# -- the running kernel ----------------------------------------------------------------

kernel = pytest.mark.skipif(bpf_available() is not None or os.geteuid() != 0,
                            reason=f"needs bpf() as root: {bpf_available()}")

HAND = {
    "decided": DECIDED,
    "narrow_load": """
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r0 = 2
        r4 = r2
        r4 += 14
        if r4 > r3 goto +4
        r5 = *(u8 *)(r2 + 0)
        if r5 > 300 goto +1
        r0 = 1
        r0 += 0
        exit
    """,
    "dead_tail_and_lddw": """
        r0 = 0
        r1 = 1
        if r1 != 1 goto +1
        exit
        r2 = 0x1122334455667788 ll
        r0 = r2
        exit
    """,
    "goto_zero": GOTO_ZERO,
    "speculative": SPECULATIVE,
    "speculative_lddw": SPECULATIVE.replace("goto +2", "goto +3").replace(
        "r0 = 2", "r0 = 0x1122334455667788 ll"),
    "may_goto": """
        r0 = 0
        may_goto +1
        may_goto +0
        r1 = 3
        if r1 < 2 goto +1
        r0 = 1
        exit
    """,
    "dead_subprog": """
        r0 = 0
        r1 = 1
        if r1 == 1 goto +1
        call pc+2
        r0 += 1
        exit
        r0 = 9
        exit
    """,
    "live_subprog_dead_middle": """
        r0 = 0
        call pc+1
        exit
        r0 = 5
        r1 = 0
        if r1 == 0 goto +1
        r0 = 6
        r0 += 1
        exit
    """,
}


def _kernel_privileged(insns, pt) -> list[str]:
    with KernelProgram(insns, pt, name="deadcode") as kp:
        return _text(kp.xlated())


def _kernel_unprivileged(insns, pt) -> list[str] | None:
    """The xlated image of ``insns`` loaded by uid 65534 (the child hands its fd over:
    only a privileged caller may read an image); None if that loader is refused."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    def load():
        try:
            kp = KernelProgram(insns, pt, name="deadcode")
        except KernelLoadError as e:
            return f"refused: {e}"
        socket.send_fds(child, [b"fd"], [kp.fileno()])
        return "sent"

    with parent, child:
        out = run_unprivileged(load)
        if out != "sent":
            return None
        _, fds, _, _ = socket.recv_fds(parent, 16, 1)
    try:
        return [str(x.insn) for x in decode_xlated(prog_xlated(fds[0]))]
    finally:
        os.close(fds[0])


def _ours(insns, pt, privileged: bool) -> list[str]:
    return _text(kernel_xlated(Program.from_insns(insns, pt, privileged=privileged)).insns)


@kernel
@pytest.mark.parametrize("name", sorted(HAND))
def test_privileged_as_the_kernel_removes_it(name):
    insns = assemble(HAND[name])
    assert _ours(insns, XDP, True) == _kernel_privileged(insns, XDP)


# what an unprivileged socket filter may load (no XDP context, no may_goto, no calls);
# not "speculative": where a speculative walk failed the kernel puts a nospec barrier
# (BPF_ST_NOSPEC) before the instruction, which ebee's xlated view does not show yet
UNPRIV_HAND = {k: HAND[k] for k in ("decided", "dead_tail_and_lddw")}


@kernel
def test_unprivileged_as_the_kernel_traps_it():
    with unprivileged_bpf():
        for name, src in sorted(UNPRIV_HAND.items()):
            insns = assemble(src)
            theirs = _kernel_unprivileged(insns, SK)
            assert theirs is not None, f"{name}: the kernel refused it unprivileged"
            assert _ours(insns, SK, False) == theirs, name


@st.composite
def decided_programs(draw):
    """Straight-line code over registers whose values are constants or packet bytes, with
    forward branches: some decided (dead code), some not."""
    regs = (2, 3, 4, 5)
    lines = ["r6 = *(u32 *)(r1 + 0)", "r7 = *(u32 *)(r1 + 4)", "r8 = r6", "r8 += 8",
             "r0 = 0", "if r8 > r7 goto done"]
    lines += [f"r{r} = {draw(st.integers(-4, 300))}" for r in regs]
    lines += ["r5 = *(u8 *)(r6 + 0)"] if draw(st.booleans()) else []
    n = draw(st.integers(3, 12))
    body = []
    for k in range(n):
        r = draw(st.sampled_from(regs))
        kind = draw(st.sampled_from(["alu", "jimm", "jreg", "nop", "lddw"]))
        if kind == "alu":
            body.append(f"r{r} {draw(st.sampled_from(['+=', '&=', '|=', '<<='])) } "
                        f"{draw(st.integers(0, 7))}")
        elif kind == "jimm":
            op = draw(st.sampled_from(["==", "!=", ">", "<", "s>", "s<", ">=", "&"]))
            w = draw(st.sampled_from("rw"))
            body.append((f"if {w}{r} {op} {draw(st.integers(-2, 320))} goto",
                         draw(st.integers(k + 1, n))))
        elif kind == "jreg":
            body.append((f"if r{r} > r{draw(st.sampled_from(regs))} goto",
                         draw(st.integers(k + 1, n))))
        elif kind == "nop":
            body.append(draw(st.sampled_from(["goto +0", "may_goto +0"])))
        else:
            body.append(f"r{r} = {draw(st.integers(0, 1 << 40))} ll")
    for k, item in enumerate(body):
        lines.append(f"l{k}:")
        lines.append(f"{item[0]} l{item[1]}" if isinstance(item, tuple) else item)
    lines.append(f"l{n}:")
    lines += ["r0 = r2", "r0 += r3", "r0 ^= r4", "r0 &= 3", "done:", "exit"]
    return assemble("\n".join(lines))


@kernel
@settings(max_examples=int(os.environ.get("EBEE_DEADCODE_EXAMPLES", "40")), deadline=None,
          database=None, suppress_health_check=list(HealthCheck))
@given(decided_programs())
def test_generated_programs_lose_what_the_kernel_removes(insns):
    try:
        theirs = _kernel_privileged(insns, XDP)
    except KernelLoadError:
        event("skipped: Linux rejects it")
        return
    ours = _ours(insns, XDP, True)
    event("code removed" if len(theirs) < len(insns) else "nothing removed")
    assert ours == theirs
