"""An object's maps in user space: its load plan carried out against the pin store."""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import fs
from .. import uapi as U
from ..btf.record import graph_roots, value_record
from ..errors import LoadError
from ..kernel.probe import kconfig_probe
from ..loader.externs import kconfig_values
from ..loader.mapdefs import MapKind, MapSpec, Pinning
from ..loader.plan import MapPlan, reuse_mismatch
from ..loader.spec import ObjectSpec
from ..maps import Map, MapError
from ..program import Program


def _new_map(spec: ObjectSpec, mp: MapPlan) -> Map:
    m = mp.spec
    inner = _new_map(spec, mp.inner) if mp.inner is not None else None
    btf = spec.btf if (m.btf_key_type_id or m.btf_value_type_id) else None
    try:
        live = Map(m.type, m.key_size, m.value_size, m.max_entries, m.flags,
                   map_extra=m.map_extra, inner_map=inner, name=mp.kernel_name,
                   numa_node=m.numa_node, btf=btf, btf_key_type_id=m.btf_key_type_id,
                   btf_value_type_id=m.btf_value_type_id,
                   btf_vmlinux_value_type_id=m.btf_vmlinux_value_type_id)
        if m.is_internal and spec.btf is not None:
            _datasec_record(live, spec, m)
        live.source_btf = spec.btf
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


@dataclass
class Created:
    """The object's live maps after its load plan ran."""
    maps: dict[str, Map] = field(default_factory=dict)
    pinned: dict[str, str] = field(default_factory=dict)     # map name -> pin path
    reused: set[str] = field(default_factory=set)            # taken over from an existing pin

    def close_unpinned(self) -> None:
        for name, m in self.maps.items():
            if name not in self.pinned:
                try:
                    m.close()
                except Exception:
                    pass


def create_maps(spec: ObjectSpec, plan: list[MapPlan], store: fs.PinStore | None,
                kconfig, out: Created) -> None:
    """Carry out the load plan's maps in user space: reuse compatible pins from the pin
    store, create the rest with their initial contents, pin what the plan pins.  Maps
    are added to ``out`` as they are made, so a failure can close them."""
    obj = out
    for mp in plan:
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
            live.update(0, kconfig_values(spec.btf, spec.externs, kconfig, m.value_size,
                                          kconfig_probe))
        else:
            filled = False
        if path is not None:
            (store or fs.default_store()).pin_map(path, live, empty=not filled and
                                                  not mp.prefilled)
            obj.pinned[name] = path


def init_slots(spec: ObjectSpec, created: Created, programs: dict[str, Program]) -> None:
    """Initial contents: map-in-map slots and prog-array slots (libbpf's `values`)."""
    for name, m in spec.maps.items():
        if not m.init_slots or name in created.reused:
            continue
        live = created.maps[name]
        for slot, target in sorted(m.init_slots.items()):
            if m.type is U.MapType.PROG_ARRAY:
                prog = programs.get(target)
                if prog is None:
                    raise LoadError(f"map '{name}': slot [{slot}]: no program '{target}'")
                live.update(slot, prog)
            else:
                inner = created.maps.get(target)
                if inner is None:
                    raise LoadError(f"map '{name}': slot [{slot}]: no map '{target}'")
                live.update(slot, inner)
