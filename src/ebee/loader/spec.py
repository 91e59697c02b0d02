"""Opening an object: the ELF file parsed into an :class:`ObjectSpec`, nothing live yet.

This is libbpf's ``bpf_object__open`` (cilium/ebpf's ``LoadCollectionSpec``):
sections classified, BTF and BTF.ext parsed, programs and subprograms found,
map definitions and externs collected, relocations recorded.  Creating maps,
applying CO-RE and linking happen when the object loads (:mod:`ebee.object`).
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .. import uapi as U
from ..errors import LoadError
from . import elf as E
from . import struct_ops
from .externs import Extern, collect, layout_kconfig
from .link import ProgSpec, find_programs, record_relocs
from .mapdefs import MapKind, MapSpec, Pinning, btf_maps, legacy_maps, resolve_legacy_inner
from ..btf import BTF
from ..btf.errors import BTFError
from ..btf.ext import BTFExt
from ..btf import Kind

MAPS_SEC, LEGACY_MAPS_SEC = ".maps", "maps"
DATA_SEC, RODATA_SEC, BSS_SEC = ".data", ".rodata", ".bss"


@dataclass
class ObjectSpec:
    """Everything an object file defines, before anything is created."""
    name: str
    path: str
    data: bytes
    elf: E.ElfObject
    license: str
    kern_version: int
    btf: object | None
    btf_ext: object | None
    programs: list[ProgSpec]               # entry programs and subprograms
    maps: dict[str, MapSpec]               # user maps and internal (global data) maps
    externs: dict[str, Extern] = field(default_factory=dict)
    text_idx: int | None = None
    datasecs: dict[str, list[tuple[str, int, int, int]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # struct_ops programs' attach points, set when the object loads (struct_ops.init_kern)
    struct_ops_progs: dict[str, struct_ops.StructOpsProg] = field(default_factory=dict)

    @property
    def entry_programs(self) -> list[ProgSpec]:
        return [p for p in self.programs if not p.is_subprog]


def object_name(path: str) -> str:
    """libbpf's object name: the file's base name up to the first '.'."""
    base = os.path.basename(path)
    return base.split(".", 1)[0] or base


def internal_map_name(obj_name: str, sec_name: str) -> str:
    """libbpf's kernel-visible name of a global-data map (15 characters at most)."""
    max_len = 15
    # libbpf reserves 7 characters for the suffix even when it is shorter (".bss"):
    # "verifier_iterating_callbacks" gives "verifier.bss"
    sfx_len = max(7, len(sec_name))
    if sfx_len > max_len or "." in sec_name[1:]:     # .rodata.str1.1: the section name alone
        pfx = ""
    else:
        pfx = obj_name[:max_len - sfx_len]
    name = (pfx + sec_name[:sfx_len])[:max_len]
    return "".join(c if c.isalnum() or c in "._" else "_" for c in name)


def data_kind(sec: E.Section) -> MapKind | None:
    if sec.type not in (E.SHT_PROGBITS, E.SHT_NOBITS) or not sec.is_alloc or sec.is_exec:
        return None
    n = sec.name
    if n == DATA_SEC or n.startswith(DATA_SEC + "."):
        return MapKind.DATA
    if n == RODATA_SEC or n.startswith(RODATA_SEC + "."):
        return MapKind.RODATA
    if n == BSS_SEC or n.startswith(BSS_SEC + "."):
        return MapKind.BSS
    return None


def open_object(data: bytes, path: str = "<bytes>") -> ObjectSpec:
    """Parse ``data`` into an :class:`ObjectSpec`; :class:`LoadError` names the problem."""
    try:
        return _open(data, path)
    except LoadError as e:
        raise e.with_file(path) from None
    except RecursionError:
        raise LoadError("object structure is nested too deeply", file=path) from None
    except (ValueError, KeyError, IndexError, struct.error, OverflowError) as e:
        raise LoadError(f"malformed object: {type(e).__name__}: {e}", file=path) from None


