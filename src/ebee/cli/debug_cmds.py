"""``ebee debug``: step through one run of a program, gdb-style (``ebee.debug``).

    ebee debug obj.o [--prog NAME] --data-hex ...      a packet
    ebee debug obj.o --pcap in.pcap --index 3           the fourth packet of a capture
    ebee debug obj.o --prog kprobe_x --event HEX        a tracing program on an event record
"""
from __future__ import annotations

from ..debug import Session, interact
from ..program import Program
from ..session.mapargs import MapArgError, apply_updates
from .common import ELF_MAGIC, UsageError, load_program, parse_hex, read_bytes
from .run_cmds import _object_program


def register(sub) -> None:
    p = sub.add_parser("debug", help="step through one run of a program (break, step, next, "
                                     "print rN, x/16xb, backtrace, facts ...)")
    p.add_argument("file", help="object (.o), or raw instructions / assembly with --type")
    p.add_argument("--prog", metavar="NAME", help="program of the object to debug")
    p.add_argument("--type", metavar="TYPE", help="program type of a raw program")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--data-hex", metavar="HEX", help="packet / data_in, as hex")
    g.add_argument("--data", metavar="FILE", help="packet / data_in, from a file")
    g.add_argument("--pcap", metavar="IN", help="take the packet from a pcap/pcapng file")
    g.add_argument("--event", metavar="HEX", help="tracing programs: the event record (pt_regs, "
                                                  "tracepoint record, u64 arguments) as hex")
    p.add_argument("--index", type=int, default=0, metavar="N",
                   help="with --pcap: the packet's 0-based position (default 0)")
    p.add_argument("--ctx-hex", metavar="HEX", help="ctx_in, as hex")
    p.add_argument("--map-update", nargs=3, action="append", default=[],
                   metavar=("NAME", "KEY", "VALUE"), help="set a map element before the run "
                                                          "(as ebee run takes it)")
    p.add_argument("--no-verify", action="store_true",
                   help="debug a program the verifier rejects (memory access stays checked)")
    p.set_defaults(func=cmd_debug)


def _packet(args) -> bytes | None:
    if args.data_hex is not None:
        return parse_hex(args.data_hex, "--data-hex")
    if args.data is not None:
        return read_bytes(args.data)
    if args.pcap is not None:
        from ..packet import pcap
        if args.index < 0:
            raise UsageError("error: --index must not be negative")
        try:
            for fr in pcap.read(args.pcap):
                if fr.index == args.index:
                    return fr.data
        except pcap.PcapError as e:
            raise UsageError(str(e)) from None
        raise UsageError(f"{args.pcap}: error: no packet at --index {args.index}")
    return None


def cmd_debug(args) -> int:
    if args.index and args.pcap is None:
        raise UsageError("error: --index needs --pcap")
    if read_bytes(args.file)[:4] == ELF_MAGIC:
        args.kernel = False
        prog = _object_program(args)
        try:
            apply_updates(prog.object.maps, [tuple(u) for u in args.map_update])
        except MapArgError as e:
            raise UsageError(f"{args.file}: error: --map-update: {e}") from None
    else:
        if args.map_update:
            raise UsageError("error: --map-update sets maps of an object file (.o)")
        if args.type is None:
            raise UsageError("error: a raw program needs --type")
        from ..progtypes import by_name
        try:
            pt = by_name(args.type)
        except ValueError as e:
            raise UsageError(f"error: --type: {e}") from None
        prog = Program.from_insns(load_program(args.file), pt, name=args.file,
                                  verify=not args.no_verify, evidence_from_verifier=True)
    event = parse_hex(args.event, "--event") if args.event is not None else None
    ctx = parse_hex(args.ctx_hex, "--ctx-hex") if args.ctx_hex is not None else None
    interact(Session(prog, _packet(args), ctx=ctx, event=event))
    return 0
