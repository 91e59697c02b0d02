"""ebee on the running kernel: bpftool's commands, through ebee's bpf(2) client.

``ebee --kernel prog|map|btf ...`` switches those command groups from ebee's
runtime (and pin store) to the kernel (and the real bpffs).  ``ebee link``,
``ebee trace-pipe`` and ``ebee feature probe`` always work on the kernel.
Output has bpftool's shapes, and ``--json`` where bpftool has it.

Objects are named as bpftool names them: ``id N``, ``pinned PATH``,
``name NAME``, ``tag TAG`` (programs), or just ``N`` / ``PATH``.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time

from .common import UsageError, print_json


# ------------------------------------------------------------------------------------ parsers

def register(sub) -> None:
    """Commands that only make sense on a kernel: link, trace-pipe, feature."""
    p = sub.add_parser("link", help="show, pin and detach BPF links in the kernel "
                                    "(like bpftool link)")
    ls = p.add_subparsers(dest="link_cmd", metavar="CMD")
    ls.required = True
    q = ls.add_parser("show", aliases=["list"], help="list links: show [id N | pinned PATH]")
    q.add_argument("sel", nargs="*", metavar="LINK")
    _json(q)
    q.set_defaults(func=cmd_link_show)
    q = ls.add_parser("detach", help="detach a link: detach id N | pinned PATH")
    q.add_argument("sel", nargs="+", metavar="LINK")
    q.set_defaults(func=cmd_link_detach)
    q = ls.add_parser("pin", help="pin a link: pin LINK FILE")
    q.add_argument("sel", nargs="+", metavar="LINK FILE")
    q.set_defaults(func=cmd_link_pin)

    p = sub.add_parser("trace-pipe", help="print bpf_printk output from the kernel's trace pipe "
                                          "(like bpftool prog tracelog)")
    _json(p)
    p.add_argument("--count", type=int, default=0, metavar="N", help="stop after N lines")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop after this long without output")
    p.set_defaults(func=cmd_trace_pipe)

    p = sub.add_parser("feature", help="what this kernel supports (like bpftool feature)")
    fs = p.add_subparsers(dest="feature_cmd", metavar="CMD")
    fs.required = True
    q = fs.add_parser("probe", help="probe program types, map types, helpers: probe [kernel]")
    q.add_argument("target", nargs="?", choices=("kernel",), help="the running kernel (default)")
    q.add_argument("--no-helpers", action="store_true", help="skip the helper probes")
    _json(q)
    q.set_defaults(func=cmd_feature_probe)


def register_kernel(sub) -> None:
    """``prog``, ``map`` and ``btf`` on the kernel (``ebee --kernel ...``)."""
    p = sub.add_parser("prog", help="programs in the kernel (like bpftool prog)")
    ps = p.add_subparsers(dest="prog_cmd", metavar="CMD")
    ps.required = True
    q = ps.add_parser("show", aliases=["list"], help="show [PROG]")
    q.add_argument("sel", nargs="*", metavar="PROG")
    _json(q)
    q.set_defaults(func=cmd_prog_show)
    for name, help_ in (("load", "load OBJ and pin its first program at PATH"),
                        ("loadall", "load OBJ and pin every program under DIR")):
        q = ps.add_parser(name, help=help_)
        q.add_argument("obj")
        q.add_argument("path")
        q.add_argument("--type", help="program type for sections libbpf does not know")
        q.add_argument("--pinmaps", metavar="DIR", help="also pin the object's maps under DIR")
        q.add_argument("--pin-root", metavar="DIR", help="where maps marked LIBBPF_PIN_BY_NAME "
                                                         "are pinned (default /sys/fs/bpf)")
        q.add_argument("-d", "--debug", action="store_true", help="print the verifier log")
        q.set_defaults(func=cmd_prog_load, all=name == "loadall")
    q = ps.add_parser("dump", help="dump xlated|jited PROG [opcodes] [linum]")
    q.add_argument("what", choices=("xlated", "jited"))
    q.add_argument("sel", nargs="+", metavar="PROG [opcodes] [linum]")
    q.add_argument("--opcodes", action="store_true")
    q.add_argument("--linum", action="store_true")
    _json(q)
    q.set_defaults(func=cmd_prog_dump)
    q = ps.add_parser("run", help="run PROG data_in FILE [data_out FILE] [ctx_in FILE] "
                                  "[ctx_out FILE] [repeat N] (BPF_PROG_TEST_RUN)")
    q.add_argument("sel", nargs="+", metavar="PROG ARGS")
    _json(q)
    q.set_defaults(func=cmd_prog_run)
    q = ps.add_parser("pin", help="pin PROG FILE")
    q.add_argument("sel", nargs="+", metavar="PROG FILE")
    q.set_defaults(func=cmd_prog_pin)
    q = ps.add_parser("attach", help="attach PROG [TARGET]: where its section says, or to an "
                                     "interface/cgroup; with --pin the link outlives ebee, "
                                     "else it stays until Ctrl-C")
    q.add_argument("sel", nargs="+", metavar="PROG [TARGET]")
    q.add_argument("--pin", metavar="PATH", help="pin the link at PATH and return")
    q.add_argument("--mode", choices=("skb", "drv", "hw"), help="XDP mode")
    q.add_argument("--direction", choices=("ingress", "egress"), help="tc direction")
    q.add_argument("--section", help="attach as this section says (kprobe/FUNC ...)")
    q.set_defaults(func=cmd_prog_attach)
    q = ps.add_parser("detach", help="detach PROG: every link of the program (and its pins)")
    q.add_argument("sel", nargs="+", metavar="PROG")
    q.set_defaults(func=cmd_prog_detach)

    p = sub.add_parser("map", help="maps in the kernel (like bpftool map)")
    ms = p.add_subparsers(dest="map_cmd", metavar="CMD")
    ms.required = True
    q = ms.add_parser("show", aliases=["list"], help="show [MAP]")
    q.add_argument("sel", nargs="*", metavar="MAP")
    _json(q)
    q.set_defaults(func=cmd_map_show)
    q = ms.add_parser("dump", help="dump MAP")
    q.add_argument("sel", nargs="+", metavar="MAP")
    _json(q)
    q.set_defaults(func=cmd_map_dump)
    for name, help_ in (("lookup", "lookup MAP key BYTES"), ("delete", "delete MAP key BYTES"),
                        ("update", "update MAP key BYTES value BYTES [any|exist|noexist]")):
        q = ms.add_parser(name, help=help_)
        q.add_argument("sel", nargs="+", metavar="MAP key BYTES")
        _json(q)
        q.set_defaults(func=cmd_map_elem, op=name)
    q = ms.add_parser("pin", help="pin MAP FILE")
    q.add_argument("sel", nargs="+", metavar="MAP FILE")
    q.set_defaults(func=cmd_map_pin)
    q = ms.add_parser("freeze", help="freeze MAP: no more writes from user space")
    q.add_argument("sel", nargs="+", metavar="MAP")
    q.set_defaults(func=cmd_map_freeze)

    p = sub.add_parser("btf", help="BTF objects in the kernel (like bpftool btf)")
    bs = p.add_subparsers(dest="btf_command", metavar="CMD")
    bs.required = True
    q = bs.add_parser("show", aliases=["list"], help="show [id N]")
    q.add_argument("sel", nargs="*", metavar="BTF")
    _json(q)
    q.set_defaults(func=cmd_btf_show)
    q = bs.add_parser("dump", help="dump id N | file PATH [format raw|c]")
    q.add_argument("source", choices=("id", "file", "map", "prog"))
    q.add_argument("what", metavar="N|PATH")
    q.add_argument("format", nargs="*", metavar="format {raw|c}")
    _json(q)
    q.add_argument("-B", "--base-btf", metavar="FILE", help="base BTF for split BTF files")
    q.set_defaults(func=cmd_btf_dump)


def _json(q) -> None:
    q.add_argument("-j", "--json", action="store_true", help="JSON output")


# ----------------------------------------------------------------------------- error handling

class KernelCmdError(Exception):
    """A kernel operation failed: one line, exit code 1."""


def _kernel_errors(fn):
    @functools.wraps(fn)
    def wrapper(args):
        from ..kernel.prog import KernelLoadError
        try:
            return fn(args)
        except KernelLoadError as e:
            if getattr(args, "debug", False) and e.log:
                sys.stderr.write(e.log if e.log.endswith("\n") else e.log + "\n")
            print(f"error: {e.strerror}", file=sys.stderr)
            return 1
        except KernelCmdError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except BrokenPipeError:
            raise
        except (ValueError, TypeError) as e:     # a target or section that cannot work
            raise UsageError(f"error: {e}") from None
        except OSError as e:
            print(f"error: {e.strerror or e}", file=sys.stderr)
            return 1
    return wrapper


# --------------------------------------------------------------------------------- selectors

def _select_ids(tokens: list[str], kind_name: str) -> tuple[list[int], list[str]]:
    """bpftool's object selectors; returns (ids, the remaining tokens)."""
    from ..kernel.info import Kind, fd_by_id, ids, map_info, prog_info
    from ..kernel.pin import obj_get
    kind = Kind[kind_name.upper()]
    if not tokens:
        raise UsageError(f"error: expected a {kind_name}: id N | pinned PATH | name NAME")
    t, rest = tokens[0], tokens[1:]
    if t in ("id", "pinned", "name", "tag"):
        if not rest:
            raise UsageError(f"error: expected a value after '{t}'")
        v, rest = rest[0], rest[1:]
    elif t.isdigit():
        t, v = "id", t
    elif os.sep in t:
        t, v = "pinned", t
    else:
        raise UsageError(f"error: expected id N | pinned PATH | name NAME, got {t!r}")
    if t == "id":
        try:
            return [int(v)], rest
        except ValueError:
            raise UsageError(f"error: invalid id {v!r}") from None
    if t == "pinned":
        try:
            fd = obj_get(v)
        except OSError as e:
            raise KernelCmdError(e.strerror) from None
        try:
            info = {Kind.PROG: prog_info, Kind.MAP: map_info}.get(kind)
            if info is None:
                from ..kernel.info import link_info
                info = link_info
            try:
                return [info(fd).id], rest
            except OSError:
                raise KernelCmdError(f"{v}: pinned object is not a {kind_name}") from None
        finally:
            os.close(fd)
    if kind not in (Kind.PROG, Kind.MAP) or (t == "tag" and kind is not Kind.PROG):
        raise UsageError(f"error: a {kind_name} cannot be selected by {t}")
    found = []
    for i in ids(kind):
        try:
            fd = fd_by_id(kind, i)
        except OSError:
            continue
        try:
            info = prog_info(fd, map_ids=False) if kind is Kind.PROG else map_info(fd)
        finally:
            os.close(fd)
        if (t == "name" and info.name == v[:15]) or (t == "tag" and info.tag == v.lower()):
            found.append(i)
    if not found:
        raise KernelCmdError(f"no {kind_name} with {t} {v!r}")
    return found, rest


