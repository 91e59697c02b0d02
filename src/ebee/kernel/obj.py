"""``Object.load_kernel()``: the very object ebee loaded, put into the running kernel.

What libbpf's ``bpf_object__load`` does, starting from an :class:`ebee.Object`
whose CO-RE relocations were applied against the host's BTF:

1. the object's BTF is finalized (:mod:`.btf_fixup`) and loaded (BTF_LOAD);
   if the kernel refuses it, maps and programs load without BTF (as libbpf
   falls back), with a warning;
2. maps are created (map-in-maps from their inner template), or reused from
   their bpffs pin (``LIBBPF_PIN_BY_NAME``); global data gets the object's
   current contents — what user space set through ``obj.rodata`` included —
   and ``.rodata``/``.kconfig`` are frozen;
3. each program's instructions are rewritten for the kernel: ``map[id:N]``
   (ebee's map ids) become the new maps' fds, kfunc calls get the BTF id of
   the kfunc in vmlinux or a module (module BTF fds go in ``fd_array``);
   fentry/fexit/fmod_ret/lsm/tp_btf/iter targets are looked up in kernel BTF;
   func_info and line_info come along;
4. prog arrays and map-in-maps get their initial slots (libbpf's ``values``);
5. struct_ops tables are registered on request (:meth:`KernelObject.attach_struct_ops`).

The result, :class:`KernelObject`, has ``programs`` and ``maps`` with the same
Python API as the user-space ones: ``prog.run(...)`` (BPF_PROG_TEST_RUN) and
dict-like maps.  Everything created is released by ``close()`` (or ``with``);
attachments made with ``prog.attach(...)`` are detached then too.
"""
from __future__ import annotations

import errno
import os
import warnings
from dataclasses import replace
from typing import Any

from .. import uapi as U
from ..btf import Kind
from ..isa import OP_CALL, OP_LDDW, encode, pack_slots, unpack_slots
from ..loader.externs import essential_name
from ..loader.plan import MapPlan, plan_maps, reuse_mismatch
from ..testrun.events import AttachReport
from ..uapi import BPF_F_LINK, AttachType, MapType, ProgType
from .btf import KernelBTF, find_kernel_type
from .btf_fixup import fixup
from .fs import ensure_bpffs
from .info import prog_info
from .links import Attachment, CallbackAttachment, Link
from .map_handle import KernelMapHandle
from .maps import KernelMap, possible_cpus
from .prog import KernelLoadError, KernelProgram


class KernelObject:
    """An object loaded into the kernel: ``programs`` and ``maps`` by name."""

    def __init__(self, source, programs: dict[str, KernelProgram],
                 maps: dict[str, KernelMapHandle], btf: KernelBTF | None,
                 pinned: dict[str, str], warnings_: list[str]):
        self.source = source
        self.name = source.name
        self.programs = programs
        self.maps = maps
        self.btf = btf
        self.pinned = pinned          # map name -> bpffs path (left in place on close)
        self.warnings = warnings_
        self.attachments: list = []

    def attach(self, program: str | None = None, target=None, **kw):
        """Attach one program (see :func:`ebee.kernel.attach.attach`); detached on close.

        Without a program: every loaded program whose section says where it attaches
        (tracepoint, raw_tp, kprobe, uprobe with its binary, fentry/lsm/tp_btf, ...), as
        libbpf's skeleton ``__attach()`` does -- but one that cannot attach does not undo
        the others: the :class:`AttachReport` says which attached, which could not (and
        why), and which were skipped because their section names no target (XDP, tc,
        cgroup, socket filters, perf_event: attach those with a target)."""
        if program is None:
            if target is not None or kw:
                raise TypeError("attach() of every program takes no target or options")
            return self._attach_all()
        a = self.programs[program].attach(target, **kw)
        self.attachments.append(a)
        return a

    def _attach_all(self) -> "AttachReport":
        report = AttachReport()
        for name, prog in self.programs.items():
            sd = prog.sec_def
            if sd is None or not _auto_target(prog):
                report.skipped.append(name)
                continue
            try:
                a = prog.attach()
            except (OSError, ValueError, LookupError) as e:
                report.failed[name] = getattr(e, "strerror", None) or str(e)
                continue
            self.attachments.append(a)
            report.attached[name] = a
        return report

    def attach_struct_ops(self, map_name: str) -> Attachment:
        """Register a struct_ops map's table with its kernel subsystem, as libbpf's
        ``bpf_map__attach_struct_ops`` does: the element is updated with the kernel value
        (scalar members as loaded, each function pointer the fd of its program), then a
        ``.struct_ops.link`` map gets a ``BPF_STRUCT_OPS`` link (detaching closes it) and a
        ``.struct_ops`` map is registered by the update itself (detaching deletes the
        element).  Unregistered on close."""
        m = self.source.spec.maps.get(map_name)
        if m is None or m.struct_ops is None or map_name not in self.maps:
            raise KeyError(f"no struct_ops map '{map_name}' in this object")
        st = m.struct_ops
        vdata = bytearray(st.kern_vdata)
        for off, prog in st.kern_func_off.items():
            if prog not in self.programs:
                raise OSError(errno.ENOENT, f"struct_ops {map_name}: program '{prog}' is not "
                                            f"loaded")
            vdata[off:off + 8] = self.programs[prog].fd.to_bytes(8, "little")
        h = self.maps[map_name]
        linked = bool(m.flags & BPF_F_LINK)
        try:
            h.kmap.update(bytes(4), bytes(vdata))
        except OSError as e:
            # EBUSY: the value was set by an earlier attach; a link may still be made of it
            if not linked or e.errno != errno.EBUSY:
                raise OSError(e.errno, f"struct_ops {map_name}: failed to register: "
                                       f"{e.strerror}") from None
        if linked:
            a: Attachment = Link.create(h.fd, 0, AttachType.STRUCT_OPS, target=map_name)
        else:
            a = CallbackAttachment(lambda: h.kmap.delete(bytes(4)), target=map_name, keep=(h,))
        self.attachments.append(a)
        return a

    def close(self) -> None:
        for a in reversed(self.attachments):    # struct_ops tables before their programs
            a.detach()
        self.attachments = []
        for p in self.programs.values():
            for a in list(getattr(p, "attachments", [])):
                a.detach()
            p.close()
        for m in self.maps.values():
            m.close()
        if self.btf is not None:
            self.btf.close()

    def __enter__(self) -> "KernelObject":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<KernelObject {self.name!r} programs={list(self.programs)} "
                f"maps={list(self.maps)}>")


