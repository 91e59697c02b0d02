"""The eBPF instruction set: one table of every instruction (RFC 9669 + Linux).

Everything that needs to know what an opcode means -- the decoder, encoder,
both assemblers, the disassembler, the interpreter and the verifier -- looks it
up here.  An instruction is identified by its opcode byte plus, for opcodes
that Linux overloads, a discriminating field (``off`` for sdiv/smod/movsx,
``imm`` for byte swaps and atomics, ``src`` for ld_imm64 and calls).  Each
table entry also says which of the remaining fields are operands and which
are reserved (must be zero), so validation is data, not code.

Encoding (little-endian, 8 bytes per slot)::

    opcode:8 | dst_reg:4 src_reg:4 | off:16 (signed) | imm:32 (signed)

``lddw`` (BPF_LD|BPF_IMM|BPF_DW) takes two slots; the second slot carries the
upper 32 bits of the immediate in its ``imm`` and must be zero elsewhere.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

from . import uapi as U
from .errors import DecodeError

#: one instruction slot as encoded: opcode, registers (src << 4 | dst), off, imm
SLOT = struct.Struct("<BBhi")
SLOT_SIZE = SLOT.size
#: a raw slot, ``(code, regs, off, imm)``: what loaders and CO-RE patch before decoding
Slot = tuple[int, int, int, int]

#: opcodes whose raw slots loaders look for before anything is decoded
OP_LDDW = U.BPF_LD | U.BPF_IMM | U.BPF_DW
OP_CALL = U.BPF_JMP | U.BPF_CALL


class Kind(enum.Enum):
    """What an instruction does, at the granularity engines dispatch on."""
    ALU = "alu"                  # dst = dst OP src|imm (incl. mov)
    NEG = "neg"
    MOVSX = "movsx"              # dst = (sN) src
    END = "end"                  # le/be/bswap
    ADDR_SPACE_CAST = "addr_space_cast"
    JA = "ja"                    # goto off (JMP) / gotol imm (JMP32)
    JCOND = "jcond"              # may_goto
    JCC = "jcc"                  # conditional jump
    CALL = "call"                # helper (src 0)
    CALL_LOCAL = "call_local"    # bpf-to-bpf (src 1), imm is pc-relative
    CALL_KFUNC = "call_kfunc"    # kfunc by BTF id (src 2)
    CALLX = "callx"              # call through a register (LLVM: dst_reg)
    EXIT = "exit"
    LDX = "ldx"                  # dst = *(size *)(src + off), maybe sign-extended
    ST = "st"                    # *(size *)(dst + off) = imm
    STX = "stx"                  # *(size *)(dst + off) = src
    ATOMIC = "atomic"            # lock ops, fetch ops, xchg, cmpxchg
    LOAD_ACQ = "load_acquire"
    STORE_REL = "store_release"
    LD_IMM64 = "lddw"
    LD_ABS = "ld_abs"
    LD_IND = "ld_ind"


# Fields an entry may leave as operands; any field not an operand and not a
# discriminator must be zero.
FIELDS = ("dst", "src", "off", "imm")


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One row of the instruction table."""
    name: str                     # mnemonic in the conformance-suite dialect
    opcode: int
    kind: Kind
    operands: frozenset[str]      # fields that carry operands
    fixed: tuple[tuple[str, int], ...] = ()   # discriminating field values
    op: str = ""                  # alu/jmp/atomic operation name ("add", "jeq", ...)
    size: int = 0                 # memory access / swap / movsx width in bytes
    is64: bool = True             # ALU64/JMP vs ALU/JMP32 operand width
    use_reg: bool = False         # source operand is src_reg (BPF_X) rather than imm
    signed: bool = False          # sdiv/smod, sign-extending load
    fetch: bool = False           # atomic op returns the old value
    wide: bool = False            # two slots (lddw)
    imm_values: tuple[int, ...] = ()   # if set, the only valid immediates

    @property
    def cls(self) -> int:
        return self.opcode & 0x07

    @property
    def slots(self) -> int:
        return 2 if self.wide else 1


# ---------------------------------------------------------------------------
# building the table

