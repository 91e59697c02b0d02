#!/usr/bin/env python3
"""Regenerate src/ebee/protos/kfuncs.py: every kfunc of the kernel ebee emulates.

Which kernel functions are kfuncs, and their prototypes, come from the kernel's
BTF: pahole tags every function of a kfunc set (``BTF_KFUNCS_START`` ...) with
the decl tag ``bpf_kfunc`` (and ``bpf_fastcall`` where the kernel marks the
kfunc KF_FASTCALL).  BTF does not carry the other flags, nor which program
types may call a kfunc: those come from the kernel sources, read as text --

* ``BTF_ID_FLAGS(func, name, KF_...)`` inside ``BTF_KFUNCS_START(set)`` /
  ``BTF_SET8_START(set)`` ... ``_END(set)``: the flags of each kfunc of a set;
* ``struct btf_kfunc_id_set X = { .set = &set, .filter = f }``: the set's filter;
* ``register_btf_kfunc_id_set(BPF_PROG_TYPE_..., &X)`` /
  ``register_btf_fmodret_id_set(&X)``: the hooks each set is registered for;
* ``bpf_prog_type_to_kfunc_hook()`` in kernel/bpf/btf.c: the hook of each
  program type;
* ``__bpf_kfunc RET name(ARGS)``: the source prototype, compared with BTF's.

The sources may be older than the kernel whose BTF is read (the project has
Debian's linux-source-6.12; the kernel is 6.18): kfuncs the BTF has and the
sources do not get no flags and no hooks, and are listed, with every other
difference, in ``DIFFERENCES`` of the output.

    python3 tools/gen_kfuncs.py [--btf /sys/kernel/btf/vmlinux] \\
        [--src /usr/src/linux-source-6.12.tar.xz | --src DIR] > src/ebee/protos/kfuncs.py
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tarfile
from dataclasses import dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from ebee import uapi as U  # noqa: E402
from ebee.btf import BTF, Kind  # noqa: E402
from ebee.protos.kfunc_types import naive_pointee  # noqa: E402

DEFAULT_SRC = "/usr/src/linux-source-6.12.tar.xz"
DEFAULT_BTF = "/sys/kernel/btf/vmlinux"

# --------------------------------------------------------------------------- the sources


def _wanted(name: str, data: bytes) -> bool:
    if "/tools/" in name or "/Documentation/" in name or not name.endswith((".c", ".h")):
        return False
    return (b"BTF_ID_FLAGS" in data or b"register_btf_" in data or b"__bpf_kfunc " in data
            or (name.endswith(".h") and b"_KFUNC_xxx" in data)
            or name.endswith("kernel/bpf/btf.c"))


def read_sources(src: str) -> tuple[dict[str, str], str]:
    """The source files that define kfuncs or kfunc sets: path (from the tree root) -> text."""
    out: dict[str, str] = {}
    if os.path.isdir(src):
        for root, dirs, files in os.walk(src):
            dirs[:] = [d for d in dirs if d not in ("tools", "Documentation", ".git")]
            for f in files:
                p = os.path.join(root, f)
                if not f.endswith((".c", ".h")):
                    continue
                with open(p, "rb") as fh:
                    data = fh.read()
                rel = os.path.relpath(p, src)
                if _wanted("/" + rel, data):
                    out[rel] = data.decode(errors="replace")
        return out, os.path.basename(os.path.normpath(src))
    with tarfile.open(src, "r|*") as tf:
        for m in tf:
            if not m.isfile() or not m.name.endswith((".c", ".h")):
                continue
            f = tf.extractfile(m)
            data = f.read() if f is not None else b""
            if _wanted(m.name, data):
                out[m.name.split("/", 1)[1]] = data.decode(errors="replace")
    return out, os.path.basename(src)


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _join_continuations(text: str) -> str:
    return re.sub(r"\\\n", " ", text)


@dataclass
class SetEntry:
    name: str
    flags: list[str]
    config: str          # the #if conditions around the entry ("" if none)


@dataclass
class KSet:
    name: str            # the BTF_KFUNCS_START name
    file: str
    entries: list[SetEntry] = field(default_factory=list)


def _list_macros(files: dict[str, str]) -> dict[str, str]:
    """``#define NAME_xxx <body>`` list macros (XDP_METADATA_KFUNC_xxx) in headers."""
    out = {}
    for text in files.values():
        for m in re.finditer(r"^#define\s+(\w+_KFUNC_xxx)\s+(.*)$", _join_continuations(text),
                             re.M):
            out[m.group(1)] = m.group(2)
    return out


