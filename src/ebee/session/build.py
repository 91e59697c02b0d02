"""An object's programs, built from its spec: externs resolved, CO-RE relocations
applied against a target BTF, each entry program linked and its references rewritten."""
from __future__ import annotations

from dataclasses import replace

from .. import uapi as U
from ..btf import BTF
from ..btf.core import CoreError, CoreRelocator, patch_slots, register_poisoned
from ..btf.errors import BTFError
from ..errors import DecodeError, LoadError
from ..isa import decode
from ..loader.externs import Extern, resolve_ksyms
from ..loader.link import Linked, ProgSpec, RelKind, encode_slots, link
from ..loader import struct_ops
from ..loader.spec import ObjectSpec
from ..maps import Map
from ..program import Owner, Program

#: libbpf poisons instructions whose CO-RE relocation failed with this helper id
CORE_POISON_IMM = 0xBAD2310
#: ... and calls of unresolved __weak kfuncs with this one (POISON_CALL_KFUNC_BASE)
KFUNC_POISON_IMM = 2002000000


def resolve_externs(spec: ObjectSpec, kconfig) -> None:
    resolve_ksyms(spec.externs, spec.btf)


def resolve_struct_ops(spec: ObjectSpec) -> None:
    """The object's struct_ops maps in their kernel form, against the kernel's BTF (done
    once: the kernel backend loads the same spec)."""
    if not any(m.struct_ops is not None and not m.struct_ops.kern_type_id
               for m in spec.maps.values()):
        return
    try:
        vmlinux = BTF.load_vmlinux()
    except (BTFError, OSError):
        vmlinux = None
    spec.struct_ops_progs.update(struct_ops.resolve(spec.maps, spec.btf, vmlinux))


def core_target(spec: ObjectSpec, btf_custom_path: str | None):
    if spec.btf_ext is None or not any(spec.btf_ext.core_relos.values()):
        return None
    try:
        if btf_custom_path:
            return BTF.from_file(btf_custom_path)
        return BTF.load_vmlinux()
    except (BTFError, OSError) as e:
        if btf_custom_path:
            raise LoadError(f"CO-RE target BTF {btf_custom_path}: "
                            f"{getattr(e, 'strerror', None) or e}") from None
        return None     # relocations that need a target will say so


def apply_core(spec: ObjectSpec, target) -> dict[tuple[int, int], str]:
    """Relocate every function's instructions in place (libbpf's bpf_object__relocate_core).

    Returns the poisoned instructions: (section index, slot in section) -> why.
    """
    if spec.btf_ext is None or not any(spec.btf_ext.core_relos.values()):
        return {}
    relocator = CoreRelocator(spec.btf, target)
    poisoned: dict[tuple[int, int], str] = {}
    by_sec: dict[str, list[ProgSpec]] = {}
    for p in spec.programs:
        by_sec.setdefault(p.section.name, []).append(p)
    for sec, relos in spec.btf_ext.core_relos.items():
        funcs = by_sec.get(sec)
        if not funcs:
            raise LoadError(f".BTF.ext: CO-RE relocations for section '{sec}', which holds no "
                            f"program")
        for idx, relo in enumerate(relos):
            f = next((q for q in funcs if q.sec_insn_off <= relo.insn < q.sec_insn_off +
                      len(q.slots)), None)
            if f is None or relo.insn_off % 8:
                raise LoadError(f"sec '{sec}': CO-RE relo #{idx}: insn_off {relo.insn_off} is "
                                f"not an instruction of any program")
            try:
                res = relocator.resolve(relo, idx)
                msg = patch_slots(f.slots, relo.insn - f.sec_insn_off, res)
            except CoreError as e:
                raise LoadError(f"prog '{f.name}': {e}") from None
            if msg is not None:
                poisoned[(f.section.index, relo.insn)] = f"CO-RE relocation #{idx} failed: {msg}"
    return poisoned


