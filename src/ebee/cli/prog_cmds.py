"""``ebee prog``: load objects, pin programs, show and dump them like ``bpftool prog``."""
from __future__ import annotations

import os
import sys
import time

from ..fs import normpath
from ..maps import Map
from ..session import get_pinned
from ..session.select import KEYWORDS, SelectError, pinned, select
from .common import UsageError, print_json
from .fs_cmds import say_pinned, store_of


def register(sub) -> None:
    p = sub.add_parser("prog", help="load, pin, show and dump programs (like bpftool prog)")
    ps = p.add_subparsers(dest="prog_cmd", metavar="CMD")
    ps.required = True

    def common(q, json_=True):
        q.add_argument("--store", metavar="DB", help="pin store (default: $EBEE_PIN_STORE or "
                                                      "~/.local/state/ebee/bpffs.sqlite3)")
        if json_:
            q.add_argument("-j", "--json", action="store_true", help="JSON output")

    q = ps.add_parser("load", help="load OBJ and pin its first program at PATH")
    q.add_argument("obj")
    q.add_argument("path")
    q.add_argument("--type", help="program type for sections libbpf does not know (e.g. xdp)")
    q.add_argument("--pinmaps", metavar="DIR", help="also pin the object's maps under DIR")
    common(q, json_=False)
    q.set_defaults(func=cmd_load)

    q = ps.add_parser("loadall", help="load OBJ and pin every program under DIR")
    q.add_argument("obj")
    q.add_argument("dir")
    q.add_argument("--type", help="program type for sections libbpf does not know")
    q.add_argument("--pinmaps", metavar="DIR", help="also pin the object's maps under DIR")
    common(q, json_=False)
    q.set_defaults(func=cmd_loadall)

    q = ps.add_parser("show", aliases=["list"], help="list pinned programs: show [id N | "
                                                     "pinned PATH | name NAME | tag TAG | DIR]")
    q.add_argument("sel", nargs="*", metavar="PROG",
                   help="id N, pinned PATH, name NAME, tag TAG, or a directory of pins")
    common(q)
    q.set_defaults(func=cmd_show)

    q = ps.add_parser("dump", help="dump a program's instructions: dump xlated|jited "
                                   "id N | pinned PATH | name NAME | tag TAG | OBJ.o "
                                   "[opcodes] [linum]")
    q.add_argument("what", choices=("xlated", "jited"),
                   help="xlated: the instructions as loaded; jited: the JIT's machine code")
    q.add_argument("target", nargs="+", metavar="PROG",
                   help="id N, pinned PATH, name NAME, tag TAG, a pinned program's path, or "
                        "an object file (.o); then bpftool's opcodes / linum")
    q.add_argument("--prog", metavar="NAME", help="only this program of an object")
    q.add_argument("--linum", action="store_true", help="with file, line and column of each "
                                                        "source line")
    q.add_argument("--opcodes", action="store_true", help="with the raw bytes of each insn")
    common(q)
    q.set_defaults(func=cmd_dump)


# ---------------------------------------------------------------------------------- helpers

def load_object(path: str, *, prog_type: str | None = None, store=None):
    """ebee.load with CLI error handling: one line, exit code 2."""
    from ..errors import LoadError
    from ..session.object import load
    pt = parse_prog_type(prog_type) if prog_type else None
    try:
        return load(path, prog_type=pt, store=store)
    except LoadError as e:
        raise UsageError(f"error: {e}") from None


def parse_prog_type(name: str):
    from ..uapi import ProgType
    key = name.upper().replace("-", "_")
    aliases = {"TC": "SCHED_CLS", "CLASSIFIER": "SCHED_CLS", "ACTION": "SCHED_ACT",
               "SOCKET": "SOCKET_FILTER", "TRACEPOINT": "TRACEPOINT", "KPROBE": "KPROBE"}
    key = aliases.get(key, key)
    try:
        return ProgType[key]
    except KeyError:
        raise UsageError(f"error: unknown program type {name!r}") from None


def _fs_call(fn, *a):
    from ..fs import PinError
    from ..maps.errors import MapError
    try:
        return fn(*a)
    except PinError as e:
        raise UsageError(f"error: {e.strerror or e}") from None
    except MapError as e:
        raise UsageError(f"error: {e}") from None


def _first_program(obj):
    if not obj.programs:
        raise UsageError(f"error: {obj.path}: object has no programs")
    return next(iter(obj.programs.values()))