def parse_sets(files: dict[str, str]) -> dict[tuple[str, str], KSet]:
    """Every kfunc set, by (file, set name), with its entries' flags and #if context."""
    lists = _list_macros(files)
    sets: dict[tuple[str, str], KSet] = {}
    for path, raw in files.items():
        text = _strip_comments(raw)
        for m in re.finditer(r"BTF_(?:KFUNCS|SET8)_START\((\w+)[^)]*\)(.*?)"
                             r"BTF_(?:KFUNCS|SET8)_END\(\1\)", text, re.S):
            ks = KSet(m.group(1), path)
            conds: list[str] = []
            local: dict[str, tuple[list[str], str]] = {}    # #define M(params) BTF_ID_FLAGS(...)
            body = _join_continuations(m.group(2))
            for line in body.splitlines():
                line = line.strip()
                if not line:
                    continue
                if line.startswith("#"):
                    d = re.match(r"#\s*(\w+)\s*(.*)", line)
                    if d is None:
                        continue
                    kw, rest = d.group(1), d.group(2).strip()
                    if kw in ("if", "ifdef", "ifndef"):
                        conds.append({"ifdef": f"defined({rest})", "ifndef": f"!defined({rest})"}
                                     .get(kw, rest))
                    elif kw == "elif" and conds:
                        conds[-1] = f"!({conds[-1]}) && ({rest})"
                    elif kw == "else" and conds:
                        conds[-1] = f"!({conds[-1]})"
                    elif kw == "endif" and conds:
                        conds.pop()
                    elif kw == "define":
                        dm = re.match(r"(\w+)\(([^)]*)\)\s*BTF_ID_FLAGS\(func,\s*(\w+)\s*"
                                      r"(?:,\s*([^)]*))?\)", rest)
                        if dm:
                            params = [p.strip() for p in dm.group(2).split(",")]
                            local[dm.group(1)] = (params, dm.group(3), dm.group(4) or "")
                    continue
                config = " && ".join(conds)
                for e in re.finditer(r"BTF_ID_FLAGS\(func,\s*(\w+)\s*(?:,\s*([^)]*))?\)", line):
                    ks.entries.append(SetEntry(e.group(1), _flag_names(e.group(2)), config))
                lm = re.fullmatch(r"(\w+_KFUNC_xxx)", line)
                if lm and lm.group(1) in lists:
                    for mac, (params, pname, fl) in local.items():
                        for call in re.finditer(rf"\b{mac}\(([^)]*)\)", lists[lm.group(1)]):
                            args = [a.strip() for a in call.group(1).split(",")]
                            name = args[params.index(pname)] if pname in params else pname
                            ks.entries.append(SetEntry(name, _flag_names(fl), config))
            sets[(path, ks.name)] = ks
    return sets


def _flag_names(expr: str | None) -> list[str]:
    if not expr:
        return []
    names = [f.strip() for f in expr.split("|") if f.strip()]
    for n in names:
        if not hasattr(U, n):
            raise SystemExit(f"unknown kfunc flag {n} (add it to tools/gen_uapi.py)")
    return names