def _open_prog(i: int):
    from ..kernel.prog import KernelProgram
    return KernelProgram.from_id(i)


def _open_map(i: int):
    from ..kernel.map_handle import KernelMapHandle
    return KernelMapHandle.from_id(i)


def _one(tokens, kind_name):
    got, rest = _select_ids(tokens, kind_name)
    if len(got) != 1:
        raise KernelCmdError(f"{len(got)} {kind_name}s match; select one by id")
    return got[0], rest


# ------------------------------------------------------------------------------- formatting

def _loaded_at(info) -> tuple[str, int]:
    t = info.loaded_at
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t)), t


def _type_name(t) -> str:
    from ..kernel.probe import type_name
    return type_name(t) if hasattr(t, "name") else str(t)


def _prog_json(info) -> dict:
    s, t = _loaded_at(info)
    d = {"id": info.id, "type": _type_name(info.type), "name": info.name, "tag": info.tag,
         "gpl_compatible": info.gpl_compatible}
    if info.run_time_ns:
        d.update(run_time_ns=info.run_time_ns, run_cnt=info.run_cnt)
    if info.recursion_misses:
        d["recursion_misses"] = info.recursion_misses
    d.update(loaded_at=t, uid=info.created_by_uid, bytes_xlated=info.xlated_prog_len,
             jited=bool(info.jited_prog_len), bytes_jited=info.jited_prog_len,
             bytes_memlock=info.memlock, map_ids=info.map_ids)
    if info.btf_id:
        d["btf_id"] = info.btf_id
    return d


