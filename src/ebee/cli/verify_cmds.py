"""``ebee verify``: run the verifier on an object's programs or on raw instructions.

Exit status: 0 when every program is accepted, 1 when one is rejected, 2 when
the input cannot be used.  ``--json`` prints one object per program
(``{"accepted", "error", "insns_processed", "log"}``, plus ``"prog"`` when the
object holds several programs).
"""
from __future__ import annotations

import json
import sys

from .common import ELF_MAGIC, UsageError, load_program, read_bytes


def register(sub) -> None:
    p = sub.add_parser("verify", help="verify programs as the kernel's verifier would")
    p.add_argument("file", help="an ELF object (.o), raw instructions (.bin) or assembly")
    p.add_argument("--prog", metavar="NAME", help="only this program of an object")
    p.add_argument("--type", metavar="TYPE",
                   help="program type (raw/assembly input: default socket_filter; objects: "
                        "overrides the section's type)")
    p.add_argument("--log-level", type=int, choices=(0, 1, 2), default=1,
                   help="verifier log: 0 none, 1 the failing path (default), 2 everything")
    p.add_argument("--unpriv", action="store_true",
                   help="verify as an unprivileged user (no CAP_BPF/CAP_PERFMON)")
    p.add_argument("--stats", action="store_true",
                   help="add the kernel's statistics lines (verification time, stack depth)")
    p.add_argument("--json", action="store_true", help="one JSON object per program")
    p.set_defaults(func=cmd_verify)


def _prog_type(name: str | None):
    if name is None:
        return None
    from .prog_cmds import parse_prog_type
    from ..progtypes import by_name
    try:
        return by_name(name)
    except ValueError:
        return parse_prog_type(name)


def cmd_verify(args) -> int:
    from ..verifier import verify
    level = args.log_level | (4 if args.stats else 0)
    pt = _prog_type(args.type)
    data = read_bytes(args.file)
    results = []
    if data.startswith(ELF_MAGIC):
        from .prog_cmds import load_object
        obj = load_object(args.file, prog_type=args.type)
        try:
            progs = obj.programs
            if args.prog is not None:
                if args.prog not in progs:
                    raise UsageError(f"{args.file}: error: no program named {args.prog!r} "
                                     f"(programs: {', '.join(progs) or 'none'})")
                progs = {args.prog: progs[args.prog]}
            if not progs:
                raise UsageError(f"{args.file}: error: the object has no programs")
            obj._first_use()
            for name, prog in progs.items():
                kw = {"prog_type": pt} if pt is not None else {}
                results.append((name, verify(prog, log_level=level, unpriv=args.unpriv, **kw)))
        finally:
            obj.close()
        many = len(results) > 1
    else:
        if args.prog is not None:
            raise UsageError(f"{args.file}: error: --prog applies to ELF objects only")
        insns = load_program(args.file)
        from ..uapi import ProgType
        results.append((None, verify(insns, prog_type=pt or ProgType.SOCKET_FILTER,
                                     log_level=level, unpriv=args.unpriv)))
        many = False
    for name, r in results:
        if args.json:
            obj = {"accepted": r.accepted, "error": r.error,
                   "insns_processed": r.insns_processed, "log": r.log}
            if many:
                obj = {"prog": name, **obj}
            print(json.dumps(obj))
            continue
        if r.log:
            sys.stdout.write(r.log if r.log.endswith("\n") else r.log + "\n")
        who = f"{name}: " if name else ""
        if r.accepted:
            print(f"{who}accepted ({r.insns_processed} insns processed, {r.states} states)")
        else:
            print(f"{who}rejected: {r.error}")
    return 0 if all(r.accepted for _, r in results) else 1
