"""``ebee fs ls [PATH]``: what is pinned, in ebee's pin store or (``--kernel``) in bpffs.

The same path (``/sys/fs/bpf/fw``) names a row of ebee's pin store without
``--kernel`` and a file of the real bpffs with it; the commands that pin say which
one they wrote (one line on stderr, so stdout stays what bpftool prints), and this
command lists either namespace.  docs/pins.md explains the two.
"""
from __future__ import annotations

import errno
import os
import sys

from ..fs import PinError, PinStore, default_store
from ..kernel.fs import mounts
from ..kernel.info import fdinfo, link_info, map_info, prog_info
from ..kernel.pin import obj_get
from ..uapi import MapType, ProgType
from .common import UsageError, print_json

BPFFS = "/sys/fs/bpf"


def register(sub) -> None:
    p = sub.add_parser("fs", help="list pins: ebee's pin store, or bpffs with --kernel")
    ps = p.add_subparsers(dest="fs_cmd", metavar="CMD")
    ps.required = True
    q = ps.add_parser("ls", help="list the pins under PATH (default: all of them)")
    q.add_argument("path", nargs="?", help="a pin or a directory of pins")
    q.add_argument("--store", metavar="DB", help="pin store (default: $EBEE_PIN_STORE or "
                                                  "~/.local/state/ebee/bpffs.sqlite3)")
    q.add_argument("-j", "--json", action="store_true", help="JSON output")
    q.set_defaults(func=cmd_ls)


def store_of(args) -> PinStore:
    return PinStore(args.store) if getattr(args, "store", None) else default_store()


def where(store: PinStore) -> str:
    return f"ebee's pin store {store.location}"


def say_pinned(kind: str, name: str, path: str, *, store: PinStore | None = None,
               how: str = "") -> None:
    """One line on stderr: what was pinned, at which path, in which namespace."""
    extra = f"{how}, " if how else ""
    if store is None:
        ns = f"{extra}bpffs"
    else:
        ns = f"{extra}{where(store)}, not bpffs: see `ebee fs ls`"
    print(f"pinned {kind} {name} at {path} ({ns})", file=sys.stderr)


# ------------------------------------------------------------------------------- ebee fs ls

def _store_row(path: str, kind: str, meta: dict) -> dict:
    if kind == "map":
        try:
            t = MapType(meta["type"]).name.lower()
        except ValueError:
            t = str(meta["type"])
        return {"path": path, "kind": "map", "type": t, "name": meta.get("name", ""),
                "key_size": meta["key_size"], "value_size": meta["value_size"],
                "max_entries": meta["max_entries"]}
    try:
        t = ProgType(meta["type"]).name.lower()
    except ValueError:
        t = str(meta["type"])
    return {"path": path, "kind": "prog", "type": t, "name": meta.get("name", ""),
            "tag": meta.get("tag", ""), "object": meta.get("object_path")}


def _describe(row: dict) -> str:
    if row["kind"] == "map":
        return (f"map   {row['type']}  name {row['name']}  key {row['key_size']}B  "
                f"value {row['value_size']}B  max_entries {row['max_entries']}" +
                (f"  id {row['id']}" if "id" in row else ""))
    if row["kind"] == "prog":
        return f"prog  {row['type']}  name {row['name']}  tag {row['tag']}" + \
            (f"  id {row['id']}" if "id" in row else "")
    if row["kind"] == "link":
        return f"link  {row['type']}  id {row['id']}  prog_id {row['prog_id']}"
    return "other" + (f"  ({row['error']})" if row.get("error") else "")


def _name(v) -> str:
    return v.name.lower() if hasattr(v, "name") else str(v)


def _bpffs_row(path: str) -> dict:
    """What a bpffs file pins: its fd's fdinfo says map, program or link, and
    OBJ_GET_INFO_BY_FD the rest."""
    try:
        fd = obj_get(path)
    except OSError as e:
        # bpffs holds plain files too (bpf_preload's maps.debug, progs.debug)
        return {"path": path, "kind": "other",
                "error": None if e.errno == errno.ENOENT else os.strerror(e.errno)}
    try:
        kinds = fdinfo(fd)
        if "map_type" in kinds:
            m = map_info(fd)
            return {"path": path, "kind": "map", "type": _name(m.type), "name": m.name,
                    "key_size": m.key_size, "value_size": m.value_size,
                    "max_entries": m.max_entries, "id": m.id}
        if "prog_type" in kinds:
            pi = prog_info(fd, map_ids=False)
            return {"path": path, "kind": "prog", "type": _name(pi.type), "name": pi.name,
                    "tag": pi.tag, "id": pi.id}
        if "link_type" in kinds:
            li = link_info(fd)
            return {"path": path, "kind": "link", "type": _name(li.type), "id": li.id,
                    "prog_id": li.prog_id}
        return {"path": path, "kind": "other"}
    except OSError as e:
        return {"path": path, "kind": "other", "error": e.strerror}
    finally:
        os.close(fd)


def _bpffs_rows(top: str) -> list[dict]:
    if not os.path.exists(top):
        raise UsageError(f"error: {top}: no such file or directory")
    if not any(typ == "bpf" and (top == mnt or top.startswith(mnt.rstrip("/") + "/"))
               for mnt, typ in mounts()):
        raise UsageError(f"error: {top}: not on a mounted bpffs")
    if os.path.isfile(top):
        return [_bpffs_row(top)]
    rows = []
    for root, dirs, files in os.walk(top):
        dirs.sort()
        rows += [_bpffs_row(os.path.join(root, f)) for f in sorted(files)]
    return rows


def cmd_ls(args) -> int:
    if getattr(args, "kernel", False):
        if args.store:
            raise UsageError("error: --store names ebee's pin store; with --kernel the pins "
                             "are bpffs files")
        top = os.path.normpath(args.path or BPFFS)
        rows = _bpffs_rows(top)
        header = f"# bpffs {top}"
    else:
        st = store_of(args)
        try:
            listed = st.list(args.path or "/")
        except PinError as e:
            raise UsageError(f"error: {e.strerror or e}") from None
        if args.path and not listed:
            raise UsageError(f"error: {args.path}: nothing pinned there ({where(st)})")
        rows = [_store_row(p, k, m) for p, k, m in listed]
        header = f"# {where(st)}"
    if args.json:
        print_json(rows)
        return 0
    print(header)
    width = max((len(r["path"]) for r in rows), default=0)
    for r in rows:
        print(f"{r['path']:<{width}}  {_describe(r)}")
    return 0
