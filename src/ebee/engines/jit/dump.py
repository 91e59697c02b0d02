"""``ebee prog dump jited``: the machine code of a program, eBPF instruction by instruction.

The program is translated again with debug line info (line = pc + 1), run
through the same O2 pipeline and emitted as an ELF object; the DWARF line
table then says which eBPF instruction each native range came from -- what
bpftool's ``dump jited linum`` shows with BTF source lines.  Disassembly uses
capstone when it is installed, else the bytes are printed.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

from ...isa import Instruction
from .codegen import Codegen
from .irgen import generate
from ...isa import format_kernel


@dataclass
class NativeInsn:
    offset: int                     # from the start of the function
    data: bytes
    text: str                       # disassembly, or "" without capstone
    pc: int | None                  # the eBPF instruction it came from (None: prologue/glue)


@dataclass
class NativeFunction:
    name: str
    address: int                    # in the object's .text
    insns: list[NativeInsn] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(i.data) for i in self.insns)


def _disassembler(machine: str):
    try:
        import capstone
    except ImportError:
        return None
    arch = {"EM_X86_64": (capstone.CS_ARCH_X86, capstone.CS_MODE_64),
            "EM_AARCH64": (capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)}.get(machine)
    if arch is None:
        return None
    md = capstone.Cs(*arch)
    if machine == "EM_X86_64":
        md.syntax = capstone.CS_OPT_SYNTAX_ATT      # bpftool prints AT&T syntax
    return md


def jited(insns: list[Instruction], *, checked: bool = False) -> list[NativeFunction]:
    """The native functions of ``insns`` with each instruction's eBPF pc."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    module, _ = generate(insns, checked=checked, debug=True)
    obj = Codegen.get().emit_object(module)
    elf = ELFFile(io.BytesIO(obj))
    symtab = next(s for s in elf.iter_sections() if isinstance(s, SymbolTableSection))
    main = next(s for s in symtab.iter_symbols() if s.name == "ebee_main")
    text_idx = main["st_shndx"]                   # .text or .ltext (large code model)
    text = elf.get_section(text_idx).data()
    rows: list[tuple[int, int]] = []              # (address in the text section, line)
    if elf.has_dwarf_info():
        # Relocations are not applied (pyelftools knows few x86-64 types): the one
        # that matters is each sequence's DW_LNE_set_address against the text
        # section, whose addend is the sequence's start.
        rela = elf.get_section_by_name(".rela.debug_line")
        starts = [r["r_addend"] for r in sorted(rela.iter_relocations(), key=lambda r: r["r_offset"])] \
            if rela is not None else []
        dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
        seq = -1
        for cu in dwarf.iter_CUs():
            lp = dwarf.line_program_for_CU(cu)
            for entry in lp.get_entries() if lp is not None else ():
                if entry.command == 0x02:          # DW_LNE_set_address: a new sequence
                    seq += 1
                st = entry.state
                if st is not None and not st.end_sequence:
                    base = starts[seq] if 0 <= seq < len(starts) else 0
                    rows.append((st.address + base, st.line))
    rows.sort()
    md = _disassembler(elf["e_machine"])
    funcs: list[NativeFunction] = []
    for sym in symtab.iter_symbols():
        if sym["st_info"]["type"] == "STT_FUNC" and sym["st_shndx"] == text_idx and sym["st_size"]:
            funcs.append(NativeFunction(sym.name, sym["st_value"]))
    funcs.sort(key=lambda f: f.address)
    sizes = {f.name: s["st_size"] for s in symtab.iter_symbols() for f in funcs if s.name == f.name}

    def pc_at(addr: int) -> int | None:
        line = None
        for a, ln in rows:
            if a > addr:
                break
            line = ln
        return line - 1 if line else None

    for f in funcs:
        code = text[f.address:f.address + sizes[f.name]]
        if md is not None:
            for ins in md.disasm(code, f.address):
                f.insns.append(NativeInsn(ins.address - f.address, bytes(ins.bytes),
                                          f"{ins.mnemonic}\t{ins.op_str}".rstrip(), pc_at(ins.address)))
        else:   # without a disassembler: one chunk per line-table range
            cuts = sorted({a for a, _ in rows if f.address <= a < f.address + len(code)} |
                          {f.address})
            for k, a in enumerate(cuts):
                end = cuts[k + 1] if k + 1 < len(cuts) else f.address + len(code)
                f.insns.append(NativeInsn(a - f.address, code[a - f.address:end - f.address], "",
                                          pc_at(a)))
    return funcs


def jited_lines(insns: list[Instruction], *, checked: bool = False, opcodes: bool = False,
                name: str = "") -> list[str]:
    """bpftool-like text: each function, and before each run of native code the eBPF
    instruction it implements (``; pc: insn``)."""
    by_pc = {i.pc: i for i in insns}
    out: list[str] = []
    for f in jited(insns, checked=checked):
        if not f.name.startswith("ebee_main") and not f.name.startswith("ebee_f"):
            continue          # entry trampolines and shared runtime routines
        label = f"{name}:" if name and f.name == "ebee_main" else f"{f.name}:"
        out.append(label)
        last = object()
        for ins in f.insns:
            if ins.pc != last and ins.pc is not None and ins.pc in by_pc:
                out.append(f"; {ins.pc}: {format_kernel(by_pc[ins.pc])}")
            last = ins.pc
            raw = " ".join(f"{b:02x}" for b in ins.data)
            if ins.text:
                out.append(f"{ins.offset:4x}:\t{ins.text}")
                if opcodes:
                    out.append(f"\t{raw}")
            else:
                out.append(f"{ins.offset:4x}:\t{raw}")
        out.append("")
    return out
