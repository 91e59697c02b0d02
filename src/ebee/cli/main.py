"""Entry point and argument parsing for ``ebee``."""
from __future__ import annotations

import argparse
import sys

from .. import __version__, kernel_model
from ..errors import VMError
from .common import OUTPUT, UsageError, split_output_flags


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's exit code is already 2; keep it one line
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Version(argparse.Action):
    """--version on one line, unwrapped (argparse's own action refills the text)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"ebee {__version__}: {kernel_model.describe()}")
        parser.exit(0)


# With --kernel, these command groups work on the running kernel: cli/kernel_cmds.py
# registers kernel versions of them instead (register_kernel).
KERNEL_REPLACES = {"prog_cmds", "map_cmds", "btf_cmds"}

# Subcommand modules, each with register(subparsers).  Add yours here.
COMMAND_MODULES = ["asm_cmds", "btf_cmds", "prog_cmds", "map_cmds", "run_cmds", "kernel_cmds",
                   "verify_cmds", "trace_cmds", "fs_cmds", "struct_ops_cmds", "completion",
                   "debug_cmds", "aot_cmds"]


def _wants_kernel(argv: list[str] | None) -> bool:
    """``--kernel`` given before the command name."""
    for a in (sys.argv[1:] if argv is None else argv):
        if a == "--kernel":
            return True
        if not a.startswith("-"):
            return False
    return False


def build_parser(kernel: bool = False) -> argparse.ArgumentParser:
    import importlib

    p = _Parser(prog="ebee", description="eBPF, written in Python: assemble, verify, run and "
                                          "inspect eBPF programs without a kernel.")
    p.add_argument("--version", action=_Version, nargs=0,
                   help="show ebee's version and the kernel it emulates, and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    p.add_argument("--kernel", action="store_true",
                   help="prog, map and btf work on the running kernel through bpf(2), "
                        "like bpftool (needs CAP_BPF and CAP_PERFMON, or root)")
    for name in COMMAND_MODULES:
        if kernel and name in KERNEL_REPLACES:
            continue
        importlib.import_module(f"{__package__}.{name}").register(sub)
    if kernel:
        importlib.import_module(f"{__package__}.kernel_cmds").register_kernel(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv, flags = split_output_flags(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(kernel=_wants_kernel(argv))
    args = parser.parse_args(argv)
    # -p implies -j, as in bpftool
    OUTPUT.pretty = "pretty" in flags
    OUTPUT.json = bool(flags) or bool(getattr(args, "json", False))
    if OUTPUT.json and hasattr(args, "json"):
        args.json = True
    try:
        return args.func(args) or 0
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except VMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