def parse_registrations(files: dict[str, str], sets) -> dict[tuple[str, str], list[tuple]]:
    """(file, set name) -> [(hook source: prog type name or 'FMODRET', filter or None)]."""
    out: dict[tuple[str, str], list[tuple]] = {}
    for path, raw in files.items():
        text = _strip_comments(raw)
        idsets = {}
        for m in re.finditer(r"struct\s+btf_kfunc_id_set\s+(\w+)\s*=\s*\{(.*?)\}\s*;", text, re.S):
            s = re.search(r"\.set\s*=\s*&(\w+)", m.group(2))
            f = re.search(r"\.filter\s*=\s*(\w+)", m.group(2))
            if s:
                idsets[m.group(1)] = (s.group(1), f.group(1) if f else None)
        for m in re.finditer(r"register_btf_kfunc_id_set\(\s*(BPF_PROG_TYPE_\w+)\s*,\s*&(\w+)\s*\)",
                             text):
            if m.group(2) in idsets:
                sname, filt = idsets[m.group(2)]
                out.setdefault((path, sname), []).append((m.group(1), filt))
        for m in re.finditer(r"register_btf_fmodret_id_set\(\s*&(\w+)\s*\)", text):
            if m.group(1) in idsets:
                sname, filt = idsets[m.group(1)]
                out.setdefault((path, sname), []).append(("FMODRET", filt))
    return out


def parse_hook_map(files: dict[str, str]) -> dict[str, str]:
    """bpf_prog_type_to_kfunc_hook(): program type name -> hook name (lower case)."""
    text = _strip_comments(files["kernel/bpf/btf.c"])
    body = re.search(r"static int bpf_prog_type_to_kfunc_hook\(.*?\)\s*\{(.*?)\n\}", text,
                     re.S).group(1)
    out: dict[str, str] = {}
    pending: list[str] = []
    for tok in re.finditer(r"case\s+BPF_PROG_TYPE_(\w+)\s*:|return\s+BTF_KFUNC_HOOK_(\w+)\s*;",
                           body):
        if tok.group(1):
            pending.append(tok.group(1))
        else:
            for p in pending:
                out[p] = tok.group(2).lower()
            pending = []
    return out


def parse_definitions(files: dict[str, str]) -> dict[str, tuple[str, list[str]]]:
    """``__bpf_kfunc RET name(params)`` -> (file, parameter names)."""
    out = {}
    for path, raw in files.items():
        text = _strip_comments(raw)
        for m in re.finditer(r"__bpf_kfunc\s+[^;{(]*?\b(\w+)\s*\(([^)]*)\)\s*\{", text, re.S):
            params = []
            for p in m.group(2).split(","):
                p = p.strip()
                if not p or p == "void":
                    continue
                pm = re.search(r"(\w+)\s*(?:\[[^\]]*\])?$", p)
                params.append(pm.group(1) if pm else p)
            out.setdefault(m.group(1), (path, params))
    return out


# --------------------------------------------------------------------------- the BTF

# parameter-name suffixes the verifier gives a meaning (is_kfunc_arg_*), longest first
SUFFIXES = ("__refcounted_kptr", "__irq_flag", "__nullable", "__uninit", "__alloc", "__str",
            "__map", "__szk", "__ign", "__opt", "__prog", "__sz", "__k")

#: the context structures a kfunc argument can be (btf_is_prog_ctx_type's uapi names)
CTX_STRUCTS = frozenset({
    "__sk_buff", "xdp_md", "bpf_sock_addr", "bpf_sock_ops", "sk_msg_md", "bpf_perf_event_data",
    "bpf_sockopt", "bpf_sk_lookup", "bpf_nf_ctx", "bpf_sysctl", "bpf_cgroup_dev_ctx",
    "sk_reuseport_md", "bpf_raw_tracepoint_args", "bpf_sock", "bpf_flow_keys"})