def _print_prog(info) -> None:
    head = f"{info.id}: {_type_name(info.type)}"
    if info.name:
        head += f"  name {info.name}"
    head += f"  tag {info.tag}"
    if info.gpl_compatible:
        head += "  gpl"
    if info.run_time_ns:
        head += f" run_time_ns {info.run_time_ns} run_cnt {info.run_cnt}"
    if info.recursion_misses:
        head += f" recursion_misses {info.recursion_misses}"
    print(head)
    s, _ = _loaded_at(info)
    print(f"\tloaded_at {s}  uid {info.created_by_uid}")
    line = f"\txlated {info.xlated_prog_len}B  "
    line += f"jited {info.jited_prog_len}B  " if info.jited_prog_len else "not jited  "
    line += f"memlock {info.memlock}B"
    if info.map_ids:
        line += "  map_ids " + ",".join(map(str, info.map_ids))
    print(line)
    if info.btf_id:
        print(f"\tbtf_id {info.btf_id}")


def _map_json(info) -> dict:
    d = {"id": info.id, "type": _type_name(info.type)}
    if info.name:
        d["name"] = info.name
    d.update(flags=info.map_flags, bytes_key=info.key_size, bytes_value=info.value_size,
             max_entries=info.max_entries, bytes_memlock=info.memlock, frozen=int(info.frozen))
    if info.btf_id:
        d["btf_id"] = info.btf_id
    return d


def _print_map(info) -> None:
    name = f"  name {info.name}" if info.name else ""
    print(f"{info.id}: {_type_name(info.type)}{name}  flags {info.map_flags:#x}")
    print(f"\tkey {info.key_size}B  value {info.value_size}B  max_entries {info.max_entries}  "
          f"memlock {info.memlock}B" + ("  frozen" if info.frozen else ""))
    if info.btf_id:
        print(f"\tbtf_id {info.btf_id}")


def _infos(kind_name: str, sel: list[str]):
    from ..kernel.info import Kind, fd_by_id, ids, link_info, map_info, prog_info
    kind = Kind[kind_name.upper()]
    wanted = _select_ids(sel, kind_name)[0] if sel else list(ids(kind))
    get = {Kind.PROG: prog_info, Kind.MAP: map_info, Kind.LINK: link_info}[kind]
    out = []
    for i in wanted:
        try:
            fd = fd_by_id(kind, i)
        except OSError as e:
            if sel:
                raise KernelCmdError(e.strerror) from None
            continue            # went away while we listed
        try:
            out.append(get(fd))
        finally:
            os.close(fd)
    return out


# ---------------------------------------------------------------------------------- prog

@_kernel_errors
def cmd_prog_show(args) -> int:
    infos = _infos("prog", args.sel)
    if args.json:
        print_json([_prog_json(i) for i in infos] if not args.sel else _prog_json(infos[0])
                   if len(infos) == 1 else [_prog_json(i) for i in infos])
        return 0
    for i in infos:
        _print_prog(i)
    return 0