ALU_OPS = {  # name -> BPF_OP value
    "add": U.BPF_ADD, "sub": U.BPF_SUB, "mul": U.BPF_MUL, "div": U.BPF_DIV,
    "or": U.BPF_OR, "and": U.BPF_AND, "lsh": U.BPF_LSH, "rsh": U.BPF_RSH,
    "mod": U.BPF_MOD, "xor": U.BPF_XOR, "mov": U.BPF_MOV, "arsh": U.BPF_ARSH,
}
JMP_OPS = {
    "jeq": U.BPF_JEQ, "jgt": U.BPF_JGT, "jge": U.BPF_JGE, "jset": U.BPF_JSET,
    "jne": U.BPF_JNE, "jsgt": U.BPF_JSGT, "jsge": U.BPF_JSGE, "jlt": U.BPF_JLT,
    "jle": U.BPF_JLE, "jslt": U.BPF_JSLT, "jsle": U.BPF_JSLE,
}
SIZES = {1: U.BPF_B, 2: U.BPF_H, 4: U.BPF_W, 8: U.BPF_DW}
SIZE_SUFFIX = {1: "b", 2: "h", 4: "w", 8: "dw"}
ATOMIC_OPS = {"add": U.BPF_ADD, "or": U.BPF_OR, "and": U.BPF_AND, "xor": U.BPF_XOR}

# ld_imm64 src_reg values and their meaning
LD_IMM64_SRC = {
    0: "imm64",
    U.BPF_PSEUDO_MAP_FD: "map_fd",
    U.BPF_PSEUDO_MAP_VALUE: "map_value",
    U.BPF_PSEUDO_BTF_ID: "btf_id",
    U.BPF_PSEUDO_FUNC: "func",
    U.BPF_PSEUDO_MAP_IDX: "map_idx",
    U.BPF_PSEUDO_MAP_IDX_VALUE: "map_idx_value",
}