def cmd_load(args) -> int:
    st = store_of(args)
    obj = load_object(args.obj, prog_type=args.type, store=st)
    prog = _first_program(obj)
    _check_pinmaps(obj, args.pinmaps)
    _fs_call(st.pin_program, args.path, prog)
    say_pinned("program", prog.name, args.path, store=st)
    _pin_maps(obj, args.pinmaps, st)
    return 0


def _check_pinmaps(obj, directory: str | None) -> None:
    if not directory:
        return
    d = directory.rstrip("/")
    for name, have in obj.pinned.items():       # libbpf refuses to pin a map twice
        if have != f"{d}/{name}":
            raise UsageError(f"error: map '{name}' already has pin path '{have}' different "
                             f"from '{d}/{name}'")


def _pin_maps(obj, directory: str | None, st) -> None:
    """The maps the object pinned itself (LIBBPF_PIN_BY_NAME and iproute2's namespaces),
    then, with --pinmaps, every other map under ``directory``."""
    for name, path in obj.pinned.items():
        say_pinned("map", name, path, store=st,
                   how="reused by name" if name in obj.reused else "by name")
    if not directory:
        return
    d = directory.rstrip("/")
    for name, m in obj.maps.items():
        if name not in obj.pinned:
            _fs_call(st.pin_map, f"{d}/{name}", m)
            say_pinned("map", name, f"{d}/{name}", store=st)


def cmd_loadall(args) -> int:
    st = store_of(args)
    obj = load_object(args.obj, prog_type=args.type, store=st)
    _check_pinmaps(obj, args.pinmaps)
    for name, prog in obj.programs.items():
        _fs_call(st.pin_program, f"{args.dir.rstrip('/')}/{name}", prog)
        say_pinned("program", name, f"{args.dir.rstrip('/')}/{name}", store=st)
    _pin_maps(obj, args.pinmaps, st)
    return 0


def _prog_type_name(t) -> str:
    return t.name.lower() if t.value else "unspec"


def select_pins(st, kind: str, tokens: list[str], *, prefix_ok: bool = False):
    """bpftool's selector over the store (ebee.session.select), errors as usage errors."""
    try:
        return _fs_call(lambda: select(st, kind, tokens, prefix_ok=prefix_ok))
    except SelectError as e:
        raise UsageError(f"error: {e}") from None