@_kernel_errors
def cmd_prog_load(args) -> int:
    from ..kernel.fs import ensure_bpffs
    from .prog_cmds import load_object
    obj = load_object(args.obj, prog_type=args.type)
    if not obj.programs:
        raise UsageError(f"error: {args.obj}: object has no programs")
    kobj = obj.load_kernel(log_level=1 if args.debug else 0, pin_root=args.pin_root)
    try:
        if args.debug:
            for p in kobj.programs.values():
                sys.stderr.write(p.log)
        if args.all:
            ensure_bpffs(args.path)
            os.makedirs(args.path, exist_ok=True)
            for name, p in kobj.programs.items():
                p.pin(os.path.join(args.path, name))
        else:
            next(iter(kobj.programs.values())).pin(args.path)
        if args.pinmaps:
            ensure_bpffs(args.pinmaps)
            os.makedirs(args.pinmaps, exist_ok=True)
            for name, m in kobj.maps.items():
                if name not in kobj.pinned:
                    # as libbpf (sanitize_pin_path): bpffs refuses names with dots, so
                    # .rodata of "globals" is pinned as globals_rodata
                    pin_name = (getattr(m, "name", "") or name).replace(".", "_")
                    m.pin(os.path.join(args.pinmaps, pin_name))
    finally:
        kobj.close()        # the pins keep what was pinned (and the maps its programs use)
        obj.close()
    return 0


@functools.lru_cache(maxsize=1)
def _kallsyms() -> tuple[int, list[tuple[int, str]]]:
    """(__bpf_call_base, sorted (address, name) of kernel text): read once per process."""
    base, syms = 0, []
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or (len(parts) > 3 and parts[3] == "[bpf]"):
                    continue
                a = int(parts[0], 16)
                if parts[2] == "__bpf_call_base":
                    base = a
                if parts[1] in "tTwW":
                    syms.append((a, parts[2]))
    except OSError:
        pass
    syms.sort()
    return base, syms


def _bpf_ksyms() -> dict[int, str]:
    """Address -> name of the BPF programs' symbols now (they come and go: not cached)."""
    out = {}
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                if line.endswith("[bpf]\n"):
                    parts = line.split()
                    out[int(parts[0], 16)] = parts[2]
    except OSError:
        pass
    return out


def _call_resolver():
    import bisect
    base, syms = None, None
    addrs: list[int] = []

    def resolve(i):
        nonlocal base, syms, addrs
        from ..uapi import FuncId
        if i.src != 0:
            return None
        if base is None:
            base, syms = _kallsyms()
            addrs = [a for a, _ in syms]
        if not base or not syms:
            return None
        a = base + i.imm
        k = bisect.bisect_right(addrs, a) - 1
        if k >= 0 and syms[k][0] == a:
            return syms[k][1]
        try:
            return "bpf_" + FuncId(i.imm).name.lower()
        except ValueError:
            return None
    return resolve


class _LineRec:
    def __init__(self, insn, file_name, line, col, line_text):
        self.insn, self.file_name, self.line, self.col, self.line_text = \
            insn, file_name, line, col, line_text


def _prog_btf_info(fd):
    """(btf, {insn: func type id}, {insn: [line records]}) of a loaded program."""
    import struct

    from ..kernel.btf import KernelBTF
    from ..kernel.info import prog_line_info
    fi, li, btf_id, fi_size = prog_line_info(fd)
    if not btf_id:
        return None, {}, {}
    with KernelBTF.from_id(btf_id) as kb:
        btf = kb.parse()
    funcs = {}
    for off in range(0, len(fi), fi_size or 8):
        insn, tid = struct.unpack_from("=II", fi, off)
        funcs[insn] = tid
    lines: dict[int, list] = {}
    for off in range(0, len(li), 16):
        insn, fname, lnoff, lc = struct.unpack_from("=IIII", li, off)
        lines.setdefault(insn, []).append(_LineRec(insn, btf.string(fname), lc >> 10, lc & 0x3FF,
                                                   btf.string(lnoff)))
    return btf, funcs, lines


def _xlated_insns(fd: int) -> list[tuple[int, object, str, bytes]]:
    """(pc, Instruction or None, suffix, raw bytes) of a loaded program's xlated image.

    The kernel's dump keeps a few encodings of its own: a bpf-to-bpf call of a
    JITed program carries its relative target in ``off`` and the callee's
    subprogram index in ``imm`` (bpftool prints ``call pc+N#<callee symbol>``),
    and the verifier's "address of this CPU's copy" move has ``off`` ==
    BPF_ADDR_PERCPU.  They are shown as bpftool shows them.
    """
    import struct

    from ..isa import DecodeError, decode
    from ..kernel.info import prog_jited, prog_xlated
    from ..uapi import BPF_ADDR_PERCPU, BPF_PSEUDO_CALL
    raw = bytearray(prog_xlated(fd))
    if not raw:
        raise KernelCmdError("no instructions returned (kernel.kptr_restrict or "
                             "bpf_jit_harden hides them)")
    ksyms = prog_jited(fd).ksyms
    names: dict[int, str] | None = None
    out = []
    pc, n = 0, len(raw) // 8
    while pc < n:
        code, regs, off, imm = struct.unpack_from("<BBhi", raw, 8 * pc)
        size = 16 if code == 0x18 else 8
        orig = bytes(raw[8 * pc:8 * pc + size])
        suffix = ""
        if code == 0x85 and regs >> 4 == BPF_PSEUDO_CALL and ksyms:
            if 0 <= imm < len(ksyms):
                if names is None:
                    names = _bpf_ksyms()
                suffix = "#" + names.get(ksyms[imm], f"{ksyms[imm]:#x}")
            struct.pack_into("<hi", raw, 8 * pc + 2, 0, off)
        try:
            insn = decode(bytes(raw[8 * pc:8 * pc + size]))[0]
            out.append((pc, insn, suffix, orig))
        except DecodeError:
            if code == 0xbf and off == BPF_ADDR_PERCPU:
                text = f"r{regs & 15} = &(void __percpu *)(r{regs >> 4})"
            else:
                text = f"<kernel-internal instruction off={off} imm={imm}>"
            out.append((pc, None, f"({code:02x}) {text}", orig))
        pc += size // 8
    return out