def _open(data: bytes, path: str) -> ObjectSpec:
    elf = E.parse(data, path)
    name = object_name(path)
    warnings: list[str] = []

    lic_sec = elf.get("license")
    license = ""
    if lic_sec is not None:
        raw = elf.section_data(lic_sec)
        license = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    kver = 0
    ver_sec = elf.get("version")
    if ver_sec is not None:
        raw = elf.section_data(ver_sec)
        if len(raw) != 4:
            raise LoadError(f"invalid kver section in '{name}': size {len(raw)}, expected 4")
        kver = struct.unpack("<I", raw)[0]

    btf, btf_ext = _read_btf(elf, warnings)
    text = elf.get(".text")
    text_idx = text.index if text is not None and text.is_exec else None
    programs = find_programs(elf, text if text_idx is not None else None)
    btf = _hidden_funcs_static(btf, programs, text_idx)

    maps: dict[str, MapSpec] = {}

    def add(m: MapSpec) -> None:
        if m.name in maps:
            raise LoadError(f"map '{m.name}' is defined twice")
        maps[m.name] = m

    legacy_secs = [s for s in elf.sections
                   if (s.name == LEGACY_MAPS_SEC or s.name.startswith(LEGACY_MAPS_SEC + "/"))
                   and not s.is_exec]
    legacy = legacy_maps(elf, legacy_secs)
    resolve_legacy_inner(legacy)
    for m in legacy:
        add(m)

    for m in struct_ops.collect(elf, btf, programs):
        add(m)

    datasecs: dict[str, list[tuple[str, int, int, int]]] = {}
    maps_sec = elf.get(MAPS_SEC)
    if maps_sec is not None and maps_sec.size:
        if btf is None:
            raise LoadError(f"'{MAPS_SEC}' section needs BTF, but the object has no usable "
                            f"'.BTF' section")
        ds = _datasec(btf, elf, maps_sec)
        if ds is None:
            raise LoadError(f"DATASEC '{MAPS_SEC}' not found in BTF")
        vars_ = {v[0]: (v[3], v[1], v[2]) for v in ds}
        for m in btf_maps(btf, maps_sec, None, vars_):
            add(m)
        _btf_map_values(elf, maps_sec, maps, btf, programs)

    for sec in elf.sections:
        kind = data_kind(sec)
        if kind is None:
            continue
        if btf is not None:
            ds = _datasec(btf, elf, sec)
            if ds is not None:
                datasecs[sec.name] = ds
        if sec.size > U.INT_MAX:
            # array_map_alloc_check(): E2BIG; and bytes(sec.size) would exhaust memory first
            raise LoadError(f"section '{sec.name}' has {sec.size} bytes: a map value holds at "
                            f"most {U.INT_MAX}")
        flags = U.BPF_F_RDONLY_PROG if kind is MapKind.RODATA else 0
        if _mmapable(btf, elf, sec):
            flags |= U.BPF_F_MMAPABLE
        add(MapSpec(sec.name, U.MapType.ARRAY, 4, sec.size, 1, flags,
                    kind=kind, section=sec.name, sec_index=sec.index,
                    data=elf.section_data(sec) if sec.type != E.SHT_NOBITS else bytes(sec.size)))
    for m in [m for m in maps.values() if m.is_internal and m.value_size == 0]:
        del maps[m.name]        # empty sections get no map (libbpf skips them too)

    externs = collect(btf, elf)
    ksize = layout_kconfig(externs)
    if ksize:
        # its variables are allocated globals once the loader has placed them: mmapable
        add(MapSpec(".kconfig", U.MapType.ARRAY, 4, ksize, 1,
                    U.BPF_F_RDONLY_PROG | U.BPF_F_MMAPABLE, kind=MapKind.KCONFIG,
                    section=".kconfig"))

    by_loc = {(m.sec_index, m.sec_offset): m.name for m in maps.values() if not m.is_internal}
    by_sec = {m.sec_index: m.name for m in maps.values()
              if m.kind in (MapKind.DATA, MapKind.RODATA, MapKind.BSS)}
    record_relocs(elf, programs, text_idx=text_idx,
                  map_at=lambda shndx, off: by_loc.get((shndx, off)),
                  data_map=lambda shndx: by_sec.get(shndx), externs=set(externs))
    return ObjectSpec(name, path, data, elf, license, kver, btf, btf_ext, programs, maps,
                      externs, text_idx, datasecs, warnings)