def _loaded_at(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def prog_show_json(x) -> dict:
    """bpftool's ``prog show -j`` fields that a pin of the store has, plus where it came
    from (section, object)."""
    m = x.meta
    return {"id": x.id, "type": _prog_type_name(_ptype(m)), "name": m["name"][:15],
            "tag": m["tag"], "gpl_compatible": _gpl(m["license"]),
            "loaded_at": int(x.created), "bytes_xlated": 8 * m["insns"], "jited": False,
            "pinned": [x.path], "section": m["section"], "object": m["object_path"]}


def cmd_show(args) -> int:
    st = store_of(args)
    if args.sel:
        rows, rest = select_pins(st, "prog", args.sel, prefix_ok=True)
        if rest:
            raise UsageError(f"error: unexpected {' '.join(rest)!r}")
    else:
        rows = _fs_call(lambda: pinned(st, "prog"))
    if args.json:
        # bpftool prints one object for a selector that names one program
        one = bool(args.sel) and len(rows) == 1 and (
            args.sel[0] in KEYWORDS or args.sel[0].isdigit() or normpath(args.sel[0]) == rows[0].path)
        print_json(prog_show_json(rows[0]) if one else [prog_show_json(x) for x in rows])
        return 0
    for x in rows:
        m = x.meta
        gpl = "  gpl" if _gpl(m["license"]) else ""
        print(f"{x.id}: {_prog_type_name(_ptype(m))}  name {m['name'][:15]}  tag {m['tag']}{gpl}")
        print(f"\tloaded_at {_loaded_at(x.created)}")
        print(f"\txlated {8 * m['insns']}B  not jited  section {m['section']}")
        print(f"\tpinned {x.path}")
    return 0


def _ptype(meta):
    from ..uapi import ProgType
    return ProgType(meta["type"])


def _gpl(license: str) -> bool:
    return license in ("GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL",
                       "Dual MIT/GPL", "Dual MPL/GPL")


def programs_of(target: str, store, only: str | None = None, *, prog_type: str | None = None):
    """Programs named by a pin path or an object file."""
    from ..fs import PinError
    if os.path.exists(target) and not store.exists(target):
        with open(target, "rb") as f:
            magic = f.read(4)
        if magic != b"\x7fELF":
            raise UsageError(f"error: {target}: not an ELF object or a pinned program")
        obj = load_object(target, prog_type=prog_type, store=store)
        progs = list(obj.programs.values())
        if only is not None:
            progs = [p for p in progs if p.name == only]
            if not progs:
                raise UsageError(f"error: {target}: no program named {only!r} "
                                 f"(has: {', '.join(obj.programs) or 'none'})")
        return progs
    try:
        got = get_pinned(target, store=store)
    except PinError as e:
        raise UsageError(f"error: {target}: {e.strerror or e}") from None
    if isinstance(got, Map):
        raise UsageError(f"error: {target}: pinned object is a map, not a program")
    return [got]


def func_signature(btf, func_type_id: int) -> str:
    """bpftool's one-line function header: ``int name(struct __sk_buff * skb)``."""
    from ..btf import Kind
    f = btf[func_type_id]
    proto = btf[f.type_id]
    args = ", ".join(f"{_type_str(btf, p.type_id)} {p.name}".rstrip() for p in proto.params)
    return f"{_type_str(btf, proto.return_type_id)} {f.name}({args or 'void'})" \
        if proto.kind is Kind.FUNC_PROTO else f.name


def _type_str(btf, tid: int, depth: int = 0) -> str:
    from ..btf import Kind
    if tid == 0:
        return "void"
    if depth > 16:
        return "..."
    t = btf[tid]
    k = t.kind
    if k is Kind.PTR:
        return f"{_type_str(btf, t.type_id, depth + 1)} *"
    if k in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT):
        return f"{k.name.lower()} {_type_str(btf, t.type_id, depth + 1)}"
    if k is Kind.TYPE_TAG:
        return _type_str(btf, t.type_id, depth + 1)
    if k in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64):
        kw = {Kind.STRUCT: "struct", Kind.UNION: "union"}.get(k, "enum")
        return f"{kw} {t.name}" if t.name else f"{kw} {{...}}"
    if k is Kind.FWD:
        return f"{'union' if t.is_union else 'struct'} {t.name}"
    if k is Kind.ARRAY:
        return f"{_type_str(btf, t.type_id, depth + 1)}[{t.nelems}]"
    if k is Kind.FUNC_PROTO:
        return "(*)()"
    return t.name or k.name.lower()


def format_linfo(li, linum: bool) -> str:
    """bpftool's source line: ``; text`` or ``; text [file:F line_num:N line_col:C]``."""
    text = li.line_text.lstrip()
    if linum:
        return f"; {text} [file:{li.file_name} line_num:{li.line} line_col:{li.col}]"
    return f"; {text}"


def _rewritten(prog):
    """The instructions with their context accesses rewritten as the kernel rewrites them
    (ebee.progtypes), and where each original instruction moved; the program as linked if
    its context accesses are not ones Linux would accept."""
    try:
        return prog.xlated()
    except (OSError, ValueError):
        return list(prog.insns), {}


def xlated_lines(prog, *, linum: bool = False, opcodes: bool = False) -> list[str]:
    """The program as ``bpftool prog dump xlated`` prints it, with BTF source lines."""
    from ..asm.disasm import format_xlated
    from ..kernel.xlated import call_name
    from ..session.xlated import kernel_xlated
    try:
        x = kernel_xlated(prog)
        insns, line_info, func_info = x.insns, x.line_info, x.func_info
    except (OSError, ValueError):
        insns = list(prog.insns)
        line_info = [(li.insn, li) for li in prog.line_info]
        func_info = [(fi.insn, fi) for fi in prog.func_info]
    body = format_xlated(insns, opcodes=opcodes, call=call_name)
    # body lines start with "%4d: " per instruction; opcodes add continuation lines
    funcs = dict(func_info) if prog.btf is not None else {}
    lines_at: dict[int, list] = {}
    for at, li in line_info:
        lines_at.setdefault(at, []).append(li)
    out: list[str] = []
    for line in body:
        head = line.split(":", 1)[0].strip()
        pc = int(head) if head.isdigit() else None
        if pc is not None:
            fi = funcs.get(pc)
            if fi is not None:
                try:
                    out.append(f"{func_signature(prog.btf, fi.type_id)}:")
                except Exception:
                    pass
            # bpftool prints every line_info record, the same source line again included
            out.extend(format_linfo(li, linum) for li in lines_at.get(pc, ()))
        out.append(line)
    return out


