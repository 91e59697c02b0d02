"""Loaded objects and programs: what ``ebee.load("prog.o")`` returns.

:func:`load` is libbpf's ``bpf_object__open`` + ``bpf_object__load`` without a
kernel: the object's maps are created (or reused from pins), CO-RE
relocations are applied against a target BTF, every entry program is linked
with the subprograms it calls and its map, global-data, extern and kfunc
references are rewritten to the live runtime (``lddw rX, map[id:N]``,
``map[id:N][0]+off``, kfunc ids).  The result is an :class:`Object` whose
:class:`Program` s are ready to verify and run.

Global data is reachable like a libbpf skeleton: ``obj.maps[".rodata"]`` is the
map and ``obj.rodata.my_var`` the variable (through the BTF DATASEC).  Like
libbpf, ``.rodata`` and ``.kconfig`` are read-only to programs and frozen
when the object is first used -- a program run, verified or loaded into the
kernel -- so user space sets them between :func:`load` and first use.
"""
from __future__ import annotations

import struct
from dataclasses import replace
from typing import Any, Iterator

from .. import fs
from .. import uapi as U
from ..btf import BTF, Kind
from ..btf.record import graph_roots, value_record
from ..btf.core import CoreError, CoreRelocator, patch_slots, register_poisoned
from ..btf.errors import BTFError
from ..errors import DecodeError, LoadError
from ..isa import decode
from ..kernel import load_object
from ..loader.externs import Extern, kconfig_values, resolve_ksyms
from ..loader.link import Linked, ProgSpec, RelKind, encode_slots, link
from ..loader.mapdefs import MapKind, MapSpec, Pinning
from ..loader.plan import MapPlan, plan_maps, reuse_mismatch
from ..loader.spec import ObjectSpec, open_object, read_source
from ..maps import Map, MapError, cpus
from ..program import Program

DEFAULT_PIN_ROOT = "/sys/fs/bpf"
#: libbpf poisons instructions whose CO-RE relocation failed with this helper id
CORE_POISON_IMM = 0xBAD2310
#: ... and calls of unresolved __weak kfuncs with this one (POISON_CALL_KFUNC_BASE)
KFUNC_POISON_IMM = 2002000000


class DataSection:
    """Skeleton-style access to a global-data map's variables by name (BTF DATASEC)."""

    def __init__(self, obj: "Object", sec: str, layout: list[tuple[str, int, int, int]]):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_sec", sec)
        object.__setattr__(self, "_vars", {n: (off, size, tid) for n, off, size, tid in layout})

    @property
    def map(self):
        return self._obj.maps[self._sec]

    def _raw(self) -> bytes:
        return bytes(self.map.lookup(0))

    def _type(self, tid: int):
        """The resolved type of a variable (``tid`` is its VAR, or already its type)."""
        btf = self._obj.btf
        t = btf[tid]
        return btf.resolve(t.type_id if t.kind is Kind.VAR else tid)

    def _conv(self, tid: int, raw: bytes) -> Any:
        btf = self._obj.btf
        t = self._type(tid)
        if t.kind is Kind.INT and t.size <= 8 and t.name != "char" or t.kind in (Kind.ENUM, Kind.ENUM64):
            v = int.from_bytes(raw, "little", signed=bool(getattr(t, "signed", False)))
            return bool(v) if t.kind is Kind.INT and t.is_bool else v
        if t.kind is Kind.INT and t.size == 1:
            return raw
        if t.kind is Kind.PTR:
            return int.from_bytes(raw, "little")
        if t.kind is Kind.ARRAY:
            el = btf.resolve(t.type_id)
            if el.kind is Kind.INT and el.size == 1:
                is_char = el.is_char or el.name in ("char", "signed char", "unsigned char")
                return raw.split(b"\0", 1)[0] if is_char else raw
        return raw

    def __getattr__(self, name: str) -> Any:
        try:
            off, size, tid = self._vars[name]
        except KeyError:
            raise AttributeError(f"{self._sec} has no variable {name!r} "
                                 f"(has: {', '.join(self._vars) or 'none'})") from None
        return self._conv(tid, self._raw()[off:off + size])

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            off, size, tid = self._vars[name]
        except KeyError:
            raise AttributeError(f"{self._sec} has no variable {name!r}") from None
        m = self.map
        if m.frozen:
            raise PermissionError(f"{self._sec} is frozen: set read-only data before the "
                                  f"object's first run (as libbpf: before load)")
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int):
            t = self._type(tid)
            signed = bool(getattr(t, "signed", False)) or value < 0
            try:
                raw = value.to_bytes(size, "little", signed=signed)
            except OverflowError:
                raise ValueError(f"{name}: {value} does not fit in {size} bytes") from None
        elif isinstance(value, str):
            raw = value.encode()
        else:
            raw = bytes(value)
        if len(raw) > size:
            raise ValueError(f"{name}: {len(raw)} bytes do not fit in {size}")
        raw = raw + bytes(size - len(raw))
        cur = bytearray(self._raw())
        cur[off:off + size] = raw
        m.update(0, bytes(cur))

    def __dir__(self) -> list[str]:
        return list(self._vars)

    def __iter__(self) -> Iterator[str]:
        return iter(self._vars)

    def __repr__(self) -> str:
        return f"<DataSection {self._sec} vars={list(self._vars)}>"


