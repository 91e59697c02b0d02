"""Interpreter semantics: RFC 9669 arithmetic, memory checks, calls and limits."""
from __future__ import annotations

import ctypes

import pytest
from hypothesis import given, strategies as st

from ebee import assemble, isa
from ebee.errors import BudgetExceeded, MemoryFault, VMError
from ebee.engines import Machine, run
from ebee.helpers import Runtime
from ebee.memory import Region

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


def r0(src: str, mem: bytes | None = None, **kw) -> int:
    return run(assemble(src, "kernel"), mem, **kw).retval


def s64(v):
    return ctypes.c_int64(v).value


def s32(v):
    return ctypes.c_int32(v).value


# An independent model of each operation, written from RFC 9669's text.
def model(op: str, a: int, b: int, wide: bool) -> int:
    bits = 64 if wide else 32
    mask = (1 << bits) - 1
    a &= mask
    b &= mask
    sa = ctypes.c_int64(a).value if wide else ctypes.c_int32(a).value
    sb = ctypes.c_int64(b).value if wide else ctypes.c_int32(b).value
    if op == "add": return (a + b) & mask
    if op == "sub": return (a - b) & mask
    if op == "mul": return (a * b) & mask
    if op == "div": return a // b if b else 0
    if op == "mod": return a % b if b else a
    if op == "sdiv":
        if b == 0: return 0
        q = int(sa / sb) if abs(sa) < 2**52 and abs(sb) < 2**52 else (abs(sa) // abs(sb)) * (1 if (sa < 0) == (sb < 0) else -1)
        return q & mask
    if op == "smod":
        if b == 0: return a
        r = abs(sa) % abs(sb)
        return (-r if sa < 0 else r) & mask
    if op == "or": return a | b
    if op == "and": return a & b
    if op == "xor": return a ^ b
    if op == "lsh": return (a << (b % bits)) & mask
    if op == "rsh": return a >> (b % bits)
    if op == "arsh": return (sa >> (b % bits)) & mask
    if op == "mov": return b
    raise AssertionError(op)


OPS = ["add", "sub", "mul", "div", "mod", "sdiv", "smod", "or", "and", "xor", "lsh", "rsh", "arsh", "mov"]
SYM = {"add": "+=", "sub": "-=", "mul": "*=", "div": "/=", "mod": "%=", "sdiv": "s/=", "smod": "s%=",
       "or": "|=", "and": "&=", "xor": "^=", "lsh": "<<=", "rsh": ">>=", "arsh": "s>>=", "mov": "="}
interesting = st.one_of(st.integers(0, M64), st.sampled_from(
    [0, 1, 2, M64, M64 - 1, 1 << 63, (1 << 63) - 1, M32, 1 << 31, (1 << 31) - 1, 63, 64, 32, 31]))


@given(st.sampled_from(OPS), interesting, interesting, st.booleans())
def test_alu_register_forms_match_the_model(op, a, b, wide):
    r = "r" if wide else "w"
    src = f"r1 = {a:#x} ll\nr2 = {b:#x} ll\n{r}1 {SYM[op]} {r}2\nr0 = r1\nexit"
    assert r0(src) == model(op, a, b, wide)


@given(st.sampled_from(OPS), interesting, st.integers(-(1 << 31), (1 << 31) - 1), st.booleans())
def test_alu_immediate_forms_match_the_model(op, a, imm, wide):
    r = "r" if wide else "w"
    b = imm & M64 if wide else imm & M32     # 64-bit ops sign-extend the immediate
    src = f"r1 = {a:#x} ll\n{r}1 {SYM[op]} {imm}\nr0 = r1\nexit"
    assert r0(src) == model(op, a, b, wide)


@pytest.mark.parametrize("src,expected", [
    ("r0 = 7\nr1 = 0\nr0 /= r1\nexit", 0),                          # div by zero -> 0
    ("r0 = 7\nr1 = 0\nr0 %= r1\nexit", 7),                          # mod by zero -> unchanged
    ("r0 = -1\nr1 = 0\nw0 %= w1\nexit", M32),                       # 32-bit: truncated
    ("r0 = 0x8000000000000000 ll\nr1 = -1\nr0 s/= r1\nexit", 1 << 63),   # INT_MIN / -1
    ("r0 = 0x8000000000000000 ll\nr1 = -1\nr0 s%= r1\nexit", 0),
    ("w0 = 0x80000000\nw1 = -1\nw0 s/= w1\nexit", 1 << 31),
    ("r0 = -7\nr0 s%= 2\nexit", M64),                            # -7 s% 2 = -1
    ("r0 = 1\nr1 = 65\nr0 <<= r1\nexit", 2),                         # shift masked to 6 bits
    ("w0 = 1\nw1 = 33\nw0 <<= w1\nexit", 2),                         # 32-bit: 5 bits
    ("r0 = -1\nw0 += 0\nexit", M32),                                 # 32-bit ops zero-extend
    ("r0 = 0x1122334455667788 ll\nr0 = be16 r0\nexit", 0x8877),
    ("r0 = 0x1122334455667788 ll\nr0 = le32 r0\nexit", 0x55667788),
    ("r0 = 0x1122334455667788 ll\nr0 = bswap64 r0\nexit", 0x8877665544332211),
    ("r1 = 0x80\nr0 = (s8)r1\nexit", M64 - 0x7F),
    ("w1 = 0x8000\nw0 = (s16)w1\nexit", 0xFFFF8000),
    ("r0 = -5\nw0 = -w0\nexit", 5),
])
def test_edge_cases(src, expected):
    assert r0(src) == expected


def test_sign_extending_loads():
    mem = bytes([0x80, 0xFF, 0x00, 0x80])
    assert r0("r0 = *(s8 *)(r1 + 0)\nexit", mem) == M64 - 0x7F
    assert r0("r0 = *(s16 *)(r1 + 2)\nexit", mem) == (-0x8000) & M64
    assert r0("r0 = *(s32 *)(r1 + 0)\nexit", mem) == s32(0x8000FF80) & M64


def test_atomics_on_memory():
    mem = bytearray((5).to_bytes(8, "little"))
    src = """
        r2 = 3
        r2 = atomic_fetch_add((u64 *)(r1 + 0), r2)
        r0 = 8
        r3 = 100
        r0 = cmpxchg_64(r1 + 0, r0, r3)
        r4 = 7
        r4 = xchg_64(r1 + 0, r4)
        r0 += r2
        r0 += r4
        exit
    """
    # old 5 -> 8; cmpxchg sees 8 == 8, swaps to 100, r0 = 8; xchg returns 100, memory 7
    assert r0(src, bytes(mem)) == 5 + 8 + 100


def test_bpf_to_bpf_calls_preserve_callee_saved_registers():
    src = """
        r6 = 6
        r7 = 7
        r1 = 10
        r2 = 20
        call add
        r0 += r6
        r0 += r7
        exit
    add:
        r6 = 100
        r7 = 100
        r0 = r1
        r0 += r2
        exit
    """
    assert r0(src) == 43


def test_frames_have_separate_stacks_and_pointers_cross_them():
    src = """
        *(u64 *)(r10 - 8) = 5
        r1 = r10
        r1 += -8
        call f
        r0 = *(u64 *)(r10 - 8)
        exit
    f:
        *(u64 *)(r10 - 8) = 99       ; the callee's own slot
        r2 = *(u64 *)(r1 + 0)        ; the caller's slot through a pointer
        r2 += 1
        *(u64 *)(r1 + 0) = r2
        exit
    """
    assert r0(src) == 6


def test_call_depth_is_limited_to_eight_frames():
    ok = "call f1\nexit\n" + "".join(f"f{k}:\ncall f{k + 1}\nexit\n" for k in range(1, 7)) + "f7:\nr0 = 7\nexit"
    assert r0(ok) == 7
    deep = ok.replace("f7:\nr0 = 7\nexit", "f7:\ncall f8\nexit\nf8:\nr0 = 8\nexit")
    with pytest.raises(VMError, match="deeper than 8 frames"):
        r0(deep)


def test_function_pointers_and_callx():
    src = """
        r1 = 4
        r3 = subprog[f]
        callx r3
        exit
    f:
        r0 = r1
        r0 *= 3
        exit
    """
    assert r0(src) == 12


def test_callx_to_a_helper_id():
    m = Machine(seed=1)
    r = m.run(assemble("r2 = 8\ncallx r2\nexit", "kernel"))      # bpf_get_smp_processor_id
    assert r.retval == m.cpu


def test_out_of_bounds_access_names_pc_and_instruction():
    with pytest.raises(MemoryFault) as e:
        r0("r0 = 0\nr0 = *(u32 *)(r1 + 2)\nexit", b"\x00\x00\x00\x00")
    assert e.value.pc == 1
    assert "r0 = *(u32 *)(r1 +2)" in str(e.value) and "4 bytes" in str(e.value)


def test_null_and_wild_pointers_fault():
    with pytest.raises(MemoryFault, match="at 0x0"):
        r0("r1 = 0\nr0 = *(u8 *)(r1 + 0)\nexit")
    with pytest.raises(MemoryFault):
        r0("r1 = -1\n*(u64 *)(r1 + 0) = 1\nexit")


def test_stack_bounds_are_checked_statically():
    with pytest.raises(VMError, match="invalid stack read of 8 bytes at r10-520"):
        r0("r0 = *(u64 *)(r10 - 520)\nexit")
    with pytest.raises(VMError, match="invalid stack write of 8 bytes at r10-4"):
        r0("*(u64 *)(r10 - 4) = 1\nexit")


def test_r10_is_read_only():
    with pytest.raises(VMError, match="read-only"):
        r0("r10 = 1\nexit")


def test_read_only_regions_reject_writes():
    m = Machine()
    ro = m.memory.add(Region(b"abcd", "rodata", writable=False))
    prog = assemble("r0 = *(u8 *)(r1 + 1)\n*(u8 *)(r1 + 1) = 0\nexit", "kernel")
    with pytest.raises(MemoryFault, match="read-only"):
        m.run(prog, ro.start)


def test_budget_stops_infinite_loops():
    with pytest.raises(BudgetExceeded) as e:
        run(assemble("l:\ngoto l", "kernel"), budget=1000)
    assert e.value.pc == 0


def test_instruction_count_is_exact():
    res = run(assemble("r0 = 0\nr1 = 10\nl:\nr0 += r1\nr1 -= 1\nif r1 != 0 goto l\nexit", "kernel"))
    assert (res.retval, res.insns) == (55, 2 + 3 * 10 + 1)


def test_jumps_out_of_the_program_fail_when_taken():
    insns = isa.decode(bytes.fromhex("0500050000000000" "9500000000000000"))
    with pytest.raises(VMError, match="jump to invalid target 6"):
        run(insns)


def test_falling_off_the_end():
    with pytest.raises(VMError, match="fell off the end"):
        r0("r0 = 1")


def test_region_cache_is_dropped_after_calls():
    """A region that dies during a call must not stay reachable through the cache."""
    def kill(machine, *args):
        machine.memory.remove(victim)
        return 0

    class Killer(Runtime):
        def kfunc(self, btf_id, btf_off):
            return kill

    m = Machine(runtime=Killer())
    victim = m.memory.add(Region(8, "victim"))
    prog = assemble("""
        r6 = r1
        r0 = *(u64 *)(r6 + 0)
        call kernel-function#1
        r0 = *(u64 *)(r6 + 0)
        exit
    """, "kernel")
    with pytest.raises(MemoryFault) as e:
        m.run(prog, victim.start)
    assert e.value.pc == 3


def test_unknown_and_unimplemented_helpers():
    with pytest.raises(VMError, match="unknown helper id 9999"):
        r0("call 9999\nexit")
    with pytest.raises(VMError, match="bpf_tail_call needs a program array"):
        r0("call bpf_tail_call\nexit")


def test_ld_abs_needs_a_packet_context():
    with pytest.raises(VMError, match="socket-buffer context"):
        r0("r6 = r1\nr0 = *(u8 *)skb[0]\nexit")


def test_may_goto_falls_through_until_its_budget_is_spent():
    assert r0("r0 = 1\nmay_goto +1\nr0 = 2\nexit") == 2


def test_helpers_run():
    m = Machine(seed=7, cpu=3)
    assert m.run(assemble("call bpf_get_smp_processor_id\nexit", "kernel")).retval == 3
    t = m.run(assemble("call bpf_ktime_get_ns\nexit", "kernel")).retval
    assert t > 0