def _dump_targets(args, st) -> list:
    """The programs ``prog dump``'s tokens name, bpftool's trailing keywords applied."""
    tokens = [t for t in args.target if t not in ("opcodes", "linum", "visual")]
    args.opcodes = args.opcodes or "opcodes" in args.target
    args.linum = args.linum or "linum" in args.target
    if tokens and tokens[0] in KEYWORDS:
        rows, rest = select_pins(st, "prog", tokens)
        if rest:
            raise UsageError(f"error: unexpected {' '.join(rest)!r}")
        return [p for x in rows for p in programs_of(x.path, st, args.prog)]
    if len(tokens) != 1:
        raise UsageError("error: expected id N | pinned PATH | name NAME | tag TAG | OBJ.o")
    if tokens[0].isdigit() and not os.path.exists(tokens[0]):
        return _dump_targets_id(st, tokens[0], args)
    return programs_of(tokens[0], st, args.prog)


def _dump_targets_id(st, n: str, args) -> list:
    rows, _ = select_pins(st, "prog", ["id", n])
    return programs_of(rows[0].path, st, args.prog)


def cmd_dump(args) -> int:
    st = store_of(args)
    progs = _dump_targets(args, st)
    if args.what == "jited":
        return dump_jited(progs, args)
    if args.json:
        # bpftool's -j shape (one object per instruction: "disasm", with "proto", "src"
        # and "opcodes" where they apply), from the same lines as the text dump
        from .kernel_prog_dump import xlated_json
        res = [{"name": p.name, "section": p.section,
                "insns": xlated_json(xlated_lines(p, linum=args.linum, opcodes=args.opcodes))}
               for p in progs]
        print_json(res if len(res) != 1 else res[0]["insns"])
        return 0
    for n, p in enumerate(progs):
        if len(progs) > 1:
            if n:
                print()
            print(f"{p.name}:  (section {p.section})")
        sys.stdout.write("\n".join(xlated_lines(p, linum=args.linum, opcodes=args.opcodes)) + "\n")
    return 0


def dump_jited(progs, args) -> int:
    """``prog dump jited``: the JIT's code for each program (ebee.jit.dump), like bpftool's
    ``dump jited linum`` but annotated with the eBPF instruction of each native range."""
    from ..engines import jit
    if not jit.available():
        raise UsageError(f"error: no JIT: {jit.unavailable_reason()}")
    from ..engines.jit.dump import jited, jited_lines
    res = []
    for n, p in enumerate(progs):
        try:
            insns = p.xlated()[0]
        except (OSError, ValueError):
            insns = list(p.insns)
        checked = p.evidence() is None      # unverified programs run checked code
        if args.json:
            res.append({"name": p.name, "checked": checked, "functions": [
                {"name": f.name, "insns": [{"pc": i.pc, "offset": i.offset, "disasm": i.text,
                                            "bytes": i.data.hex()} for i in f.insns]}
                for f in jited(insns, checked=checked)
                if f.name == "ebee_main" or f.name.startswith("ebee_f")]})
            continue
        if n:
            print()
        if checked:
            print(f"; {p.name}: not verified, so compiled with run-time checks")
        sys.stdout.write("\n".join(jited_lines(insns, checked=checked, opcodes=args.opcodes,
                                               name=p.name)))
    if args.json:
        print_json(res if len(res) != 1 else res[0])
    return 0


def disasm_object(path: str, only: str | None, *, linum: bool, fmt: str) -> int:
    """``ebee disasm prog.o``: each program of an object, as loaded (maps relocated)."""
    from ..asm import disassemble
    from ..fs import default_store
    obj_progs = programs_of(path, default_store(), only) if os.path.exists(path) else []
    if not os.path.exists(path):
        raise UsageError(f"{path}: error: no such file")
    for n, p in enumerate(obj_progs):
        if len(obj_progs) > 1:
            if n:
                print()
            print(f"{p.name}:  (section {p.section})")
        if fmt == "xlated":
            sys.stdout.write("\n".join(xlated_lines(p, linum=linum)) + "\n")
        else:
            sys.stdout.write(disassemble(p.insns, fmt))
    return 0


__all__ = ["disasm_object", "register", "xlated_lines", "programs_of", "load_object", "format_linfo"]
