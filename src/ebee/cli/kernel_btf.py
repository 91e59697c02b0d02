"""``ebee --kernel btf show|dump``: BTF objects in the kernel, as bpftool shows them."""
from __future__ import annotations

import json
import os
import sys

from ..kernel.btf import KernelBTF
from ..kernel.info import Kind, btf_info, fd_by_id, ids
from . import btf_cmds
from .common import UsageError, print_json
from .kernel_common import KernelCmdError, infos, kernel_errors


@kernel_errors
def cmd_btf_show(args) -> int:
    wanted = None
    if args.sel:
        if len(args.sel) != 2 or args.sel[0] != "id" or not args.sel[1].isdigit():
            raise UsageError("error: expected show [id N]")
        wanted = [int(args.sel[1])]
    users_p: dict[int, list[int]] = {}
    users_m: dict[int, list[int]] = {}
    for info in infos("prog", []):
        if info.btf_id:
            users_p.setdefault(info.btf_id, []).append(info.id)
    for info in infos("map", []):
        if info.btf_id:
            users_m.setdefault(info.btf_id, []).append(info.id)
    rows = []
    for i in wanted or list(ids(Kind.BTF)):
        try:
            fd = fd_by_id(Kind.BTF, i)
        except OSError as e:
            if wanted:
                raise KernelCmdError(e.strerror) from None
            continue
        try:
            rows.append(btf_info(fd))
        finally:
            os.close(fd)
    if args.json:
        out = []
        for b in rows:
            d = {"id": b.id, "size": b.size, "prog_ids": users_p.get(b.id, []),
                 "map_ids": users_m.get(b.id, []), "kernel": b.kernel_btf}
            if b.name:
                d["name"] = b.name
            out.append(d)
        print_json(out)
        return 0
    for b in rows:
        name = f"[{b.name}]" if b.kernel_btf else (b.name or "<anon>")
        line = f"{b.id}: name {name}  size {b.size}B"
        if users_p.get(b.id):
            line += "  prog_ids " + ",".join(map(str, users_p[b.id]))
        if users_m.get(b.id):
            line += "  map_ids " + ",".join(map(str, users_m[b.id]))
        print(line)
    return 0


@kernel_errors
def cmd_btf_dump(args) -> int:
    if args.source == "file":
        args.path = args.what
        return btf_cmds.cmd_dump(args)
    fmt = btf_cmds._parse_format(args.format)
    if args.source == "id":
        if not args.what.isdigit():
            raise UsageError(f"error: invalid id {args.what!r}")
        btf_id = int(args.what)
    else:       # the BTF of a map or program: btf dump map ID / prog ID
        info = infos(args.source, ["id", args.what])[0]
        btf_id = info.btf_id
        if not btf_id:
            raise KernelCmdError(f"{args.source} {args.what} has no BTF")
    with KernelBTF.from_id(btf_id) as kb:
        btf = kb.parse()
    if args.json:
        sys.stdout.write(json.dumps(btf.format_json(), separators=(",", ":"),
                                    ensure_ascii=False) + "\n")
    elif fmt == "c":
        sys.stdout.write(btf.format_c())
    else:
        sys.stdout.write(btf.format_raw())
    return 0
