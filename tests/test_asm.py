"""Both assembler dialects and the disassembler formats."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ebee import assemble, isa
from ebee.asm import Dialect, detect_dialect, disassemble, format_kernel, format_llvm
from ebee.conformance import parse
from ebee.errors import AsmError
from strategies import any_instruction

# Every form the issue names, with the bytes LLVM's assembler produces for it
# (checked with llvm-mc-19 -mcpu=v4).
KERNEL_FORMS = [
    ("r0 = 1", "b700000001000000"),
    ("w1 += w2", "0c21000000000000"),
    ("r1 = *(u32 *)(r10 - 4)", "61a1fcff00000000"),
    ("*(u64 *)(r10 - 8) = r1", "7b1af8ff00000000"),
    ("if r1 s> 0x5 goto +2", "6501020005000000"),
    ("r1 = 0x1122334455667788 ll", "1801000088776655000000004433221" + "1"),
    ("call 1", "8500000001000000"),
    ("call bpf_map_lookup_elem", "8500000001000000"),
    ("lock *(u64 *)(r1 + 0) += r2", "db21000000000000"),
    ("r0 = atomic_fetch_add((u64 *)(r1 + 0), r0)", "db01000001000000"),
    ("r1 = bswap64 r1", "d701000040000000"),
    ("r1 = (s8)r2", "bf21080000000000"),
    ("w1 = (s16)w2", "bc21100000000000"),
    ("r1 s/= r2", "3f21010000000000"),
    ("w1 s%= 3", "9401010003000000"),
    ("r1 = -r1", "8701000000000000"),
    ("r1 = *(s8 *)(r2 + 3)", "9121030000000000"),
    ("w1 = *(u8 *)(r2 - 3)", "7121fdff00000000"),
    ("*(u32 *)(r10 - 8) = 7", "620af8ff07000000"),
    ("gotol +5", "0600000005000000"),
    ("goto -1", "0500ffff00000000"),
    ("callx r2", "8d02000000000000"),
    ("r0 = *(u8 *)skb[12]", "300000000c000000"),
    ("r0 = *(u16 *)skb[r1]", "4810000000000000"),
    ("r1 = 0xffffffff", "b7010000ffffffff"),       # LLVM: a 32-bit immediate, sign-extended
    ("r1 &= -8", "57010000f8ffffff"),
    ("if w1 & w2 goto +1", "4e21010000000000"),
    ("r0 = xchg_64(r1 + 0, r0)", "db010000e1000000"),
    ("w0 = xchg32_32(r1 + 0, w0)", "c3010000e1000000"),
    ("r0 = cmpxchg_64(r1 + 0, r0, r2)", "db210000f1000000"),
    ("w0 = cmpxchg32_32(r1 + 0, w0, w2)", "c3210000f1000000"),
    ("lock *(u32 *)(r1 + 0) &= w2", "c321000050000000"),
    ("w0 = atomic_fetch_xor((u32 *)(r1 + 0), w0)", "c3010000a1000000"),
    ("may_goto +3", "e500030000000000"),
    ("r1 = addr_space_cast(r2, 0, 1)", "bf21010001000000"),
    ("r1 = be16 r1", "dc01000010000000"),
    ("r1 = le32 r1", "d401000020000000"),
    ("exit", "9500000000000000"),
]


@pytest.mark.parametrize("text,hexbytes", KERNEL_FORMS)
def test_kernel_syntax_encodes_like_llvm(text, hexbytes):
    insns = assemble(text, "kernel")
    assert isa.encode(insns).hex() == hexbytes


@pytest.mark.parametrize("line", [
    # verifier log and bpftool xlated lines paste back in
    "0: (b7) r0 = 0",
    "   3: (85) call bpf_map_lookup_elem#1",
    "7: (61) r2 = *(u32 *)(r1 +104)        ; R1=ctx() R2=scalar()",
    "12: (18) r1 = map[id:5]",
    "5: (2d) if r3 > r2 goto pc+5",
    # llvm-objdump lines, with raw bytes and symbolised targets
    "       6:\t65 01 02 00 05 00 00 00\tif r1 s> 0x5 goto +0x2 <.text+0x48>",
])
def test_tool_output_reassembles(line):
    (insn,) = assemble(line, "kernel")
    assert format_kernel(insn)


def test_xlated_opcode_column_marks_ld_imm64():
    (insn,) = assemble("(18) r1 = 0x5", "kernel")
    assert insn.kind is isa.Kind.LD_IMM64 and insn.imm64 == 5
    (insn,) = assemble("r1 = 5", "kernel")
    assert insn.kind is isa.Kind.ALU


def test_labels_comments_and_calls():
    insns = assemble("""
        r1 = 5                  ; comment
        call sub                // another
        if r0 == 5 goto done    # and another
        r0 = 0
    done:
        exit
    sub:
        r0 = r1
        exit
    """, "kernel")
    text = [format_kernel(i) for i in insns]
    assert text == ["r1 = 5", "call pc+3", "if r0 == 0x5 goto pc+1", "r0 = 0", "exit", "r0 = r1", "exit"]


def test_conformance_dialect_forms():
    insns = assemble("""
        mov %r0, 1
        ldxb %r0, [%r1+2]
        lddw %r1, 0x1122334455667788
        lock xor [%r10-8], %r1
        lock fetch add32 [%r10-4], %r1
        call local f
        call %r2
        movsx832 %r2, %r1
        ja32 f
    f:
        exit
    """, "conformance")
    assert [i.name for i in insns] == ["mov", "ldxb", "lddw", "lock xor", "lock fetch add32",
                                       "call local", "callx", "movsx832", "ja32", "exit"]


def test_dialect_detection():
    assert detect_dialect("mov %r0, 1\nexit") is Dialect.CONFORMANCE
    assert detect_dialect("mov32 r0, 1\nexit") is Dialect.CONFORMANCE
    assert detect_dialect("r0 = 1\nexit") is Dialect.KERNEL
    assert detect_dialect("exit") is Dialect.KERNEL


@pytest.mark.parametrize("dialect,text,msg", [
    ("kernel", "r0 = 1\nr0 +== 2\nexit", "2: error: cannot parse instruction"),
    ("kernel", "r11 = 1", "1: error: invalid register r11"),
    ("kernel", "goto nowhere\nexit", "1: error: undefined label 'nowhere'"),
    ("kernel", "w1 += r2", "mixed register widths"),
    ("kernel", "r1 = *(u32 *)(r1 + 40000)", "offset 40000 out of range"),
    ("kernel", "x:\nx:\nexit", "2: error: duplicate label 'x'"),
    ("conformance", "mov %r0\nexit", "1: error: invalid number of operands for mov"),
    ("conformance", "mov32 %r0, 2147483648", "out of range for 32 bits"),
    ("conformance", "ldxb %r0, [%r1+0x10000]", "offset 65536 out of range"),
])
def test_errors_name_the_line(dialect, text, msg):
    with pytest.raises(AsmError) as e:
        assemble(text, dialect, file="prog.s")
    assert str(e.value).startswith("prog.s:")
    assert msg in str(e.value)
    assert "\n" not in str(e.value)


def _programs(conformance_dir):
    for path in sorted(conformance_dir.glob("*.data")):
        yield path.name, parse(path).program()


def test_conformance_round_trip_all_formats(conformance_dir):
    """assemble -> encode -> disassemble -> assemble gives identical bytes, for every program."""
    count = 0
    for name, insns in _programs(conformance_dir):
        data = isa.encode(insns)
        assert isa.encode(isa.decode(data)) == data, name
        for fmt, dialect in (("xlated", "kernel"), ("llvm", "kernel"), ("conformance", "conformance")):
            text = disassemble(isa.decode(data), fmt)
            again = assemble(text, dialect, file=f"{name}.{fmt}")
            assert isa.encode(again) == data, (name, fmt)
        count += 1
    assert count == 313


@given(st.lists(any_instruction(), min_size=1, max_size=8))
def test_any_instruction_round_trips_through_text(insns):
    insns = isa.renumber(insns)
    data = isa.encode(insns)
    for fmt, dialect in (("xlated", "kernel"), ("llvm", "kernel"), ("conformance", "conformance")):
        text = disassemble(insns, fmt)
        assert isa.encode(assemble(text, dialect)) == data, (fmt, text)
