"""Finding ``.BTF`` and ``.BTF.ext`` in an ELF object (what ``btf__parse_elf`` does).

The full object loader lives in ``ebee.loader`` (pyelftools); the BTF tools
only need two sections by name, so this reads the section header table
directly and checks every offset it follows -- a corrupt object gives one
BTFError, never an exception from deep inside a parser.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import BTFError

BTF_SECTION = ".BTF"
BTF_EXT_SECTION = ".BTF.ext"
SHT_NOBITS = 8


@dataclass(frozen=True)
class BTFSections:
    btf: bytes
    btf_ext: bytes | None
    pointer_size: int        # 4 for ELFCLASS32, 8 for ELFCLASS64
    byteorder: str           # "little" or "big"


def btf_sections(data: bytes) -> BTFSections:
    """The raw ``.BTF``/``.BTF.ext`` contents of an ELF image; BTFError if absent or unreadable."""
    if len(data) < 16 or data[:4] != b"\x7fELF":
        raise BTFError("not an ELF file")
    cls, enc = data[4], data[5]
    if cls not in (1, 2):
        raise BTFError(f"ELF class {cls} is neither 32- nor 64-bit")
    if enc not in (1, 2):
        raise BTFError(f"ELF data encoding {enc} is neither little- nor big-endian")
    e = "<" if enc == 1 else ">"
    if cls == 2:
        ehdr, shdr = struct.Struct(e + "16xHHIQQQIHHHHHH"), struct.Struct(e + "IIQQQQIIQQ")
    else:
        ehdr, shdr = struct.Struct(e + "16xHHIIIIIHHHHHH"), struct.Struct(e + "IIIIIIIIII")
    if len(data) < ehdr.size:
        raise BTFError(f"ELF header truncated ({len(data)} bytes)")
    (_, _, _, _, _, shoff, _, _, _, _, shentsize, shnum, shstrndx) = ehdr.unpack_from(data)
    if shnum == 0 or shoff == 0:
        raise BTFError("ELF object has no section headers")
    if shentsize < shdr.size:
        raise BTFError(f"ELF section header size {shentsize} is smaller than {shdr.size}")
    if shoff + shnum * shentsize > len(data):
        raise BTFError(f"ELF section headers ({shnum} at offset {shoff}) run past the end "
                       f"of the file ({len(data)} bytes)")
    if shstrndx >= shnum:
        raise BTFError(f"ELF section name table index {shstrndx} is out of range "
                       f"({shnum} sections)")

    def header(i: int) -> tuple[int, int, int, int]:
        f = shdr.unpack_from(data, shoff + i * shentsize)
        # name, type, offset, size
        return f[0], f[1], f[4], f[5]

    def contents(i: int, what: str) -> bytes:
        _, typ, off, size = header(i)
        if typ == SHT_NOBITS:
            return b""
        if off + size > len(data):
            raise BTFError(f"section {i} ({what}) at {off}+{size} runs past the end of the "
                           f"file ({len(data)} bytes)")
        return data[off:off + size]

    names = contents(shstrndx, "section names")
    btf = ext = None
    for i in range(1, shnum):
        name_off = header(i)[0]
        if name_off >= len(names):
            raise BTFError(f"section {i}: name offset {name_off} is outside the section name "
                           f"table ({len(names)} bytes)")
        end = names.find(b"\0", name_off)
        name = names[name_off:end if end >= 0 else len(names)]
        if name == b".BTF":
            btf = contents(i, BTF_SECTION)
        elif name == b".BTF.ext":
            ext = contents(i, BTF_EXT_SECTION)
    if btf is None:
        raise BTFError("no .BTF section")
    return BTFSections(btf, ext, 8 if cls == 2 else 4, "little" if enc == 1 else "big")
