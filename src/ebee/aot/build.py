"""From ebee's objects to C units, and from C to binaries with the system's compiler."""
from __future__ import annotations

import platform
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
    """Raw instructions (no program type, no maps): r1 = memory block, r2 = its length.
    Raises OffloadError for what the AOT runtime cannot run."""
    insns = list(insns)
    text = {i.pc: str(i) for i in insns}
    offload.check(name, insns, lambda pc: text.get(pc, "?"), lambda i: -1, None)
    return Unit(name, insns, checked, 0)


def _is_global_data(mp) -> bool:
    return mp.type == U.MapType.ARRAY and mp.max_entries == 1 and "." in (mp.name or "")


def _prog_slots(mp, order: list[str]) -> bytes | None:
    """A PROG_ARRAY's slots as int32 indices into ``order`` (-1: empty, or a program
    that is not compiled with this one)."""
    slots = [-1] * mp.max_entries
    for key, target in mp.items():
        name = getattr(target, "name", None)
        idx = int.from_bytes(key, "little")
        if name in order and idx < len(slots):
            slots[idx] = order.index(name)
    if all(v < 0 for v in slots):
        return None
    return b"".join(v.to_bytes(4, "little", signed=True) for v in slots)


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
    order = [name for name, _i, _s in execs]
    for mid, _k in sorted(used.items(), key=lambda kv: kv[1]):
        mp = by_id[mid]
        init = None
        if _is_global_data(mp):
            init = mp.raw_lookup(bytes(4))
        elif mp.type == U.MapType.PROG_ARRAY:
            init = _prog_slots(mp, order)
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


#: output suffix -> form (``ebee aot -o``)
FORMS = {".c": "c", ".o": "object", ".so": "shared"}


def native_compiler(cc: str | None = None) -> str:
    """For .o/.so: clang (LLVM, the JIT's backend) when installed, else the system's cc."""
    if cc:
        return compiler(cc)
    for cand in ("clang-19", "clang"):
        if shutil.which(cand):
            return shutil.which(cand)  # type: ignore[return-value]
    return compiler()


def build_native(units: list[Unit], maps: list[MapDef], out: str | Path, *, object_name: str,
                 runtime: bool = False, cc: str | None = None, target: str | None = None,
                 opt: str = "-O2") -> list[Path]:
    """OUT.c, OUT.o or OUT.so (by suffix) from translated units; the files written.

    ``runtime``: .c gets ebee_rt.c beside it, .o and .so get the runtime linked in (a
    .so without it leaves the ebee_rt symbols to the application).  ``target``: a
    clang target triple to cross-compile a .o (the program only: the runtime needs the
    target's libc)."""
    out = Path(out)
    form = FORMS.get(out.suffix)
    if form is None:
        raise ValueError(f"{out}: the output's suffix picks the form: .c, .o or .so")
    if target and form != "object":
        raise ValueError("--target cross-compiles relocatable objects (.o) only")
    if target and runtime:
        raise ValueError("--target with --runtime: the runtime needs the target's C library")
    if form == "c":
        written = [write_c(units, maps, out, object_name=object_name),
                   out.parent / runtime_src.HEADER]
        if runtime:
            written.append(out.parent / runtime_src.SOURCE)
            (out.parent / runtime_src.SOURCE).write_text(runtime_src.source())
        return written
    import tempfile
    with tempfile.TemporaryDirectory(prefix="ebee-aot-") as td:
        tmp = Path(td)
        src = write_c(units, maps, tmp / (cgen.ident(object_name) + ".c"), object_name=object_name)
        runtime_src.write(tmp)
        cc_path = native_compiler(cc)
        base = [cc_path, opt, "-std=gnu11", "-fPIC", "-I", str(tmp)]
        if target:
            base += [f"--target={target}", "-ffreestanding", "-DEBEE_RT_FREESTANDING"]
        elif "clang" in Path(cc_path).name and platform.machine() == "x86_64":
            # as the JIT does (engines/jit/codegen.py): no SHLD for rotates, whose latency
            # lengthens loop-carried chains
            base += ["-Xclang", "-target-feature", "-Xclang", "+slow-shld"]
        srcs = [str(src)] + ([str(tmp / runtime_src.SOURCE)] if runtime else [])
        out.parent.mkdir(parents=True, exist_ok=True)
        if form == "shared":
            run_cc(base + ["-shared", *srcs, "-o", str(out)])
        elif len(srcs) == 1:
            run_cc(base + ["-c", srcs[0], "-o", str(out)])
        else:
            objs = []
            for s in srcs:
                o = tmp / (Path(s).stem + ".o")
                run_cc(base + ["-c", s, "-o", str(o)])
                objs.append(str(o))
            run_cc([cc_path, "-r", "-nostdlib", *objs, "-o", str(out)])
    return [out]
