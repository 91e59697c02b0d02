"""Constant blinding (net.core.bpf_jit_harden), against Linux and between the engines.

The kernel comparisons set the host's sysctl to 2 only around the loads (the
setting is system-wide, and a program keeps the form it was loaded with), and
restore it in a ``finally``.  Dumps are compared after replacing each blinded
pair ``r11 = a ; r11 ^= b`` by the constant it builds (``a ^ b``): the random
halves differ run to run, the structure, registers, offsets and the constants
themselves must not.
"""
from __future__ import annotations

import os
import random
from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import ebee
from ebee import uapi as U
from ebee.uapi import ProgType
from ebee import Program, assemble
from ebee.engines.blinding import (AX, JitHarden, blind, blind_insn, blinding_enabled,
                                   jit_harden, set_jit_harden)
from ebee.engines import Machine
from ebee.errors import VMError
from ebee.isa import Instruction, Kind, TABLE
from ebee.memory import Region
from ebee.session.xlated import kernel_xlated

from jit_strategies import MEM_SIZE, memory_programs
from strategies import programs

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_C = ROOT / "examples" / "c"
XDP = 6


@pytest.fixture
def harden():
    """ebee's level, restored after the test."""
    old = jit_harden()
    yield set_jit_harden
    set_jit_harden(old)


def normalise(insns: list[Instruction]) -> list[tuple]:
    """Each instruction's fields, with every ``AX = a ; AX ^= b`` pair folded into the
    constant it builds, so that two blindings of one program compare equal."""
    out: list[tuple] = []
    k = 0
    while k < len(insns):
        i = insns[k]
        nxt = insns[k + 1] if k + 1 < len(insns) else None
        if (i.kind is Kind.ALU and i.spec.op == "mov" and not i.spec.use_reg and i.dst == AX
                and nxt is not None and nxt.kind is Kind.ALU and nxt.spec.op == "xor"
                and not nxt.spec.use_reg and nxt.dst == AX and nxt.spec.is64 == i.spec.is64):
            out.append(("AX=", i.spec.is64, (i.imm ^ nxt.imm) & 0xFFFFFFFF))
            k += 2
            continue
        out.append((i.spec.opcode, i.dst, i.src, i.off, i.imm, i.imm_hi))
        k += 1
    return out


def blinded_pairs(insns: list[Instruction]) -> int:
    return sum(1 for t in normalise(insns) if t[0] == "AX=")


# ------------------------------------------------------------------------ the rules

def test_levels_are_the_kernels():
    """bpf_jit_blinding_enabled(): 0 never, 1 unprivileged loaders only, 2 always."""
    assert [blinding_enabled(lv, privileged=p) for lv in (0, 1, 2) for p in (True, False)] == \
        [False, False, False, True, True, True]
    with pytest.raises(ValueError):
        blinding_enabled(3, privileged=True)


def _k_specs():
    """Every instruction with an immediate operand the kernel blinds, by opcode."""
    blinded = {"add", "sub", "and", "or", "xor", "mul", "mov", "div", "mod", "sdiv", "smod"}
    for s in TABLE:
        if s.kind is Kind.ALU and not s.use_reg and s.op in blinded:
            yield s, True
        elif s.kind is Kind.ALU and not s.use_reg:
            yield s, False                     # shifts keep their immediate
        elif s.kind is Kind.JCC and not s.use_reg:
            yield s, True
        elif s.kind is Kind.ST:
            yield s, True


@pytest.mark.parametrize("spec, blinded", list(_k_specs()), ids=lambda v: getattr(v, "name", ""))
def test_which_instructions_are_blinded(spec, blinded):
    fixed = dict(spec.fixed)
    i = Instruction(spec, 3, 0, fixed.get("off", 2 if spec.kind is not Kind.ALU else 0), 77)
    out = blind_insn(i, lambda: 0x5A5A5A5A)
    if not blinded:
        assert out is None
        return
    assert [x.dst for x in out[:2]] == [AX, AX]
    assert (out[0].imm ^ out[1].imm) & 0xFFFFFFFF == 77
    # ALU32 and JMP32 build the constant with 32-bit moves, everything else with 64-bit ones
    assert out[0].spec.is64 == (spec.is64 or spec.kind is Kind.ST)
    last = out[2]
    assert last.src == AX and last.dst == 3 and last.off == i.off
    assert last.spec.opcode & 0x07 == (spec.opcode & 0x07 if spec.kind is not Kind.ST else 0x03)
    assert last.spec.op == spec.op and last.spec.signed == spec.signed