class Object:
    """A loaded BPF object: programs, maps and BTF.  Closing it closes its maps."""

    def __init__(self, spec: ObjectSpec):
        self.spec = spec
        self.name = spec.name
        self.path = spec.path
        self.license = spec.license
        self.kern_version = spec.kern_version
        self.btf = spec.btf
        self.btf_ext = spec.btf_ext
        self.maps: dict[str, Any] = {}
        self.programs: dict[str, Program] = {}
        self.pinned: dict[str, str] = {}     # map name -> pin path
        self._used = False
        self._closed = False
        self.kconfig_arg = None          # kconfig values given to load()
        self.verifies = True                 # programs pass the verifier before they run
        self.warnings: list[str] = list(spec.warnings)
        self.reused: set[str] = set()    # maps taken over from an existing pin
        self.plan: list[MapPlan] = []    # what loading its maps means (ebee.loader.plan)

    # -- skeleton-like global data ------------------------------------------------------

    def data_section(self, sec: str) -> DataSection:
        if sec not in self.maps or self.spec.maps[sec].kind is MapKind.USER:
            raise KeyError(f"object '{self.name}' has no global data section {sec!r}")
        return DataSection(self, sec, self.spec.datasecs.get(sec, []))

    @property
    def rodata(self) -> DataSection:
        return self.data_section(".rodata")

    @property
    def data(self) -> DataSection:
        return self.data_section(".data")

    @property
    def bss(self) -> DataSection:
        return self.data_section(".bss")

    @property
    def kconfig(self) -> DataSection:
        return DataSection(self, ".kconfig", [(e.name, e.data_off, e.size, e.btf_id and
                                               self.btf[e.btf_id].type_id)
                                              for e in self.spec.externs.values() if e.kind == "kcfg"])

    def first_use(self) -> None:
        """libbpf freezes read-only data at load; ebee at first use (see module doc)."""
        if self._used:
            return
        self._used = True
        for name, m in self.maps.items():
            spec = self.spec.maps.get(name)
            if spec is not None and spec.kind in (MapKind.RODATA, MapKind.KCONFIG) and not m.frozen:
                m.freeze()

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        fs.sync_maps(self.maps.values())
        for name, m in self.maps.items():
            if name not in self.pinned:
                m.close()

    def __enter__(self) -> "Object":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Object {self.name!r} programs={list(self.programs)} "
                f"maps={list(self.maps)}>")

    # -- pinning ---------------------------------------------------------------------------

    def pin_maps(self, directory: str, *, store=None) -> None:
        """Pin every user map under ``directory`` (``bpftool prog loadall --pinmaps``)."""
        st = store or fs.default_store()
        for name, m in self.maps.items():
            st.pin_map(f"{directory.rstrip('/')}/{name}", m)

    def load_kernel(self, **kw):
        """Load this object into the running kernel (``ebee.kernel``)."""
        self.first_use()
        return load_object(self, **kw)


def open_file(path_or_bytes) -> ObjectSpec:
    """Parse an object without creating anything (libbpf's ``bpf_object__open``).

    Change its map specs -- ``spec.maps["m"].max_entries = 4096`` -- then pass
    it to :func:`load`, as a libbpf user does between open and load.
    """
    data, path = read_source(path_or_bytes)
    return open_object(data, path)


