"""``ebee --kernel map show|dump|lookup|update|delete|pin|freeze``: maps in the kernel, as
bpftool shows them (values formatted by their BTF where the map has one)."""
from __future__ import annotations

import sys

from ..btf.values import format_map_dump, map_dump_json
from ..maps.errors import MapError
from .common import UsageError, print_json
from .fs_cmds import say_pinned
from .kernel_common import (KernelCmdError, infos, kernel_errors, open_map, select_one,
                            type_name)
from .map_cmds import _json_bytes, print_entry, split_spec


def map_json(info) -> dict:
    d = {"id": info.id, "type": type_name(info.type)}
    if info.name:
        d["name"] = info.name
    d.update(flags=info.map_flags, bytes_key=info.key_size, bytes_value=info.value_size,
             max_entries=info.max_entries, bytes_memlock=info.memlock, frozen=int(info.frozen))
    if info.btf_id:
        d["btf_id"] = info.btf_id
    return d


def print_map(info) -> None:
    name = f"  name {info.name}" if info.name else ""
    print(f"{info.id}: {type_name(info.type)}{name}  flags {info.map_flags:#x}")
    print(f"\tkey {info.key_size}B  value {info.value_size}B  max_entries {info.max_entries}  "
          f"memlock {info.memlock}B" + ("  frozen" if info.frozen else ""))
    if info.btf_id:
        print(f"\tbtf_id {info.btf_id}")


@kernel_errors
def cmd_map_show(args) -> int:
    found = infos("map", args.sel)
    if args.json:
        print_json(map_json(found[0]) if args.sel and len(found) == 1 else
                   [map_json(i) for i in found])
        return 0
    for i in found:
        print_map(i)
    return 0


def _entries(m) -> list[tuple[bytes, bytes | list[bytes]]]:
    """(key, value) raw pairs; per-CPU values split per CPU."""
    out = []
    for k in m.raw_keys():
        try:
            v = m.raw_lookup(k)
        except KeyError:
            continue
        if m.percpu:
            es = m.elem_size
            v = [v[c * es:c * es + m.value_size] for c in range(m.ncpus)]
        out.append((k, v))
    return out


@kernel_errors
def cmd_map_dump(args) -> int:
    i, rest = select_one(args.sel, "map")
    with open_map(i) as m:
        btf = m.kernel_btf() if m.btf_value_type_id else None
        elems = _entries(m)
    if args.json:
        print_json(map_dump_json(btf, m.btf_key_type_id, m.btf_value_type_id, elems))
        return 0
    if btf is not None:
        sys.stdout.write(format_map_dump(btf, m.btf_key_type_id, m.btf_value_type_id, elems))
        return 0
    for k, v in elems:
        print_entry(m, k, b"".join(v) if isinstance(v, list) else v)
    print(f"Found {len(elems)} element{'s' if len(elems) != 1 else ''}")
    return 0


@kernel_errors
def cmd_map_elem(args) -> int:
    i, rest = select_one(args.sel, "map")
    key, value, flags = split_spec(rest, args.op == "update")
    with open_map(i) as m:
        try:
            if args.op == "update":
                m.raw_update(key, value, flags)
                return 0
            if args.op == "delete":
                m.raw_delete(key)
                return 0
            v = m.raw_lookup(key)
        except MapError as e:
            raise KernelCmdError(f"{args.op} failed: {e.strerror}") from None
        if args.json:
            print_json({"key": _json_bytes(key), "value": _json_bytes(v)})
        else:
            print_entry(m, key, v)
    return 0


@kernel_errors
def cmd_map_pin(args) -> int:
    i, rest = select_one(args.sel, "map")
    if len(rest) != 1:
        raise UsageError("error: expected pin MAP FILE")
    with open_map(i) as m:
        m.pin(rest[0])
    say_pinned("map", f"id {i}", rest[0])
    return 0


@kernel_errors
def cmd_map_freeze(args) -> int:
    i, rest = select_one(args.sel, "map")
    with open_map(i) as m:
        m.kmap.freeze()
    return 0