def _hidden_funcs_static(btf, programs: list[ProgSpec], text_idx: int | None):
    """libbpf marks the BTF FUNC of a global (or weak) .text function with hidden or
    internal visibility (``__weak __hidden``, usdt.bpf.h's bpf_usdt_arg) static, so the
    verifier checks it in its caller's context rather than on its own."""
    if btf is None or text_idx is None:
        return btf
    hidden = {p.name for p in programs
              if p.section.index == text_idx and p.sym is not None and
              p.sym.bind != E.STB_LOCAL and p.sym.visibility & 3 in (E.STV_HIDDEN, E.STV_INTERNAL)}
    return btf.with_static_funcs(hidden) if hidden else btf


def _read_btf(elf: E.ElfObject, warnings: list[str]):
    sec = elf.get(".BTF")
    if sec is None:
        return None, None
    try:
        btf = BTF.from_bytes(elf.section_data(sec))
    except BTFError as e:
        raise LoadError(f"section '.BTF': {e}") from None
    ext = None
    xsec = elf.get(".BTF.ext")
    if xsec is not None:
        try:
            ext = BTFExt.from_bytes(elf.section_data(xsec), btf)
        except BTFError as e:
            raise LoadError(f"section '.BTF.ext': {e}") from None
    if ext is not None:
        _check_ext(elf, ext)
    return btf, ext


def _check_ext(elf: E.ElfObject, ext) -> None:
    """func_info/line_info must lie in their section, in increasing order (the kernel's rule)."""
    for what, table in (("func_info", ext.func_info), ("line_info", ext.line_info)):
        for sec_name, recs in table.items():
            sec = elf.get(sec_name)
            if sec is None or not sec.is_exec:
                raise LoadError(f".BTF.ext {what} names section '{sec_name}', which is not a "
                                f"code section of this object")
            prev = -1
            for i, r in enumerate(recs):
                if r.insn_off % 8 or r.insn_off >= sec.size:
                    raise LoadError(f".BTF.ext: section '{sec_name}': invalid {what}[{i}]."
                                    f"insn_off {r.insn_off} (section is {sec.size} bytes)")
                if r.insn_off <= prev and not (what == "line_info" and r.insn_off == prev):
                    raise LoadError(f".BTF.ext: section '{sec_name}': invalid {what}[{i}]."
                                    f"insn_off {r.insn_off} (prev_offset {prev})")
                prev = r.insn_off


def _mmapable(btf, elf: E.ElfObject, sec: E.Section) -> bool:
    """libbpf's map_is_mmapable: a global-data map is created BPF_F_MMAPABLE when its
    DATASEC holds a variable that is not static (hidden globals count as static)."""
    if btf is None:
        return False
    try:
        ds = btf.find(sec.name, Kind.DATASEC)
    except KeyError:
        return False
    hidden = {s.name for s in elf.symbols_in(sec.index)
              if s.name and s.visibility & 3 in (E.STV_HIDDEN, E.STV_INTERNAL)}
    for vi in ds.vars:
        v = btf[vi.type_id]
        if v.kind is Kind.VAR and v.linkage != U.BtfVarLinkage.STATIC and v.name not in hidden:
            return True
    return False