#: program types whose section alone says where they attach (libbpf's auto-attach)
_AUTO_TYPES = {ProgType.KPROBE, ProgType.TRACEPOINT, ProgType.RAW_TRACEPOINT,
               ProgType.RAW_TRACEPOINT_WRITABLE, ProgType.TRACING, ProgType.LSM}


def _auto_target(prog) -> bool:
    if prog.type not in _AUTO_TYPES:
        return False
    if prog.type in (ProgType.TRACING, ProgType.LSM):
        return prog.expected_attach_type != AttachType.TRACE_ITER
    return bool(prog.sec_def.attach_target)     # "kprobe" alone: libbpf skips it too


# ---------------------------------------------------------------------------------------------

def load_object(obj, *, log_level: int = 0, pin_root: str | None = None,
                btf: bool = True, programs: "list[str] | None" = None,
                attach_prog: "KernelProgram | int | None" = None) -> KernelObject:
    """Load ``obj`` (an :class:`ebee.Object`) into the kernel; see the module doc.

    ``programs``: the names of the programs to load; by default those libbpf loads, every
    program whose ``autoload`` is on (off for ``SEC("?...")`` sections, or set by the
    user between :func:`ebee.open_object` and load).  ``attach_prog``: the loaded program
    (or its fd) the object's ``freplace/FUNC`` programs replace FUNC of (libbpf's
    ``bpf_program__set_attach_target``); FUNC is looked up in that program's BTF as the
    kernel holds it."""
    spec = obj.spec
    warn: list[str] = []
    made: list[Any] = []          # closed again if anything fails
    try:
        kbtf = _load_btf(spec, warn) if btf and spec.btf is not None else None
        if kbtf is not None:
            made.append(kbtf)
        maps, pinned, reused = _create_maps(obj, spec, kbtf, pin_root or "/sys/fs/bpf", warn,
                                            made)
        loaded: dict[str, KernelProgram] = {}
        for name, prog in obj.programs.items():
            if programs is not None and name not in programs or programs is None and \
                    not prog.autoload:
                continue
            kp = _load_program(obj, prog, maps, kbtf, log_level, attach_prog)
            made.append(kp)
            loaded[name] = kp
        _init_slots(spec, maps, loaded, reused)
    except BaseException:
        for m in reversed(made):
            try:
                m.close()
            except Exception:
                pass
        for path in _new_pins(made):     # as libbpf: a failed load unpins what it pinned
            try:
                os.unlink(path)
            except OSError:
                pass
        raise
    for w in warn:
        warnings.warn(w, stacklevel=3)
    return KernelObject(obj, loaded, maps, kbtf, pinned, warn)


