"""An object's BTF made loadable by BTF_LOAD, the way libbpf finalizes it.

clang leaves things for the loader to fill in, and the kernel's BTF checker
refuses them as they are:

* DATASEC sizes and VAR offsets are 0: sizes come from the ELF sections,
  offsets from the symbols (``btf_fixup_datasec``); variables are sorted by
  offset, and global variables with hidden visibility become static;
* the extern sections ``.kconfig`` and ``.ksyms`` describe no real section:
  their variables become allocated globals at the offsets the loader chose
  (``.kconfig``) or 4-byte slots (``.ksyms``), extern *functions* in
  ``.ksyms`` are replaced by a dummy variable;
* the kernel accepts only static and global FUNCs: extern ones (kfunc
  declarations) become global, their prototypes' unnamed parameters named.

The blob is edited as u32 words; the record sizes come from ebee.btf.
"""
from __future__ import annotations

from array import array

from ..btf.blob import BTFBlob
from ..uapi import BtfFuncLinkage, BtfKind, BtfVarLinkage

KCONFIG_SEC, KSYMS_SEC = ".kconfig", ".ksyms"
_STV_HIDDEN, _STV_INTERNAL = 2, 1     # ELF st_other visibility (elf.h)
_DUMMY_KSYM = "dummy_ksym"


def _info(kind: BtfKind, vlen: int = 0, kflag: int = 0) -> int:
    return (kflag << 31) | (int(kind) << 24) | vlen


def _int_type(b: BTFBlob) -> int:
    """A 4-byte int in the blob (added if there is none)."""
    for t in b.ids(BtfKind.INT):
        if b.word(t, 2) == 4 and (b.word(t, 3) & 0xFF) == 32:
            return t
    return b.add_type([b.add_string("int"), _info(BtfKind.INT), 4, (1 << 24) | 32])


def fixup(data: bytes, *, section_size, symbol, kconfig_offsets: dict[str, int] | None = None,
          kconfig_size: int = 0) -> bytes:
    """The blob with DATASECs and externs finalized.

    ``section_size(name) -> int | None`` and ``symbol(name) -> (value, st_other) | None``
    answer from the ELF file; ``kconfig_offsets`` maps each ``.kconfig`` extern to its
    offset in the .kconfig map value (of ``kconfig_size`` bytes).
    """
    b = BTFBlob(data)
    for ds in b.ids(BtfKind.DATASEC):
        sec = b.name(ds)
        n = b.vlen(ds)
        entries = [list(b.types[b.offs[ds - 1] + 3 + 3 * i:b.offs[ds - 1] + 6 + 3 * i])
                   for i in range(n)]      # [type, offset, size]
        if sec == KSYMS_SEC:
            int_t = _int_type(b)
            dummy = None
            off = 0
            for e in entries:
                if b.kind(e[0]) == BtfKind.FUNC:
                    if dummy is None:
                        dummy = b.add_type([b.add_string(_DUMMY_KSYM), _info(BtfKind.VAR),
                                            int_t, BtfVarLinkage.GLOBAL_ALLOCATED])
                    _name_params(b, e[0], b.word(dummy, 0))
                    e[0] = dummy
                else:
                    b.set_word(e[0], 2, int_t)
                    b.set_word(e[0], 3, BtfVarLinkage.GLOBAL_ALLOCATED)
                e[1], e[2] = off, 4
                off += 4
            b.set_word(ds, 2, off)
        elif sec == KCONFIG_SEC:
            for e in entries:
                b.set_word(e[0], 3, BtfVarLinkage.GLOBAL_ALLOCATED)
                e[1] = (kconfig_offsets or {}).get(b.name(e[0]), e[1])
            b.set_word(ds, 2, kconfig_size)
        else:
            fix_offsets = b.word(ds, 2) == 0
            if fix_offsets:
                size = section_size(sec)
                if size:
                    b.set_word(ds, 2, size)
            for e in entries:
                if b.kind(e[0]) != BtfKind.VAR:
                    continue
                linkage = b.word(e[0], 3)
                if linkage in (BtfVarLinkage.STATIC, BtfVarLinkage.GLOBAL_EXTERN):
                    continue
                sym = symbol(b.name(e[0]))
                if sym is None:
                    continue
                value, other = sym
                if fix_offsets:
                    e[1] = value
                if other & 3 in (_STV_HIDDEN, _STV_INTERNAL):
                    b.set_word(e[0], 3, BtfVarLinkage.STATIC)
        entries.sort(key=lambda e: e[1])
        for i, e in enumerate(entries):
            base = b.offs[ds - 1] + 3 + 3 * i
            b.types[base:base + 3] = array("I", e)
    _global_extern_funcs(b)
    return b.to_bytes()


def _global_extern_funcs(b: BTFBlob) -> None:
    """The kernel accepts static and global FUNCs only: extern ones (kfunc declarations,
    unresolved calls) become global, with named parameters, as libbpf does for kfuncs."""
    name_off = None
    for f in b.ids(BtfKind.FUNC):
        if b.vlen(f) != BtfFuncLinkage.EXTERN:
            continue
        w = b.word(f, 1)
        b.set_word(f, 1, (w & ~0xFFFF) | BtfFuncLinkage.GLOBAL)
        if name_off is None:
            name_off = b.add_string(_DUMMY_KSYM)
        _name_params(b, f, name_off)


def _name_params(b: BTFBlob, func: int, name_off: int) -> None:
    """Give the unnamed parameters of a FUNC's prototype a name (libbpf uses the dummy's)."""
    proto = b.word(func, 2)
    if b.kind(proto) != BtfKind.FUNC_PROTO:
        return
    base = b.offs[proto - 1] + 3
    for i in range(b.vlen(proto)):
        if b.types[base + 2 * i] == 0 and b.types[base + 2 * i + 1] != 0:
            b.types[base + 2 * i] = name_off


__all__ = ["BTFBlob", "fixup"]
