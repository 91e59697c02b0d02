"""``ebee asm``, ``ebee disasm`` and ``ebee conformance`` (``ebee run`` is in run_cmds)."""
from __future__ import annotations

import os
import sys

from ..asm import disassemble
from ..isa import encode
from .common import UsageError, load_program, read_bytes, write_atomic


def register(sub) -> None:
    p = sub.add_parser("asm", help="assemble a program to raw instructions")
    p.add_argument("file", help="assembly source (kernel/LLVM or conformance syntax)")
    p.add_argument("-o", "--output", help="output file (default: stdout, if not a terminal)")
    p.add_argument("--dialect", choices=("kernel", "conformance"), help="syntax (default: detect)")
    p.set_defaults(func=cmd_asm)

    p = sub.add_parser("disasm", help="disassemble raw instructions")
    p.add_argument("file", help="raw instructions (.bin), or assembly to show its encoding")
    p.add_argument("--format", choices=("xlated", "llvm", "conformance"), default="xlated",
                   help="bpftool's xlated form (default), llvm-objdump's, or the conformance dialect")
    p.add_argument("--prog", metavar="NAME", help="ELF objects: only this program")
    p.add_argument("--linum", action="store_true", help="ELF objects: source file, line and "
                                                        "column with each source line")
    p.set_defaults(func=cmd_disasm)

    p = sub.add_parser("conformance", help="run the BPF conformance suite")
    p.add_argument("paths", nargs="+", metavar="DIR", help="directories of .data files, or files")
    p.add_argument("-q", "--quiet", action="store_true", help="print failures and the total only")
    p.add_argument("--engine", choices=("interp", "jit"), default="interp",
                   help="interp (default) or jit (native code, checked: the suite is unverified)")
    p.set_defaults(func=cmd_conformance)


def cmd_asm(args) -> int:
    insns = load_program(args.file, args.dialect, any_format=False)
    data = encode(insns)
    if args.output:
        write_atomic(args.output, data)
    elif sys.stdout.isatty():
        raise UsageError("error: refusing to write binary instructions to a terminal; use -o FILE")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def cmd_disasm(args) -> int:
    if args.file != "-" and read_bytes(args.file)[:4] == b"\x7fELF":
        from .prog_cmds import disasm_object   # an object: every program, linked and relocated
        return disasm_object(args.file, args.prog, linum=args.linum, fmt=args.format)
    insns = load_program(args.file)
    sys.stdout.write(disassemble(insns, args.format))
    return 0


def cmd_conformance(args) -> int:
    from ..conformance import collect, run_paths

    for p in args.paths:
        if not os.path.exists(p):
            raise UsageError(f"{p}: error: no such file or directory")
    files = list(collect(args.paths))
    if not files:
        raise UsageError(f"error: no .data files in {', '.join(args.paths)}")
    passed = failed = 0
    for out in run_paths(files, engine=args.engine):
        if out.passed:
            passed += 1
            if not args.quiet:
                print(f"PASS {out.name}")
        else:
            failed += 1
            print(f"FAIL {out.name}: {out.detail}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0
