"""Reading a BPF ELF object: sections, symbols and relocations, checked.

The ELF header, section headers, symbol tables and relocation tables are decoded
here with :mod:`struct` (pyelftools builds one Python object per entry, too slow for
Cilium's 2 MB objects, and importing it costs a warm load ~35 ms).  Everything an
attacker controls -- offsets, sizes, counts, indices, string offsets -- is
checked against the file before use, and any failure becomes one
:class:`~ebee.errors.LoadError` naming what is wrong.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterator, Mapping

from ..errors import LoadError

EM_BPF = 247

SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA = 0, 1, 2, 3, 4
SHT_NOBITS, SHT_REL = 8, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHN_UNDEF, SHN_ABS, SHN_COMMON = 0, 0xFFF1, 0xFFF2

STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
STV_DEFAULT, STV_INTERNAL, STV_HIDDEN = 0, 1, 2

# relocation types of the BPF backend (llvm/BinaryFormat/ELFRelocs/BPF.def)
R_BPF_NONE, R_BPF_64_64, R_BPF_64_ABS64, R_BPF_64_ABS32 = 0, 1, 2, 3
R_BPF_64_NODYLD32, R_BPF_64_32 = 4, 10
RELOC_NAMES = {R_BPF_NONE: "R_BPF_NONE", R_BPF_64_64: "R_BPF_64_64",
               R_BPF_64_ABS64: "R_BPF_64_ABS64", R_BPF_64_ABS32: "R_BPF_64_ABS32",
               R_BPF_64_NODYLD32: "R_BPF_64_NODYLD32", R_BPF_64_32: "R_BPF_64_32"}

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")   # Elf64_Ehdr
_SHDR = struct.Struct("<IIQQQQIIQQ")          # Elf64_Shdr
_SYM = struct.Struct("<IBBHQQ")      # Elf64_Sym
_REL = struct.Struct("<QQ")          # Elf64_Rel
_RELA = struct.Struct("<QQq")        # Elf64_Rela


@dataclass(frozen=True, slots=True)
class Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int
    align: int

    @property
    def is_exec(self) -> bool:
        return self.type == SHT_PROGBITS and bool(self.flags & SHF_EXECINSTR)

    @property
    def is_alloc(self) -> bool:
        return bool(self.flags & SHF_ALLOC)


@dataclass(frozen=True, slots=True)
class Symbol:
    index: int
    name: str
    value: int
    size: int
    type: int
    bind: int
    visibility: int
    shndx: int

    @property
    def is_extern(self) -> bool:
        return self.shndx == SHN_UNDEF and self.bind in (STB_GLOBAL, STB_WEAK) and bool(self.name)


@dataclass(frozen=True, slots=True)
class Reloc:
    offset: int        # byte offset in the target section
    type: int
    symbol: Symbol
    addend: int = 0


@dataclass
class ElfObject:
    """A checked view of a BPF ELF file."""
    path: str
    data: bytes
    sections: list[Section]
    symbols: list[Symbol]
    relocs: "Relocs" = field(default_factory=lambda: Relocs([]))   # target section -> relocs

    def section_data(self, sec: Section) -> bytes:
        if sec.type == SHT_NOBITS:
            return bytes(sec.size)
        return self.data[sec.offset:sec.offset + sec.size]

    @cached_property
    def by_name(self) -> dict[str, Section]:
        out: dict[str, Section] = {}
        for s in self.sections:
            out.setdefault(s.name, s)
        return out

    def get(self, name: str) -> Section | None:
        return self.by_name.get(name)

    def symbols_in(self, shndx: int) -> list[Symbol]:
        return [s for s in self.symbols if s.shndx == shndx]


class Relocs(Mapping[int, list[Reloc]]):
    """Relocations by target section, checked when the file is parsed and decoded into
    :class:`Reloc` objects only for the sections asked for: debug sections carry most
    of an object's relocations (11,828 in execsnoop's .debug_str_offsets) and no
    loader step reads them."""

    def __init__(self, symbols: list[Symbol]):
        self._symbols = symbols
        self._raw: dict[int, list[tuple[Section, bytes]]] = {}
        self._decoded: dict[int, list[Reloc]] = {}

    def add(self, target: int, sec: Section, blob: bytes) -> None:
        self._raw.setdefault(target, []).append((sec, blob))
        self._decoded.pop(target, None)

    def __getitem__(self, target: int) -> list[Reloc]:
        got = self._decoded.get(target)
        if got is None:
            got = self._decoded[target] = [
                r for sec, blob in self._raw[target] for r in _decode_relocs(sec, blob,
                                                                             self._symbols)]
        return got

    def __iter__(self) -> Iterator[int]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def _fail(msg: str):
    raise LoadError(msg)


def parse(data: bytes, path: str = "<bytes>") -> ElfObject:
    """Parse and check ``data``; raise :class:`LoadError` for anything malformed."""
    try:
        return _parse(data, path)
    except LoadError as e:
        raise e.with_file(path) from None
    except RecursionError:
        raise LoadError("malformed ELF: structure too deeply nested", file=path) from None
    except Exception as e:  # no corrupt input may escape as anything but a LoadError
        raise LoadError(f"malformed ELF: {type(e).__name__}: {e}", file=path) from None


def _parse(data: bytes, path: str) -> ElfObject:
    if len(data) < 64 or data[:4] != b"\x7fELF":
        _fail("not an ELF file" if data[:4] != b"\x7fELF" else
              f"truncated ELF header ({len(data)} bytes, expected 64)")
    if data[4] != 2:
        _fail("not a 64-bit ELF object (BPF objects are ELFCLASS64)")
    if data[5] != 1:
        _fail("big-endian ELF object; ebee runs little-endian BPF (compile with -target bpfel)"
              if data[5] == 2 else f"invalid ELF data encoding {data[5]}")
    (_, e_type, e_machine, _, _, _, shoff, _, _, _, _, shentsize, shnum,
     shstrndx) = _EHDR.unpack_from(data)
    # libbpf also takes e_machine 0: LLVM before 3.9 left it unset
    if e_machine not in (EM_BPF, 0):
        _fail(f"not a BPF object (e_machine is {e_machine}, expected EM_BPF)")
    if e_type != 1:
        _fail(f"not a relocatable object (e_type is {e_type}, expected ET_REL)")
    if shnum == 0:
        _fail("no section headers")
    if shentsize != 64:
        _fail(f"section header size is {shentsize}, expected 64")
    if shoff + shnum * shentsize > len(data):
        _fail(f"section header table (offset {shoff}, {shnum} entries) extends past the end "
              f"of the file ({len(data)} bytes)")
    if shstrndx >= shnum:
        _fail(f"section name table index {shstrndx} out of range ({shnum} sections)")

    raw = list(_SHDR.iter_unpack(data[shoff:shoff + shnum * shentsize]))
    strtab = raw[shstrndx]
    if strtab[1] != SHT_STRTAB:
        _fail("section name table is not a string table")
    _check_extent(strtab, len(data), "section name table")
    names_blob = data[strtab[4]:strtab[4] + strtab[5]]

    sections: list[Section] = []
    for i, sh in enumerate(raw):
        sh_name, stype, flags, _, offset, size, link, info, align, entsize = sh
        name = _cstr(names_blob, sh_name, f"section {i} name")
        sec = Section(i, name, stype, flags, offset, size, link, info, entsize, align)
        if stype not in (SHT_NOBITS, SHT_NULL):
            _check_extent(sh, len(data), f"section {i} ({name!r})")
        sections.append(sec)

    symtabs = [s for s in sections if s.type == SHT_SYMTAB]
    if len(symtabs) > 1:
        _fail("more than one symbol table")
    symbols: list[Symbol] = []
    if symtabs:
        symbols = _read_symbols(data, sections, symtabs[0])

    obj = ElfObject(path, data, sections, symbols, Relocs(symbols))
    for s in sections:
        if s.type in (SHT_REL, SHT_RELA):
            if not symtabs or s.link != symtabs[0].index:
                _fail(f"relocation section {s.name!r} does not use the symbol table")
            if not 0 < s.info < len(sections):
                _fail(f"relocation section {s.name!r} applies to section {s.info}, "
                      f"which does not exist")
            # compilers name it after its target; a mismatch means a corrupt name table
            want = (".rel" if s.type == SHT_REL else ".rela") + sections[s.info].name
            if s.name != want:
                _fail(f"relocation section {s.name!r} applies to section "
                      f"{sections[s.info].name!r} (expected the name {want!r}): corrupt "
                      f"section names")
            obj.relocs.add(s.info, s, _check_relocs(data, s, symbols))
    return obj


def _check_extent(sh: tuple, size: int, what: str) -> None:
    off, n = sh[4], sh[5]
    if off > size or n > size - off:
        _fail(f"{what} (offset {off}, size {n}) extends past the end of the file ({size} bytes)")


def _cstr(blob: bytes, off: int, what: str) -> str:
    if off >= len(blob) and not (off == 0 and not blob):
        _fail(f"{what}: string offset {off:#x} is past the end of its string table")
    end = blob.find(b"\0", off)
    if end < 0:
        _fail(f"{what}: string at offset {off:#x} is not NUL-terminated")
    try:
        return blob[off:end].decode("utf-8")
    except UnicodeDecodeError:
        return blob[off:end].decode("latin-1")


def _read_symbols(data: bytes, sections: list[Section], st: Section) -> list[Symbol]:
    if st.entsize not in (0, _SYM.size):
        _fail(f"symbol table entry size is {st.entsize}, expected {_SYM.size}")
    if st.size % _SYM.size:
        _fail(f"symbol table size {st.size} is not a multiple of {_SYM.size}")
    if not 0 < st.link < len(sections) or sections[st.link].type != SHT_STRTAB:
        _fail("symbol table's string table (sh_link) is missing or not a string table")
    strs = data[sections[st.link].offset:sections[st.link].offset + sections[st.link].size]
    out: list[Symbol] = []
    blob = data[st.offset:st.offset + st.size]
    nsec = len(sections)
    for i, (name, info, other, shndx, value, size) in enumerate(_SYM.iter_unpack(blob)):
        sym = Symbol(i, _cstr(strs, name, f"symbol {i} name"), value, size, info & 0xF, info >> 4,
                     other & 0x3, shndx)
        if shndx not in (SHN_UNDEF, SHN_ABS, SHN_COMMON) and shndx >= nsec and i:
            _fail(f"symbol {i} ({sym.name!r}) refers to section {shndx}, which does not exist")
        if sym.shndx and sym.shndx < nsec and sym.type in (STT_FUNC, STT_OBJECT):
            sec = sections[shndx]
            if sec.type != SHT_NOBITS and (value > sec.size or size > sec.size - value):
                _fail(f"symbol {sym.name!r} (offset {value}, size {size}) extends past the end "
                      f"of section {sec.name!r} ({sec.size} bytes)")
        out.append(sym)
    return out


def _check_relocs(data: bytes, s: Section, symbols: list[Symbol]) -> bytes:
    """The section's entries, checked (every symbol index in range) without decoding
    them: the symbol index is the high half of r_info, every entry's fourth u32."""
    rs = _REL if s.type == SHT_REL else _RELA
    if s.size % rs.size:
        _fail(f"relocation section {s.name!r} size {s.size} is not a multiple of {rs.size}")
    blob = data[s.offset:s.offset + s.size]
    step = rs.size // 4
    sym_idx = memoryview(blob).cast("I")[3::step] if blob else ()
    if sym_idx and max(sym_idx) >= len(symbols):
        n = next(k for k, i in enumerate(sym_idx) if i >= len(symbols))
        _fail(f"relocation {n} in {s.name!r} refers to symbol {sym_idx[n]}, "
              f"but the symbol table has {len(symbols)}")
    return blob


def _decode_relocs(s: Section, blob: bytes, symbols: list[Symbol]) -> list[Reloc]:
    if s.type == SHT_REL:
        return [Reloc(off, info & 0xFFFFFFFF, symbols[info >> 32])
                for off, info in _REL.iter_unpack(blob)]
    return [Reloc(off, info & 0xFFFFFFFF, symbols[info >> 32], addend)
            for off, info, addend in _RELA.iter_unpack(blob)]