def test_zero_moves_and_ax_users():
    mov0 = assemble("w3 = 0\nr4 = 0\nexit")
    assert [str(blind_insn(i, lambda: 1)[0]) for i in mov0[:2]] == ["r3 ^= r3", "r4 ^= r4"]
    # instructions that already use AX (context rewrites) are left alone, as in Linux
    ax = Instruction(mov0[1].spec, AX, 0, 0, 5)
    assert blind_insn(ax, lambda: 1) is None


def test_ld_imm64_is_built_in_two_halves():
    (i,) = assemble("r2 = 0x1122334455667788 ll")
    out = blind_insn(i, lambda: 0xDEADBEEF)
    assert [str(x).split(" ", 2)[1] for x in out] == ["=", "^=", "<<=", "=", "=", "^=", "|="]
    assert (out[0].imm ^ out[1].imm) & 0xFFFFFFFF == 0x11223344
    assert (out[4].imm ^ out[5].imm) & 0xFFFFFFFF == 0x55667788
    # map references are resolved when an image binds, so they stay as they are
    (m,) = assemble("r1 = map[id:3]")
    assert blind_insn(m, lambda: 1) is None


def test_jumps_keep_their_targets_across_blinded_code():
    src = "r1 = 0\nl:\nr1 += 1\nif r1 < 5 goto l\nif w1 == 9 goto +1\nr1 = 2\nr0 = r1\nexit"
    insns = assemble(src)
    out, moved = blind(insns, rng=random.Random(1))
    back = next(x for x in out if x.kind is Kind.JCC and x.spec.op == "jlt")
    fwd = next(x for x in out if x.kind is Kind.JCC and x.spec.op == "jeq")
    assert back.jump_target() == moved[1]               # the start of l's blinded sequence
    assert fwd.jump_target() == moved[5]
    for eng in ("interp", "jit"):
        assert Program.from_insns(out, XDP).run(bytes(16), engine=eng).retval == 2


# ----------------------------------------------------------- identical run results

class Verified:
    """Evidence for programs that are verifier-safe by construction."""
    accepted = True


def _outcome(insns, engine: str, mem: bytes | None, verified: bool):
    """What a run computed: r0 or the error's type (blinded code executes more
    instructions and faults at other pcs), the memory region and the stack."""
    m = Machine(budget=200_000)
    reg = m.memory.add(Region(bytes(mem), "mem")) if mem is not None else None
    try:
        b = m.bind(insns) if engine == "interp" else \
            m.bind(insns, engine="jit", verified=Verified() if verified else None)
        try:
            res = b.run(reg.start if reg is not None else 0, len(mem) if mem else 0)
            out = ("ok", res.retval)
        except VMError as e:
            out = ("err", type(e).__name__)
        return out, bytes(reg.buf) if reg is not None else None, bytes(m.stack.buf)
    finally:
        if reg is not None:
            m.memory.remove(reg)
        m.close()


@settings(max_examples=int(os.environ.get("EBEE_BLIND_EXAMPLES", "12")), deadline=None)
@given(programs())
def test_blinded_alu_programs_compute_the_same(insns):
    b = blind(insns)
    assert b is not None
    assert blinded_pairs(b[0]) >= sum(1 for i in insns if i.kind is Kind.LD_IMM64)
    for engine, verified in (("interp", False), ("jit", False), ("jit", True)):
        assert _outcome(b[0], engine, None, verified) == _outcome(insns, engine, None, verified)


@settings(max_examples=int(os.environ.get("EBEE_BLIND_EXAMPLES", "12")), deadline=None)
@given(memory_programs())
def test_blinded_memory_programs_compute_the_same(insns):
    b = blind(insns)
    assert b is not None
    mem = bytes(range(MEM_SIZE))
    for engine in ("interp", "jit"):
        assert _outcome(b[0], engine, mem, False) == _outcome(insns, engine, mem, False)


# ----------------------------------------------------------------- Program and CLI

