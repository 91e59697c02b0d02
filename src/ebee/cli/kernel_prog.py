"""``ebee --kernel prog show|load|loadall|run|pin|attach|detach``: programs in the kernel,
as bpftool shows and handles them (``prog dump`` is in :mod:`.kernel_prog_dump`)."""
from __future__ import annotations

import os
import sys
import time

from ..kernel.attach import attach
from ..kernel.fs import ensure_bpffs
from ..kernel.links import Link
from ..kernel.pin import link_pins
from ..testrun import TestRunError
from .common import UsageError, print_json, read_bytes, write_atomic
from .kernel_common import (KernelCmdError, infos, kernel_errors, open_prog, select_ids,
                            select_one, type_name)
from .fs_cmds import say_pinned
from .map_cmds import _hex
from .prog_cmds import load_object


def loaded_at(info) -> tuple[str, int]:
    """bpftool's local time of loading, and the seconds since the epoch."""
    t = info.loaded_at
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t)), t


def prog_json(info) -> dict:
    _, t = loaded_at(info)
    d = {"id": info.id, "type": type_name(info.type), "name": info.name, "tag": info.tag,
         "gpl_compatible": info.gpl_compatible}
    if info.run_time_ns:
        d.update(run_time_ns=info.run_time_ns, run_cnt=info.run_cnt)
    if info.recursion_misses:
        d["recursion_misses"] = info.recursion_misses
    d.update(loaded_at=t, uid=info.created_by_uid, bytes_xlated=info.xlated_prog_len,
             jited=bool(info.jited_prog_len), bytes_jited=info.jited_prog_len,
             bytes_memlock=info.memlock, map_ids=info.map_ids)
    if info.btf_id:
        d["btf_id"] = info.btf_id
    return d


def print_prog(info) -> None:
    head = f"{info.id}: {type_name(info.type)}"
    if info.name:
        head += f"  name {info.name}"
    head += f"  tag {info.tag}"
    if info.gpl_compatible:
        head += "  gpl"
    if info.run_time_ns:
        head += f" run_time_ns {info.run_time_ns} run_cnt {info.run_cnt}"
    if info.recursion_misses:
        head += f" recursion_misses {info.recursion_misses}"
    print(head)
    s, _ = loaded_at(info)
    print(f"\tloaded_at {s}  uid {info.created_by_uid}")
    line = f"\txlated {info.xlated_prog_len}B  "
    line += f"jited {info.jited_prog_len}B  " if info.jited_prog_len else "not jited  "
    line += f"memlock {info.memlock}B"
    if info.map_ids:
        line += "  map_ids " + ",".join(map(str, info.map_ids))
    print(line)
    if info.btf_id:
        print(f"\tbtf_id {info.btf_id}")


@kernel_errors
def cmd_prog_show(args) -> int:
    found = infos("prog", args.sel)
    if args.json:
        print_json([prog_json(i) for i in found] if not args.sel else prog_json(found[0])
                   if len(found) == 1 else [prog_json(i) for i in found])
        return 0
    for i in found:
        print_prog(i)
    return 0


@kernel_errors
def cmd_prog_load(args) -> int:
    obj = load_object(args.obj, prog_type=args.type)
    if not obj.programs:
        raise UsageError(f"error: {args.obj}: object has no programs")
    kobj = obj.load_kernel(log_level=1 if args.debug else 0, pin_root=args.pin_root)
    try:
        if args.debug:
            for p in kobj.programs.values():
                sys.stderr.write(p.log)
        if args.all:
            ensure_bpffs(args.path)
            os.makedirs(args.path, exist_ok=True)
            for name, p in kobj.programs.items():
                p.pin(os.path.join(args.path, name))
                say_pinned("program", name, os.path.join(args.path, name))
        else:
            name, p = next(iter(kobj.programs.items()))
            p.pin(args.path)
            say_pinned("program", name, args.path)
        for name, path in kobj.pinned.items():
            say_pinned("map", name, path, how="by name")
        if args.pinmaps:
            ensure_bpffs(args.pinmaps)
            os.makedirs(args.pinmaps, exist_ok=True)
            for name, m in kobj.maps.items():
                if name not in kobj.pinned:
                    # as libbpf (sanitize_pin_path): bpffs refuses names with dots, so
                    # .rodata of "globals" is pinned as globals_rodata
                    pin_name = (getattr(m, "name", "") or name).replace(".", "_")
                    m.pin(os.path.join(args.pinmaps, pin_name))
                    say_pinned("map", name, os.path.join(args.pinmaps, pin_name))
    finally:
        kobj.close()        # the pins keep what was pinned (and the maps its programs use)
        obj.close()
    return 0