def _xlated_lines(p, *, opcodes: bool, linum: bool) -> list[str]:
    """bpftool's ``prog dump xlated``: every line_info record's source line before its
    instruction (bpftool repeats them), raw bytes as the kernel returned them."""
    from dataclasses import replace

    from ..asm.disasm import format_xlated
    from .prog_cmds import format_linfo, func_signature
    btf, funcs, lines = _prog_btf_info(p.fd)
    resolve = _call_resolver()
    out = []
    for pc, insn, extra, raw in _xlated_insns(p.fd):
        if btf is not None:
            if pc in funcs:
                try:
                    out.append(f"{func_signature(btf, funcs[pc])}:")
                except Exception:
                    pass
            out.extend(format_linfo(li, linum) for li in lines.get(pc, ()))
        if insn is None:
            out.append(f"{pc:4d}: {extra}")
        else:
            out.append(format_xlated([replace(insn, pc=pc)], call=resolve)[0] + extra)
        if opcodes:
            out.append("       " + " ".join(f"{b:02x}" for b in raw))
    return out


def _jited_lines(p, *, opcodes: bool) -> list[str]:
    img = p.jited()
    if not img.code:
        raise KernelCmdError("no JIT image (the program is interpreted, or "
                             "kernel.kptr_restrict hides it)")
    tag = p.tag
    names = _bpf_ksyms() if len(img.ksyms) > 1 else {}
    out = []
    for n, (addr, code) in enumerate(img.functions()):
        # subprograms have their own kernel symbols (bpf_prog_<tag>_<func>)
        name = names.get(addr) or (f"bpf_prog_{tag}_{p.name}" if n == 0 else f"bpf_prog_{n}")
        out.append(f"{name}:")
        for off, size, text in _disasm_x86(code, addr):
            out.append(f"{off:4x}:\t{text}")
            if opcodes:
                out.append("\t" + " ".join(f"{b:02x}" for b in code[off:off + size]))
    return out


def _disasm_x86(code: bytes, addr: int) -> list[tuple[int, int, str]]:
    """(offset, size, AT&T text) per instruction: capstone if installed, else raw bytes."""
    import platform
    try:
        import capstone
    except ImportError:
        capstone = None
    if capstone is not None and platform.machine() in ("x86_64", "AMD64"):
        md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        md.syntax = capstone.CS_OPT_SYNTAX_ATT
        out, off = [], 0
        for ins in md.disasm(code, 0):
            out.append((ins.address, ins.size, f"{ins.mnemonic}\t{ins.op_str}".rstrip()))
            off = ins.address + ins.size
        if off < len(code):
            out.append((off, len(code) - off, "(bad)"))
        return out
    return [(o, min(16, len(code) - o), " ".join(f"{b:02x}" for b in code[o:o + 16]))
            for o in range(0, len(code), 16)]


@_kernel_errors
def cmd_prog_dump(args) -> int:
    sel = [t for t in args.sel if t not in ("opcodes", "linum", "visual")]
    opcodes = args.opcodes or "opcodes" in args.sel
    linum = args.linum or "linum" in args.sel
    ids_, rest = _select_ids(sel, "prog")
    if rest:
        raise UsageError(f"error: unexpected {' '.join(rest)!r}")
    blocks = []
    for i in ids_:
        with _open_prog(i) as p:
            if args.what == "xlated":
                lines = _xlated_lines(p, opcodes=opcodes, linum=linum)
            else:
                lines = _jited_lines(p, opcodes=opcodes)
            blocks.append((p, lines))
    if args.json:
        res = [_xlated_json(lines) if args.what == "xlated" else _jited_json(lines)
               for _, lines in blocks]
        print_json(res[0] if len(res) == 1 else res)
        return 0
    for n, (_, lines) in enumerate(blocks):
        if n:
            print()
        sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _xlated_json(lines: list[str]) -> list[dict]:
    """bpftool -j's shape: one object per instruction, with "proto"/"src" where BTF says."""
    out, pending = [], {}
    for ln in lines:
        head, sep, rest = ln.partition(": ")
        if sep and head.strip().isdigit():
            d = dict(pending)
            d["disasm"] = rest.strip()
            out.append(d)
            pending = {}
        elif ln.startswith("; "):
            pending["src"] = ln[2:]
        elif ln.endswith(":") and not ln.startswith(" "):
            pending["proto"] = ln[:-1]
        elif out and ln.startswith("       "):
            out[-1]["opcodes"] = ln.split()
    return out


def _jited_json(lines: list[str]) -> list[dict]:
    out: list[dict] = []
    for ln in lines:
        if ln.endswith(":") and not ln.startswith((" ", "\t")):
            out.append({"name": ln[:-1], "insns": []})
            continue
        head, sep, rest = ln.partition(":\t")
        if sep and out:
            op, _, operands = rest.partition("\t")
            out[-1]["insns"].append({"pc": f"0x{int(head, 16):x}", "operation": op,
                                     "operands": [o.strip() for o in operands.split(",")
                                                  if o.strip()]})
    return out


