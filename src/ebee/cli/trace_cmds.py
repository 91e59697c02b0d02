"""``ebee trace``: run bpftrace scripts (bpftrace 0.17's command line and output).

    ebee trace -e 'tracepoint:syscalls:sys_enter_openat { printf("%s\\n", comm); }'
    ebee trace script.bt [ARG ...]          ebee trace - < script.bt
    ebee trace -l 'tracepoint:sched:*'      ebee trace -lv tracepoint:syscalls:sys_enter_openat
    ebee trace -d -e '...'                  compile and verify, print the programs, load nothing
    ebee trace --userspace -e '...'         run in ebee's runtime (no root; BEGIN/END, timers)

Exit status as bpftrace's: 0 after a normal stop, 1 for errors in the script, 255
when a probe cannot be attached.
"""
from __future__ import annotations

import os
import signal
import sys


def register(sub) -> None:
    p = sub.add_parser("trace", help="run a bpftrace script (compiled by ebee)",
                       description="Run bpftrace programs: compiled to eBPF by ebee, verified, "
                                   "and run in the kernel (or, with --userspace, in ebee).")
    p.add_argument("-e", dest="program", metavar="PROGRAM", help="the program text")
    p.add_argument("script", nargs="?", help="a script file, '-' for stdin, or with -l a "
                                             "probe pattern")
    p.add_argument("params", nargs="*", help="positional parameters ($1, $2 ...)")
    p.add_argument("-l", dest="listing", action="store_true",
                   help="list probes (matching the pattern)")
    p.add_argument("-v", dest="verbose", action="store_true", help="verbose messages")
    p.add_argument("-q", dest="quiet", action="store_true",
                   help="no 'Attaching N probes...' line")
    p.add_argument("-d", dest="dry_run", action="store_true",
                   help="dry run: compile and verify, print the programs, load nothing")
    p.add_argument("-f", dest="format", choices=("text", "json"), default="text",
                   help="output format")
    p.add_argument("-o", dest="output", metavar="FILE", help="write the output to FILE")
    p.add_argument("-c", dest="command", metavar="CMD",
                   help="run CMD (split on blanks) once the probes are attached; stop when "
                        "it exits")
    p.add_argument("-p", dest="pid", type=int, metavar="PID",
                   help="uprobes in PID only; stop when it exits")
    p.add_argument("-B", dest="buffering", choices=("line", "full", "none"), default="line",
                   help="output buffering")
    p.add_argument("--unsafe", action="store_true", help="allow system() and signal()")
    p.add_argument("--userspace", action="store_true",
                   help="run in ebee's runtime instead of the kernel: BEGIN, END and "
                        "interval/profile probes on a virtual clock")
    p.add_argument("--userspace-seconds", type=float, default=10.0, metavar="S",
                   help="with --userspace: how much virtual time timers run for (default 10)")
    p.set_defaults(func=cmd_trace)


def _writer(args):
    out = open(args.output, "w") if args.output else sys.stdout

    def write(s: str) -> None:
        out.write(s)
        if args.buffering != "full":
            out.flush()
    return write, out


def cmd_trace(args) -> int:
    from ..trace import errors, probes
    from ..trace.compiler import compile_script

    if args.listing:
        pattern = args.program or args.script
        return _list(pattern, args.verbose, probes)
    if args.program is not None:
        source, filename = args.program, "stdin"
        params = ([args.script] if args.script else []) + list(args.params)
    elif args.script == "-":
        source, filename, params = sys.stdin.read(), "stdin", list(args.params)
    elif args.script:
        try:
            with open(args.script) as f:
                source = f.read()
        except OSError as e:
            print(f"ERROR: failed to open file '{args.script}': {e.strerror}", file=sys.stderr)
            return 1
        filename, params = args.script, list(args.params)
    else:
        print("USAGE: ebee trace [options] filename\n       ebee trace [options] - <stdin "
              "input>\n       ebee trace [options] -e 'program'", file=sys.stderr)
        return 1
    try:
        script = compile_script(source, filename, params, unsafe=args.unsafe,
                                has_child=bool(args.command),
                                missing_probes_ok=args.userspace)
    except errors.TraceError as e:
        print(e.render(), file=sys.stderr)
        return e.exit_code
    for msg, loc in script.warnings:
        print(errors.warning(msg, loc, script.source, script.filename), file=sys.stderr)
    if args.dry_run:
        return _dry_run(script, args)
    write, out = _writer(args)
    try:
        if args.userspace:
            return _userspace(script, args, write)
        return _kernel(script, args, write)
    finally:
        if out is not sys.stdout:
            out.close()