def _kv(tokens: list[str], names: set[str]) -> dict[str, str]:
    out = {}
    it = iter(tokens)
    for t in it:
        if t not in names:
            raise UsageError(f"error: unexpected {t!r} "
                             f"(expected one of {', '.join(sorted(names))})")
        try:
            out[t] = next(it)
        except StopIteration:
            raise UsageError(f"error: expected a value after {t!r}") from None
    return out


def _write(path: str, data: bytes) -> None:
    if path == "-":
        for o in range(0, len(data), 16):
            print(_hex(data[o:o + 16]))
        return
    write_atomic(path, data)


@kernel_errors
def cmd_prog_run(args) -> int:
    i, rest = select_one(args.sel, "prog")
    kv = _kv(rest, {"data_in", "data_out", "data_size_out", "ctx_in", "ctx_out",
                    "ctx_size_out", "repeat"})
    data = read_bytes(kv["data_in"]) if "data_in" in kv else None
    ctx = read_bytes(kv["ctx_in"]) if "ctx_in" in kv else None

    def num(k):
        try:
            return int(kv[k], 0) if k in kv else None
        except ValueError:
            raise UsageError(f"error: {k}: invalid number {kv[k]!r}") from None
    repeat = num("repeat") or 1
    with open_prog(i) as p:
        try:
            r = p.run(data, ctx=ctx, repeat=repeat, data_size_out=num("data_size_out"),
                      ctx_size_out=num("ctx_size_out"), ctx_out="ctx_out" in kv)
        except TestRunError as e:
            raise KernelCmdError(f"failed to run program: {e.strerror}") from None
    if "data_out" in kv:
        _write(kv["data_out"], r.data_out)
    if "ctx_out" in kv and r.ctx_out is not None:
        _write(kv["ctx_out"], r.ctx_out)
    if args.json:
        print_json({"retval": r.retval, "duration": r.duration_ns})
    else:
        avg = " (average)" if repeat > 1 else ""
        print(f"Return value: {r.retval}, duration{avg}: {r.duration_ns}ns")
    return 0


@kernel_errors
def cmd_prog_pin(args) -> int:
    i, rest = select_one(args.sel, "prog")
    if len(rest) != 1:
        raise UsageError("error: expected pin PROG FILE")
    with open_prog(i) as p:
        p.pin(rest[0])
    say_pinned("program", f"id {i}", rest[0])
    return 0


@kernel_errors
def cmd_prog_attach(args) -> int:
    i, rest = select_one(args.sel, "prog")
    target = rest[0] if rest else None
    if len(rest) > 1:
        raise UsageError(f"error: unexpected {' '.join(rest[1:])!r}")
    kw = {}
    if args.mode:
        kw["mode"] = args.mode
    if args.direction:
        kw["direction"] = args.direction
    p = open_prog(i)
    section = args.section
    if section is None and target is None:
        raise UsageError("error: a program loaded in the kernel does not remember its section: "
                         "give a TARGET (interface, cgroup) or --section (kprobe/FUNC, "
                         "tracepoint/CAT/NAME, raw_tp/NAME, uprobe/PATH:FUNC)")
    a = attach(p, target, section=section, **kw)
    if args.pin:
        link = a if isinstance(a, Link) else getattr(a, "link", None)
        if link is None:
            a.detach()
            raise KernelCmdError("this attachment is not a BPF link and cannot be pinned "
                                 "(netlink/PROG_ATTACH); run without --pin")
        link.pin(args.pin)
        link.close()
        return 0
    try:
        # announce inside the try: a Ctrl-C right after the message must still detach cleanly
        print(f"attached {p.name or i} -> {a.target}; Ctrl-C to detach", file=sys.stderr,
              flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        a.detach()
    return 0


@kernel_errors
def cmd_prog_detach(args) -> int:
    ids_, rest = select_ids(args.sel, "prog")
    if rest:
        raise UsageError(f"error: unexpected {' '.join(rest)!r}")
    pins = link_pins()
    n = 0
    for info in infos("link", []):
        if info.prog_id in ids_:
            with Link.from_id(info.id) as link:
                link.detach()
            for path in pins.get(info.id, ()):
                os.unlink(path)
            n += 1
    if not n:
        raise KernelCmdError("the program has no links to detach")
    return 0