def c_type(btf: BTF, tid: int) -> str:
    """A C spelling of a type (``struct task_struct *``, ``const void *``, ``u32``)."""
    t = btf[tid]
    k = t.kind
    if tid == 0:
        return "void"
    if k is Kind.PTR:
        if btf.resolve(t.type_id).kind is Kind.FUNC_PROTO:
            return c_type(btf, btf.resolve(t.type_id).id)
        inner = c_type(btf, t.type_id)
        return inner + ("*" if inner.endswith("*") else " *")
    if k is Kind.CONST:
        return "const " + c_type(btf, t.type_id)
    if k is Kind.VOLATILE:
        return "volatile " + c_type(btf, t.type_id)
    if k in (Kind.RESTRICT, Kind.TYPE_TAG):
        return c_type(btf, t.type_id)
    if k in (Kind.STRUCT, Kind.FWD) and not getattr(t, "is_union", False):
        return f"struct {t.name}"
    if k is Kind.UNION or (k is Kind.FWD and t.is_union):
        return f"union {t.name}"
    if k in (Kind.ENUM, Kind.ENUM64):
        return f"enum {t.name}"
    if k is Kind.FUNC_PROTO:
        args = ", ".join(c_type(btf, p.type_id) for p in t.params) or "void"
        return f"{c_type(btf, t.return_type_id)} (*)({args})"
    return t.name or k.name.lower()


def _pointee(btf: BTF, tid: int):
    """The type a pointer parameter points to, modifiers and typedefs skipped (None: no ptr)."""
    t = btf.resolve(tid)
    if t.kind is not Kind.PTR:
        return None
    return btf.resolve(t.type_id)


def _is_scalar(btf: BTF, t) -> bool:
    return t.kind in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.FLOAT)


ITER_PREFIX = "bpf_iter_"
GRAPH = {"bpf_list_head": "PTR_TO_LIST_HEAD", "bpf_list_node": "PTR_TO_LIST_NODE",
         "bpf_rb_root": "PTR_TO_RB_ROOT", "bpf_rb_node": "PTR_TO_RB_NODE",
         "bpf_dynptr": "PTR_TO_DYNPTR", "bpf_wq": "PTR_TO_WORKQUEUE",
         "bpf_res_spin_lock": "PTR_TO_RES_SPIN_LOCK", "bpf_task_work": "PTR_TO_TASK_WORK"}


def arg_kind(btf: BTF, func: str, params, i: int, flags: int) -> tuple[str, str]:
    """The static part of get_kfunc_ptr_arg_type(): the KArg member name and the name
    suffixes; what depends on the register (PTR_TO_CTX, PTR_TO_NULL) is the verifier's."""
    p = params[i]
    suffixes = next((s for s in SUFFIXES if p.name.endswith(s)), "")
    t = btf.resolve(p.type_id)
    nxt = params[i + 1] if i + 1 < len(params) else None
    if _is_scalar(btf, t):
        if suffixes == "__k":
            return "SCALAR_CONST", suffixes
        if suffixes == "__ign":
            return "IGNORED", suffixes
        if suffixes == "__szk":
            return "CONST_MEM_SIZE", suffixes
        if suffixes == "__sz":
            return "MEM_SIZE", suffixes
        return "SCALAR", suffixes
    if suffixes == "__ign":
        return "IGNORED", suffixes
    if t.kind is Kind.PTR:
        target = btf.resolve(t.type_id)
        if target.kind is Kind.FUNC_PROTO:
            return "PTR_TO_CALLBACK", suffixes
        if suffixes == "__alloc":
            return "PTR_TO_ALLOC_BTF_ID", suffixes
        if suffixes == "__refcounted_kptr":
            return "PTR_TO_REFCOUNTED_KPTR", suffixes
        name = target.name if target.kind in (Kind.STRUCT, Kind.UNION, Kind.FWD) else ""
        if name in GRAPH:
            return GRAPH[name], suffixes
        if i == 0 and flags & (U.KF_ITER_NEW | U.KF_ITER_NEXT | U.KF_ITER_DESTROY) and \
                name.startswith(ITER_PREFIX):
            return "PTR_TO_ITER", suffixes
        if suffixes == "__str":
            return "PTR_TO_CONST_STR", suffixes
        if suffixes == "__map":
            return "PTR_TO_MAP", suffixes
        if suffixes == "__irq_flag":
            return "PTR_TO_IRQ_FLAG", suffixes
        if name in CTX_STRUCTS:
            return "PTR_TO_CTX", suffixes
        if nxt is not None and any(nxt.name.endswith(s) for s in ("__sz", "__szk")):
            return "PTR_TO_MEM_SIZE", suffixes
        if target.kind in (Kind.STRUCT, Kind.UNION, Kind.FWD):
            return "PTR_TO_BTF_ID", suffixes
        return "PTR_TO_MEM", suffixes
    return "SCALAR", suffixes