def _kv(tokens: list[str], names: set[str]) -> dict[str, str]:
    out = {}
    it = iter(tokens)
    for t in it:
        if t not in names:
            raise UsageError(f"error: unexpected {t!r} (expected one of {', '.join(sorted(names))})")
        try:
            out[t] = next(it)
        except StopIteration:
            raise UsageError(f"error: expected a value after {t!r}") from None
    return out


def _read(path: str) -> bytes:
    from .common import read_bytes
    return read_bytes(path)


def _write(path: str, data: bytes) -> None:
    if path == "-":
        from .map_cmds import _hex
        for o in range(0, len(data), 16):
            print(_hex(data[o:o + 16]))
        return
    from .common import write_atomic
    write_atomic(path, data)


@_kernel_errors
def cmd_prog_run(args) -> int:
    from ..testrun import TestRunError
    i, rest = _one(args.sel, "prog")
    kv = _kv(rest, {"data_in", "data_out", "data_size_out", "ctx_in", "ctx_out",
                    "ctx_size_out", "repeat"})
    data = _read(kv["data_in"]) if "data_in" in kv else None
    ctx = _read(kv["ctx_in"]) if "ctx_in" in kv else None

    def num(k):
        try:
            return int(kv[k], 0) if k in kv else None
        except ValueError:
            raise UsageError(f"error: {k}: invalid number {kv[k]!r}") from None
    repeat = num("repeat") or 1
    with _open_prog(i) as p:
        try:
            r = p.run(data, ctx=ctx, repeat=repeat, data_size_out=num("data_size_out"),
                      ctx_size_out=num("ctx_size_out"), ctx_out="ctx_out" in kv)
        except TestRunError as e:
            raise KernelCmdError(f"failed to run program: {e.strerror}") from None
    if "data_out" in kv:
        _write(kv["data_out"], r.data_out)
    if "ctx_out" in kv and r.ctx_out is not None:
        _write(kv["ctx_out"], r.ctx_out)
    if args.json:
        print_json({"retval": r.retval, "duration": r.duration_ns})
    else:
        avg = " (average)" if repeat > 1 else ""
        print(f"Return value: {r.retval}, duration{avg}: {r.duration_ns}ns")
    return 0


@_kernel_errors
def cmd_prog_pin(args) -> int:
    i, rest = _one(args.sel, "prog")
    if len(rest) != 1:
        raise UsageError("error: expected pin PROG FILE")
    with _open_prog(i) as p:
        p.pin(rest[0])
    return 0


