"""Entry point and argument parsing for ``ebee``."""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import VMError
from .common import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's exit code is already 2; keep it one line
        self.exit(2, f"{self.prog}: error: {message}\n")


# Subcommand modules, each with register(subparsers).  Add yours here.
COMMAND_MODULES = ["asm_cmds", "btf_cmds", "prog_cmds", "map_cmds", "run_cmds"]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    p = _Parser(prog="ebee", description="eBPF, written in Python: assemble, verify, run and "
                                          "inspect eBPF programs without a kernel.")
    p.add_argument("--version", action="version", version=f"ebee {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
