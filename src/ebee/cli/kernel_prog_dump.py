"""``ebee --kernel prog dump xlated|jited``: a loaded program's instructions, in bpftool's
text and ``-j`` shapes.  The images are decoded by :mod:`ebee.kernel.xlated` and
:mod:`ebee.kernel.jited`; this module only lays them out."""
from __future__ import annotations

import sys

from ..asm.disasm import format_xlated
from ..kernel.info import prog_jited, prog_xlated
from ..kernel.jited import disassemble, jited_functions
from ..kernel.xlated import call_name, decode_xlated, source_info
from .common import UsageError, print_json
from .kernel_common import KernelCmdError, kernel_errors, open_prog, select_ids
from .prog_cmds import format_linfo, func_signature

_OPCODES_INDENT = "       "


def xlated_lines(p, *, opcodes: bool, linum: bool) -> list[str]:
    """bpftool's ``prog dump xlated``: every line_info record's source line before its
    instruction (bpftool repeats them), raw bytes as the kernel returned them."""
    src = source_info(p.fd)
    image = prog_xlated(p.fd)
    if not image:
        raise KernelCmdError("no instructions returned (kernel.kptr_restrict or "
                             "bpf_jit_harden hides them)")
    out = []
    for x in decode_xlated(image, prog_jited(p.fd).ksyms):
        if src.btf is not None:
            if x.pc in src.funcs:
                try:
                    out.append(f"{func_signature(src.btf, src.funcs[x.pc])}:")
                except Exception:
                    pass
            out.extend(format_linfo(li, linum) for li in src.lines.get(x.pc, ()))
        if x.insn is None:
            out.append(f"{x.pc:4d}: ({x.code:02x}) {x.text}")
        else:
            line = format_xlated([x.insn], call=call_name)[0]
            out.append(line + (f"#{x.callee}" if x.callee else ""))
        if opcodes:
            out.append(_OPCODES_INDENT + " ".join(f"{b:02x}" for b in x.raw))
    return out


def jited_lines(p, *, opcodes: bool) -> list[str]:
    img = p.jited()
    if not img.code:
        raise KernelCmdError("no JIT image (the program is interpreted, or "
                             "kernel.kptr_restrict hides it)")
    out = []
    for f in jited_functions(img, p.tag, p.name):
        out.append(f"{f.name}:")
        for off, size, text in disassemble(f.code):
            out.append(f"{off:4x}:\t{text}")
            if opcodes:
                out.append("\t" + " ".join(f"{b:02x}" for b in f.code[off:off + size]))
    return out


@kernel_errors
def cmd_prog_dump(args) -> int:
    sel = [t for t in args.sel if t not in ("opcodes", "linum", "visual")]
    opcodes = args.opcodes or "opcodes" in args.sel
    linum = args.linum or "linum" in args.sel
    ids_, rest = select_ids(sel, "prog")
    if rest:
        raise UsageError(f"error: unexpected {' '.join(rest)!r}")
    blocks = []
    for i in ids_:
        with open_prog(i) as p:
            if args.what == "xlated":
                lines = xlated_lines(p, opcodes=opcodes, linum=linum)
            else:
                lines = jited_lines(p, opcodes=opcodes)
            blocks.append((p, lines))
    if args.json:
        res = [xlated_json(lines) if args.what == "xlated" else jited_json(lines)
               for _, lines in blocks]
        print_json(res[0] if len(res) == 1 else res)
        return 0
    for n, (_, lines) in enumerate(blocks):
        if n:
            print()
        sys.stdout.write("\n".join(lines) + "\n")
    return 0


def xlated_json(lines: list[str]) -> list[dict]:
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
        elif out and ln.startswith(_OPCODES_INDENT):
            out[-1]["opcodes"] = ln.split()
    return out


def jited_json(lines: list[str]) -> list[dict]:
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
