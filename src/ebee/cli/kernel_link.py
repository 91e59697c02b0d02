"""``ebee link show|detach|pin``: BPF links in the kernel, as bpftool shows them."""
from __future__ import annotations

import os

from ..kernel.info import Kind, fd_by_id, prog_info
from ..kernel.links import Link
from .common import UsageError, print_json
from .kernel_common import infos, kernel_errors, select_one, type_name

# bpftool's names of the link types whose uapi names it does not just lower-case
_LINK_NAMES = {"RAW_TRACEPOINT": "raw_tracepoint", "KPROBE_MULTI": "kprobe_multi",
               "UPROBE_MULTI": "uprobe_multi", "PERF_EVENT": "perf_event",
               "STRUCT_OPS": "struct_ops"}


def link_json(info) -> dict:
    t = info.type.name if hasattr(info.type, "name") else str(info.type)
    d = {"id": info.id, "type": _LINK_NAMES.get(t, t.lower()), "prog_id": info.prog_id}
    try:
        fd = fd_by_id(Kind.PROG, info.prog_id)
        try:
            d["prog_type"] = type_name(prog_info(fd, map_ids=False).type)
        finally:
            os.close(fd)
    except OSError:
        pass
    if info.attach_type is not None:
        d["attach_type"] = info.attach_type.name.lower() if hasattr(info.attach_type, "name") \
            else info.attach_type
    d.update(info.details)
    return d


def print_link(d: dict) -> None:
    """bpftool's plain link format: 'ID: type  prog N  ', then per-type fields."""
    out = f"{d['id']}: {d['type']}  prog {d['prog_id']}  "
    t = d["type"]
    if t == "raw_tracepoint":
        out += f"\n\ttp '{d.get('tp_name', '')}'  "
    elif t == "tracing":
        out += f"\n\tprog_type {d.get('prog_type', '')}  attach_type {d.get('attach_type')}  "
    elif t == "cgroup":
        out += f"\n\tcgroup_id {d.get('cgroup_id')}  attach_type {d.get('attach_type')}  "
    elif t == "netns":
        out += f"\n\tnetns_ino {d.get('netns_ino')}  attach_type {d.get('attach_type')}  "
    elif t == "xdp":
        out += f"\n\tifindex {d.get('ifindex')}  "
    elif t in ("tcx", "netkit"):
        out += f"\n\tifindex {d.get('ifindex')}  attach_type {d.get('attach_type')}  "
    print(out)


@kernel_errors
def cmd_link_show(args) -> int:
    rows = [link_json(i) for i in infos("link", args.sel)]
    if args.json:
        print_json(rows[0] if args.sel and len(rows) == 1 else rows)
        return 0
    for d in rows:
        print_link(d)
    return 0


@kernel_errors
def cmd_link_detach(args) -> int:
    i, rest = select_one(args.sel, "link")
    if rest:
        raise UsageError(f"error: unexpected {' '.join(rest)!r}")
    with Link.from_id(i) as link:
        link.detach()
    return 0


@kernel_errors
def cmd_link_pin(args) -> int:
    i, rest = select_one(args.sel, "link")
    if len(rest) != 1:
        raise UsageError("error: expected pin LINK FILE")
    link = Link.from_id(i)
    try:
        link.pin(rest[0])
    finally:
        link.close()
    return 0