def build_program(spec: ObjectSpec, p: ProgSpec, poisoned: dict[tuple[int, int], str],
                  maps: dict[str, Map], owner: Owner, warnings: list[str]) -> Program:
    """One entry program: linked with its subprograms (libbpf's bpf_object__reloc_code),
    its map, global-data, extern and kfunc references rewritten to the live runtime."""
    linked = link(p, spec.programs, spec.text_idx)
    _patch(maps, warnings, spec, p, linked)
    raw = encode_slots(linked.slots)
    try:
        # an invalid register number is the verifier's error ("R15 is invalid"), as the
        # kernel reports it, not the loader's: libbpf loads such an object
        insns = decode(raw, strict=False)
    except DecodeError as e:
        raise LoadError(f"program '{p.name}' (section '{p.section.name}'): {e}") from None
    fi, li = _ext_info(spec, linked)
    failures = {base + (insn - f.sec_insn_off): msg
                for f, base in linked.layout for (sidx, insn), msg in poisoned.items()
                if sidx == f.section.index and f.contains(sidx, insn)}
    if failures:
        register_poisoned(insns, failures)
    sd = p.sec_def
    at, target = sd.expected_attach_type, sd.attach_target
    st = spec.struct_ops_progs.get(p.name)
    if st is not None:      # libbpf: attach_btf_id = the kernel struct, expected = member index
        at, target = st.member_idx, st.type_name
    return Program(insns, sd.prog_type, name=p.name, section=sd.section, sec_def=sd,
                   expected_attach_type=at, attach_target=target,
                   prog_flags=sd.prog_flags, license=spec.license, kern_version=spec.kern_version,
                   btf=spec.btf, func_info=fi, line_info=li,
                   functions=[(f.name, off) for f, off in linked.layout], owner=owner)


def _patch(maps: dict[str, Map], warnings: list[str], spec: ObjectSpec, p: ProgSpec,
           linked: Linked) -> None:
    slots = linked.slots
    for i, r in sorted(linked.relos.items()):
        s = slots[i]
        dst = s[1] & 0x0F
        if r.kind is RelKind.LD64:
            s[1] = (U.BPF_PSEUDO_MAP_FD << 4) | dst
            s[3] = maps[r.map].id
            slots[i + 1][3] = 0
        elif r.kind is RelKind.DATA:
            off = (s[3] + r.sym_off) & 0xFFFFFFFF
            s[1] = (U.BPF_PSEUDO_MAP_VALUE << 4) | dst
            s[3] = maps[r.map].id
            slots[i + 1][3] = off
        elif r.kind is RelKind.EXTERN_LD64:
            e: Extern = spec.externs[r.extern]
            if e.kind == "kcfg":
                s[1] = (U.BPF_PSEUDO_MAP_VALUE << 4) | dst
                s[3] = maps[".kconfig"].id
                slots[i + 1][3] = e.data_off
            elif e.kind in ("ksym_var", "kfunc") and e.resolved:
                # a typed kernel variable, or a kfunc's address (`if (bpf_kfunc)` tests)
                s[1] = (U.BPF_PSEUDO_BTF_ID << 4) | dst
                s[3] = e.value
                slots[i + 1][3] = 0
            elif e.kind == "kfunc":    # unresolved __weak kfunc: its address is NULL
                s[1] = dst
                s[3] = slots[i + 1][3] = 0
            else:   # typeless ksym: its address (0 for an unresolved weak one)
                s[1] = dst
                s[3] = e.value & 0xFFFFFFFF
                slots[i + 1][3] = e.value >> 32
        elif r.kind is RelKind.EXTERN_CALL:
            e = spec.externs.get(r.extern)
            if e is not None and e.kind != "kfunc":
                raise LoadError(f"prog '{p.name}': call of extern '{e.name}', which is not a "
                                f"function")
            if e is None:
                # libbpf refuses the object; ebee poisons the call so that the verifier
                # reports it if it is reachable, and loads the rest
                warnings.append(f"prog '{p.name}': insn #{i}: call to '{r.extern}', which "
                                    f"is neither defined nor a kfunc; poisoned")
                s[1], s[2], s[3] = 0, 0, KFUNC_POISON_IMM
            elif e.resolved:
                s[1] = (U.BPF_PSEUDO_KFUNC_CALL << 4)
                s[3] = e.value
                s[2] = 0
            else:   # libbpf poisons calls of unresolved __weak kfuncs
                s[1] = 0
                s[2] = 0
                s[3] = KFUNC_POISON_IMM
    return None


def _ext_info(spec: ObjectSpec, linked: Linked) -> tuple[list, list]:
    """func_info/line_info of the linked program, rebased like libbpf's adjust_prog_btf_ext_info."""
    ext = spec.btf_ext
    if ext is None:
        return [], []
    fi_out, li_out = [], []
    for f, base in linked.layout:
        lo, hi = f.sec_insn_off * 8, (f.sec_insn_off + len(f.slots)) * 8
        shift = base * 8 - lo
        for r in ext.func_info.get(f.section.name, ()):
            if lo <= r.insn_off < hi:
                fi_out.append(replace(r, insn_off=r.insn_off + shift))
        for r in ext.line_info.get(f.section.name, ()):
            if lo <= r.insn_off < hi:
                li_out.append(replace(r, insn_off=r.insn_off + shift))
    fi_out.sort(key=lambda r: r.insn_off)
    li_out.sort(key=lambda r: r.insn_off)
    return fi_out, li_out
