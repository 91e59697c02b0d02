"""``ebee btf dump``: BTF as bpftool prints it (raw, C, JSON)."""
from __future__ import annotations

import json
import os
import sys

from .common import UsageError, read_bytes

SYSFS_BTF = "/sys/kernel/btf/"


def register(sub) -> None:
    p = sub.add_parser("btf", help="inspect BTF type information")
    bsub = p.add_subparsers(dest="btf_command", metavar="COMMAND", parser_class=type(p))
    bsub.required = True
    d = bsub.add_parser("dump", help="dump BTF like `bpftool btf dump`",
                        description="Dump the BTF of an ELF object (.BTF section) or of a raw "
                                    "BTF file such as /sys/kernel/btf/vmlinux.")
    d.add_argument("source", choices=("file",), help="where the BTF comes from")
    d.add_argument("path", help="ELF object or raw BTF file")
    d.add_argument("format", nargs="*", metavar="format {raw|c}",
                   help="output format: raw (default, like bpftool) or c (a compilable header)")
    d.add_argument("-j", "--json", action="store_true", help="JSON output (raw format only)")
    d.add_argument("-B", "--base-btf", metavar="FILE",
                   help="base BTF for split BTF (kernel module BTF); /sys/kernel/btf/<module> "
                        "gets vmlinux as its base automatically")
    d.set_defaults(func=cmd_dump)


def _parse_format(words: list[str]) -> str:
    if not words:
        return "raw"
    if words[0] != "format":
        raise UsageError(f"error: unrecognized option: '{words[0]}'")
    if len(words) < 2:
        raise UsageError("error: expecting value for 'format' option")
    if words[1] not in ("raw", "c"):
        raise UsageError(f"error: unrecognized format specifier: '{words[1]}', possible values: "
                         f"raw, c")
    if len(words) > 2:
        raise UsageError(f"error: unrecognized option: '{words[2]}'")
    return words[1]


def load_btf_file(path: str, base_path: str | None = None):
    """BTF from an ELF object or a raw file; UsageError (one line) for anything wrong."""
    from ..btf import BTF, BTFError
    from ..btf.elf import btf_sections

    base = None
    if base_path is None and path.startswith(SYSFS_BTF) and \
            os.path.basename(path) != "vmlinux":
        base_path = SYSFS_BTF + "vmlinux"
    if base_path is not None:
        base = load_btf_file(base_path)
    data = read_bytes(path)
    try:
        if data[:4] == b"\x7fELF":
            secs = btf_sections(data)
            return BTF.from_bytes(secs.btf, base, pointer_size=secs.pointer_size)
        return BTF.from_bytes(data, base)
    except BTFError as e:
        raise UsageError(f"{path}: error: {e}") from None


def cmd_dump(args) -> int:
    fmt = _parse_format(args.format)
    if fmt == "c" and args.json:
        raise UsageError("error: JSON output for C-syntax dump is not supported")
    from ..btf import BTFError
    btf = load_btf_file(args.path, args.base_btf)
    try:        # types that parse can still be impossible to print (a C member gap)
        if args.json:
            out = json.dumps(btf.format_json(), separators=(",", ":"), ensure_ascii=False) + "\n"
        elif fmt == "c":
            out = btf.format_c()
        else:
            out = btf.format_raw()
    except BTFError as e:
        raise UsageError(f"{args.path}: error: {e}") from None
    sys.stdout.write(out)
    return 0