def _load_btf(spec, warn: list[str]) -> KernelBTF | None:
    elf = spec.elf
    syms = {s.name: s for s in elf.symbols if s.name and s.shndx}

    def section_size(name):
        s = elf.get(name)
        return s.size if s is not None else None

    def symbol(name):
        s = syms.get(name)
        return (s.value, s.visibility) if s is not None else None
    kc = {e.name: e.data_off for e in spec.externs.values() if e.kind == "kcfg"}
    kcs = spec.maps[".kconfig"].value_size if ".kconfig" in spec.maps else 0
    try:
        blob = fixup(spec.btf.data, section_size=section_size, symbol=symbol,
                     kconfig_offsets=kc, kconfig_size=kcs)
        return KernelBTF(blob)
    except OSError as e:
        warn.append(f"{spec.name}: the kernel refused the object's BTF ({e.strerror}); "
                    f"loading without it")
        return None


# --- maps ----------------------------------------------------------------------------------------

def _create_maps(obj, spec, kbtf, pin_root, warn, made):
    """Carry out the object's load plan in the kernel: the same maps, names, pins and
    reuse rule as the user-space loader, with bpffs for pins and value 0 of global data
    taken from the user-space maps (``obj.rodata.x = ...`` before ``load_kernel``)."""
    maps: dict[str, KernelMapHandle] = {}
    pinned: dict[str, str] = {}
    reused: set[str] = set()
    for mp in plan_maps(spec, pin_root, possible_cpus()):
        name, m, path = mp.name, mp.spec, mp.pin
        user = obj.maps.get(name)
        if path is not None and os.path.exists(path):
            h = KernelMapHandle.from_pinned(path)
            problem = reuse_mismatch(h, m)
            if problem:
                h.close()
                raise OSError(errno.EINVAL, f"map '{name}': couldn't reuse pinned map at "
                                            f"'{path}': parameter mismatch ({problem})")
            made.append(h)
            h.source_btf = spec.btf
            maps[name], pinned[name] = h, path
            reused.add(name)
            continue
        h = _new_map(mp, kbtf, warn)
        made.append(h)
        h.source_btf = spec.btf
        maps[name] = h
        if m.is_internal and user is not None and m.value_size:
            h.update(0, user.raw_lookup((0).to_bytes(4, "little"))[:m.value_size])
        if mp.read_only:
            h.freeze()      # as libbpf: read-only data cannot change once programs use it
        if path is not None:
            ensure_bpffs(os.path.dirname(path))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            h.pin(path)
            h.new_pin = path
            pinned[name] = path
    return maps, pinned, reused


def _new_pins(made) -> list[str]:
    return [m.new_pin for m in made if getattr(m, "new_pin", None)]


def _new_map(mp: MapPlan, kbtf, warn) -> KernelMapHandle:
    inner = _new_map(mp.inner, kbtf, warn) if mp.inner is not None else None
    m = mp.spec
    if kbtf is not None and m.is_internal and not m.btf_value_type_id and not m.btf_cleared:
        m = _with_datasec(m, kbtf)
    use_btf = kbtf is not None and (m.btf_key_type_id or m.btf_value_type_id)
    kw = dict(inner_map_fd=inner.fd if inner is not None else 0, map_extra=m.map_extra,
              name=mp.kernel_name, numa_node=m.numa_node)
    if m.btf_vmlinux_value_type_id:
        # a struct_ops map: the kernel's value type, and the object's BTF (the kernel wants
        # it to find the table's counterpart) -- libbpf's create_map
        if kbtf is None:
            raise OSError(errno.EINVAL, f"map '{m.name}': struct_ops maps need the object's "
                                        f"BTF, which the kernel refused")
        try:
            km = KernelMap(m.type, m.key_size, m.value_size, m.max_entries, m.flags,
                           btf_fd=kbtf.fd, btf_vmlinux_value_type_id=m.btf_vmlinux_value_type_id,
                           **kw)
        except OSError as e:
            raise OSError(e.errno, f"map '{m.name}': failed to create: {e.strerror}") from None
        return KernelMapHandle(km, name=mp.kernel_name)
    try:
        try:
            km = KernelMap(m.type, m.key_size, m.value_size, m.max_entries, m.flags,
                           btf_fd=kbtf.fd if use_btf else 0,
                           btf_key_type_id=m.btf_key_type_id if use_btf else 0,
                           btf_value_type_id=m.btf_value_type_id if use_btf else 0, **kw)
        except OSError as e:
            if not use_btf:
                raise
            # libbpf retries without BTF (older kernels, or types the kernel won't take)
            warn.append(f"map '{m.name}': created without BTF ({e.strerror})")
            km = KernelMap(m.type, m.key_size, m.value_size, m.max_entries, m.flags, **kw)
    except OSError as e:
        raise OSError(e.errno, f"map '{m.name}': failed to create: {e.strerror}") from None
    finally:
        if inner is not None:
            inner.close()       # the outer map keeps what it needs of the template
    return KernelMapHandle(km, name=mp.kernel_name, btf=kbtf.parse() if use_btf else None,
                           btf_key_type_id=m.btf_key_type_id if use_btf else 0,
                           btf_value_type_id=m.btf_value_type_id if use_btf else 0,
                           map_extra=m.map_extra)


