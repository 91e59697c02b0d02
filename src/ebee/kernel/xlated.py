"""A loaded program's xlated image, decoded, and the BTF records that annotate it.

The xlated image is what the verifier made of the program, and it keeps a
few encodings of the kernel's own that :func:`ebee.isa.decode` rightly
refuses:

* a bpf-to-bpf call of a JITed program carries its relative target in
  ``off`` and the callee's subprogram index in ``imm``; it is decoded as the
  pc-relative call it was, with the callee's ``[bpf]`` symbol (bpftool prints
  ``call pc+N#<callee symbol>``);
* the verifier's "address of this CPU's copy" move has ``off`` ==
  ``BPF_ADDR_PERCPU``;
* constant blinding (``net.core.bpf_jit_harden``) leaves BPF_REG_AX, r11, in
  single-function programs;
* a helper call's ``imm`` is the helper's address relative to
  ``__bpf_call_base``, named from kallsyms (:func:`call_name`).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from typing import Sequence

from ..btf import BTF
from ..btf.ext import LineInfo
from ..errors import DecodeError
from ..isa import OP_CALL, OP_LDDW, SLOT_SIZE, Instruction, decode, pack_slots, unpack_slots
from ..uapi import BPF_ADDR_PERCPU, BPF_ALU64, BPF_MOV, BPF_PSEUDO_CALL, BPF_X, FuncId
from .btf import KernelBTF
from .info import prog_line_info
from .kallsyms import bpf_symbols, text_symbols

_MOV64_X = BPF_ALU64 | BPF_MOV | BPF_X
_FUNC_INFO = struct.Struct("=II")       # struct bpf_func_info: insn_off, type_id
_LINE_INFO = struct.Struct("=IIII")     # struct bpf_line_info: insn_off, file, line, line_col


@dataclass(frozen=True, slots=True)
class XlatedInsn:
    """One instruction of the xlated image."""
    pc: int
    raw: bytes                  # its slot(s), as the kernel returned them
    insn: Instruction | None    # None: an encoding only the kernel uses (see ``text``)
    callee: str = ""            # a subprogram call's callee symbol (or address)
    text: str = ""              # bpftool's words for an instruction isa cannot decode

    @property
    def code(self) -> int:
        return self.raw[0]


def decode_xlated(image: bytes, subprog_addrs: Sequence[int] = ()) -> list[XlatedInsn]:
    """The instructions of an xlated image; ``subprog_addrs`` are the JITed
    (sub)programs' symbol addresses (``JitedImage.ksyms``), which subprogram
    calls index."""
    slots = unpack_slots(image)
    names: dict[int, str] | None = None     # read from kallsyms only if a call needs them
    out = []
    pc = 0
    while pc < len(slots):
        code, regs, off, imm = slots[pc]
        n = 2 if code == OP_LDDW else 1
        raw = bytes(image[pc * SLOT_SIZE:(pc + n) * SLOT_SIZE])
        fields = slots[pc:pc + n]
        callee = ""
        if code == OP_CALL and regs >> 4 == BPF_PSEUDO_CALL and (subprog_addrs or off):
            if 0 <= imm < len(subprog_addrs):
                if names is None:
                    names = bpf_symbols()
                addr = subprog_addrs[imm]
                callee = names.get(addr, f"{addr:#x}")
            fields = [(code, regs, 0, off)]
        try:
            # strict=False: blinded programs use BPF_REG_AX (r11)
            insn = replace(decode(pack_slots(fields), strict=False)[0], pc=pc)
            out.append(XlatedInsn(pc, raw, insn, callee=callee))
        except DecodeError:
            out.append(XlatedInsn(pc, raw, None, text=_kernel_only(code, regs, off, imm)))
        pc += n
    return out


def _kernel_only(code: int, regs: int, off: int, imm: int) -> str:
    if code == _MOV64_X and off == BPF_ADDR_PERCPU:
        return f"r{regs & 15} = &(void __percpu *)(r{regs >> 4})"
    return f"<kernel-internal instruction off={off} imm={imm}>"


def call_name(i: Instruction) -> str | None:
    """What a helper call of the xlated image calls, as bpftool names it: the kernel
    function at ``__bpf_call_base + imm``, else ``bpf_<helper>``; None for other calls,
    and when kallsyms hides the addresses."""
    if i.src != 0:
        return None
    syms = text_symbols()
    if not syms.call_base or not syms.addrs:
        return None
    name = syms.at(syms.call_base + i.imm)
    if name is not None:
        return name
    try:
        return "bpf_" + FuncId(i.imm).name.lower()
    except ValueError:
        return None


@dataclass(frozen=True)
class SourceInfo:
    """What a loaded program's BTF says of its instructions, by instruction index."""
    btf: BTF | None = None
    funcs: dict[int, int] = field(default_factory=dict)              # first insn -> FUNC id
    lines: dict[int, list[LineInfo]] = field(default_factory=dict)   # in the kernel's order


def source_info(fd: int) -> SourceInfo:
    """The func_info and line_info records the kernel kept for a loaded program,
    with the file names and source lines from its BTF."""
    fi, li, btf_id, fi_size = prog_line_info(fd)
    if not btf_id:
        return SourceInfo()
    with KernelBTF.from_id(btf_id) as kb:
        btf = kb.parse()
    funcs = {}
    for off in range(0, len(fi), fi_size or _FUNC_INFO.size):
        insn, tid = _FUNC_INFO.unpack_from(fi, off)
        funcs[insn] = tid
    lines: dict[int, list[LineInfo]] = {}
    for off in range(0, len(li), _LINE_INFO.size):
        insn, fname, text, line_col = _LINE_INFO.unpack_from(li, off)
        # the kernel's records count instructions, ELF's (and LineInfo's) bytes
        rec = LineInfo(insn * SLOT_SIZE, fname, text, line_col >> 10, line_col & 0x3FF,
                       btf.string(fname), btf.string(text))
        lines.setdefault(insn, []).append(rec)
    return SourceInfo(btf, funcs, lines)
