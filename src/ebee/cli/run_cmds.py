"""``ebee run``: run a program -- raw, from an object, classic BPF -- once or over a capture.

    ebee run prog.bin --mem 0a000000                 raw program: r1 = memory, r2 = its length
    ebee run prog.bin --type xdp --data-hex ...       raw program as a program type (test run)
    ebee run obj.o [--prog NAME] --data pkt.bin       an object's program (test run)
    ebee run obj.o --pcap in.pcap [--pcap-out out.pcapng]
    ebee run --cbpf filter.txt --pcap in.pcap         classic BPF (tcpdump -dd) as a socket filter
    ebee run decoder.o --lirc samples.txt             lirc_mode2 decoder over IR samples
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys

from ..maps import num_cpus, set_num_cpus
from ..program import Program
from ..runtime import DEFAULT_BUDGET
from ..session.mapargs import MapArgError, apply_updates
from .common import (ELF_MAGIC, UsageError, load_program, parse_hex, print_json, read_bytes,
                     write_atomic)


def register(sub) -> None:
    p = sub.add_parser("run", help="run a program: raw, from an object, classic BPF; once or "
                                   "over a pcap")
    p.add_argument("file", nargs="?", help="object (.o), raw instructions (.bin) or assembly")
    p.add_argument("--prog", metavar="NAME", help="program of the object to run")
    p.add_argument("--type", metavar="TYPE", help="program type of a raw program (xdp, tc, "
                                                  "socket_filter, cgroup_skb, ...)")
    p.add_argument("--cbpf", metavar="FILE", help="classic BPF (tcpdump -dd/-ddd output or "
                                                  "sock_filter binary), run as a socket filter")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--data-hex", metavar="HEX", help="packet / data_in, as hex")
    g.add_argument("--data", metavar="FILE", help="packet / data_in, from a file")
    g.add_argument("--mem", metavar="HEX", help="raw programs: memory passed in r1 (length in "
                                                "r2), as hex")
    g.add_argument("--mem-file", metavar="F", help="raw programs: memory from a file")
    g.add_argument("--lirc", metavar="FILE", help="lirc_mode2 programs: run on each infrared "
                   "sample of FILE (mode2's 'pulse 9000' lines or ir-ctl's '+9000 -4500') and "
                   "print the keys it reports")
    g.add_argument("--pcap", metavar="IN", help="run over every packet of a pcap/pcapng file")
    p.add_argument("--pcap-out", metavar="OUT", help="write the resulting packets (pcap, or "
                                                     "pcapng with XDP_TX/redirect comments)")
    p.add_argument("--map-update", nargs=3, action="append", default=[],
                   metavar=("NAME", "KEY", "VALUE"),
                   help="set an element of the object's map NAME before the run "
                        "(repeatable): 0x and the exact size in hex digits is raw bytes, "
                        "anything else JSON encoded through the map's BTF (an integer, a "
                        "list, {\"member\": ...}); a map pinned by name is the pin's, so the entry stays in "
                        "the pin store")
    p.add_argument("--ctx", metavar="FILE", help="ctx_in, from a file (binary struct)")
    p.add_argument("--ctx-hex", metavar="HEX", help="ctx_in, as hex")
    p.add_argument("--repeat", type=int, default=0, metavar="N", help="run N times (duration is "
                                                                       "the average)")
    p.add_argument("--engine", choices=("interp", "jit", "auto"), default=None,
                   help="execution engine (default auto: the JIT for programs that verify, "
                        "else the interpreter)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="with --pcap: split the capture across N threads, each its own "
                        "virtual CPU (native code runs without the GIL); counts are merged. "
                        "N above the CPU count raises the virtual CPU count before the maps "
                        "are created, so per-CPU counts stay exact")
    p.add_argument("--sanitize", action="store_true",
                   help="run the verified program with every memory access checked anyway; "
                        "a fault is a verifier bug (VerifierSoundnessError), like a sanitizer "
                        "build")
    p.add_argument("--budget", type=int, default=DEFAULT_BUDGET,
                   help=f"raw programs: maximum instructions to execute (default {DEFAULT_BUDGET})")
    p.add_argument("--no-verify", action="store_true",
                   help="run without verifying first (typed programs pass the verifier by "
                        "default, as in Linux); memory access stays checked")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--coverage", nargs="?", const="ebee-coverage.info", default=None,
                   metavar="FILE", help="write the run's coverage (lines, branches, "
                   "functions of the C source) as an lcov tracefile, FILE.html beside it "
                   "(default ebee-coverage.info)")
    p.set_defaults(func=cmd_run)


def _read_data(args) -> bytes | None:
    if args.data_hex is not None:
        return parse_hex(args.data_hex, "--data-hex")
    if args.data is not None:
        return read_bytes(args.data)
    return None


def _read_ctx(args) -> bytes | None:
    if args.ctx_hex is not None:
        return parse_hex(args.ctx_hex, "--ctx-hex")
    if args.ctx is not None:
        return read_bytes(args.ctx)
    return None


def cmd_run(args) -> int:
    if args.coverage is None:
        return _cmd_run(args)
    if args.kernel:
        raise UsageError("error: --coverage counts ebee's engines; it cannot go with --kernel")
    from .. import coverage
    coverage.enable()
    rc = _cmd_run(args)
    data = coverage.collect()
    coverage.write_lcov(data, args.coverage)
    coverage.write_html(data, f"{args.coverage}.html",
                        search=[os.path.dirname(os.path.abspath(args.file or "."))])
    print(f"coverage: {args.coverage}, {args.coverage}.html", file=sys.stderr)
    return rc


def _cmd_run(args) -> int:
    if args.repeat < 0:
        raise UsageError("error: --repeat must not be negative")
    if args.budget <= 0:
        raise UsageError("error: --budget must be positive")
    if args.pcap_out and not args.pcap:
        raise UsageError("error: --pcap-out needs --pcap")
    if args.threads != 1 and not args.pcap:
        raise UsageError("error: --threads needs --pcap")
    if args.threads < 1:
        raise UsageError("error: --threads must be at least 1")
    if args.sanitize and args.no_verify:
        raise UsageError("error: --sanitize checks verified programs; it cannot go with "
                         "--no-verify")
    if args.threads > num_cpus():
        # every thread is a virtual CPU with its own per-CPU map slots: the maps this run
        # creates must have as many (pinned maps that already exist keep theirs)
        set_num_cpus(args.threads)
    if args.cbpf:
        if args.kernel:
            raise UsageError("error: --kernel runs programs of object files (.o)")
        if args.map_update:
            raise UsageError("error: --map-update sets maps of an object file (.o)")
        if args.file:
            raise UsageError("error: give either a program file or --cbpf, not both")
        prog, label = _cbpf_program(args.cbpf), "cbpf"
        return _run_typed(args, prog, label, link_layer=True)
    if not args.file:
        raise UsageError("error: a program file (or --cbpf FILE) is required")
    head = read_bytes(args.file)[:4]
    if head == ELF_MAGIC:
        prog = _object_program(args)
        try:
            if not args.kernel:     # with --kernel, the kernel's maps (_any_runner)
                apply_updates(prog.object.maps, [tuple(u) for u in args.map_update])
        except MapArgError as e:
            raise UsageError(f"{args.file}: error: --map-update: {e}") from None
        return _run_typed(args, prog, prog.name)
    if args.map_update:
        raise UsageError("error: --map-update sets maps of an object file (.o)")
    if args.kernel:
        raise UsageError("error: --kernel runs programs of object files (.o)")
    if args.type is None and args.pcap is None and _read_data(args) is None and _read_ctx(args) is None:
        return _run_raw(args)
    if args.mem is not None or args.mem_file is not None:
        raise UsageError("error: --mem/--mem-file run a raw program without a type; use "
                         "--data-hex/--data with --type")
    if args.type is None:
        raise UsageError("error: a raw program needs --type to run on packets or a context")
    from ..progtypes import by_name
    try:
        pt = by_name(args.type)
    except ValueError as e:
        raise UsageError(f"error: --type: {e}") from None
    return _run_typed(args, Program.from_insns(load_program(args.file), pt, name=args.file,
                                               verify=not args.no_verify,
                                               evidence_from_verifier=True), args.file)


def _cbpf_program(path: str):
    from ..progtypes import cbpf
    from ..uapi import ProgType
    data = read_bytes(path)
    try:
        classic = cbpf.parse(data, source=path)
        insns = cbpf.convert(classic)
    except cbpf.CbpfError as e:
        raise UsageError(f"{path}: error: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    return Program.from_insns(insns, ProgType.SOCKET_FILTER, name=path,
                              evidence_from_verifier=True)


def _object_program(args):
    import ebee
    try:
        obj = ebee.load(args.file, verify=not args.no_verify)
    except ebee.LoadError as e:
        raise UsageError(str(e)) from None
    progs = obj.programs
    if args.prog:
        if args.prog not in progs:
            raise UsageError(f"{args.file}: error: no program {args.prog!r} (programs: "
                             f"{', '.join(progs) or 'none'})")
        return progs[args.prog]
    if len(progs) != 1:
        raise UsageError(f"{args.file}: error: {len(progs)} programs; choose one with --prog "
                         f"({', '.join(progs)})")
    return next(iter(progs.values()))


def _run_raw(args) -> int:
    from ..engines import run
    if args.sanitize:
        raise UsageError("error: --sanitize needs a program the verifier can judge: give "
                         "--type (or an object file)")
    insns = load_program(args.file)
    mem = None
    if args.mem is not None:
        mem = parse_hex(args.mem, "--mem")
    elif args.mem_file is not None:
        mem = read_bytes(args.mem_file)
    res = run(insns, mem, budget=args.budget, engine=args.engine or "auto")
    if args.json:
        print_json({"retval": res.retval, "insns": res.insns})
    else:
        print(f"retval: {res.retval} ({res.retval:#x})")
        print(f"insns: {res.insns}")
    return 0


def _runner(prog, args, link_layer: bool = False):
    from ..testrun import Runner
    from ..progtypes.ctx import CtxAccessError
    from ..verifier import VerifierError
    try:
        return Runner(prog, engine=args.engine, link_layer=link_layer, sanitize=args.sanitize)
    except CtxAccessError as e:
        raise UsageError(f"{prog.name or '?'}: error: the kernel would reject this "
                         f"program: {e.strerror}") from None
    except VerifierError as e:
        raise UsageError(f"{args.file or args.cbpf}: error: {e.summary} (the log: ebee verify "
                         f"--log-level 1; --no-verify runs it anyway)") from None


@contextlib.contextmanager
def _any_runner(prog, args, link_layer: bool):
    """ebee's runner, or with ``--kernel`` the program's object loaded into the running
    kernel (every run one BPF_PROG_TEST_RUN; session/kernel_check.py)."""
    if not getattr(args, "kernel", False):
        with _runner(prog, args, link_layer) as r:
            yield r
        return
    from ..kernel.prog import KernelLoadError
    from ..session import kernel_check as kc
    if prog.object is None:
        raise UsageError("error: --kernel runs programs of object files (.o)")
    if args.engine or args.sanitize or args.threads != 1 or args.no_verify:
        raise UsageError("error: --kernel runs in the kernel: --engine, --sanitize, --threads "
                         "and --no-verify are ebee's")
    why = kc.available()
    if why:
        raise UsageError(f"error: --kernel: {why}")
    try:
        with kc.kernel_object(prog.object) as kobj:
            try:
                apply_updates(kobj.maps, [tuple(u) for u in args.map_update])
            except MapArgError as e:
                raise UsageError(f"{args.file}: error: --map-update: {e}") from None
            yield kc.KernelRunner(kobj.programs[prog.name], prog.name)
    except KernelLoadError as e:
        raise UsageError(f"{args.file}: error: the kernel refuses {prog.name}: {e.strerror} "
                         f"(the log: ebee --kernel verify)") from None


def _run_typed(args, prog, label: str, link_layer: bool = False) -> int:
    if args.mem is not None or args.mem_file is not None:
        raise UsageError("error: --mem/--mem-file are for raw programs; use --data-hex/--data")
    if args.pcap:
        return _run_pcap(args, prog, label, link_layer)
    if args.lirc:
        return _run_lirc(args, prog)
    from ..testrun import TestRunError
    data = _read_data(args)
    ctx = _read_ctx(args)
    with _any_runner(prog, args, link_layer) as r:
        try:
            res = r.run(data, ctx=ctx, repeat=args.repeat)
        except TestRunError as e:
            name = errno.errorcode.get(e.errno, str(e.errno))
            if args.json:
                print_json({"error": name, "errno": e.errno, "message": e.reason})
            else:
                print(f"error: BPF_PROG_TEST_RUN: {name}: {e.reason}", file=sys.stderr)
            return 1
    if args.json:
        out = {"retval": res.retval, "duration_ns": res.duration_ns,
               "data_out_hex": res.data_out.hex()}
        if res.ctx_out is not None:
            out["ctx_out_hex"] = res.ctx_out.hex()
        if res.redirect is not None:
            out["redirect"] = res.redirect.describe()
        if res.trace_output:
            out["trace_output"] = res.trace_output
        print_json(out)
        return 0
    print(f"retval: {res.retval} ({res.verdict})")
    print(f"duration: {res.duration_ns} ns")
    if res.redirect is not None:
        print(f"redirect: {res.redirect.describe()}")
    for c in res.clones:
        print(f"clone: {c.describe()}")
    if res.data_out:
        print(f"data_out: {res.data_out.hex()}")
    if res.ctx_out is not None:
        print(f"ctx_out: {res.ctx_out.hex()}")
    for line in res.trace_output:
        print(f"trace: {line}")
    return 0


def _run_lirc(args, prog) -> int:
    from ..testrun.lirc import LircReceiver, parse_samples
    from ..testrun import TestRunError
    try:
        samples = parse_samples(read_bytes(args.lirc).decode("utf-8", "replace"))
    except ValueError as e:
        raise UsageError(f"{args.lirc}: error: {e}") from None
    try:
        rx = LircReceiver(prog, engine=None if args.engine == "auto" else args.engine)
    except TestRunError as e:
        raise UsageError(f"error: --lirc: {e.reason}") from None
    with rx:
        events = rx.feed(samples)
    if args.json:
        print_json({"samples": len(samples), "events": [e.__dict__ for e in events],
                    "trace_output": rx.trace_output})
        return 0
    print(f"samples: {len(samples)}")
    for e in events:
        print(e.describe())
    for line in rx.trace_output:
        print(f"trace: {line}")
    return 0


def _run_pcap(args, prog, label: str, link_layer: bool) -> int:
    from ..packet import pcap
    from ..testrun.replay import (REPLAY_TYPES, ProgressBar, format_summary, open_capture,
                                  outcome_writer, replay, replay_capture)
    with _any_runner(prog, args, link_layer) as r:
        pt = r.info.prog_type
        if pt not in REPLAY_TYPES:
            raise UsageError(f"{label}: error: --pcap runs XDP, tc, socket filter and cgroup_skb "
                             f"programs, not {pt.name.lower()}")
        cap = None
        try:
            if open_capture is not None:    # memory-mapped, records scanned natively
                cap = open_capture(args.pcap)
                total = cap.count()
                if total and cap.layout.linktype != pcap.DLT_EN10MB:
                    raise pcap.PcapError(f"{args.pcap}: error: link type "
                                         f"{cap.layout.linktype} is not Ethernet (DLT_EN10MB)")
                frames = None
            else:
                total = pcap.count(args.pcap)
                frames = pcap.read(args.pcap)
            writer = pcap.Writer(args.pcap_out) if args.pcap_out else None
        except pcap.PcapError as e:
            if cap is not None:
                cap.close()
            raise UsageError(str(e)) from None
        bar = ProgressBar(total) if total >= 20000 and not args.json else None

        def checked(it):
            for fr in it:
                if fr.linktype != pcap.DLT_EN10MB:
                    raise pcap.PcapError(f"{args.pcap}: error: link type {fr.linktype} is not "
                                         f"Ethernet (DLT_EN10MB)")
                yield fr

        try:
            if args.threads > 1:    # ebee.jit.parallel: one machine (CPU) per thread
                from ..testrun.parallel import replay_capture_parallel, replay_parallel
                try:
                    if cap is not None and writer is None:
                        summary = replay_capture_parallel(prog, cap, args.threads,
                                                          engine=args.engine,
                                                          link_layer=link_layer,
                                                          sanitize=args.sanitize)
                    else:
                        it = checked(cap.frames() if cap is not None else frames)
                        it, sink = outcome_writer(writer, it) if writer is not None \
                            else (it, None)
                        summary = replay_parallel(prog, it, args.threads,
                                                  engine=args.engine, link_layer=link_layer,
                                                  on_packet=sink, sanitize=args.sanitize)
                except ValueError as e:     # a pinned map made with fewer CPUs
                    raise UsageError(f"error: --threads {args.threads}: {e}") from None
            elif cap is not None:
                summary = replay_capture(r, cap, writer=writer, progress=bar,
                                         native=False if args.kernel else None)
            else:
                it = checked(frames)
                it, sink = outcome_writer(writer, it) if writer is not None else (it, None)
                summary = replay(r, it, on_packet=sink, progress=bar,
                                 native=False if args.kernel else None)
        except pcap.PcapError as e:
            if writer is not None:
                writer.abort()
            raise UsageError(str(e)) from None
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            if bar is not None:
                bar.close()
            if cap is not None:
                cap.close()
        if writer is not None:
            writer.close()
    summary.program = label
    if args.json:
        out = summary.to_json()
        if args.pcap_out:
            out["pcap_out"] = args.pcap_out
        print_json(out)
    else:
        print(format_summary(summary))
        if args.pcap_out:
            print(f"\nwrote {summary.written:,} packets to {args.pcap_out}")
    return 0


__all__ = ["register", "write_atomic"]