def _with_datasec(m, kbtf):
    """libbpf gives a global-data map its section's DATASEC as value type (no key
    type): the kernel then knows the bpf_spin_lock, timers and lists inside."""
    try:
        ds = kbtf.parse().find(m.section or m.name, Kind.DATASEC)
    except (KeyError, AttributeError):
        return m
    return replace(m, btf_key_type_id=0, btf_value_type_id=ds.id)


def _init_slots(spec, maps, programs, reused) -> None:
    for name, m in spec.maps.items():
        if not m.init_slots or name in reused:     # a reused pin keeps its contents
            continue
        h = maps[name]
        for slot, target in sorted(m.init_slots.items()):
            if m.type == MapType.PROG_ARRAY:
                if target not in programs:      # as libbpf: its fd is invalid (EBADF)
                    raise OSError(errno.EBADF, f"map '{name}': failed to initialize slot "
                                               f"[{slot}] to prog '{target}', which is not "
                                               f"loaded")
                h.update(slot, programs[target])
            else:
                h.update(slot, maps[target])


# --- programs ------------------------------------------------------------------------------------

def _load_program(obj, prog, maps: dict[str, KernelMapHandle], kbtf, log_level,
                  attach_prog=None) -> KernelProgram:
    spec = obj.spec
    if prog.type == ProgType.UNSPEC:
        raise KernelLoadError(errno.EINVAL, "", f"prog '{prog.name}'",
                              f"section '{prog.section}' does not say the program type; load "
                              f"the object with prog_type=... (--type on the command line)")
    by_id = {m.id: name for name, m in obj.maps.items()}
    kfuncs = {e.value: essential_name(e.name) for e in spec.externs.values()
              if e.kind == "kfunc" and e.resolved}
    slots = [list(s) for s in unpack_slots(encode(prog.insns))]
    fd_array: list[int] = [0]
    module_btfs: dict[str, KernelBTF] = {}
    keep: list = []
    try:
        i = 0
        while i < len(slots):
            s = slots[i]
            op, src = s[0], s[1] >> 4
            if op == OP_LDDW and src in (U.BPF_PSEUDO_MAP_FD, U.BPF_PSEUDO_MAP_VALUE):
                mid = s[3] & 0xFFFFFFFF
                name = by_id.get(mid)
                if name is None:
                    raise KernelLoadError(errno.EINVAL, "", f"prog '{prog.name}'",
                                          f"insn {i} refers to map id {mid}, which is not in "
                                          f"the object")
                s[3] = maps[name].fd
            elif op == OP_LDDW and src == U.BPF_PSEUDO_BTF_ID and s[3] in kfuncs:
                # a kfunc's address (`if (bpf_kfunc)`): its kernel BTF id, and the fd of
                # the module BTF holding it in the second half
                kt = find_kernel_type(kfuncs[s[3]], "func")
                s[3] = kt.type_id
                if kt.module is not None:
                    if kt.module not in module_btfs:
                        module_btfs[kt.module] = kt.open_btf()
                    slots[i + 1][3] = module_btfs[kt.module].fd
            elif op == OP_CALL and src == U.BPF_PSEUDO_KFUNC_CALL:
                kid = s[3]
                fname = kfuncs.get(kid)
                if fname is None:
                    raise KernelLoadError(errno.EINVAL, "", f"prog '{prog.name}'",
                                          f"insn {i} calls kfunc id {kid}, which no extern "
                                          f"names")
                kt = find_kernel_type(fname, "func")
                idx = 0
                if kt.module is not None:
                    if kt.module not in module_btfs:
                        module_btfs[kt.module] = kt.open_btf()
                        fd_array.append(module_btfs[kt.module].fd)
                    idx = fd_array.index(module_btfs[kt.module].fd)
                s[2], s[3] = idx, kt.type_id
            i += 2 if op == OP_LDDW else 1
        if prog.type == ProgType.EXT:
            attach_btf_id, attach_obj = _ext_target(prog, attach_prog), None
        else:
            attach_btf_id, attach_obj = _attach_target(prog)
        if attach_obj is not None:
            keep.append(attach_obj)
        kw = {}
        if kbtf is not None and prog.func_info:
            kw.update(btf=kbtf,
                      func_info=[(f.insn_off // 8, f.type_id) for f in prog.func_info],
                      line_info=[(li.insn_off // 8, li.file_name_off, li.line_off,
                                  (li.line << 10) | (li.col & 0x3FF)) for li in prog.line_info]
                      or None)
        kp = KernelProgram(
            pack_slots(slots), prog.type, license=prog.license or "", log_level=log_level,
            name=prog.name, expected_attach_type=int(prog.expected_attach_type or 0),
            prog_flags=prog.prog_flags, attach_btf_id=attach_btf_id,
            attach_btf_obj_fd=attach_obj.fd if attach_obj is not None else 0,
            attach_prog_fd=(attach_prog if isinstance(attach_prog, int) else attach_prog.fileno())
            if prog.type == ProgType.EXT and attach_prog is not None else 0,
            fd_array=fd_array if len(fd_array) > 1 else None,
            kern_version=prog.kern_version or 0, **kw)
    except KernelLoadError as e:
        if e.strerror.startswith(f"prog '{prog.name}'"):
            raise
        raise KernelLoadError(e.errno, e.log, f"prog '{prog.name}'") from None
    finally:
        for b in list(module_btfs.values()) + keep:
            b.close()
    kp.section, kp.attach_target, kp.sec_def = prog.section, prog.attach_target, prog.sec_def
    kp.object = obj
    return kp


_BTF_PREFIX = {AttachType.TRACE_RAW_TP: ("btf_trace_", "typedef"),
               AttachType.TRACE_ITER: ("bpf_iter_", "func"),
               AttachType.LSM_MAC: ("bpf_lsm_", "func"),
               AttachType.LSM_CGROUP: ("bpf_lsm_", "func"),
               AttachType.TRACE_FENTRY: ("", "func"), AttachType.TRACE_FEXIT: ("", "func"),
               AttachType.MODIFY_RETURN: ("", "func")}


def _ext_target(prog, attach_prog) -> int:
    """attach_btf_id of an EXT program: its target function's id in the BTF of the
    program it replaces a function of (libbpf_find_prog_btf_id)."""
    if attach_prog is None:
        # what BPF_PROG_LOAD answers an EXT program without a target
        return 0
    fd = attach_prog if isinstance(attach_prog, int) else attach_prog.fileno()
    info = prog_info(fd)
    if not info.btf_id:
        raise KernelLoadError(errno.EINVAL, "", f"prog '{prog.name}'",
                              "the target program has no BTF (freplace needs its func_info)")
    with KernelBTF.from_id(info.btf_id) as b:
        try:
            return b.parse().find(prog.attach_target or "", "FUNC").id
        except KeyError:
            raise KernelLoadError(errno.ESRCH, "", f"prog '{prog.name}'",
                                  f"the target program has no function "
                                  f"'{prog.attach_target}'") from None


def _attach_target(prog) -> tuple[int, Any]:
    """attach_btf_id (and the module BTF holding it) for BTF-attached programs."""
    if prog.type == ProgType.STRUCT_OPS and prog.attach_target:
        # the kernel's struct the program's struct_ops map fills (loader.struct_ops)
        try:
            kt = find_kernel_type(prog.attach_target, "struct")
        except OSError:
            raise KernelLoadError(errno.ESRCH, "", f"prog '{prog.name}'",
                                  f"struct_ops type 'struct {prog.attach_target}' not found in "
                                  f"kernel BTF") from None
        return kt.type_id, kt.open_btf() if kt.module is not None else None
    if prog.type not in (ProgType.TRACING, ProgType.LSM):
        return 0, None
    at = prog.expected_attach_type
    if at is None or AttachType(int(at)) not in _BTF_PREFIX or not prog.attach_target:
        return 0, None
    prefix, kind = _BTF_PREFIX[AttachType(int(at))]
    target = prog.attach_target
    module = None
    if ":" in target:           # fentry/module:func
        module, _, target = target.partition(":")
    try:
        kt = find_kernel_type(prefix + target, kind)
    except OSError:
        raise KernelLoadError(errno.ESRCH, "", f"prog '{prog.name}'",
                              f"attach target '{prefix + target}' not found in kernel BTF") \
            from None
    if module is not None and kt.module not in (None, module):
        raise KernelLoadError(errno.ESRCH, "", f"prog '{prog.name}'",
                              f"'{target}' is not in module {module}")
    return kt.type_id, kt.open_btf()
