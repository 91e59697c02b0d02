"""``.struct_ops`` and ``.struct_ops.link`` sections: STRUCT_OPS maps, as libbpf reads them.

Each variable of such a section is one map (libbpf's ``init_struct_ops_maps``):
its type is the kernel's function table (``struct bpf_dummy_ops``,
``struct tcp_congestion_ops``), its bytes the table's initial value, and the
section's relocations point function-pointer members at the object's
``SEC("struct_ops/...")`` programs (``bpf_object__collect_st_ops_relos``).
The map is ``BPF_MAP_TYPE_STRUCT_OPS`` with key_size 4 and max_entries 1;
``.struct_ops.link`` maps carry ``BPF_F_LINK``; ``SEC("?.struct_ops")`` maps
are not created by default.

When the object loads, :func:`init_kern` does ``bpf_map__init_kern_struct_ops``
against the kernel's BTF: the kernel's ``struct X`` and its wrapper
``struct bpf_struct_ops_X`` give the map's value size and
``btf_vmlinux_value_type_id``; members are matched by name (a member the
kernel lacks is an error unless it is zero), scalar members copied into the
kernel value, and every program a member points to gets the kernel struct as
its attach BTF type and the member's index as its expected attach type.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .. import uapi as U
from ..btf import Kind
from ..errors import LoadError
from . import elf as E
from .link import ProgSpec
from .mapdefs import MapSpec

STRUCT_OPS_SEC, STRUCT_OPS_LINK_SEC = ".struct_ops", ".struct_ops.link"
SECTIONS = (STRUCT_OPS_SEC, STRUCT_OPS_LINK_SEC, "?" + STRUCT_OPS_SEC, "?" + STRUCT_OPS_LINK_SEC)
VALUE_PREFIX = "bpf_struct_ops_"     # STRUCT_OPS_VALUE_PREFIX: the kernel's wrapper struct


@dataclass
class StructOps:
    """A struct_ops map's table as the object defines it (and, once loaded, the kernel's)."""
    type_name: str                  # "bpf_dummy_ops"
    type_id: int                    # the struct in the object's BTF
    data: bytes                     # its initial bytes in the object
    progs: dict[int, str] = field(default_factory=dict)   # member index -> program name
    autocreate: bool = True
    # filled by init_kern: the kernel's value and where the programs go in it
    kern_type_id: int = 0           # struct X in the kernel's BTF
    kern_vdata: bytes = b""         # struct bpf_struct_ops_X with the scalar members copied
    kern_func_off: dict[int, str] = field(default_factory=dict)   # value offset -> program


@dataclass(frozen=True)
class StructOpsProg:
    """What a struct_ops program is attached to: libbpf's attach_btf_id/expected_attach_type."""
    type_name: str
    kern_type_id: int
    member_idx: int


def collect(elf: E.ElfObject, btf, programs: list[ProgSpec]) -> list[MapSpec]:
    """The STRUCT_OPS map specs of every struct_ops section, with their program slots."""
    out: list[MapSpec] = []
    for sec in elf.sections:
        if sec.name not in SECTIONS:
            continue
        if btf is None:
            raise LoadError(f"struct_ops init: section '{sec.name}' needs BTF")
        name = sec.name.lstrip("?")
        try:
            ds = btf.find(sec.name, Kind.DATASEC)
        except KeyError:
            raise LoadError(f"struct_ops init: DATASEC {sec.name} not found") from None
        data = elf.section_data(sec) if sec.type != E.SHT_NOBITS else bytes(sec.size)
        # clang leaves the DATASEC's offsets 0: the variables' symbols place them (libbpf
        # fixes the DATASEC up from the symbol table before reading struct_ops maps)
        placed = {s.name: s.value for s in elf.symbols_in(sec.index) if s.name}
        maps = []
        for vi in ds.vars:
            var = btf[vi.type_id]
            if var.name in placed:
                vi = replace(vi, offset=placed[var.name])
            t = btf.resolve(var.type_id)
            if not t.name:
                raise LoadError("struct_ops init: anonymous type is not supported")
            if t.kind is not Kind.STRUCT:
                raise LoadError(f"struct_ops init: {t.name} is not a struct")
            if vi.offset + t.size > len(data):
                raise LoadError(f"struct_ops init: var {var.name} is beyond the end of DATASEC "
                                f"{name}")
            st = StructOps(t.name, t.id, bytes(data[vi.offset:vi.offset + t.size]),
                           autocreate=not sec.name.startswith("?"))
            m = MapSpec(var.name, U.MapType.STRUCT_OPS, 4, t.size, 1,
                        U.BPF_F_LINK if name == STRUCT_OPS_LINK_SEC else 0, section=name,
                        sec_index=sec.index, sec_offset=vi.offset, btf_value_type_id=t.id,
                        struct_ops=st)
            maps.append(m)
        _relocate(elf, sec, btf, maps, programs)
        out.extend(maps)
    return out


