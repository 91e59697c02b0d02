"""Finding a user-space function's file offset for uprobes, by reading the ELF file.

The offset the kernel wants is the symbol's position in the file:
``st_value - sh_addr + sh_offset`` of the section that holds it (what libbpf's
``elf_sym_offset`` computes), searched in .symtab and .dynsym.
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

LIB_DIRS = ["/lib64", "/usr/lib64", "/lib", "/usr/lib", "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
            "/usr/local/lib"]


def find_binary(name: str) -> str:
    """An absolute path for ``name``: a path as given, a program on PATH, or a shared
    library in the usual directories (``libc.so.6``)."""
    if os.sep in name:
        p = Path(name)
        if not p.exists():
            raise OSError(errno.ENOENT, f"{name}: no such file")
        return str(p.resolve())
    found = shutil.which(name)
    if found:
        return str(Path(found).resolve())
    for d in LIB_DIRS:
        p = Path(d) / name
        if p.exists():
            return str(p.resolve())
    raise OSError(errno.ENOENT, f"{name}: not found on PATH or in the library directories")


def symbol_offset(path: str, symbol: str) -> int:
    """File offset of function ``symbol`` in the ELF file ``path``."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            found = None
            for secname in (".symtab", ".dynsym"):
                sec = elf.get_section_by_name(secname)
                if sec is None:
                    continue
                for sym in sec.iter_symbols():
                    name = sym.name.split("@", 1)[0]
                    if name != symbol or sym["st_shndx"] in ("SHN_UNDEF", "SHN_ABS"):
                        continue
                    if sym["st_info"]["type"] not in ("STT_FUNC", "STT_GNU_IFUNC"):
                        continue
                    found = sym
                    break
                if found is not None:
                    break
            if found is None:
                raise OSError(errno.ENOENT, f"{path}: no function symbol {symbol!r}")
            shdr = elf.get_section(found["st_shndx"]).header
            return found["st_value"] - shdr["sh_addr"] + shdr["sh_offset"]
    except ELFError as e:
        raise OSError(errno.ENOEXEC, f"{path}: not an ELF file ({e})") from None