def test_program_xlated_follows_the_level(harden):
    insns = assemble("r0 = 5\nw0 += 7\nif r0 > 3 goto +1\nr0 = 1\nexit")
    harden(0)
    assert Program.from_insns(insns, XDP).xlated()[0] == list(insns)
    harden(1)
    assert Program.from_insns(insns, XDP).xlated()[0] == list(insns)
    unpriv = Program.from_insns(insns, XDP, privileged=False)
    assert blinded_pairs(unpriv.xlated()[0]) == 4
    harden(2)
    p = Program.from_insns(insns, XDP, verify=True)
    first = p.xlated()[0]
    assert blinded_pairs(first) == 4 and p.xlated()[0] == first     # fixed once loaded
    assert normalise(Program.from_insns(insns, XDP).xlated()[0]) == normalise(first)
    assert Program.from_insns(insns, XDP).xlated()[0] != first     # fresh random halves
    assert list(p.executable().insns) == first                      # what runs is what shows
    for eng in ("interp", "jit"):
        assert p.run(bytes(16), engine=eng).retval == 12


def test_multi_function_programs_run_blinded_and_dump_unblinded(harden):
    """Linux JITs bpf-to-bpf programs function by function and blinds those copies;
    the xlated image it dumps stays as verified."""
    harden(2)
    insns = assemble("r1 = 5\ncall pc+2\nr0 += 1\nexit\nr0 = r1\nr0 += 3\nexit")
    p = Program.from_insns(insns, XDP, verify=True)
    assert p.xlated()[0] == list(insns)
    assert blinded_pairs(list(p.executable().insns)) == 3
    for eng in ("interp", "jit"):
        assert p.run(bytes(16), engine=eng).retval == 9


