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
    p.add_argument("--facts", action="store_true",
                   help="after the verdict, the program with what the verifier proved about "
                        "the registers each instruction reads (over every path)")
    p.add_argument("--json", action="store_true", help="one JSON object per program")
    p.add_argument("--html", metavar="OUT", help="write the verifier explorer: one "
                   "self-contained page with source, instructions, the CFG and every explored "
                   "path's states (objects; one program)")
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


def _write_html(args, progs) -> int:
    from ..explorer import explore, render
    if len(progs) != 1:
        raise UsageError(f"{args.file}: error: --html shows one program; choose it with --prog "
                         f"({', '.join(progs)})")
    (name, prog), = progs.items()
    ex = explore(prog)
    try:
        with open(args.html, "w") as f:
            f.write(render(ex))
    except OSError as e:
        raise UsageError(f"{args.html}: error: {e.strerror}") from None
    print(f"{name}: {'accepted' if ex.accepted else 'rejected: ' + (ex.error or '')}; "
          f"wrote {args.html}")
    return 0 if ex.accepted else 1


def cmd_verify(args) -> int:
    from ..verifier import verify
    level = args.log_level | (4 if args.stats else 0)
    pt = _prog_type(args.type)
    data = read_bytes(args.file)
    if getattr(args, "kernel", False):
        return _verify_kernel(args, data, pt, level)
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
            obj.first_use()
            if args.html:
                return _write_html(args, progs)
            for name, prog in progs.items():
                kw = {"prog_type": pt} if pt is not None else {}
                results.append((name, verify(prog, log_level=level, unpriv=args.unpriv, **kw),
                                list(prog.insns)))
        finally:
            obj.close()
        many = len(results) > 1
    else:
        if args.html:
            raise UsageError(f"{args.file}: error: --html explores programs of ELF objects")
        if args.prog is not None:
            raise UsageError(f"{args.file}: error: --prog applies to ELF objects only")
        insns = load_program(args.file)
        from ..uapi import ProgType
        results.append((None, verify(insns, prog_type=pt or ProgType.SOCKET_FILTER,
                                     log_level=level, unpriv=args.unpriv), list(insns)))
        many = False
    for name, r, insns in results:
        if args.json:
            obj = {"accepted": r.accepted, "error": r.error,
                   "insns_processed": r.insns_processed, "log": r.log}
            if many:
                obj = {"prog": name, **obj}
            if args.facts:
                obj["facts"] = facts_json(r, insns)
            print(json.dumps(obj))
            continue
        if r.log:
            sys.stdout.write(r.log if r.log.endswith("\n") else r.log + "\n")
        who = f"{name}: " if name else ""
        if r.accepted:
            print(f"{who}accepted ({r.insns_processed} insns processed, {r.states} states)")
        else:
            print(f"{who}rejected: {r.error}")
        if args.facts and r.facts is not None:
            sys.stdout.write("".join(line + "\n" for line in facts_lines(r, insns)))
    return 0 if all(r.accepted for _, r, _ in results) else 1


def _fact_text(regno: int, f) -> str:
    if f.type is None:
        return f"R{regno}=?"                  # paths disagree on the type
    if f.type == "SCALAR_VALUE":
        if f.const is not None:
            return f"R{regno}={_num(f.const)}"
        parts = [f"{k}={_num(v)}" for k, v, trivial in (
            ("umin", f.umin, 0), ("umax", f.umax, (1 << 64) - 1)) if v != trivial]
        if (f.smin, f.smax) != (f.umin, f.umax):     # the signed view says more
            parts += [f"{k}={_num(v)}" for k, v, trivial in (
                ("smin", f.smin, -(1 << 63)), ("smax", f.smax, (1 << 63) - 1)) if v != trivial]
        return f"R{regno}=scalar({','.join(parts)})"
    parts = [f"off={f.off}"] if f.off else []
    if f.const is None:
        parts.append(f"var=[{_num(f.smin)},{_num(f.smax)}]")
    elif f.const:
        parts.append(f"var={_num(f.const)}")
    return f"R{regno}={f.type.lower()}" + (f"({','.join(parts)})" if parts else "")


def _num(v: int) -> str:
    return str(v) if -0x10000 < v < 0x10000 else hex(v)


def facts_lines(r, insns) -> list[str]:
    """The program as bpftool lists it, each instruction followed by the facts."""
    from ..isa import format_kernel
    out = []
    for i in insns:
        text = f"{i.pc:4d}: ({i.opcode:02x}) {format_kernel(i)}"
        facts = r.facts[i.pc] if i.pc in r.facts else None
        if facts is None:
            out.append(f"{text:<40}; not reached")
        elif any(f.type != "NOT_INIT" for f in facts.values()):
            out.append(f"{text:<40}; " + " ".join(_fact_text(n, f) for n, f in sorted(facts.items())
                                                  if f.type != "NOT_INIT"))
        else:
            out.append(text)
    return out


def facts_json(r, insns) -> list[dict]:
    rows = []
    for i in insns:
        regs = r.facts[i.pc] if r.facts is not None and i.pc in r.facts else None
        rows.append({"pc": i.pc, "reached": regs is not None, "regs": {
            f"r{n}": {"type": f.type, "off": f.off, "umin": f.umin, "umax": f.umax,
                      "smin": f.smin, "smax": f.smax, "const": f.const}
            for n, f in sorted((regs or {}).items())}})
    return rows


def _verify_kernel(args, data: bytes, pt, level: int) -> int:
    """``ebee --kernel verify``: PROG_LOAD's verdict and the kernel verifier's log."""
    from ..session import kernel_check as kc
    if args.unpriv or args.facts:
        raise UsageError(f"error: --kernel verify: {'--unpriv' if args.unpriv else '--facts'} "
                         f"is ebee's verifier only")
    why = kc.available()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 1
    if data.startswith(ELF_MAGIC):
        from .prog_cmds import load_object
        obj = load_object(args.file, prog_type=args.type)
        try:
            names = list(obj.programs)
            if args.prog is not None:
                if args.prog not in names:
                    raise UsageError(f"{args.file}: error: no program named {args.prog!r} "
                                     f"(programs: {', '.join(names) or 'none'})")
                names = [args.prog]
            if not names:
                raise UsageError(f"{args.file}: error: the object has no programs")
            verdicts = kc.verify_object(obj, names, log_level=level or 1)
        finally:
            obj.close()
    else:
        if args.html:
            raise UsageError(f"{args.file}: error: --html explores programs of ELF objects")
        if args.prog is not None:
            raise UsageError(f"{args.file}: error: --prog applies to ELF objects only")
        from ..uapi import ProgType
        verdicts = [kc.verify_insns(load_program(args.file), pt or ProgType.SOCKET_FILTER,
                                    log_level=level or 1)]
    many = len(verdicts) > 1
    for v in verdicts:
        log = v.log if args.log_level else ""
        if args.json:
            obj = {"accepted": v.accepted, "error": v.error,
                   "insns_processed": v.insns_processed, "log": log, "verifier": "kernel"}
            print(json.dumps({"prog": v.name, **obj} if many else obj))
            continue
        if log:
            sys.stdout.write(log if log.endswith("\n") else log + "\n")
        who = f"{v.name}: " if v.name else ""
        if v.accepted:
            n = f"{v.insns_processed} insns processed, " if v.insns_processed is not None else ""
            print(f"{who}accepted by the kernel ({n}PROG_LOAD succeeded)")
        else:
            print(f"{who}rejected by the kernel: {v.error}")
    return 0 if all(v.accepted for v in verdicts) else 1