def _list(pattern: str | None, verbose: bool, probes) -> int:
    names = probes.list_probes(pattern)
    for n in names:
        print(n)
        if verbose and n.startswith("tracepoint:"):
            _, cat, name = n.split(":", 2)
            try:
                for line in probes.describe_tracepoint(cat, name):
                    print(line)
            except (KeyError, OSError):
                pass
    return 0


def _dry_run(script, args) -> int:
    """Verify every program with ebee's verifier and print it; nothing is loaded."""
    from ..asm.disasm import format_kernel
    from ..trace import errors
    from ..trace.userspace import UserSpaceTrace
    try:
        t = UserSpaceTrace(script, quiet=True)
    except errors.TraceError as e:
        print(e.render(), file=sys.stderr)
        return 1
    lines = script.source.split("\n")
    for ld in t.loaded:
        insns = ld.program.insns
        _, locs = script.link(ld.probe, t.resolve_reloc)
        print(f"; {ld.probe.name}: {ld.probe.prog_type.name.lower()} program, "
              f"{sum(i.slots for i in insns)} instructions, stack {ld.probe.stack} bytes, "
              f"verified")
        last = None
        for i in insns:
            loc = locs.get(i.pc)
            if loc is not None and loc.line != last:
                last = loc.line
                text = lines[loc.line - 1].strip() if 0 < loc.line <= len(lines) else ""
                print(f"; {text} [line {loc.line}]")
            print(f"{i.pc:5d}: {format_kernel(i)}")
        print()
    maps = script.resources.maps
    for name, m in maps.items():
        print(f"; map {name}: {m.map_type.name.lower()} key {m.key_size} value {m.value_size} "
              f"max_entries {m.max_entries}")
    t.close()
    return 0


def _userspace(script, args, write) -> int:
    from ..trace import errors
    from ..trace.userspace import UserSpaceTrace
    try:
        t = UserSpaceTrace(script, json=args.format == "json", write=write, quiet=args.quiet)
    except errors.TraceError as e:
        print(e.render(), file=sys.stderr)
        return 1
    t.start()
    step = 1_000_000
    left = int(args.userspace_seconds * 1e9)
    has_timers = bool(t.timers)
    while has_timers and left > 0 and not t.exit_requested:
        t.advance(step)
        left -= step
    t.stop()
    t.close()
    return 0


class _Stop(Exception):
    pass


def _kernel(script, args, write) -> int:
    from ..kernel.prog import bpf_available
    from ..trace import errors
    from ..trace.kernelrun import KernelTrace
    if os.geteuid() != 0:
        print("ERROR: bpftrace currently only supports running as the root user.",
              file=sys.stderr)
        return 1
    why = bpf_available()
    if why is not None:
        print(f"ERROR: {why}", file=sys.stderr)
        return 1
    child = args.command.split() if args.command else None
    t = KernelTrace(script, json=args.format == "json", write=write, pid=args.pid,
                    child_argv=child, quiet=args.quiet, print_maps_at_exit=True)

    def on_signal(signum, frame):
        raise _Stop()
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            t.start()
            if args.verbose:
                for pr in t.progs:
                    print(f"Program {pr.probe.name}: {pr.probe.prog_type.name.lower()}, "
                          f"{pr.kprog.insn_cnt} instructions, stack {pr.probe.stack} bytes",
                          file=sys.stderr)
        except errors.AttachError as e:
            print(e.render(), file=sys.stderr)
            return e.exit_code
        except errors.TraceError as e:
            print(e.render(), file=sys.stderr)
            return 1
        try:
            t.run_until_done()
        except _Stop:
            pass
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        t.stop()
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        t.close()