def test_cli_dump_xlated_shows_blinding(tmp_path):
    obj = str(EXAMPLES_C / "xdp_firewall.o")
    env = dict(os.environ, EBEE_PIN_STORE=str(tmp_path / "pins.sqlite3"))
    outs = {}
    for level in ("0", "seven"):
        env["EBEE_JIT_HARDEN"] = level
        r = subprocess.run([sys.executable, "-m", "ebee", "prog", "dump", "xlated", obj],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        outs[level] = r.stdout
    assert "r11" not in outs["0"]
    # an unreadable setting fails safe: level 2
    assert "r11 ^=" in outs["seven"] and "= r11" in outs["seven"]


# ----------------------------------------------------------------- against Linux

XDP_HEAD = """
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r4 = r2
r4 += 16
r0 = 1
if r4 > r3 goto out
r5 = *(u64 *)(r2 + 0)
r6 = *(u32 *)(r2 + 8)
"""

BODIES = {
    "alu": """
r5 += 7
w6 -= 3
r5 &= 0xfff0
w6 |= 0x10
r5 ^= -1
w6 *= 3
r7 = r5
r7 /= 5
w8 = w6
w8 %= 7
r9 = 0
w9 = 0
r9 = -5
r5 <<= 3
w6 >>= 2
r0 = r5
r0 += r6
r0 += r7
r0 += r8
r0 += r9
""",
    "signed_div": """
r7 = r5
r7 s/= -3
w8 = w6
w8 s%= 7
r0 = r7
r0 += r8
""",
    "stores": """
*(u8 *)(r10 - 1) = 0x7f
*(u16 *)(r10 - 4) = 0x1234
*(u32 *)(r10 - 8) = 42
*(u64 *)(r10 - 16) = -2
r0 = *(u64 *)(r10 - 16)
r1 = *(u32 *)(r10 - 8)
r0 += r1
""",
    "ld_imm64": """
r1 = 0x1122334455667788 ll
r7 = 0xffffffff00000001 ll
r0 = r5
r0 += r1
r0 ^= r7
""",
    "jumps64": """
r0 = 0
if r5 == 3 goto +1
r0 += 1
if r5 != 4 goto +1
r0 += 2
if r5 > 9 goto +1
r0 += 3
if r5 >= 9 goto +1
r0 += 4
if r5 < 9 goto +1
r0 += 5
if r5 <= 9 goto +1
r0 += 6
if r5 s> -9 goto +1
r0 += 7
if r5 s>= -9 goto +1
r0 += 8
if r5 s< -9 goto +1
r0 += 9
if r5 s<= -9 goto +1
r0 += 10
if r5 & 0x10 goto +1
r0 += 11
""",
    "jumps32": """
r0 = 0
if w6 == 3 goto +1
r0 += 1
if w6 != 4 goto +1
r0 += 2
if w6 > 9 goto +1
r0 += 3
if w6 >= 9 goto +1
r0 += 4
if w6 < 9 goto +1
r0 += 5
if w6 <= 9 goto +1
r0 += 6
if w6 s> -9 goto +1
r0 += 7
if w6 s>= -9 goto +1
r0 += 8
if w6 s< -9 goto +1
r0 += 9
if w6 s<= -9 goto +1
r0 += 10
if w6 & 0x10 goto +1
r0 += 11
""",
    "loop": """
r4 = 0
r0 = 0
r4 += 1
r0 += r6
if r4 < 6 goto -3
w4 = 0
w4 += 2
if w4 s< 8 goto -2
r0 += r4
""",
}


def _xdp_program(body: str) -> list[Instruction]:
    return assemble(XDP_HEAD + body.strip() + "\nout:\nexit\n")


PACKETS = [bytes(range(64)), bytes(64), bytes([0xFF] * 64), bytes([9, 0, 0, 0, 0, 0, 0, 0,
                                                                   0xF7, 0xFF, 0xFF, 0xFF]
                                                                  + [0] * 52)]


@pytest.fixture
def host_harden_2(kernel):
    """The sysctl at 2 for the block it is entered in (saved and restored around it)."""
    from ebee.kernel.sysctl import host_jit_harden, jit_harden_set
    if host_jit_harden() is None:
        pytest.skip("no net.core.bpf_jit_harden on this host")
    before = host_jit_harden()
    yield lambda: jit_harden_set(2)
    assert host_jit_harden() == before           # restored


@pytest.mark.kernel
@pytest.mark.parametrize("name", sorted(BODIES))
def test_blinding_matches_the_kernel(name, host_harden_2, harden):
    from ebee.kernel import KernelProgram
    from ebee.kernel.sysctl import host_blinds
    insns = _xdp_program(BODIES[name])
    with host_harden_2():
        assert host_blinds()
        kp = KernelProgram(insns, XDP, name=f"blind_{name}")
    try:
        theirs = kp.xlated()
        harden(2)
        p = Program.from_insns(insns, XDP, verify=True)
        ours = p.xlated()[0]
        assert normalise(ours) == normalise(theirs)
        assert blinded_pairs(ours) >= 3
        # the random halves are the loader's own: nothing is shared with the kernel's
        assert [i.imm for i in ours if i.dst == AX] != [i.imm for i in theirs if i.dst == AX]
        for pkt in PACKETS:
            want = kp.run(pkt).retval
            assert [p.run(pkt, engine=e).retval for e in ("interp", "jit")] == [want, want]
    finally:
        kp.close()


@pytest.mark.kernel
def test_clang_object_matches_the_kernel(host_harden_2, harden, tmp_path):
    """A clang-built tc program whose context rewrites go through AX (left alone)."""
    harden(2)
    obj = ebee.load(str(EXAMPLES_C / "tc_classifier.o"), pin_root=str(tmp_path))
    pins = Path("/sys/fs/bpf") / f"ebee-blind-{os.getpid()}"
    pins.mkdir(exist_ok=True)
    try:
        with host_harden_2():
            kobj = obj.load_kernel(pin_root=str(pins))
        try:
            ours = obj.programs["tc_classify"].xlated()[0]
            theirs = kobj.programs["tc_classify"].xlated()
        finally:
            kobj.close()
    finally:
        pins.rmdir()
        obj.close()
    assert normalise(ours) == normalise(theirs)
    assert blinded_pairs(ours) > 0 and any(i.dst == AX or i.src == AX for i in ours)


MULTI = """
r6 = r1
r1 = 5
call sub
r0 += 1
r0 &= 3
exit
sub:
r0 = r1
r0 *= 3
if r0 > 100 goto +1
r0 += 7
exit
"""


@pytest.mark.kernel
def test_multi_function_program_matches_the_kernel(host_harden_2, harden):
    """bpf-to-bpf: Linux dumps the program unblinded (it blinds the functions' JIT
    copies); ebee dumps the same and runs its blinded copy, with the kernel's result."""
    from ebee.kernel import KernelProgram
    insns = assemble(MULTI)
    with host_harden_2():
        kp = KernelProgram(insns, XDP, name="blind_multi")
    try:
        harden(2)
        p = Program.from_insns(insns, XDP, verify=True)
        assert [str(i) for i in p.xlated()[0]] == [str(i) for i in kp.xlated()]
        assert blinded_pairs(list(p.executable().insns)) == 6
        want = kp.run(bytes(64)).retval
        assert [p.run(bytes(64), engine=e).retval for e in ("interp", "jit")] == [want, want]
    finally:
        kp.close()


@pytest.mark.kernel
def test_level_1_spares_privileged_loaders_like_the_kernel(kernel, harden):
    """At 1 a loader with CAP_BPF (this root test run) is not blinded, in either."""
    from ebee.kernel import KernelProgram
    from ebee.kernel.sysctl import host_blinds, host_jit_harden, jit_harden_set
    if host_jit_harden() is None:
        pytest.skip("no net.core.bpf_jit_harden on this host")
    insns = _xdp_program(BODIES["alu"])
    with jit_harden_set(1):
        assert not host_blinds() and host_blinds(privileged_loader=False)
        kp = KernelProgram(insns, XDP, name="blind_lvl1")
    try:
        harden(1)
        ours = Program.from_insns(insns, XDP, verify=True).xlated()[0]
        assert [str(i) for i in ours] == [str(i) for i in kp.xlated()]
        assert blinded_pairs(ours) == 0
    finally:
        kp.close()


@pytest.mark.kernel
def test_follow_host_takes_the_sysctl(kernel, harden):
    from ebee.kernel.sysctl import follow_host, host_jit_harden, jit_harden_set
    if host_jit_harden() is None:
        pytest.skip("no net.core.bpf_jit_harden on this host")
    harden(0)
    with jit_harden_set(2):
        assert follow_host() is JitHarden.ALL and jit_harden() is JitHarden.ALL
    assert follow_host() == host_jit_harden()


@pytest.mark.kernel
def test_kernel_cli_dumps_blinded_programs(host_harden_2, capsys):
    """``ebee --kernel prog dump xlated`` decodes the kernel's r11 (BPF_REG_AX)."""
    from ebee.cli.main import main
    from ebee.kernel import KernelProgram
    with host_harden_2():
        kp = KernelProgram(_xdp_program(BODIES["stores"]), XDP, name="blind_cli")
    try:
        code = main(["--kernel", "prog", "dump", "xlated", "id", str(kp.id)])
        out = capsys.readouterr().out
        assert code in (0, None) and "r11 ^=" in out and "= r11" in out
    finally:
        kp.close()


# ------------------------------------------------- the constants stay out of the JIT code

SPRAY = 0x3C909090          # "nop; nop; nop; cmp al, ..": the classic JIT-spraying immediate
SPRAYED = {
    "mov": f"r0 = {SPRAY}\nexit",
    "alu32": f"w0 = w1\nw0 += {SPRAY}\nexit",
    "alu64": f"r0 = r1\nr0 ^= {SPRAY}\nexit",
    "jmp": f"r0 = 0\nif r1 == {SPRAY} goto +1\nr0 = 1\nexit",
    "jmp32": f"r0 = 0\nif w1 != {SPRAY} goto +1\nr0 = 1\nexit",
    "st": f"*(u32 *)(r10 -4) = {SPRAY}\nr0 = *(u32 *)(r10 -4)\nexit",
    "lddw": f"r0 = {SPRAY * (1 << 32) + SPRAY:#x} ll\nr0 += r1\nexit",
}


def _code_of(insns, checked: bool) -> bytes:
    """The machine code LLVM makes of ``insns`` (what ``ebee prog dump jited`` shows)."""
    from ebee.engines.jit.dump import jited
    return b"".join(i.data for f in jited(insns, checked=checked) for i in f.insns)


@pytest.mark.parametrize("verified", [True, False], ids=["unchecked", "checked"])
@pytest.mark.parametrize("name", sorted(SPRAYED))
def test_blinded_constants_never_reach_the_machine_code(name, verified):
    pytest.importorskip("ebee.engines.jit.runtime", reason="llvmlite is not installed")
    from ebee.engines import Machine
    insns = assemble(SPRAYED[name])
    needle = SPRAY.to_bytes(4, "little")
    results = []
    for form in (list(insns), blind(insns)[0]):
        m = Machine()
        try:
            b = m.bind(form, engine="jit", verified=Verified() if verified else None)
            results.append(b.run(0x1234, 0).retval)
        finally:
            m.close()
        results.append(needle in _code_of(form, not verified))
    plain_ret, plain_has, blind_ret, blind_has = results
    assert plain_has, "the test cannot fail: the unblinded code lacks the constant"
    assert not blind_has and blind_ret == plain_ret


# -------------------------------------------------- generated programs against Linux

_K_OPS = ["+=", "-=", "&=", "|=", "^=", "*=", "/=", "%=", "="]
_JOPS = ["==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<=", "&"]
_VREGS = [5, 6, 7, 8, 9]


@st.composite
def packet_programs(draw):
    """XDP programs over values loaded from the packet (unknown to both verifiers, but a
    narrow load against a wide constant decides a branch, and Linux removes the code it
    proved dead: ebee's kernel view does the same), mixing every blinded form with
    instructions blinding leaves alone."""
    imm = st.integers(-(1 << 31), (1 << 31) - 1)
    items: list = []
    n = draw(st.integers(3, 25))
    for k in range(n):
        kind = draw(st.sampled_from(["alu", "alu", "alu", "reg", "shift", "st", "lddw", "jcc"]))
        r = draw(st.sampled_from(_VREGS))
        w = draw(st.sampled_from(["r", "w"]))
        if kind == "alu":
            op = draw(st.sampled_from(_K_OPS))
            v = draw(imm)
            if op in ("/=", "%=") and v == 0:
                v = 3
            items.append(f"{w}{r} {op} {v}")
        elif kind == "reg":
            items.append(f"{w}{r} += {w}{draw(st.sampled_from(_VREGS))}")
        elif kind == "shift":
            items.append(f"{w}{r} <<= {draw(st.integers(0, 31))}")
        elif kind == "st":
            size, slot = draw(st.sampled_from([("u8", -1), ("u16", -4), ("u32", -8),
                                               ("u64", -16)]))
            items.append(f"*({size} *)(r10 {slot}) = {draw(imm)}")
        elif kind == "lddw":
            items.append(f"r{r} = {draw(st.integers(0, (1 << 64) - 1)):#x} ll")
        else:
            items.append(("jcc", f"if {w}{r} {draw(st.sampled_from(_JOPS))} {draw(imm)} goto",
                          draw(st.integers(k + 1, n))))
    lines = []
    for k, it in enumerate(items):
        lines.append(f"l{k}:")
        lines.append(f"{it[1]} l{it[2]}" if isinstance(it, tuple) else it)
    lines.append(f"l{n}:")
    body = "\n".join(lines) + "\nr0 = r5\nr0 += r6\nr0 ^= r7\nr0 += r8\nr0 -= r9\nr0 &= 3"
    head = XDP_HEAD.replace("r6 = *(u32 *)(r2 + 8)\n", "r6 = *(u32 *)(r2 + 8)\n"
                            "r7 = *(u16 *)(r2 + 12)\nr8 = *(u8 *)(r2 + 14)\n"
                            "r9 = *(u32 *)(r2 + 4)\n")
    return assemble(head + body + "\nout:\nexit\n")


@pytest.mark.kernel
@settings(max_examples=int(os.environ.get("EBEE_BLIND_KERNEL_EXAMPLES", "20")), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(packet_programs())
def test_generated_programs_blind_as_the_kernel_does(host_harden_2, insns):
    from ebee.kernel import KernelProgram
    from ebee.kernel.prog import KernelLoadError
    try:
        plain = KernelProgram(insns, XDP, name="blind_gen0")
    except KernelLoadError:
        event("skipped: Linux rejects it")      # the generator's fault, not blinding's
        return
    try:
        ebee_plain = kernel_xlated(Program.from_insns(insns, XDP)).insns
        if [str(i) for i in plain.xlated()] != [str(i) for i in ebee_plain]:
            event("skipped: rewritten differently before blinding")
            return
        with host_harden_2():
            kp = KernelProgram(insns, XDP, name="blind_gen2")
    finally:
        plain.close()
    try:
        old = set_jit_harden(2)
        try:
            p = Program.from_insns(insns, XDP, verify=True)
            ours = kernel_xlated(p).insns
        finally:
            set_jit_harden(old)
        assert normalise(ours) == normalise(kp.xlated())
        for pkt in PACKETS[:2]:
            want = kp.run(pkt).retval
            assert [p.run(pkt, engine=e).retval for e in ("interp", "jit")] == [want, want]
        event("compared with the kernel")
    finally:
        kp.close()


MAP_BODY = """
r1 = 0
*(u32 *)(r10 - 4) = r1
r1 = 5
*(u64 *)(r10 - 24) = r1
*(u64 *)(r10 - 16) = r1
r2 = r10
r2 += -4
r3 = r10
r3 += -24
r1 = map[id:{id}] ll
r4 = 0
call bpf_map_update_elem
r1 = map[id:{id}][0]+8 ll
r2 = 1
lock *(u64 *)(r1 + 0) += r2
r0 = *(u64 *)(r1 + 0)
exit
"""


def _addresses_dropped(norm: list[tuple], at: list[int]) -> list[tuple]:
    """``normalise`` output with the constants of the folded pairs at ``at`` (indices)
    blanked: the kernel's and ebee's map addresses differ, where they sit may not."""
    call = U.BPF_JMP | U.BPF_CALL
    return [("AX=", t[1], "addr") if k in at else
            # the kernel's xlated helper call holds the helper's address offset
            (call, 0, 0, 0, "helper", 0) if t[0] == call and t[2] == 0 else t
            for k, t in enumerate(norm)]


@pytest.mark.kernel
def test_map_lddw_is_blinded_as_the_kernel_blinds_it(host_harden_2, harden):
    """(A helper the kernel does not inline: its inlined array lookups are a rewrite ebee's
    xlated dump does not show.)  convert_pseudo_ld_imm64() makes map and map-value lddws plain constants before
    bpf_jit_blind_constants(): the xlated dump has the seven-instruction AX sequence where
    ``r1 = map[id:N]`` was, in the kernel and in ebee, and the program still works."""
    from ebee.kernel import KernelProgram
    from ebee.kernel.maps import KernelMap
    from ebee.maps.base import Map
    from ebee.uapi import MapType
    km = KernelMap(MapType.ARRAY, 4, 16, 1)
    em = Map(MapType.ARRAY, 4, 16, 1)
    try:
        for m in (km, em):
            m.update((0).to_bytes(4, "little"), (40).to_bytes(8, "little") + (2).to_bytes(8, "little"))
        kinsns = [replace(i, imm=km.fd) if i.kind is Kind.LD_IMM64 else i
                  for i in assemble(MAP_BODY.format(id=0))]
        with host_harden_2():
            kp = KernelProgram(kinsns, ProgType.SOCKET_FILTER, name="blind_map")
        try:
            theirs = kp.xlated()
            want = kp.run(bytes(64)).retval
        finally:
            kp.close()
        harden(2)
        p = Program.from_insns(assemble(MAP_BODY.format(id=em.id)), ProgType.SOCKET_FILTER,
                               verify=True)
        ours = p.xlated()[0]
        assert not any(i.kind is Kind.LD_IMM64 for i in theirs)     # the kernel blinds them
        assert not any(i.kind is Kind.LD_IMM64 for i in ours)       # and so does ebee
        nt, no = normalise(theirs), normalise(ours)
        # the folded 64-bit halves of each address: the pair before ``<<= 32`` and the
        # one before ``dst |= AX``
        at = [k for k, t in enumerate(nt) if t[0] == "AX=" and k + 1 < len(nt)
              and nt[k + 1][0] in (U.BPF_ALU64 | U.BPF_LSH | U.BPF_K,
                                   U.BPF_ALU64 | U.BPF_OR | U.BPF_X)]
        assert len(at) == 4
        assert _addresses_dropped(no, at) == _addresses_dropped(nt, at)
        assert want == 6
        assert [p.run(bytes(64), engine=e).retval for e in ("interp", "jit")] == [want, want]
    finally:
        km.close()
        em.close()
