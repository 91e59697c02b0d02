"""``ebee aot``: compile verified programs ahead of time to C, a relocatable object or a
shared library that runs without Python (docs/aot.md).

The output's suffix picks the form: ``.c`` (portable C plus ebee_rt.h beside it),
``.o`` (relocatable object for the host, or for ``--target``), ``.so`` (shared
library).  ``--runtime`` brings the C runtime along: ebee_rt.c beside a .c, linked
into a .o or .so.  Exit status: 0 built, 2 bad input or a program the AOT runtime
cannot run (the message names the instruction), 1 the C compiler failed.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .common import ELF_MAGIC, UsageError, load_program, read_bytes


def register(sub) -> None:
    p = sub.add_parser("aot", help="compile programs ahead of time to C, .o or .so "
                                   "(runs without Python; see docs/aot.md)")
    p.add_argument("file", help="an ELF object (.o), raw instructions (.bin) or assembly")
    p.add_argument("--prog", metavar="NAME", help="only this program of an object")
    p.add_argument("-o", "--output", metavar="OUT", required=True,
                   help="OUT.c (C source + ebee_rt.h), OUT.o (relocatable object) or OUT.so "
                        "(shared library)")
    p.add_argument("--runtime", action="store_true",
                   help="also the C runtime: ebee_rt.c beside a .c, linked into a .o or .so")
    p.add_argument("--name", metavar="SYMBOL",
                   help="the C name of the object definition (default: from FILE's name)")
    p.add_argument("--cc", metavar="CC", help="C compiler for .o/.so (default clang-19, clang, cc)")
    p.add_argument("--target", metavar="TRIPLE",
                   help="cross-compile a .o for this clang target (e.g. aarch64-linux-gnu)")
    p.set_defaults(func=cmd_aot)


def cmd_aot(args) -> int:
    from ..aot import CompileError, OffloadError, build, cgen, object_units, raw_unit
    out = Path(args.output)
    if out.suffix not in build.FORMS:
        raise UsageError(f"{out}: error: the output's suffix picks the form: .c, .o or .so")
    name = args.name or cgen.ident(Path(args.file).stem)
    data = read_bytes(args.file)
    obj = None
    try:
        if data.startswith(ELF_MAGIC):
            from .prog_cmds import load_object
            obj = load_object(args.file)
            obj.first_use()
            units, maps = object_units(obj, args.prog)
        else:
            if args.prog is not None:
                raise UsageError(f"{args.file}: error: --prog applies to ELF objects only")
            units, maps = [raw_unit(name, load_program(args.file))], []
        written = build.build_native(units, maps, out, object_name=name, runtime=args.runtime,
                                     cc=args.cc, target=args.target)
    except OffloadError as e:
        raise UsageError(f"{args.file}: error: {e}") from None
    except ValueError as e:
        raise UsageError(f"{args.file}: error: {e}") from None
    except CompileError as e:
        print(f"{args.file}: error: {e}", file=sys.stderr)
        return 1
    finally:
        if obj is not None:
            obj.close()
    progs = ", ".join(u.name for u in units)
    print(f"{', '.join(str(w) for w in written)}: {len(units)} program(s) ({progs}), "
          f"{len(maps)} map(s); object definition '{name}'")
    return 0