def load(path_or_bytes, *, btf_custom_path: str | None = None, kconfig=None,
         pin_root: str | None = None, prog_type: U.ProgType | None = None,
         store=None, verify: bool = True) -> Object:
    """Load a clang-compiled BPF object the way libbpf does (open + load, no kernel).

    ``btf_custom_path``: BTF used as the CO-RE target instead of the host's
    ``/sys/kernel/btf/vmlinux``; ``kconfig``: values for ``__kconfig`` externs
    (``"CONFIG_X=y\\n..."`` or a dict) instead of the host's config;
    ``pin_root``: where ``LIBBPF_PIN_BY_NAME`` maps live (default
    ``/sys/fs/bpf``, inside the ebee pin store); ``prog_type``: the type of
    programs in sections libbpf does not know (tc's and ip's loaders take it
    from the command line); ``store``: an :class:`ebee.fs.PinStore`;
    ``verify``: programs pass ``ebee.verifier`` before they run (the default, as
    in Linux); ``False`` is the explicit opt-in to running unverified programs,
    which ebee still confines with checked memory access and an instruction budget.

    Verification happens when a program first runs, not here: the verifier reads
    frozen ``.rodata`` as constants, and user space sets ``.rodata`` after this
    call (libbpf's skeleton does so between open and load).
    """
    if isinstance(path_or_bytes, ObjectSpec):
        spec, path = path_or_bytes, path_or_bytes.path
    else:
        data, path = read_source(path_or_bytes)
        spec = open_object(data, path)
    try:
        obj = _load(spec, btf_custom_path=btf_custom_path, kconfig=kconfig,
                    pin_root=pin_root or DEFAULT_PIN_ROOT, prog_type=prog_type, store=store)
        obj.verifies = bool(verify)
        return obj
    except LoadError as e:
        raise e.with_file(path) from None
    except RecursionError:
        raise LoadError("object structure is nested too deeply", file=path) from None
    except (ValueError, KeyError, IndexError, struct.error, OverflowError) as e:
        # malformed BTF or relocations that slipped past the checks: still one line
        raise LoadError(f"malformed object: {type(e).__name__}: {e}", file=path) from None


def _load(spec: ObjectSpec, *, btf_custom_path, kconfig, pin_root, prog_type, store) -> Object:
    obj = Object(spec)
    obj.kconfig_arg = kconfig
    obj.plan = plan_maps(spec, pin_root, cpus.num_cpus())
    ok = False
    try:
        _resolve_externs(spec, kconfig)
        _create_maps(obj, spec, store)
        target = _core_target(spec, btf_custom_path)
        poisoned = _apply_core(spec, target)
        for p in spec.entry_programs:
            obj.programs[p.name] = _build_program(obj, spec, p, poisoned)
            if prog_type is not None and obj.programs[p.name].type is U.ProgType.UNSPEC:
                obj.programs[p.name].type = U.ProgType(prog_type)
        _init_slots(obj, spec)
        ok = True
        return obj
    finally:
        if not ok:
            for name, m in obj.maps.items():
                if name not in obj.pinned:
                    try:
                        m.close()
                    except Exception:
                        pass


# ---------------------------------------------------------------------------
# maps

def _new_map(spec: ObjectSpec, mp: MapPlan) -> Map:
    m = mp.spec
    inner = _new_map(spec, mp.inner) if mp.inner is not None else None
    btf = spec.btf if (m.btf_key_type_id or m.btf_value_type_id) else None
    try:
        live = Map(m.type, m.key_size, m.value_size, m.max_entries, m.flags,
                   map_extra=m.map_extra, inner_map=inner, name=mp.kernel_name,
                   numa_node=m.numa_node, btf=btf, btf_key_type_id=m.btf_key_type_id,
                   btf_value_type_id=m.btf_value_type_id)
        if m.is_internal and spec.btf is not None:
            _datasec_record(live, spec, m)
        return live
    except MapError as e:
        raise LoadError(f"map '{m.name}': failed to create: {e.strerror or e} "
                        f"({-e.errno if e.errno else 0})") from None
    finally:
        if inner is not None:
            inner.close()   # the kernel drops the template after creating the outer map


def _datasec_record(live, spec: ObjectSpec, m: MapSpec) -> None:
    """Special fields (a global ``struct bpf_spin_lock``, lists, timers) inside a
    global-data section, at the variables' offsets: what the kernel finds through
    the DATASEC value type libbpf gives these maps."""
    record: dict[str, int] = {}
    variables = spec.datasecs.get(m.section or m.name, ())
    for _name, off, _size, var_id in variables:
        for kind, at in value_record(spec.btf, spec.btf[var_id].type_id).items():
            record.setdefault(kind, off + at)
    roots = graph_roots(spec.btf, [(var_id, off) for _n, off, _s, var_id in variables]) \
        if record else {}
    if record and roots is not None:      # an unresolvable root voids the record, as in Linux
        live.record = record
        live.spin_lock_off = record.get("bpf_spin_lock", -1)
        live.graph_roots = roots


