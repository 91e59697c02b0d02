"""Programs in an object: finding them, recording relocations, linking subprograms.

Mirrors libbpf's ``bpf_object__add_programs``, ``bpf_program__record_reloc``
and ``bpf_object__reloc_code``:

* every ``STT_FUNC`` symbol of an executable section is a function; those in
  ``.text`` are subprograms, the others entry programs (an executable section
  with no function symbols -- very old objects -- is one program named after
  the section);
* each relocation is recorded against the instruction it patches (map
  references, global data, subprogram calls and addresses, externs);
* linking appends every subprogram a program calls, depth first in order of
  first call, and rewrites call offsets -- so a program's instruction list is
  self-contained, like the one the kernel receives.

Instructions stay raw ``[code, regs, off, imm]`` slots until the end, so that
CO-RE and map relocations can patch fields before anything is decoded.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .. import uapi as U
from ..errors import LoadError
from ..isa import OP_CALL, OP_LDDW, SLOT_SIZE, pack_slots, unpack_slots
from ..progtypes.sections import SectionDef, parse_section
from .elf import (R_BPF_64_32, R_BPF_64_64, RELOC_NAMES, SHN_ABS, SHN_UNDEF, STB_LOCAL, STB_GLOBAL,
                  STB_WEAK, STT_FUNC, STT_SECTION, ElfObject, Reloc, Section, Symbol)


class RelKind(enum.Enum):
    CALL = "call"                  # bpf-to-bpf call to a .text function
    SUBPROG_ADDR = "subprog_addr"  # ld_imm64 of a function's address (callbacks)
    LD64 = "ld64"                  # ld_imm64 of a map
    DATA = "data"                  # ld_imm64 of a global variable (map value + offset)
    EXTERN_LD64 = "extern_ld64"    # ld_imm64 of an extern (kconfig value, ksym)
    EXTERN_CALL = "extern_call"    # call of an extern function (kfunc)


@dataclass(frozen=True, slots=True)
class Relo:
    kind: RelKind
    insn: int                      # slot index within the program
    sym: Symbol
    sym_off: int = 0
    map: str | None = None         # map name (LD64/DATA)
    extern: str | None = None      # extern name (EXTERN_*)


@dataclass
class ProgSpec:
    """A function found in an executable section, before linking."""
    name: str
    section: Section
    sec_insn_off: int              # first slot within the section
    slots: list[list[int]]         # [code, regs, off, imm]
    is_subprog: bool
    sec_def: SectionDef
    relos: dict[int, Relo] = field(default_factory=dict)
    sym: Symbol | None = None

    @property
    def sec_insn_cnt(self) -> int:
        return len(self.slots)

    def contains(self, sec_idx: int, insn: int) -> bool:
        return sec_idx == self.section.index and \
            self.sec_insn_off <= insn < self.sec_insn_off + len(self.slots)


def _err(msg: str):
    raise LoadError(msg)


def decode_slots(data: bytes) -> list[list[int]]:
    return [list(t) for t in unpack_slots(data)]


def find_programs(elf: ElfObject, text: Section | None) -> list[ProgSpec]:
    """Every function of every executable section (libbpf's add_programs)."""
    out: list[ProgSpec] = []
    for sec in elf.sections:
        if not sec.is_exec or sec.size == 0:
            continue
        if sec.size % SLOT_SIZE:
            _err(f"section '{sec.name}': size {sec.size} is not a multiple of {SLOT_SIZE} "
                 f"(corrupted BPF code)")
        data = elf.section_data(sec)
        is_text = text is not None and sec.index == text.index
        funcs = sorted((s for s in elf.symbols_in(sec.index)
                        if s.type == STT_FUNC and s.name), key=lambda s: (s.value, s.index))
        if not funcs:
            # pre-BTF objects: the section is one program named after the section
            out.append(ProgSpec(sec.name, sec, 0, decode_slots(data), is_text,
                                parse_section(sec.name)))
            continue
        # static functions in program sections are callees, unless nothing else is an entry
        entries = [s for s in funcs if s.bind != STB_LOCAL]
        seen: set[int] = set()
        for s in funcs:
            if s.value in seen:
                continue
            seen.add(s.value)
            if s.value % SLOT_SIZE or s.size % SLOT_SIZE:
                _err(f"sec '{sec.name}': program '{s.name}' is misaligned "
                     f"(offset {s.value}, size {s.size})")
            size = s.size
            if size == 0:
                _err(f"sec '{sec.name}': program '{s.name}' has size 0")
            sub = is_text or (s.bind == STB_LOCAL and bool(entries))
            out.append(ProgSpec(s.name, sec, s.value // SLOT_SIZE,
                                decode_slots(data[s.value:s.value + size]), sub,
                                parse_section(sec.name), sym=s))
    if not any(not p.is_subprog for p in out):
        # every function is in .text (objects built for loaders older than libbpf's
        # subprogram support, and for PREVAIL): the global ones are the programs
        for p in out:
            if p.sym is not None and p.sym.bind != STB_LOCAL:
                p.is_subprog = False
    names: dict[str, ProgSpec] = {}
    for p in out:
        if p.name in names and not p.is_subprog:
            _err(f"duplicate program name '{p.name}' (sections '{names[p.name].section.name}' "
                 f"and '{p.section.name}')")
        names.setdefault(p.name, p)
    return out


def prog_at(progs: list[ProgSpec], sec_idx: int, insn: int) -> ProgSpec | None:
    for p in progs:
        if p.contains(sec_idx, insn):
            return p
    return None


def record_relocs(elf: ElfObject, progs: list[ProgSpec], *, text_idx: int | None,
                  map_at: "callable", data_map: "callable", externs: set[str]) -> None:
    """Attach each relocation of an executable section to the instruction it patches.

    ``map_at(shndx, offset) -> name | None`` finds a map definition;
    ``data_map(shndx) -> name | None`` the global-data map of a section.
    """
    for sec in elf.sections:
        if not sec.is_exec:
            continue
        for r in elf.relocs.get(sec.index, ()):
            _record(elf, progs, sec, r, text_idx, map_at, data_map, externs)


def _record(elf, progs, sec: Section, r: Reloc, text_idx, map_at, data_map, externs) -> None:
    sym = r.symbol
    sname = sym.name or (elf.sections[sym.shndx].name if sym.shndx < len(elf.sections) else "?")
    if r.offset % SLOT_SIZE:
        _err(f"sec '{sec.name}': relocation against '{sname}' at offset {r.offset} is not on "
             f"an instruction boundary")
    idx = r.offset // SLOT_SIZE
    prog = prog_at(progs, sec.index, idx)
    if prog is None:
        _err(f"sec '{sec.name}': relocation against '{sname}' at insn #{idx} points to no program")
    i = idx - prog.sec_insn_off
    code, regs, off, imm = prog.slots[i]
    where = f"prog '{prog.name}': relo #{i}"
    if code == OP_CALL:
        src = regs >> 4
        if sym.shndx == SHN_UNDEF and sym.name:
            # a kfunc (typed in .ksyms), or a function nobody defines (a libcall such as
            # memset, a helper called by name): the latter is poisoned when linking
            prog.relos[i] = Relo(RelKind.EXTERN_CALL, i, sym, extern=sym.name)
            return
        if src != U.BPF_PSEUDO_CALL:
            _err(f"{where}: bad call relo against '{sname}': incorrect bpf_call opcode")
        if not sym.shndx or sym.shndx != text_idx:
            if sym.shndx == sec.index:   # static call inside the same section
                prog.relos[i] = Relo(RelKind.CALL, i, sym, sym.value)
                return
            _err(f"{where}: bad call relo against '{sname}' in section "
                 f"'{elf.sections[sym.shndx].name if sym.shndx < len(elf.sections) else sym.shndx}'")
        if sym.value % SLOT_SIZE:
            _err(f"{where}: bad call relo against '{sname}': misaligned target")
        prog.relos[i] = Relo(RelKind.CALL, i, sym, sym.value)
        return
    if code != OP_LDDW:
        _err(f"{where}: invalid relo against '{sname}' for insns[{i}].code 0x{code:x}")
    if i + 1 >= len(prog.slots):
        _err(f"{where}: ld_imm64 against '{sname}' is missing its second slot")
    if sym.shndx == SHN_UNDEF:
        if sym.name in externs:
            prog.relos[i] = Relo(RelKind.EXTERN_LD64, i, sym, extern=sym.name)
            return
        _err(f"{where}: extern relo against '{sname}': not a known extern "
             f"(no .kconfig or .ksyms BTF info)")
    if sym.shndx == SHN_ABS or sym.shndx >= len(elf.sections):
        _err(f"{where}: relo against '{sname}' in an absolute or invalid section")
    target = elf.sections[sym.shndx]
    if target.is_exec and (sym.type in (STT_FUNC, STT_SECTION)):
        if sym.value % SLOT_SIZE or imm % SLOT_SIZE:
            _err(f"{where}: bad subprog addr relo against '{sname}' at sym_off {sym.value}, "
                 f"insn imm {imm}")
        prog.relos[i] = Relo(RelKind.SUBPROG_ADDR, i, sym, sym.value)
        return
    m = map_at(sym.shndx, sym.value)
    if m is not None:
        prog.relos[i] = Relo(RelKind.LD64, i, sym, sym.value, map=m)
        return
    dm = data_map(sym.shndx)
    if dm is not None:
        prog.relos[i] = Relo(RelKind.DATA, i, sym, sym.value, map=dm)
        return
    _err(f"{where}: bad map relo against '{sname}' in section '{target.name}'")


# ---------------------------------------------------------------------------
# linking

@dataclass
class Linked:
    """One entry program with its subprograms appended."""
    slots: list[list[int]]
    relos: dict[int, Relo]                     # by slot in the linked program
    layout: list[tuple[ProgSpec, int]]         # (function, first slot in the linked program)


def link(main: ProgSpec, progs: list[ProgSpec], text_idx: int | None) -> Linked:
    """Append, depth first, every subprogram ``main`` reaches and fix call offsets."""
    slots = [list(s) for s in main.slots]
    relos: dict[int, Relo] = {}
    placed: dict[int, int] = {id(main): 0}
    layout: list[tuple[ProgSpec, int]] = [(main, 0)]
    depth = 0

    def reloc_code(prog: ProgSpec, base: int) -> None:
        nonlocal depth
        depth += 1
        if depth > 256:
            _err(f"prog '{main.name}': subprogram calls nest too deeply")
        for i, r in prog.relos.items():
            relos[base + i] = r
        for i in range(len(prog.slots)):
            s = slots[base + i]
            code, regs = s[0], s[1]
            src = regs >> 4
            is_call = code == OP_CALL and src == U.BPF_PSEUDO_CALL
            is_func = code == OP_LDDW and src == U.BPF_PSEUDO_FUNC
            relo = prog.relos.get(i)
            if relo is not None and relo.kind is RelKind.SUBPROG_ADDR:
                is_func = True
            if not is_call and not is_func:
                continue
            if relo is not None and relo.kind is RelKind.EXTERN_CALL:
                continue
            if relo is not None and relo.kind not in (RelKind.CALL, RelKind.SUBPROG_ADDR):
                _err(f"prog '{prog.name}': unexpected relo for insn #{i}, type {relo.kind.value}")
            if relo is not None:
                sec_idx = relo.sym.shndx
                if relo.kind is RelKind.CALL:
                    target = relo.sym_off // SLOT_SIZE + s[3] + 1
                else:
                    target = (relo.sym_off + s[3]) // SLOT_SIZE
            elif is_func:
                _err(f"prog '{prog.name}': ld_imm64 of a function at insn #{i} has no relocation")
            else:
                sec_idx = prog.section.index
                target = prog.sec_insn_off + i + s[3] + 1
            sub = prog_at(progs, sec_idx, target)
            if sub is None:
                _err(f"prog '{prog.name}': no corresponding subprog for insn #{i} "
                     f"(call to section insn {target})")
            if target != sub.sec_insn_off:
                _err(f"prog '{prog.name}': insn #{i} calls into the middle of '{sub.name}'")
            if id(sub) not in placed:
                placed[id(sub)] = len(slots)
                layout.append((sub, len(slots)))
                slots.extend(list(x) for x in sub.slots)
                reloc_code(sub, placed[id(sub)])
            s = slots[base + i]
            s[3] = placed[id(sub)] - (base + i) - 1
            if is_func:
                s[1] = (U.BPF_PSEUDO_FUNC << 4) | (regs & 0x0F)
        depth -= 1

    reloc_code(main, 0)
    return Linked(slots, relos, layout)


def encode_slots(slots: list[list[int]]) -> bytes:
    return pack_slots(slots)