@_kernel_errors
def cmd_prog_attach(args) -> int:
    from ..kernel.links import Link
    i, rest = _one(args.sel, "prog")
    target = rest[0] if rest else None
    if len(rest) > 1:
        raise UsageError(f"error: unexpected {' '.join(rest[1:])!r}")
    kw = {}
    if args.mode:
        kw["mode"] = args.mode
    if args.direction:
        kw["direction"] = args.direction
    p = _open_prog(i)
    section = args.section
    if section is None and target is None:
        raise UsageError("error: a program loaded in the kernel does not remember its section: "
                         "give a TARGET (interface, cgroup) or --section (kprobe/FUNC, "
                         "tracepoint/CAT/NAME, raw_tp/NAME, uprobe/PATH:FUNC)")
    from ..kernel.attach import attach
    a = attach(p, target, section=section, **kw)
    if args.pin:
        link = a if isinstance(a, Link) else getattr(a, "link", None)
        if link is None:
            a.detach()
            raise KernelCmdError("this attachment is not a BPF link and cannot be pinned "
                                 "(netlink/PROG_ATTACH); run without --pin")
        link.pin(args.pin)
        link.close()
        return 0
    try:
        # announce inside the try: a Ctrl-C right after the message must still detach cleanly
        print(f"attached {p.name or i} -> {a.target}; Ctrl-C to detach", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        a.detach()
    return 0


def _bpffs_links() -> dict[int, list[str]]:
    """link id -> paths under the mounted bpffs that pin it."""
    from ..kernel.fs import mounts
    from ..kernel.info import link_info
    from ..kernel.pin import obj_get
    out: dict[int, list[str]] = {}
    for mnt, typ in mounts():
        if typ != "bpf":
            continue
        for root, _, files in os.walk(mnt):
            for f in files:
                path = os.path.join(root, f)
                try:
                    fd = obj_get(path)
                except OSError:
                    continue
                try:
                    out.setdefault(link_info(fd).id, []).append(path)
                except OSError:
                    pass
                finally:
                    os.close(fd)
    return out


@_kernel_errors
def cmd_prog_detach(args) -> int:
    from ..kernel.links import Link
    ids_, rest = _select_ids(args.sel, "prog")
    if rest:
        raise UsageError(f"error: unexpected {' '.join(rest)!r}")
    pins = _bpffs_links()
    n = 0
    for info in _infos("link", []):
        if info.prog_id in ids_:
            with Link.from_id(info.id) as link:
                link.detach()
            for path in pins.get(info.id, ()):
                os.unlink(path)
            n += 1
    if not n:
        raise KernelCmdError("the program has no links to detach")
    return 0


# ----------------------------------------------------------------------------------- map

@_kernel_errors
def cmd_map_show(args) -> int:
    infos = _infos("map", args.sel)
    if args.json:
        print_json(_map_json(infos[0]) if args.sel and len(infos) == 1 else
                   [_map_json(i) for i in infos])
        return 0
    for i in infos:
        _print_map(i)
    return 0


def _entries(m):
    """(key, value) raw pairs; per-CPU values split per CPU."""
    out = []
    for k in m._raw_keys():
        try:
            v = m._sys_lookup(k, 0)
        except KeyError:
            continue
        if m.percpu:
            es = m.elem_size
            v = [v[c * es:c * es + m.value_size] for c in range(m.ncpus)]
        out.append((k, v))
    return out


@_kernel_errors
def cmd_map_dump(args) -> int:
    from ..btf.values import format_map_dump, map_dump_json
    from .map_cmds import print_entry
    i, rest = _one(args.sel, "map")
    with _open_map(i) as m:
        btf = m.kernel_btf() if m.btf_value_type_id else None
        elems = _entries(m)
    if args.json:
        print_json(map_dump_json(btf, m.btf_key_type_id, m.btf_value_type_id, elems))
        return 0
    if btf is not None:
        sys.stdout.write(format_map_dump(btf, m.btf_key_type_id, m.btf_value_type_id, elems))
        return 0
    for k, v in elems:
        print_entry(m, k, b"".join(v) if isinstance(v, list) else v)
    print(f"Found {len(elems)} element{'s' if len(elems) != 1 else ''}")
    return 0


@_kernel_errors
def cmd_map_elem(args) -> int:
    from ..maps.errors import MapError
    from .map_cmds import _json_bytes, print_entry, split_spec
    i, rest = _one(args.sel, "map")
    key, value, flags = split_spec(rest, args.op == "update")
    with _open_map(i) as m:
        try:
            if args.op == "update":
                m._sys_update(key, value, flags)
                return 0
            if args.op == "delete":
                m._sys_delete(key)
                return 0
            v = m._sys_lookup(key, 0)
        except MapError as e:
            raise KernelCmdError(f"{args.op} failed: {e.strerror}") from None
        if args.json:
            print_json({"key": _json_bytes(key), "value": _json_bytes(v)})
        else:
            print_entry(m, key, v)
    return 0


@_kernel_errors
def cmd_map_pin(args) -> int:
    i, rest = _one(args.sel, "map")
    if len(rest) != 1:
        raise UsageError("error: expected pin MAP FILE")
    with _open_map(i) as m:
        m.pin(rest[0])
    return 0


@_kernel_errors
def cmd_map_freeze(args) -> int:
    i, rest = _one(args.sel, "map")
    with _open_map(i) as m:
        m.kmap.freeze()
    return 0


# ----------------------------------------------------------------------------------- btf

@_kernel_errors
def cmd_btf_show(args) -> int:
    from ..kernel.info import Kind, btf_info, fd_by_id, ids
    wanted = None
    if args.sel:
        if len(args.sel) != 2 or args.sel[0] != "id" or not args.sel[1].isdigit():
            raise UsageError("error: expected show [id N]")
        wanted = [int(args.sel[1])]
    users_p: dict[int, list[int]] = {}
    users_m: dict[int, list[int]] = {}
    for info in _infos("prog", []):
        if info.btf_id:
            users_p.setdefault(info.btf_id, []).append(info.id)
    for info in _infos("map", []):
        if info.btf_id:
            users_m.setdefault(info.btf_id, []).append(info.id)
    rows = []
    for i in wanted or list(ids(Kind.BTF)):
        try:
            fd = fd_by_id(Kind.BTF, i)
        except OSError as e:
            if wanted:
                raise KernelCmdError(e.strerror) from None
            continue
        try:
            rows.append(btf_info(fd))
        finally:
            os.close(fd)
    if args.json:
        out = []
        for b in rows:
            d = {"id": b.id, "size": b.size, "prog_ids": users_p.get(b.id, []),
                 "map_ids": users_m.get(b.id, []), "kernel": b.kernel_btf}
            if b.name:
                d["name"] = b.name
            out.append(d)
        print_json(out)
        return 0
    for b in rows:
        name = f"[{b.name}]" if b.kernel_btf else (b.name or "<anon>")
        line = f"{b.id}: name {name}  size {b.size}B"
        if users_p.get(b.id):
            line += "  prog_ids " + ",".join(map(str, users_p[b.id]))
        if users_m.get(b.id):
            line += "  map_ids " + ",".join(map(str, users_m[b.id]))
        print(line)
    return 0


@_kernel_errors
def cmd_btf_dump(args) -> int:
    from . import btf_cmds
    if args.source == "file":
        args.path = args.what
        return btf_cmds.cmd_dump(args)
    from ..kernel.btf import KernelBTF
    fmt = btf_cmds._parse_format(args.format)
    if args.source == "id":
        if not args.what.isdigit():
            raise UsageError(f"error: invalid id {args.what!r}")
        btf_id = int(args.what)
    else:       # the BTF of a map or program: btf dump map ID / prog ID
        info = _infos(args.source, ["id", args.what])[0]
        btf_id = info.btf_id
        if not btf_id:
            raise KernelCmdError(f"{args.source} {args.what} has no BTF")
    with KernelBTF.from_id(btf_id) as kb:
        btf = kb.parse()
    if args.json:
        sys.stdout.write(json.dumps(btf.format_json(), separators=(",", ":"),
                                    ensure_ascii=False) + "\n")
    elif fmt == "c":
        sys.stdout.write(btf.format_c())
    else:
        sys.stdout.write(btf.format_raw())
    return 0


# ---------------------------------------------------------------------------------- link

_LINK_NAMES = {"RAW_TRACEPOINT": "raw_tracepoint", "KPROBE_MULTI": "kprobe_multi",
               "UPROBE_MULTI": "uprobe_multi", "PERF_EVENT": "perf_event",
               "STRUCT_OPS": "struct_ops"}


def _link_json(info) -> dict:
    from ..kernel.info import Kind, fd_by_id, prog_info
    t = info.type.name if hasattr(info.type, "name") else str(info.type)
    d = {"id": info.id, "type": _LINK_NAMES.get(t, t.lower()), "prog_id": info.prog_id}
    try:
        fd = fd_by_id(Kind.PROG, info.prog_id)
        try:
            d["prog_type"] = _type_name(prog_info(fd, map_ids=False).type)
        finally:
            os.close(fd)
    except OSError:
        pass
    if info.attach_type is not None:
        d["attach_type"] = info.attach_type.name.lower() if hasattr(info.attach_type, "name") \
            else info.attach_type
    d.update(info.details)
    return d


def _print_link(d: dict) -> None:
    """bpftool's plain link format: 'ID: type  prog N  ', then per-type fields."""
    out = f"{d['id']}: {d['type']}  prog {d['prog_id']}  "
    t = d["type"]
    if t == "raw_tracepoint":
        out += f"\n\ttp '{d.get('tp_name', '')}'  "
    elif t == "tracing":
        out += f"\n\tprog_type {d.get('prog_type', '')}  attach_type {d.get('attach_type')}  "
    elif t == "cgroup":
        out += f"\n\tcgroup_id {d.get('cgroup_id')}  attach_type {d.get('attach_type')}  "
    elif t == "netns":
        out += f"\n\tnetns_ino {d.get('netns_ino')}  attach_type {d.get('attach_type')}  "
    elif t == "xdp":
        out += f"\n\tifindex {d.get('ifindex')}  "
    elif t in ("tcx", "netkit"):
        out += f"\n\tifindex {d.get('ifindex')}  attach_type {d.get('attach_type')}  "
    print(out)


@_kernel_errors
def cmd_link_show(args) -> int:
    infos = _infos("link", args.sel)
    rows = [_link_json(i) for i in infos]
    if args.json:
        print_json(rows[0] if args.sel and len(rows) == 1 else rows)
        return 0
    for d in rows:
        _print_link(d)
    return 0


@_kernel_errors
def cmd_link_detach(args) -> int:
    from ..kernel.links import Link
    i, rest = _one(args.sel, "link")
    if rest:
        raise UsageError(f"error: unexpected {' '.join(rest)!r}")
    with Link.from_id(i) as link:
        link.detach()
    return 0


@_kernel_errors
def cmd_link_pin(args) -> int:
    from ..kernel.links import Link
    i, rest = _one(args.sel, "link")
    if len(rest) != 1:
        raise UsageError("error: expected pin LINK FILE")
    link = Link.from_id(i)
    try:
        link.pin(rest[0])
    finally:
        link.close()
    return 0


# ----------------------------------------------------------------------- trace-pipe, feature

@_kernel_errors
def cmd_trace_pipe(args) -> int:
    from dataclasses import asdict

    from ..kernel.trace_pipe import TracePipe
    n = 0
    with TracePipe() as tp:
        try:
            while True:
                line = tp.read(args.timeout)
                if line is None:
                    break
                if args.json:
                    print(json.dumps(asdict(line)), flush=True)
                else:
                    print(str(line), flush=True)
                n += 1
                if args.count and n >= args.count:
                    break
        except KeyboardInterrupt:
            pass
    return 0


_MISC = {"have_large_insn_limit": "Large program size limit",
         "have_bounded_loops": "Bounded loop support",
         "have_v2_isa_extension": "ISA extension v2", "have_v3_isa_extension": "ISA extension v3",
         "have_v4_isa_extension": "ISA extension v4"}


@_kernel_errors
def cmd_feature_probe(args) -> int:
    from ..kernel.prog import bpf_available
    from ..kernel.probe import probe
    why = bpf_available()
    if why:
        if args.json:
            print_json({"syscall_config": {"have_bpf_syscall": False}})
            return 0
        raise KernelCmdError(why)
    f = probe(helpers=not args.no_helpers)
    if args.json:
        print_json(f.to_json())
        return 0

    def avail(v):
        return "is available" if v else "is NOT available"
    print("Scanning system call availability...\nbpf() syscall is available\n")
    print("Scanning eBPF program types...")
    for n, v in f.program_types.items():
        print(f"eBPF program_type {n} {avail(v)}")
    print("\nScanning eBPF map types...")
    for n, v in f.map_types.items():
        print(f"eBPF map_type {n} {avail(v)}")
    if f.helpers:
        print("\nScanning eBPF helper functions...")
        for n, hs in f.helpers.items():
            print(f"eBPF helpers supported for program type {n}:")
            for h in hs:
                print(f"\t- {h}")
    print("\nScanning miscellaneous eBPF features...")
    for k, v in f.misc.items():
        print(f"{_MISC.get(k, k)} {avail(v)}")
    return 0


__all__ = ["register", "register_kernel", "KernelCmdError"]