#: kfuncs whose `void *` result the verifier types by name (check_kfunc_call)
ALLOC_RET = ("bpf_obj_new_impl", "bpf_percpu_obj_new_impl", "bpf_refcount_acquire_impl")


def ret_kind(btf: BTF, func: str, ret_id: int) -> str:
    t = btf.resolve(ret_id)
    if ret_id == 0 or t.kind is Kind.UNKN:
        return "VOID"
    if _is_scalar(btf, t):
        return "INTEGER"
    if func in ALLOC_RET:
        return "PTR_TO_ALLOC_OBJ"
    if t.kind is Kind.PTR:
        target = btf.resolve(t.type_id)
        if target.name == "bpf_list_node":
            return "PTR_TO_LIST_NODE"
        if target.name == "bpf_rb_node":
            return "PTR_TO_RB_NODE"
        if target.kind in (Kind.STRUCT, Kind.UNION, Kind.FWD):
            return "PTR_TO_BTF_ID"
        return "PTR_TO_MEM"
    return "INTEGER"


def btf_kfuncs(btf: BTF) -> tuple[dict[str, int], set[str]]:
    """Kfunc name -> FUNC id (decl tag bpf_kfunc), and the kfuncs tagged bpf_fastcall."""
    kf, fast = {}, set()
    for t in btf:
        if t.kind is Kind.DECL_TAG and t.component_idx == -1:
            f = btf[t.type_id]
            if f.kind is not Kind.FUNC:
                continue
            if t.name == "bpf_kfunc":
                kf[f.name] = f.id
            elif t.name == "bpf_fastcall":
                fast.add(f.name)
    return kf, fast


# --------------------------------------------------------------------------- output


def _wrap(first: str, items: list[str], last: str, width: int = 99) -> list[str]:
    """``first item, item, ...last`` in lines of at most ``width`` characters."""
    lines, cur = [], first
    for n, it in enumerate(items):
        piece = it + (", " if n + 1 < len(items) else last)
        if len(cur) + len(piece.rstrip()) > width and cur.strip() not in ("], ", "]", "K("):
            lines.append(cur.rstrip())
            cur = "       "
        cur += piece
    lines.append(cur.rstrip())
    return lines


def _flags_expr(names: list[str]) -> str:
    return " | ".join(f"U.{n}" for n in names) if names else "0"