def _relocate(elf: E.ElfObject, sec: E.Section, btf, maps: list[MapSpec],
              programs: list[ProgSpec]) -> None:
    """bpf_object__collect_st_ops_relos: function-pointer members -> programs."""
    for r in elf.relocs.get(sec.index, ()):
        m = next((m for m in maps if m.sec_offset <= r.offset < m.sec_offset + m.value_size),
                 None)
        if m is None:
            raise LoadError(f"struct_ops reloc: cannot find map at rel->r_offset {r.offset}")
        st = m.struct_ops
        moff = r.offset - m.sec_offset
        sym = r.symbol
        if sym.shndx >= 0xFF00:        # SHN_LORESERVE
            raise LoadError(f"struct_ops reloc {m.name}: rel->r_offset {r.offset} shdr_idx "
                            f"{sym.shndx} unsupported non-static function")
        if sym.value % 8:
            raise LoadError(f"struct_ops reloc {m.name}: invalid target program offset "
                            f"{sym.value}")
        t = btf[st.type_id]
        idx = next((i for i, mem in enumerate(t.members) if mem.bits_offset == moff * 8), None)
        if idx is None:
            raise LoadError(f"struct_ops reloc {m.name}: cannot find member at moff {moff}")
        mem = t.members[idx]
        if not _is_func_ptr(btf, mem.type_id):
            raise LoadError(f"struct_ops reloc {m.name}: cannot relocate non func ptr {mem.name}")
        prog = next((p for p in programs if p.section.index == sym.shndx and
                     p.sec_insn_off == sym.value // 8 and not p.is_subprog), None)
        if prog is None:
            raise LoadError(f"struct_ops reloc {m.name}: cannot find prog at shdr_idx "
                            f"{sym.shndx} to relocate func ptr {mem.name}")
        if prog.sec_def.prog_type != U.ProgType.STRUCT_OPS:
            raise LoadError(f"struct_ops reloc {m.name}: prog {prog.name} is not struct_ops BPF "
                            f"program")
        st.progs[idx] = prog.name


def _is_func_ptr(btf, tid: int) -> bool:
    t = btf.resolve(tid)
    return t.kind is Kind.PTR and btf.resolve(t.type_id).kind is Kind.FUNC_PROTO


def _is_zero(b: bytes) -> bool:
    return not any(b)


def init_kern(m: MapSpec, btf, kern_btf, attach: dict[str, StructOpsProg]) -> MapSpec:
    """bpf_map__init_kern_struct_ops: the map as the kernel creates it (value size and
    vmlinux value type of ``struct bpf_struct_ops_X``), the kernel value with the scalar
    members copied, and each referenced program's attach point recorded in ``attach``."""
    st = m.struct_ops
    tname = st.type_name
    kt = _find_struct(kern_btf, tname)
    if kt is None:
        raise LoadError(f"struct_ops init_kern: struct {tname} is not found in kernel BTF")
    vt = _find_struct(kern_btf, VALUE_PREFIX + tname)
    if vt is None:
        raise LoadError(f"struct_ops init_kern: struct {VALUE_PREFIX}{tname} is not found in "
                        f"kernel BTF")
    data_mem = next((x for x in vt.members if kern_btf.resolve(x.type_id).id == kt.id), None)
    if data_mem is None:
        raise LoadError(f"struct_ops init_kern: struct {tname} data is not found in struct "
                        f"{VALUE_PREFIX}{tname}")
    vdata = bytearray(vt.size)
    kdoff = data_mem.bits_offset // 8
    func_off: dict[int, str] = {}
    t = btf[st.type_id]
    for i, mem in enumerate(t.members):
        moff = mem.bits_offset // 8
        msize = btf.sizeof(mem.type_id)
        mdata = st.data[moff:moff + msize]
        kidx = next((j for j, k in enumerate(kt.members) if k.name == mem.name), None)
        prog = st.progs.get(i)
        if kidx is None:
            if not _is_zero(mdata):
                raise LoadError(f"struct_ops init_kern {m.name}: Cannot find member {mem.name} "
                                f"in kernel BTF")
            continue                       # zero/NULL members the kernel lacks are skipped
        kmem = kt.members[kidx]
        if mem.bitfield_size or kmem.bitfield_size:
            raise LoadError(f"struct_ops init_kern {m.name}: bitfield {mem.name} is not "
                            f"supported")
        kmoff = kmem.bits_offset // 8
        mt, kmt = btf.resolve(mem.type_id), kern_btf.resolve(kmem.type_id)
        if mt.kind is not kmt.kind:
            raise LoadError(f"struct_ops init_kern {m.name}: Unmatched member type {mem.name} "
                            f"{int(mt.kind)} != {int(kmt.kind)}(kernel)")
        if mt.kind is Kind.PTR:
            if prog is None:
                continue
            if kern_btf.resolve(kmt.type_id).kind is not Kind.FUNC_PROTO:
                raise LoadError(f"struct_ops init_kern {m.name}: kernel member {mem.name} is "
                                f"not a func ptr")
            want = StructOpsProg(tname, kt.id, kidx)
            have = attach.setdefault(prog, want)
            if have.kern_type_id != kt.id:
                raise LoadError(f"struct_ops init_kern {m.name} func ptr {mem.name}: invalid "
                                f"reuse of prog {prog}: attach_btf_id {have.kern_type_id} != "
                                f"kern_type_id {kt.id}")
            if have.member_idx != kidx:
                raise LoadError(f"struct_ops init_kern {m.name} func ptr {mem.name}: invalid "
                                f"reuse of prog {prog}: expected_attach_type {have.member_idx} "
                                f"!= kern_member_idx {kidx}")
            func_off[kdoff + kmoff] = prog
            continue
        ksize = kern_btf.sizeof(kmem.type_id)
        if ksize != msize:
            raise LoadError(f"struct_ops init_kern {m.name}: Error in size of member {mem.name}: "
                            f"{msize} != {ksize}(kernel)")
        vdata[kdoff + kmoff:kdoff + kmoff + msize] = mdata
    st = replace(st, kern_type_id=kt.id, kern_vdata=bytes(vdata), kern_func_off=func_off)
    return replace(m, value_size=vt.size, btf_vmlinux_value_type_id=vt.id, btf_value_type_id=0,
                   struct_ops=st)


def _find_struct(btf, name: str):
    found = [t for t in btf.find_all(name, Kind.STRUCT)]
    return found[0] if found else None


def resolve(maps: dict[str, MapSpec], btf, kern_btf) -> dict[str, StructOpsProg]:
    """bpf_object__init_kern_struct_ops_maps: every struct_ops map created by default is
    replaced by its kernel form (:func:`init_kern`); those of ``SEC("?.struct_ops")`` are
    not created.  Returns the programs' attach points."""
    attach: dict[str, StructOpsProg] = {}
    for name, m in list(maps.items()):
        if m.struct_ops is None or m.struct_ops.kern_type_id:     # none, or done already
            continue
        if not m.struct_ops.autocreate:
            del maps[name]
            continue
        if kern_btf is None:
            raise LoadError(f"struct_ops init_kern {name}: the kernel's BTF is not available")
        maps[name] = init_kern(m, btf, kern_btf, attach)
    return attach
