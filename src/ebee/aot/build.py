"""From ebee's objects to C units, and from C to binaries with the system's compiler."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterable

from .. import uapi as U
from ..errors import EbeeError
from ..isa import Instruction, Kind
from . import cgen, offload, runtime_src
from .cgen import MapDef, Unit


class CompileError(EbeeError, RuntimeError):
    """The C compiler or linker failed on generated code (a translator bug, or no compiler)."""


def compiler(name: str | None = None) -> str:
    """The C compiler to use: ``name``, else $CC-like defaults (cc, gcc, clang)."""
    for cand in ([name] if name else ["cc", "gcc", "clang", "clang-19"]):
        path = shutil.which(cand)
        if path:
            return path
    raise CompileError(f"no C compiler found ({name or 'cc, gcc, clang'})")


def raw_unit(name: str, insns: list[Instruction], *, checked: bool = True) -> Unit:
    """Raw instructions (no program type, no maps): r1 = memory block, r2 = its length."""
    return Unit(name, list(insns), checked, 0)


def _is_global_data(mp) -> bool:
    return mp.type == U.MapType.ARRAY and mp.max_entries == 1 and "." in (mp.name or "")


def object_units(obj, prog: str | None = None) -> tuple[list[Unit], list[MapDef]]:
    """The verified programs of a loaded ebee object (all, or ``prog``) as units, and the
    maps they use.  Raises OffloadError for what the AOT runtime cannot run."""
    progs = dict(obj.programs)
    if prog is not None:
        if prog not in progs:
            raise offload.OffloadError(f"no program {prog!r} in the object "
                                       f"(it has: {', '.join(progs) or 'none'})")
        progs = {prog: progs[prog]}
    by_id = {mp.id: mp for mp in obj.maps.values()}
    used: dict[int, int] = {}          # map id -> index in the object's table
    units: list[Unit] = []
    execs = []
    for name, p in progs.items():
        info = p.info
        offload.check(name, [], str, lambda i: 0, info.prog_type)
        exe = p.executable(evidence=True)
        if exe.evidence is None:
            raise offload.OffloadError(f"{name}: the verifier did not accept the program; only "
                                       f"verified programs are compiled ahead of time")
        insns = list(exe.insns)
        text = {i.pc: str(i) for i in insns}

        def map_type_of(i: Instruction, _by=by_id) -> int:
            mp = _by.get(i.imm & 0xFFFFFFFF)
            return int(mp.type) if mp is not None else -1
        offload.check(name, insns, lambda pc, _t=text: _t.get(pc, "?"), map_type_of, info.prog_type)
        for i in insns:
            if i.kind is Kind.LD_IMM64 and i.src in (U.BPF_PSEUDO_MAP_FD, U.BPF_PSEUDO_MAP_VALUE):
                used.setdefault(i.imm & 0xFFFFFFFF, len(used))
        execs.append((name, info, insns))
    maps: list[MapDef] = []
    for mid, _k in sorted(used.items(), key=lambda kv: kv[1]):
        mp = by_id[mid]
        init = None
        if _is_global_data(mp):
            init = mp.raw_lookup(bytes(4))
        maps.append(MapDef(mp.name, int(mp.type), mp.key_size, mp.value_size, mp.max_entries,
                           int(mp.flags), init))
    for name, info, insns in execs:
        units.append(Unit(name, insns, False, int(info.prog_type),
                          lambda i, _u=used: _u[i.imm & 0xFFFFFFFF]))
    return units, maps


def write_c(units: list[Unit], maps: list[MapDef], out: str | Path, *, object_name: str) -> Path:
    """OUT.c, with ebee_rt.h (the one header it needs) beside it."""
    out = Path(out)
    text = cgen.translate(units, maps, object_name=object_name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    (out.parent / runtime_src.HEADER).write_text(runtime_src.header())
    return out


def run_cc(args: list[str]) -> None:
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CompileError(f"{args[0]}: {e}") from None
    if r.returncode != 0:
        first = (r.stderr.strip().splitlines() or ["failed"])[0]
        raise CompileError(f"{Path(args[0]).name} failed: {first}")


def build_c(sources: Iterable[str | Path], out: str | Path, *, cc: str | None = None,
            opt: str = "-O2", shared: bool = False, extra: Iterable[str] = ()) -> Path:
    """Compile C sources together with the runtime into an executable or a shared library."""
    out = Path(out)
    srcs = [str(s) for s in sources]
    incdir = Path(srcs[0]).parent if srcs else out.parent
    rt = incdir / runtime_src.SOURCE
    if not rt.exists():
        runtime_src.write(incdir)
    (incdir / runtime_src.HEADER).write_text(runtime_src.header())
    args = [compiler(cc), opt, "-std=gnu11", "-I", str(incdir), *srcs, str(rt), "-o", str(out)]
    if shared:
        args[1:1] = ["-shared", "-fPIC"]
    run_cc(args + list(extra))
    return out


def build_shared(c_file: str | Path, out: str | Path, *, cc: str | None = None) -> Path:
    return build_c([c_file], out, cc=cc, shared=True)


def mem_driver(object_name: str, mems: list[bytes | None]) -> str:
    """C main() running program k of the object on a copy of ``mems[k]`` (r1 = the copy,
    r2 = its length; no block: r1 = r2 = 0), printing ``k status retval`` per program --
    what a differential test against the JIT reads."""
    obj = cgen.ident(object_name)
    out = ["#include <stdio.h>", "#include <stdlib.h>", f"#include \"{runtime_src.HEADER}\"",
           f"extern const struct ebee_object_def {obj};"]
    for k, m in enumerate(mems):
        if m:
            out.append(f"static const uint8_t mem{k}[{len(m)}] = {{{', '.join(str(b) for b in m)}}};")
    out.append("int main(void)\n{")
    out.append(f"    ebee_obj *o = ebee_obj_new(&{obj}, 1);")
    out.append("    struct ebee_result res;")
    out.append("    uint8_t *buf = malloc(65536);")
    for k, m in enumerate(mems):
        if m:
            out.append(f"    memcpy(buf, mem{k}, {len(m)}); ebee_run_mem(o, {k}, 0, buf, {len(m)}, &res);")
        else:
            out.append(f"    ebee_run_mem(o, {k}, 0, NULL, 0, &res);")
        out.append(f"    printf(\"{k} %d %llu\\n\", res.status, (unsigned long long)res.retval);")
    out.append("    free(buf);\n    ebee_obj_free(o);\n    return 0;\n}")
    return "\n".join(out) + "\n"