def _datasec(btf, elf: E.ElfObject, sec: E.Section) -> list[tuple[str, int, int, int]] | None:
    """(name, offset, size, var type id) of each variable of a section's DATASEC.

    Offsets the compiler left as 0 are taken from the symbol table, as libbpf's
    ``btf_fixup_datasec`` does.
    """
    try:
        ds = btf.find(sec.name, Kind.DATASEC)
    except KeyError:
        return None
    syms = {s.name: s for s in elf.symbols_in(sec.index) if s.name}
    out = []
    for vi in ds.vars:
        t = btf[vi.type_id]
        off = vi.offset
        if off == 0 and t.name in syms:
            off = syms[t.name].value
        if off + vi.size > sec.size and sec.type != E.SHT_NOBITS and sec.name != MAPS_SEC:
            raise LoadError(f"DATASEC '{sec.name}': variable '{t.name}' (offset {off}, size "
                            f"{vi.size}) runs past the section ({sec.size} bytes)")
        out.append((t.name, off, vi.size, vi.type_id))
    return out


def _btf_map_values(elf: E.ElfObject, sec: E.Section, maps: dict[str, MapSpec], btf,
                    programs: list[ProgSpec]) -> None:
    """Initial `values` of map-in-maps and prog arrays from the .maps relocations."""
    relos = elf.relocs.get(sec.index, ())
    if not relos:
        return
    in_sec = sorted((m for m in maps.values() if m.sec_index == sec.index),
                    key=lambda m: m.sec_offset)
    for r in relos:
        owner = None
        for m in in_sec:
            if m.sec_offset <= r.offset:
                owner = m
        if owner is None:
            raise LoadError(f".maps relo: no map definition at offset {r.offset}")
        def_t = btf.resolve(btf[btf.find(owner.name, Kind.VAR).id].type_id)
        vals = def_t.members[-1] if def_t.members else None
        if vals is None or vals.name != "values":
            raise LoadError(f".maps relo #{r.offset}: map '{owner.name}' has no 'values' member")
        base = owner.sec_offset + vals.byte_offset
        if r.offset < base or (r.offset - base) % 8:
            raise LoadError(f"map '{owner.name}': relo at offset {r.offset} is not a "
                            f"'values' slot")
        slot = (r.offset - base) // 8
        sym = r.symbol
        if owner.type is U.MapType.PROG_ARRAY:
            if sym.type != E.STT_FUNC or not any(p.name == sym.name and not p.is_subprog
                                                  for p in programs):
                raise LoadError(f"map '{owner.name}': slot [{slot}]: '{sym.name}' is not a "
                                f"BPF program")
        else:
            target = next((m for m in maps.values() if m.sec_index == sym.shndx
                           and m.sec_offset == sym.value and not m.is_internal), None)
            if target is None:
                raise LoadError(f"map '{owner.name}': slot [{slot}]: '{sym.name}' is not a "
                                f"map definition")
            sym = target
        if slot >= owner.max_entries:
            raise LoadError(f"map '{owner.name}': slot [{slot}] is beyond max_entries "
                            f"{owner.max_entries}")
        owner.init_slots[slot] = sym.name


def read_source(path_or_bytes) -> tuple[bytes, str]:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes), "<bytes>"
    p = os.fspath(path_or_bytes)
    try:
        return Path(p).read_bytes(), p
    except FileNotFoundError:
        raise LoadError("no such file", file=p) from None
    except IsADirectoryError:
        raise LoadError("is a directory", file=p) from None
    except OSError as e:
        raise LoadError(e.strerror or str(e), file=p) from None


def pin_path(spec: ObjectSpec, m: MapSpec, pin_root: str) -> str | None:
    """Where a pinned map of the object lives under ``pin_root`` (libbpf's by-name pins,
    iproute2's global and per-object namespaces), or None if it is not pinned."""
    root = pin_root.rstrip("/") or "/"
    if m.pinning in (Pinning.BY_NAME, Pinning.REPLACE):
        return f"{root}/{m.name}"
    if m.pinning is Pinning.GLOBAL_NS:
        return f"{root}/tc/globals/{m.name}"
    if m.pinning is Pinning.OBJECT_NS:
        return f"{root}/tc/{hashlib.sha1(spec.data).hexdigest()}/{m.name}"
    return None
