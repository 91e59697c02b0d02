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

from .. import fs
from .. import uapi as U
from ..errors import LoadError
from ..kernel import load_object
from ..loader.mapdefs import MapKind
from ..loader.plan import MapPlan, plan_maps
from ..loader.resize import set_value_size
from ..loader.spec import ObjectSpec, open_object, read_source
from ..maps import Map, cpus
from ..program import Program
from ..testrun.events import AttachReport, EventAttachment, EventSource, attach_all
from ..verifier import VerifierError, VerifierResult
from .build import apply_core, build_program, core_target, resolve_externs, resolve_struct_ops
from .datasec import DataSection
from .maps import Created, create_maps, init_slots

DEFAULT_PIN_ROOT = "/sys/fs/bpf"


class GlobalData:
    """libbpf skeleton's ``.rodata``/``.data``/``.bss`` views over ``data_section``."""

    def data_section(self, sec: str) -> DataSection:
        raise NotImplementedError

    @property
    def rodata(self) -> DataSection:
        return self.data_section(".rodata")

    @property
    def data(self) -> DataSection:
        return self.data_section(".data")

    @property
    def bss(self) -> DataSection:
        return self.data_section(".bss")


class Object(GlobalData):
    """A loaded BPF object: programs, maps and BTF.  Closing it closes its maps."""

    def __init__(self, spec: ObjectSpec):
        self.spec = spec
        self.name = spec.name
        self.path = spec.path
        self.license = spec.license
        self.kern_version = spec.kern_version
        self.btf = spec.btf
        self.btf_ext = spec.btf_ext
        self.maps: dict[str, Map] = {}
        self.programs: dict[str, Program] = {}
        self.pinned: dict[str, str] = {}     # map name -> pin path
        self._used = False
        self._closed = False
        self.kconfig_arg = None          # kconfig values given to load()
        self.verifies = True                 # programs pass the verifier before they run
        self.warnings: list[str] = list(spec.warnings)
        self.reused: set[str] = set()    # maps taken over from an existing pin
        self.plan: list[MapPlan] = []    # what loading its maps means (ebee.loader.plan)
        self._events: EventSource | None = None

    # -- skeleton-like global data ------------------------------------------------------

    def data_section(self, sec: str) -> DataSection:
        if sec not in self.maps or self.spec.maps[sec].kind is MapKind.USER:
            raise KeyError(f"object '{self.name}' has no global data section {sec!r}")
        return DataSection(self.maps, self.btf, sec, self.spec.datasecs.get(sec, []))


    @property
    def kconfig(self) -> DataSection:
        return DataSection(self.maps, self.btf, ".kconfig", [(e.name, e.data_off, e.size, e.btf_id and
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

    # -- attaching (ebee's synthetic kernel) -------------------------------------------------

    @property
    def events(self) -> EventSource:
        """Where this object's programs attach in user space (made on first use): fire
        events at it (``obj.events.fire("tracepoint/syscalls/sys_enter_openat",
        filename=b"/etc/passwd")``), deliver packets to its devices
        (``obj.events.receive("eth0", frame)``); ``obj.events.net`` is its network."""
        if self._events is None:
            self._events = EventSource()
        return self._events

    def attach(self, program: str | None = None, target=None, *,
               events: EventSource | None = None,
               **kw) -> "AttachReport | EventAttachment":
        """The libbpf skeleton's ``__attach()`` in user space, as
        :meth:`ebee.kernel.KernelObject.attach` is in the kernel.

        Without a program: every program whose ``autoload`` is on and whose section says
        where it attaches (tracepoint, raw_tp, kprobe, uprobe with its binary, fentry/fexit,
        lsm, tp_btf) is attached to ``events`` (default :attr:`events`) -- the attach
        point ebee's synthetic events are fired at; the :class:`AttachReport` says which
        attached, which could not and why (a tracepoint or kernel function the host does
        not have, a uprobe binary that does not exist, a verifier rejection), and which
        were skipped because their section names no target (XDP, tc, cgroup, socket
        filters, perf_event).  With a program: that one, XDP and tc ones to the device
        ``target`` of the source's network (added if new), ``direction`` for tc.
        Detached when the object closes."""
        self.first_use()
        src = events if events is not None else self.events
        if program is None:
            if target is not None or kw:
                raise TypeError("attach() of every program takes no target or options")
            return attach_all(self.programs, src)
        return src.attach(self.programs[program], target, **kw)

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._events is not None:
            self._events.close()
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

    def verify(self, **kw) -> dict[str, VerifierResult]:
        """Verify every program, as libbpf's ``bpf_object__load`` does: the results by
        program name, or :class:`~ebee.verifier.VerifierError` for the first rejected one."""
        out = {}
        for name, prog in self.programs.items():
            r = out[name] = prog.verify(**kw)
            if not r.accepted:
                raise VerifierError(name, r if r.log else prog.verify(**{**kw, "log_level": 1}))
        return out

    def load_kernel(self, **kw):
        """Load this object into the running kernel (``ebee.kernel``)."""
        self.first_use()
        return load_object(self, **kw)


class _SpecValue:
    """A global-data map's initial value in the spec, behind the map calls DataSection
    makes: setting ``.rodata`` before load writes what load will copy in."""

    frozen = False

    def __init__(self, m):
        self._m = m

    def lookup(self, key) -> bytes:
        d = self._m.data
        return bytes(d) if d is not None else bytes(self._m.value_size)

    def update(self, key, value: bytes) -> None:
        self._m.data = bytes(value)


class OpenMap:
    """A map of an opened object: its definition, changeable until load (libbpf's
    ``bpf_map__set_max_entries``, ``__set_value_size``, ``__set_map_flags``, ...).

    Setting ``value_size`` of a global-data map resizes it as libbpf does: the data is
    kept (zero-extended), and when the section's last variable is an array the BTF
    follows -- the array gets the new length, so ``obj.bss.arr`` reads that many
    elements (:mod:`ebee.loader.resize`)."""

    def __init__(self, spec: ObjectSpec, name: str):
        object.__setattr__(self, "_spec", spec)
        object.__setattr__(self, "name", name)

    @property
    def _map(self):
        return self._spec.maps[self.name]

    @property
    def value_size(self) -> int:
        return self._map.value_size

    @value_size.setter
    def value_size(self, size: int) -> None:
        set_value_size(self._spec, self.name, size)

    @property
    def initial_value(self) -> bytes | None:
        """``bpf_map__initial_value``: a global-data map's contents as load will set them."""
        return self._map.data

    def __getattr__(self, attr: str):
        return getattr(self._map, attr)

    def __setattr__(self, attr: str, value) -> None:
        if attr == "value_size":
            object.__setattr__(self, attr, value)      # the property
        elif hasattr(self._map, attr):
            setattr(self._map, attr, value)
        else:
            raise AttributeError(f"map '{self.name}' has no attribute {attr!r}")

    def __repr__(self) -> str:
        return f"<OpenMap {self._map.describe()}>"


class OpenProgram:
    """A program of an opened object: ``autoload`` (libbpf's
    ``bpf_program__set_autoload``) -- off, the kernel backend does not load it."""

    def __init__(self, spec):
        self.spec = spec
        self.name = spec.name
        self.section = spec.sec_def.section
        self.autoload = spec.sec_def.autoload

    def __repr__(self) -> str:
        return f"<OpenProgram {self.name!r} SEC({self.section!r}) autoload={self.autoload}>"


class OpenObject(GlobalData):
    """An object file opened, nothing created (libbpf's ``bpf_object__open``): the
    skeleton's window between open and load.

    * ``obj.programs["p"].autoload = False`` -- not loaded into the kernel;
    * ``obj.maps["m"].max_entries = 4096`` -- the map specs (``value_size`` and
      ``flags`` too), as ``bpf_map__set_max_entries``; ``value_size`` of a global-data
      map resizes it and its last array, as ``bpf_map__set_value_size`` (:class:`OpenMap`);
    * ``obj.rodata.var = 5`` (also ``.data``, ``.bss``) -- initial values of globals,
      before the verifier reads ``.rodata`` as constants;

    then :meth:`load` (user space) -- and ``.load_kernel()`` on the result for the
    kernel, whose ``attach()`` auto-attaches every program."""

    def __init__(self, spec: ObjectSpec):
        self.spec = spec
        self.name = spec.name
        self.maps = {name: OpenMap(spec, name) for name in spec.maps}
        self.programs = {p.name: OpenProgram(p) for p in spec.entry_programs}

    def data_section(self, sec: str) -> DataSection:
        m = self.spec.maps.get(sec)
        if m is None or m.kind is MapKind.USER:
            raise KeyError(f"object '{self.name}' has no global data section {sec!r}")
        return DataSection({sec: _SpecValue(m)}, self.spec.btf, sec,
                           self.spec.datasecs.get(sec, []))


    def load(self, **kw) -> Object:
        """:func:`load` of this object, with the changes made since open."""
        obj = load(self.spec, **kw)
        for name, p in self.programs.items():
            if name in obj.programs:
                obj.programs[name].autoload = p.autoload
        return obj

    def __repr__(self) -> str:
        return f"<OpenObject {self.name!r} programs={list(self.programs)} maps={list(self.maps)}>"


def open_file(path_or_bytes) -> OpenObject:
    """Open an object without creating anything (libbpf's ``bpf_object__open``),
    exported as ``ebee.open_object``: see :class:`OpenObject` for what can change
    before :meth:`OpenObject.load`."""
    data, path = read_source(path_or_bytes)
    return OpenObject(open_object(data, path))


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
    if isinstance(path_or_bytes, OpenObject):
        return path_or_bytes.load(btf_custom_path=btf_custom_path, kconfig=kconfig,
                                  pin_root=pin_root, prog_type=prog_type, store=store,
                                  verify=verify)
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
    resolve_struct_ops(spec)
    obj.plan = plan_maps(spec, pin_root, cpus.num_cpus())
    created = Created(obj.maps, obj.pinned, obj.reused)
    ok = False
    try:
        resolve_externs(spec, kconfig)
        create_maps(spec, obj.plan, store, kconfig, created)
        poisoned = apply_core(spec, core_target(spec, btf_custom_path))
        for p in spec.entry_programs:
            prog = build_program(spec, p, poisoned, obj.maps, obj, obj.warnings)
            if prog_type is not None and prog.type is U.ProgType.UNSPEC:
                prog.type = U.ProgType(prog_type)
            obj.programs[p.name] = prog
        init_slots(spec, created, obj.programs)
        ok = True
        return obj
    finally:
        if not ok:
            created.close_unpinned()