def generate(btf_path: str, src: str) -> str:
    btf = BTF.from_file(btf_path)
    files, src_name = read_sources(src)
    sets = parse_sets(files)
    regs = parse_registrations(files, sets)
    hook_of = parse_hook_map(files)
    defs = parse_definitions(files)
    kf, fast = btf_kfuncs(btf)

    # flags and hooks of each kfunc in the sources: a kfunc may be in several sets (an
    # fmodret set too); the flags are those of the sets registered for kfunc hooks
    listed: dict[str, list[tuple]] = {}
    hooks: dict[str, set[str]] = {}
    filters: dict[str, set[tuple[str, str]]] = {}
    for key, ks in sets.items():
        hooks_here = [("fmodret" if pt == "FMODRET" else
                       hook_of.get(pt.removeprefix("BPF_PROG_TYPE_"), "max"), f)
                      for pt, f in regs.get(key, [])]
        is_kfunc_set = not hooks_here or any(h != "fmodret" for h, _ in hooks_here)
        for e in ks.entries:
            listed.setdefault(e.name, []).append((not is_kfunc_set, e.flags, ks.file, e.config))
            for h, f in hooks_here:
                hooks.setdefault(e.name, set()).add(h)
                if f:
                    filters.setdefault(e.name, set()).add((h, f))
    src_flags: dict[str, list[str]] = {}
    src_where: dict[str, tuple[str, str]] = {}     # name -> (file, config)
    conflicts = []
    for name, entries in listed.items():
        entries.sort(key=lambda e: e[0])           # kfunc sets first
        _, flags0, file0, config0 = entries[0]
        src_flags[name], src_where[name] = flags0, (file0, config0)
        for fmodret, fl, _, _ in entries[1:]:
            if not fmodret and sorted(fl) != sorted(flags0):
                conflicts.append((name, flags0, fl))

    only_btf = sorted(n for n in kf if n not in src_flags)
    only_src = sorted((n, src_where[n][0], src_where[n][1]) for n in src_flags
                      if n not in kf and hooks.get(n, set()) - {"fmodret"})
    param_diff = []
    rows = []
    for name in sorted(kf):
        f = btf[kf[name]]
        proto = btf[f.type_id]
        flag_names = src_flags.get(name, [])
        flags = 0
        for n in flag_names:
            flags |= getattr(U, n)
        params = proto.params
        kp = []
        for i, p in enumerate(params):
            kind, sfx = arg_kind(btf, name, params, i, flags)
            pt = _pointee(btf, p.type_id)
            if pt is not None and pt.kind is Kind.FUNC_PROTO:
                pt = None
            kp.append((p.name, c_type(btf, p.type_id), kind, sfx,
                       c_type(btf, pt.id) if pt is not None else None))
        ret = ret_kind(btf, name, proto.return_type_id)
        if name in defs:
            src_params = defs[name][1]
            if src_params != [p.name for p in params]:
                param_diff.append((name, src_params, [p.name for p in params]))
        where = src_where.get(name)
        rows.append((name, kp, ret, c_type(btf, proto.return_type_id), flag_names,
                     sorted(hooks.get(name, ())), sorted(filters.get(name, ())),
                     name in fast, kf[name], where))

    rel = platform.release()
    out = [f'''"""kfunc prototypes: every kfunc of the kernel ebee emulates (calls with src_reg 2).

Generated by tools/gen_kfuncs.py from Linux {rel} ({platform.machine()}): the
kfuncs and their prototypes from its BTF ({btf_path}), flags and hooks from the
``BTF_ID_FLAGS`` sets of {src_name}; do not edit.  {len(rows)} kfuncs.

The loader resolves a kfunc a program calls by its name (``bpf_obj_new_impl``)
with :func:`kfunc_id` and writes that id into the call instruction; the
verifier finds the prototype with :func:`by_id`, the engines the
implementation (``ebee.helpers.kfuncs``).  ids are ebee's own
(``KFUNC_ID_BASE + n``, in name order), distinct from any vmlinux BTF id
(``KfuncProto.btf_id`` is that one).  The record types are in
``ebee.protos.kfunc_types``.

Where the sources are older than the BTF (``DIFFERENCES``), a kfunc the
sources lack has no flags (``flags_known`` is False) and no hooks.
"""
from __future__ import annotations

from .. import uapi as U
from ..uapi import ProgType
from .kfunc_types import K, KArg, KfuncProto, KParam, KRet, table

__all__ = ["DIFFERENCES", "HOOK_OF_PROG_TYPE", "KArg", "KFUNCS", "KFUNC_ID_BASE", "KParam",
           "KRet", "KfuncProto", "allowed_in", "by_id", "kfunc_id"]

KFUNC_ID_BASE = 0x7EB00000

A, R, P = KArg, KRet, KParam

#: bpf_prog_type_to_kfunc_hook(): the kfunc hook of each program type (kernel/bpf/btf.c)
HOOK_OF_PROG_TYPE: dict[ProgType, str] = {{''']
    for pt, h in sorted(hook_of.items(), key=lambda kv: int(getattr(U.ProgType, kv[0]))):
        out.append(f"    ProgType.{pt}: {h!r},")
    out.append("}\n")
    out.append("#: by name, in id order")
    out.append("KFUNCS: dict[str, KfuncProto] = table(KFUNC_ID_BASE, [")
    for (name, kp, ret, rtype, flag_names, hk, filt, fastc, btf_id, where) in rows:
        out.extend(_wrap("    K(", [repr(name), str(btf_id), f"R.{ret}", repr(rtype),
                                 _flags_expr(flag_names)], ", ["))
        for pn, ct, kind, sfx, pe in kp:
            a = f"P({pn!r}, {ct!r}, A.{kind}"
            if sfx:
                a += f", {sfx!r}"
            if pe is not None and pe != naive_pointee(ct):
                a += f", pointee={pe!r}"
            out.append(f"        {a}),")
        extra = []
        if hk:
            extra.append(f"hooks={tuple(hk)!r}")
        if filt:
            extra.append(f"filters={tuple(filt)!r}")
        if fastc:
            extra.append("fastcall=True")
        if where is None:
            extra.append("flags_known=False")
        else:
            extra.append(f"source={where[0]!r}")
            if where[1]:
                extra.append(f"config={where[1]!r}")
        out.extend(_wrap("     ], ", extra, "),"))
    out.append("])")
    out.append("_BY_ID: dict[int, KfuncProto] = {k.id: k for k in KFUNCS.values()}\n")
    out.append("#: where this kernel's BTF and the sources the flags came from disagree")
    out.append("DIFFERENCES: dict[str, tuple] = {")
    diffs = [
        ("kfuncs of this kernel that the sources do not have: no flags, no hooks",
         "only_in_btf", only_btf),
        ("kfuncs the sources register that this kernel does not have: (name, file, #if)",
         "only_in_sources", only_src),
        ("parameter names that differ: (name, in the sources, in BTF)", "params",
         [(n, tuple(a), tuple(b)) for n, a, b in param_diff]),
        ("KF_FASTCALL, which the sources do not have: the BTF decl tag bpf_fastcall",
         "fastcall", sorted(fast)),
        ("kfuncs whose flags differ between the sets that list them: (name, flags, flags)",
         "flag_conflicts", [(n, tuple(a), tuple(b)) for n, a, b in conflicts]),
    ]
    for comment, key, items in diffs:
        out.append(f"    # {comment}")
        out.append(f"    {key!r}: (")
        for it in items:
            out.extend(_wrap("        ", [repr(it)], ","))
        out.append("    ),")
    out.append("}\n")
    out.append('''
def kfunc_id(name: str) -> int | None:
    """The id the loader writes into a call to kfunc ``name`` (None: not a kfunc here)."""
    k = KFUNCS.get(name)
    return k.id if k else None


def by_id(kid: int) -> KfuncProto | None:
    return _BY_ID.get(kid)


def allowed_in(k: KfuncProto, prog_type: ProgType) -> bool:
    """Programs of this type may call ``k`` (btf_kfunc_id_set_contains without the filters,
    which ``k.filters`` names): the common hook, or the program type's own."""
    return "common" in k.hooks or HOOK_OF_PROG_TYPE.get(prog_type, "max") in k.hooks''')
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--btf", default=DEFAULT_BTF)
    ap.add_argument("--src", default=os.environ.get("EBEE_LINUX_SRC", DEFAULT_SRC),
                    help="a Linux source tarball or tree (default %(default)s)")
    a = ap.parse_args()
    sys.stdout.write(generate(a.btf, a.src))


if __name__ == "__main__":
    main()