def _create_maps(obj: Object, spec: ObjectSpec, store) -> None:
    """Carry out the load plan's maps in user space: reuse compatible pins from the pin
    store, create the rest with their initial contents, pin what the plan pins."""
    for mp in obj.plan:
        name, m, path = mp.name, mp.spec, mp.pin
        if path is not None:
            st = store or fs.default_store()
            existing = st.get_map_if_exists(path)
            if existing is not None:
                problem = reuse_mismatch(existing, m)
                if problem and m.pinning is Pinning.REPLACE:
                    st.unpin(path)
                    existing = None
            if existing is not None:
                if problem:
                    if m.pinning is Pinning.BY_NAME:
                        raise LoadError(f"couldn't reuse pinned map at '{path}': parameter "
                                        f"mismatch ({problem})")
                    raise LoadError(f"map '{name}': Map specs from pinned file differ! "
                                    f"({path}: {problem})")
                obj.maps[name] = existing
                obj.pinned[name] = path
                obj.reused.add(name)
                continue
        live = _new_map(spec, mp)
        obj.maps[name] = live
        filled = True
        if mp.initial is not None:
            live.update(0, mp.initial)
        elif m.kind is MapKind.KCONFIG:
            live.update(0, kconfig_values(spec.btf, spec.externs, obj.kconfig_arg, m.value_size))
        else:
            filled = False
        if path is not None:
            (store or fs.default_store()).pin_map(path, live, empty=not filled and
                                                  not mp.prefilled)
            obj.pinned[name] = path


def _init_slots(obj: Object, spec: ObjectSpec) -> None:
    """Initial contents: map-in-map slots and prog-array slots (libbpf's `values`)."""
    for name, m in spec.maps.items():
        if not m.init_slots or name in obj.reused:
            continue
        live = obj.maps[name]
        for slot, target in sorted(m.init_slots.items()):
            if m.type is U.MapType.PROG_ARRAY:
                prog = obj.programs.get(target)
                if prog is None:
                    raise LoadError(f"map '{name}': slot [{slot}]: no program '{target}'")
                live.update(slot, prog)
            else:
                inner = obj.maps.get(target)
                if inner is None:
                    raise LoadError(f"map '{name}': slot [{slot}]: no map '{target}'")
                live.update(slot, inner)


# ---------------------------------------------------------------------------
# externs and CO-RE

def _resolve_externs(spec: ObjectSpec, kconfig) -> None:
    resolve_ksyms(spec.externs)


def _core_target(spec: ObjectSpec, btf_custom_path: str | None):
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


def _apply_core(spec: ObjectSpec, target) -> dict[tuple[int, int], str]:
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


# ---------------------------------------------------------------------------
# programs

def _build_program(obj: Object, spec: ObjectSpec, p: ProgSpec,
                   poisoned: dict[tuple[int, int], str]) -> Program:
    linked = link(p, spec.programs, spec.text_idx)
    _patch(obj, spec, p, linked)
    raw = encode_slots(linked.slots)
    try:
        insns = decode(raw)
    except DecodeError as e:
        raise LoadError(f"program '{p.name}' (section '{p.section.name}'): {e}") from None
    fi, li = _ext_info(spec, linked)
    failures = {base + (insn - f.sec_insn_off): msg
                for f, base in linked.layout for (sidx, insn), msg in poisoned.items()
                if sidx == f.section.index and f.contains(sidx, insn)}
    if failures:
        register_poisoned(insns, failures)
    sd = p.sec_def
    return Program(insns, sd.prog_type, name=p.name, section=p.section.name, sec_def=sd,
                   expected_attach_type=sd.expected_attach_type, attach_target=sd.attach_target,
                   prog_flags=sd.prog_flags, license=obj.license, kern_version=obj.kern_version,
                   btf=obj.btf, func_info=fi, line_info=li,
                   functions=[(f.name, off) for f, off in linked.layout], owner=obj)


def _patch(obj: Object, spec: ObjectSpec, p: ProgSpec, linked: Linked) -> None:
    slots = linked.slots
    for i, r in sorted(linked.relos.items()):
        s = slots[i]
        dst = s[1] & 0x0F
        if r.kind is RelKind.LD64:
            s[1] = (U.BPF_PSEUDO_MAP_FD << 4) | dst
            s[3] = obj.maps[r.map].id
            slots[i + 1][3] = 0
        elif r.kind is RelKind.DATA:
            off = (s[3] + r.sym_off) & 0xFFFFFFFF
            s[1] = (U.BPF_PSEUDO_MAP_VALUE << 4) | dst
            s[3] = obj.maps[r.map].id
            slots[i + 1][3] = off
        elif r.kind is RelKind.EXTERN_LD64:
            e: Extern = spec.externs[r.extern]
            if e.kind == "kcfg":
                s[1] = (U.BPF_PSEUDO_MAP_VALUE << 4) | dst
                s[3] = obj.maps[".kconfig"].id
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
                obj.warnings.append(f"prog '{p.name}': insn #{i}: call to '{r.extern}', which "
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