def _build() -> list[OpSpec]:
    t: list[OpSpec] = []
    ops = frozenset

    for is64, cls, sfx in ((True, U.BPF_ALU64, ""), (False, U.BPF_ALU, "32")):
        for name, code in ALU_OPS.items():
            t.append(OpSpec(f"{name}{sfx}", cls | code | U.BPF_K, Kind.ALU, ops({"dst", "imm"}),
                            op=name, is64=is64, fixed=(("off", 0),)))
            t.append(OpSpec(f"{name}{sfx}", cls | code | U.BPF_X, Kind.ALU, ops({"dst", "src"}),
                            op=name, is64=is64, use_reg=True, fixed=(("off", 0),)))
        for name, code in (("sdiv", U.BPF_DIV), ("smod", U.BPF_MOD)):
            t.append(OpSpec(f"{name}{sfx}", cls | code | U.BPF_K, Kind.ALU, ops({"dst", "imm"}),
                            op=name, is64=is64, signed=True, fixed=(("off", 1),)))
            t.append(OpSpec(f"{name}{sfx}", cls | code | U.BPF_X, Kind.ALU, ops({"dst", "src"}),
                            op=name, is64=is64, signed=True, use_reg=True, fixed=(("off", 1),)))
        t.append(OpSpec(f"neg{sfx}", cls | U.BPF_NEG | U.BPF_K, Kind.NEG, ops({"dst"}),
                        op="neg", is64=is64))
        for bits in ((8, 16, 32) if is64 else (8, 16)):
            t.append(OpSpec(f"movsx{bits}{64 if is64 else 32}", cls | U.BPF_MOV | U.BPF_X,
                            Kind.MOVSX, ops({"dst", "src"}), op="movsx", size=bits // 8,
                            is64=is64, use_reg=True, signed=True, fixed=(("off", bits),)))
    # imm is (dst address space << 16) | src address space; Linux only converts 1 <-> 0
    t.append(OpSpec("addr_space_cast", U.BPF_ALU64 | U.BPF_MOV | U.BPF_X, Kind.ADDR_SPACE_CAST,
                    ops({"dst", "src", "imm"}), op="addr_space_cast", use_reg=True,
                    fixed=(("off", 1),), imm_values=(1, 1 << 16)))
    for bits in (16, 32, 64):
        t.append(OpSpec(f"le{bits}", U.BPF_ALU | U.BPF_END | U.BPF_TO_LE, Kind.END, ops({"dst"}),
                        op="le", size=bits // 8, fixed=(("imm", bits),)))
        t.append(OpSpec(f"be{bits}", U.BPF_ALU | U.BPF_END | U.BPF_TO_BE, Kind.END, ops({"dst"}),
                        op="be", size=bits // 8, fixed=(("imm", bits),)))
        t.append(OpSpec(f"swap{bits}", U.BPF_ALU64 | U.BPF_END | U.BPF_TO_LE, Kind.END,
                        ops({"dst"}), op="bswap", size=bits // 8, fixed=(("imm", bits),)))

    t.append(OpSpec("ja", U.BPF_JMP | U.BPF_JA, Kind.JA, ops({"off"}), op="ja"))
    t.append(OpSpec("ja32", U.BPF_JMP32 | U.BPF_JA, Kind.JA, ops({"imm"}), op="ja", is64=False))
    t.append(OpSpec("may_goto", U.BPF_JMP | U.BPF_JCOND, Kind.JCOND, ops({"off"}),
                    op="may_goto", fixed=(("src", U.CondPseudoJmp.MAY_GOTO),)))
    for is64, cls, sfx in ((True, U.BPF_JMP, ""), (False, U.BPF_JMP32, "32")):
        for name, code in JMP_OPS.items():
            t.append(OpSpec(f"{name}{sfx}", cls | code | U.BPF_K, Kind.JCC, ops({"dst", "imm", "off"}),
                            op=name, is64=is64))
            t.append(OpSpec(f"{name}{sfx}", cls | code | U.BPF_X, Kind.JCC, ops({"dst", "src", "off"}),
                            op=name, is64=is64, use_reg=True))
    call = OP_CALL
    t.append(OpSpec("call", call, Kind.CALL, ops({"imm"}), op="call", fixed=(("src", 0),)))
    t.append(OpSpec("call local", call, Kind.CALL_LOCAL, ops({"imm"}), op="call",
                    fixed=(("src", U.BPF_PSEUDO_CALL),)))
    # off selects the BTF (0: vmlinux, N: fd_array[N] for module BTF)
    t.append(OpSpec("call kfunc", call, Kind.CALL_KFUNC, ops({"imm", "off"}), op="call",
                    fixed=(("src", U.BPF_PSEUDO_KFUNC_CALL),)))
    t.append(OpSpec("callx", call | U.BPF_X, Kind.CALLX, ops({"dst"}), op="callx", use_reg=True))
    t.append(OpSpec("exit", U.BPF_JMP | U.BPF_EXIT, Kind.EXIT, ops()))

    for size, sz in SIZES.items():
        s = SIZE_SUFFIX[size]
        t.append(OpSpec(f"ldx{s}", U.BPF_LDX | U.BPF_MEM | sz, Kind.LDX, ops({"dst", "src", "off"}),
                        size=size))
        if size != 8:
            t.append(OpSpec(f"ldxs{s}", U.BPF_LDX | U.BPF_MEMSX | sz, Kind.LDX,
                            ops({"dst", "src", "off"}), size=size, signed=True))
        t.append(OpSpec(f"st{s}", U.BPF_ST | U.BPF_MEM | sz, Kind.ST, ops({"dst", "off", "imm"}),
                        size=size))
        t.append(OpSpec(f"stx{s}", U.BPF_STX | U.BPF_MEM | sz, Kind.STX, ops({"dst", "src", "off"}),
                        size=size))
        t.append(OpSpec(f"ldacq{s}", U.BPF_STX | U.BPF_ATOMIC | sz, Kind.LOAD_ACQ,
                        ops({"dst", "src", "off"}), size=size, fixed=(("imm", U.BPF_LOAD_ACQ),)))
        t.append(OpSpec(f"strel{s}", U.BPF_STX | U.BPF_ATOMIC | sz, Kind.STORE_REL,
                        ops({"dst", "src", "off"}), size=size, fixed=(("imm", U.BPF_STORE_REL),)))
    for size in (4, 8):
        sfx = "32" if size == 4 else ""
        code = U.BPF_STX | U.BPF_ATOMIC | SIZES[size]
        for name, aop in ATOMIC_OPS.items():
            t.append(OpSpec(f"lock {name}{sfx}", code, Kind.ATOMIC, ops({"dst", "src", "off"}),
                            op=name, size=size, is64=size == 8, fixed=(("imm", aop),)))
            t.append(OpSpec(f"lock fetch {name}{sfx}", code, Kind.ATOMIC, ops({"dst", "src", "off"}),
                            op=name, size=size, is64=size == 8, fetch=True,
                            fixed=(("imm", aop | U.BPF_FETCH),)))
        t.append(OpSpec(f"lock xchg{sfx}", code, Kind.ATOMIC, ops({"dst", "src", "off"}), op="xchg",
                        size=size, is64=size == 8, fetch=True, fixed=(("imm", U.BPF_XCHG),)))
        t.append(OpSpec(f"lock cmpxchg{sfx}", code, Kind.ATOMIC, ops({"dst", "src", "off"}),
                        op="cmpxchg", size=size, is64=size == 8, fetch=True,
                        fixed=(("imm", U.BPF_CMPXCHG),)))

    for src, what in LD_IMM64_SRC.items():
        t.append(OpSpec("lddw", OP_LDDW, Kind.LD_IMM64, ops({"dst", "imm"}),
                        op=what, size=8, wide=True, fixed=(("src", src),)))
    for size in (1, 2, 4):  # Linux rejects BPF_DW for the legacy packet loads
        s = SIZE_SUFFIX[size]
        t.append(OpSpec(f"ldabs{s}", U.BPF_LD | U.BPF_ABS | SIZES[size], Kind.LD_ABS, ops({"imm"}),
                        size=size))
        t.append(OpSpec(f"ldind{s}", U.BPF_LD | U.BPF_IND | SIZES[size], Kind.LD_IND,
                        ops({"src", "imm"}), size=size, use_reg=True))
    return t


TABLE: tuple[OpSpec, ...] = tuple(_build())
BY_OPCODE: dict[int, tuple[OpSpec, ...]] = {}
for _s in TABLE:
    BY_OPCODE[_s.opcode] = BY_OPCODE.get(_s.opcode, ()) + (_s,)
del _s


def _fixed_matches(spec: OpSpec, dst: int, src: int, off: int, imm: int) -> bool:
    vals = {"dst": dst, "src": src, "off": off, "imm": imm}
    return all(vals[f] == v for f, v in spec.fixed)


def lookup(opcode: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> OpSpec:
    """The table entry for an encoded instruction; DecodeError says why none fits."""
    cands = BY_OPCODE.get(opcode)
    if not cands:
        raise DecodeError(f"unknown opcode {opcode:#04x}")
    for spec in cands:
        if _fixed_matches(spec, dst, src, off, imm):
            break
    else:
        disc = cands[0].fixed[0][0] if cands[0].fixed else "?"
        val = {"dst": dst, "src": src, "off": off, "imm": imm}[disc]
        raise DecodeError(f"invalid {disc} {val} for opcode {opcode:#04x} ({cands[0].name.split()[0]})")
    vals = {"dst": dst, "src": src, "off": off, "imm": imm}
    if spec.imm_values and imm not in spec.imm_values:
        raise DecodeError(f"invalid imm {imm} for {spec.name} ({opcode:#04x}), expected one of "
                          f"{', '.join(hex(v) for v in spec.imm_values)}")
    fixed = {f for f, _ in spec.fixed}
    for f in FIELDS:
        if f not in spec.operands and f not in fixed and vals[f] != 0:
            raise DecodeError(f"reserved field {f} is {vals[f]}, must be 0 for {spec.name} ({opcode:#04x})")
    return spec


# ---------------------------------------------------------------------------
# instructions


@dataclass(frozen=True, slots=True)
class Instruction:
    """One decoded instruction.  ``pc`` counts 8-byte slots like Linux does."""
    spec: OpSpec
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    imm_hi: int = 0               # second slot imm of lddw
    pc: int = 0
    label: str | None = field(default=None, compare=False)   # assembler's symbolic target

    @property
    def opcode(self) -> int:
        return self.spec.opcode

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> Kind:
        return self.spec.kind

    @property
    def slots(self) -> int:
        return self.spec.slots

    @property
    def imm64(self) -> int:
        """The 64-bit immediate of lddw (unsigned)."""
        return (self.imm & 0xFFFFFFFF) | ((self.imm_hi & 0xFFFFFFFF) << 32)

    def jump_target(self) -> int | None:
        """Absolute slot index a jump or local call goes to, or None."""
        k = self.spec.kind
        if k is Kind.JA:
            return self.pc + 1 + (self.off if self.spec.is64 else self.imm)
        if k in (Kind.JCC, Kind.JCOND):
            return self.pc + 1 + self.off
        if k is Kind.CALL_LOCAL or (k is Kind.LD_IMM64 and self.src == U.BPF_PSEUDO_FUNC):
            return self.pc + 1 + self.imm
        return None

    def encode(self) -> bytes:
        code = self.spec.opcode
        b = SLOT.pack(code, (self.src << 4) | self.dst, self.off, self.imm)
        if self.spec.wide:
            b += SLOT.pack(0, 0, 0, self.imm_hi)
        return b

    def __str__(self) -> str:
        return format_kernel(self)


def make(name_or_spec: str | OpSpec, *, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0,
         imm_hi: int = 0, pc: int = 0, **match: object) -> Instruction:
    """Build an instruction from a table entry (by mnemonic + attributes, or directly).

    Values are checked against their field widths; ``imm``/``off`` accept the
    unsigned spelling of negative numbers (0xffffffff == -1) as assemblers do.
    """
    if isinstance(name_or_spec, OpSpec):
        spec = name_or_spec
    else:
        cands = [s for s in TABLE if s.name == name_or_spec
                 and all(getattr(s, k) == v for k, v in match.items())]
        if not cands:
            raise ValueError(f"no instruction {name_or_spec!r} with {match}")
        spec = cands[0]
    fixed = dict(spec.fixed)
    dst = fixed.get("dst", dst)
    src = fixed.get("src", src)
    off = fixed.get("off", off)
    imm = fixed.get("imm", imm)
    for f, v, lo, hi in (("dst", dst, 0, 15), ("src", src, 0, 15)):
        if not lo <= v <= hi:
            raise ValueError(f"{f} register {v} out of range")
    off = _signed_field(off, 16, "offset")
    imm = _signed_field(imm, 32, "immediate")
    imm_hi = _signed_field(imm_hi, 32, "immediate")
    return Instruction(spec, dst, src, off, imm, imm_hi, pc)


def _signed_field(v: int, bits: int, what: str) -> int:
    lo, top = -(1 << (bits - 1)), 1 << bits
    if not lo <= v < top:
        raise ValueError(f"{what} {v} does not fit in {bits} bits")
    return v - top if v >= top >> 1 else v


# ---------------------------------------------------------------------------
# decoding / encoding whole programs


def decode(data: bytes | bytearray | memoryview, *, strict: bool = True) -> list[Instruction]:
    """Decode raw little-endian instructions; reject anything Linux would not encode."""
    data = bytes(data)
    if len(data) % SLOT_SIZE:
        raise DecodeError(f"program length {len(data)} is not a multiple of {SLOT_SIZE}")
    out: list[Instruction] = []
    n = len(data) // SLOT_SIZE
    pc = 0
    while pc < n:
        code, regs, off, imm = SLOT.unpack_from(data, pc * SLOT_SIZE)
        dst, src = regs & 0x0F, regs >> 4
        try:
            spec = lookup(code, dst, src, off, imm)
            if strict and (dst > 10 and "dst" in spec.operands):
                raise DecodeError(f"invalid register r{dst}")
            if strict and (src > 10 and "src" in spec.operands):
                raise DecodeError(f"invalid register r{src}")
            imm_hi = 0
            if spec.wide:
                if pc + 1 >= n:
                    raise DecodeError("lddw is missing its second slot")
                c2, r2, o2, imm_hi = SLOT.unpack_from(data, (pc + 1) * SLOT_SIZE)
                if c2 or r2 or o2:
                    raise DecodeError("second slot of lddw must have opcode, registers and offset 0")
        except DecodeError as e:
            raise DecodeError(f"insn {pc}: {e.reason}", pc=pc) from None
        out.append(Instruction(spec, dst, src, off, imm, imm_hi, pc))
        pc += spec.slots
    return out


def encode(insns: Iterable[Instruction]) -> bytes:
    return b"".join(i.encode() for i in insns)


# ---------------------------------------------------------------------------
# raw slots: programs before (or without) decoding


def unpack_slots(data: bytes | bytearray | memoryview) -> list[Slot]:
    """Every 8-byte slot of ``data`` as ``(code, regs, off, imm)``, off and imm signed;
    the second slot of lddw is a slot of its own."""
    if len(data) % SLOT_SIZE:
        raise DecodeError(f"program length {len(data)} is not a multiple of {SLOT_SIZE}")
    return list(SLOT.iter_unpack(data))


def pack_slots(slots: Iterable[Sequence[int]]) -> bytes:
    """The encoding of raw ``(code, regs, off, imm)`` slots.  Fields wrap to their width,
    so a slot patched with an unsigned spelling (``imm = 0xffffffff``) packs as -1."""
    return b"".join(SLOT.pack(code & 0xFF, regs & 0xFF, _wrap(off, 16), _wrap(imm, 32))
                    for code, regs, off, imm in slots)


def _wrap(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def iter_slots(insns: Iterable[Instruction]) -> Iterator[tuple[int, Instruction]]:
    """(pc, instruction) pairs with pcs recomputed from slot sizes."""
    pc = 0
    for i in insns:
        yield pc, i
        pc += i.slots


def renumber(insns: Iterable[Instruction]) -> list[Instruction]:
    """Copy of ``insns`` with ``pc`` set from their position."""
    from dataclasses import replace
    return [replace(i, pc=pc) for pc, i in iter_slots(insns)]


# -- text: an instruction as Linux prints it -------------------------------------------
# Linux's print_bpf_insn() is part of the instruction set's definition as users meet it
# (the verifier log, bpftool); it lives here so that every layer can print an instruction.

ImmResolver = Callable[[Instruction], "str | None"]
CallResolver = Callable[[Instruction], "str | None"]

SZ = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}
SSZ = {1: "s8", 2: "s16", 4: "s32"}
ALU_SYM = {"add": "+=", "sub": "-=", "mul": "*=", "div": "/=", "or": "|=", "and": "&=",
            "lsh": "<<=", "rsh": ">>=", "mod": "%=", "xor": "^=", "mov": "=", "arsh": "s>>=",
            "sdiv": "s/=", "smod": "s%="}
JMP_SYM = {"jeq": "==", "jgt": ">", "jge": ">=", "jset": "&", "jne": "!=", "jsgt": "s>",
            "jsge": "s>=", "jlt": "<", "jle": "<=", "jslt": "s<", "jsle": "s<="}


def _u32(v: int) -> int:
    return v & 0xFFFFFFFF


def pseudo_imm(i: Instruction) -> str:
    """bpftool's spelling of a pseudo ld_imm64 (maps, functions), extended so
    that every src value has one.  In ebee's runtime a map's id is also the
    number instructions carry in place of a file descriptor, so ``map[id:N]``
    is exact; the assemblers accept ``map[fd:N]`` as a synonym."""
    s = i.src
    if s == U.BPF_PSEUDO_MAP_FD:
        return f"map[id:{_u32(i.imm)}]"
    if s == U.BPF_PSEUDO_MAP_VALUE:
        return f"map[id:{_u32(i.imm)}][0]+{_u32(i.imm_hi)}"
    if s == U.BPF_PSEUDO_MAP_IDX:
        return f"map[idx:{_u32(i.imm)}]"
    if s == U.BPF_PSEUDO_MAP_IDX_VALUE:
        return f"map[idx:{_u32(i.imm)}]+{_u32(i.imm_hi)}"
    if s == U.BPF_PSEUDO_FUNC:
        return f"subprog[{i.imm:+d}]"
    if s == U.BPF_PSEUDO_BTF_ID:
        return f"btf_id[{_u32(i.imm)}]" + (f"+{_u32(i.imm_hi)}" if i.imm_hi else "")
    return f"{i.imm64:#x}"


def call_name(i: Instruction) -> str:
    if i.kind is Kind.CALL_KFUNC:
        return "kernel-function"
    return U.helper_name(i.imm) if i.imm >= 0 else "unknown"


def format_kernel(i: Instruction, *, imm: ImmResolver | None = None,
                  call: CallResolver | None = None) -> str:
    """The instruction as Linux's verifier log and bpftool print it (no pc/opcode)."""
    k = i.kind
    sp = i.spec
    r = "r" if sp.is64 else "w"
    if k is Kind.ALU:
        src = f"{r}{i.src}" if sp.use_reg else f"{i.imm}"
        return f"{r}{i.dst} {ALU_SYM[sp.op]} {src}"
    if k is Kind.NEG:
        return f"{r}{i.dst} = -{r}{i.dst}"
    if k is Kind.MOVSX:
        return f"{r}{i.dst} = (s{sp.size * 8}){r}{i.src}"
    if k is Kind.END:
        return f"r{i.dst} = {sp.op}{sp.size * 8} r{i.dst}"
    if k is Kind.ADDR_SPACE_CAST:
        return f"r{i.dst} = addr_space_cast(r{i.src}, {_u32(i.imm) >> 16}, {i.imm & 0xFFFF})"
    if k is Kind.JA:
        return f"goto pc{i.off:+d}" if sp.is64 else f"gotol pc{i.imm:+d}"
    if k is Kind.JCOND:
        return f"may_goto pc{i.off:+d}"
    if k is Kind.JCC:
        src = f"{r}{i.src}" if sp.use_reg else f"{_u32(i.imm):#x}"
        return f"if {r}{i.dst} {JMP_SYM[sp.op]} {src} goto pc{i.off:+d}"
    if k is Kind.CALL_LOCAL:
        return f"call pc{i.imm:+d}"
    if k in (Kind.CALL, Kind.CALL_KFUNC):
        name = (call(i) if call else None) or call_name(i)
        extra = f"@{i.off}" if k is Kind.CALL_KFUNC and i.off else ""
        return f"call {name}#{i.imm}{extra}"
    if k is Kind.CALLX:
        return f"callx r{i.dst}"
    if k is Kind.EXIT:
        return "exit"
    if k is Kind.LDX:
        sz = SSZ[sp.size] if sp.signed else SZ[sp.size]
        return f"r{i.dst} = *({sz} *)(r{i.src} {i.off:+d})"
    if k is Kind.ST:
        return f"*({SZ[sp.size]} *)(r{i.dst} {i.off:+d}) = {i.imm}"
    if k is Kind.STX:
        return f"*({SZ[sp.size]} *)(r{i.dst} {i.off:+d}) = r{i.src}"
    if k is Kind.ATOMIC:
        mem = f"({SZ[sp.size]} *)(r{i.dst} {i.off:+d})"
        w = "64" if sp.size == 8 else ""
        if sp.op == "cmpxchg":
            return f"r0 = atomic{w}_cmpxchg({mem}, r0, r{i.src})"
        if sp.op == "xchg":
            return f"r{i.src} = atomic{w}_xchg({mem}, r{i.src})"
        if sp.fetch:
            return f"r{i.src} = atomic{w}_fetch_{sp.op}({mem}, r{i.src})"
        return f"lock *{mem} {ALU_SYM[sp.op]} r{i.src}"
    if k is Kind.LOAD_ACQ:
        return f"r{i.dst} = load_acquire(({SZ[sp.size]} *)(r{i.src} {i.off:+d}))"
    if k is Kind.STORE_REL:
        return f"store_release(({SZ[sp.size]} *)(r{i.dst} {i.off:+d}), r{i.src})"
    if k is Kind.LD_IMM64:
        text = imm(i) if imm else None
        return f"r{i.dst} = {text or pseudo_imm(i)}"
    if k is Kind.LD_ABS:
        return f"r0 = *({SZ[sp.size]} *)skb[{i.imm}]"
    if k is Kind.LD_IND:
        return f"r0 = *({SZ[sp.size]} *)skb[r{i.src} + {i.imm}]"
    raise AssertionError(k)  # pragma: no cover
