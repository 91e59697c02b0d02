#!/usr/bin/env python3
"""Regenerate src/ebee/protos/helpers.py: every helper's prototype, from the kernel sources.

A helper's prototype is a ``struct bpf_func_proto`` in the kernel sources, and which
one a program gets is decided by its program type's ``get_func_proto`` (a chain of
``*_func_proto(func_id, prog)`` functions, each a ``switch (func_id)`` that may look at
the attach type or whether the program is sleepable).  This reads both as text:

* every ``struct bpf_func_proto NAME = { .field = value, ... };`` (the fields, the
  ``ARG_*``/``RET_*`` words with their type flags, ``BTF_ID_LIST`` names resolved to
  the struct they name);
* ``BPF_PROG_TYPE(...)`` in include/linux/bpf_types.h and each ``bpf_verifier_ops``'
  ``.get_func_proto``;
* the ``get_func_proto`` functions themselves, which it runs -- a small interpreter
  of the C they are written in (switch/if/return/assignments/ternaries) -- for every
  (program type, attach type) and helper id, with the program privileged, not
  sleepable and the kernel not locked down.

The output has one row per helper id of ``ebee.uapi.FuncId``: the prototype most
program types get, and the others (``variants``) with the program types (and attach
types, sleepability) that get them.  Which helpers a program type may call is the
running kernel's answer (``ebee.progtypes.func_protos``, tools/gen_func_protos.py);
the sources' own answer is compared with it and the differences written to
``DIFFERENCES`` -- the sources (Debian's linux-source-6.12) are older than the
kernel the project runs.

    python3 tools/gen_helper_protos.py [--src /usr/src/linux-source-6.12.tar.xz | --src DIR] \\
        > src/ebee/protos/helpers.py
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

from ebee.btf import BTF  # noqa: E402
from ebee.progtypes.func_protos import FUNC_PROTOS  # noqa: E402
from ebee.protos.vocab import Arg, Flag, Ret  # noqa: E402
from ebee.uapi import AttachType, FuncId, ProgType  # noqa: E402

DEFAULT_SRC = "/usr/src/linux-source-6.12.tar.xz"
DEFAULT_BTF = "/sys/kernel/btf/vmlinux"

# --------------------------------------------------------------------------- the sources


def _wanted(name: str, data: bytes) -> bool:
    if "/tools/" in name or "/Documentation/" in name or not name.endswith((".c", ".h")):
        return False
    return (b"bpf_func_proto" in data or b"BTF_ID_LIST" in data or name.endswith("bpf_types.h")
            or name.endswith("linux/btf_ids.h"))


def read_sources(src: str) -> tuple[dict[str, str], str]:
    out: dict[str, str] = {}
    if os.path.isdir(src):
        for root, dirs, files in os.walk(src):
            dirs[:] = [d for d in dirs if d not in ("tools", "Documentation", ".git", "arch")]
            for f in files:
                if not f.endswith((".c", ".h")):
                    continue
                p = os.path.join(root, f)
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
    return out, re.sub(r"\.tar(\.\w+)?$", "", os.path.basename(src))


def _clean(text: str) -> str:
    text = re.sub(r"\\\n", " ", text)
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return _preprocess(text)


def _preprocess(text: str) -> str:
    """Resolve conditional compilation as a full-featured kernel config would: every
    ``#if``/``#ifdef`` branch kept, negated config tests (``#ifndef CONFIG_X``,
    ``#if !IS_ENABLED(...)``) and ``#else`` branches dropped.  Other directives are
    blanked."""
    out: list[str] = []
    stack: list[bool] = []          # is the current branch kept
    for line in text.split("\n"):
        s = line.strip()
        if s.startswith("#"):
            d = s[1:].strip()
            if d.startswith("ifndef"):
                stack.append("CONFIG_" not in d)
            elif d.startswith(("ifdef", "if ", "if(")):
                stack.append(not re.match(r"if\s*!", d))
            elif d.startswith(("else", "elif")):
                if stack:
                    stack[-1] = not stack[-1] if d.startswith("else") else False
            elif d.startswith("endif"):
                if stack:
                    stack.pop()
            out.append("")
            continue
        out.append(line if all(stack) else "")
    return "\n".join(out)


def _body(text: str, start: int) -> tuple[str, int]:
    """The text inside the braces opening at or after ``start`` and the index after them."""
    i = text.index("{", start)
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j], j + 1
    raise ValueError("unbalanced braces")


# --------------------------------------------------------------------------- protos

@dataclass
class Proto:
    name: str
    file: str
    fields: dict[str, str]
    ret: tuple[str, tuple[str, ...]] = ("RET_INTEGER", ())
    args: list[tuple[str, tuple[str, ...], int, str | None]] = field(default_factory=list)
    ret_btf: str | None = None

    def flag(self, f: str) -> bool:
        v = self.fields.get(f, "false")
        return v not in ("false", "0")

    def signature(self) -> tuple:
        """What the verifier sees: everything but the implementation."""
        return (self.ret, tuple(self.args), self.flag("gpl_only"), self.flag("pkt_access"),
                self.flag("might_sleep"), self.ret_btf, "allowed" in self.fields)


_ALIASES: dict[str, tuple[str, tuple[str, ...]]] = {}      # ARG_X_OR_NULL = FLAG | ARG_X


def _parse_aliases(bpf_h: str) -> None:
    for enum in ("bpf_arg_type", "bpf_return_type"):
        body, _ = _body(bpf_h, bpf_h.index(f"enum {enum} {{"))
        for m in re.finditer(r"\b((?:ARG|RET)_\w+)\s*=\s*([^,]+),", body):
            parts = [p.strip() for p in m.group(2).split("|")]
            base = [p for p in parts if p.startswith(("ARG_", "RET_"))]
            if len(base) == 1 and not m.group(2).strip().startswith("__"):
                flags = tuple(p for p in parts if p not in base)
                b, bf = _ALIASES.get(base[0], (base[0], ()))
                _ALIASES[m.group(1)] = (b, tuple(sorted(set(bf) | set(flags))))


# words of the sources the running kernel has not (its BTF's enums lack them), and the
# word the kernel's own prototype uses instead: Debian's 6.12 gives bpf_loop's nr_loops
# ARG_SCALAR, a backport; Linux 6.18 takes ARG_ANYTHING there (it accepts a pointer in
# r1, as the kernel-compared tests check)
NOT_IN_KERNEL = {"ARG_SCALAR": "ARG_ANYTHING"}


def _type_word(expr: str) -> tuple[str, tuple[str, ...]]:
    parts = [NOT_IN_KERNEL.get(p.strip().strip("()"), p.strip().strip("()"))
             for p in expr.split("|")]
    base = [p for p in parts if p.startswith(("ARG_", "RET_"))]
    if len(base) != 1:
        raise ValueError(f"cannot read type {expr!r}")
    b, flags = _ALIASES.get(base[0], (base[0], ()))
    return b, tuple(sorted(set(flags) | {p for p in parts if p != base[0]}))


class BtfIds:
    """BTF_ID_LIST names -> the struct each entry names (``struct`` entries only)."""

    def __init__(self, files: dict[str, str]) -> None:
        self.lists: dict[str, list[str | None]] = {}
        self.enums: dict[str, dict[str, int]] = {}
        for path, text in files.items():
            if not path.endswith(".c"):
                continue
            for m in re.finditer(r"BTF_ID_LIST(?:_GLOBAL)?_SINGLE\((\w+),\s*(\w+),\s*(\w+)\)", text):
                self.lists[m.group(1)] = [m.group(3) if m.group(2) == "struct" else None]
            for m in re.finditer(r"BTF_ID_LIST(?:_GLOBAL)?\((\w+)(?:,\s*\w+)?\)\s*\n((?:\s*BTF_ID(?:_UNUSED)?(?:\([^)]*\))?\s*\n)*)",
                                 text):
                ents: list[str | None] = []
                for e in re.finditer(r"BTF_ID(_UNUSED)?(?:\((\w+),\s*(\w+)\))?", m.group(2)):
                    ents.append(e.group(3) if e.group(2) == "struct" else None)
                self.lists[m.group(1)] = ents
        h = files.get("include/linux/btf_ids.h", "")
        # BTF_SOCK_TYPE_xxx / BTF_TRACING_TYPE_xxx: enum index -> struct
        for macro, arr in (("BTF_SOCK_TYPE", "btf_sock_ids"), ("BTF_TRACING_TYPE", "btf_tracing_ids")):
            names = re.findall(rf"{macro}\(({macro}_\w+),\s*(\w+)\)", h)
            self.lists[arr] = [s for _, s in names]
            self.enums[arr] = {n: i for i, (n, _) in enumerate(names)}

    def resolve(self, expr: str) -> str | None:
        if expr.strip() == "BPF_PTR_POISON":      # the verifier takes it from elsewhere (kptr)
            return None
        single = re.fullmatch(r"&\s*(\w+)_id", expr.strip())   # bpf_tcp_ca.c: &tcp_sock_id
        if single:
            return single.group(1)
        m = re.fullmatch(r"&\s*(\w+)\s*\[\s*(\w+)\s*\]", expr.strip())
        if not m:
            raise ValueError(f"cannot read btf id {expr!r}")
        arr, idx = m.group(1), m.group(2)
        i = int(idx) if idx.isdigit() else self.enums[arr][idx]
        return self.lists[arr][i]


def parse_protos(files: dict[str, str], btf: BtfIds) -> dict[str, Proto]:
    protos: dict[str, Proto] = {}
    for path, text in files.items():
        if not path.endswith(".c"):
            continue
        for m in re.finditer(r"struct bpf_func_proto\s+(\w+)\s*=\s*\{", text):
            body, _ = _body(text, m.end() - 1)
            fields: dict[str, str] = {}
            for fm in re.finditer(r"\.(\w+(?:\[\d\])?)\s*=\s*((?:[^,{}]|\{[^}]*\})+)", body):
                fields[fm.group(1)] = " ".join(fm.group(2).split())
            p = Proto(m.group(1), path, fields)
            p.ret = _type_word(fields.get("ret_type", "RET_INTEGER"))
            for i in range(5):
                t = fields.get(f"arg{i + 1}_type") or fields.get(f"arg_type[{i}]")
                if t is None or t.strip() == "ARG_DONTCARE":
                    break
                size = fields.get(f"arg{i + 1}_size") or fields.get(f"arg_size[{i}]")
                bid = fields.get(f"arg{i + 1}_btf_id") or fields.get(f"arg_btf_id[{i}]")
                p.args.append((*_type_word(t), _sizeof(size) if size else 0,
                               btf.resolve(bid) if bid else None))
            if "ret_btf_id" in fields:
                p.ret_btf = btf.resolve(fields["ret_btf_id"])
            if p.name in protos:
                raise ValueError(f"two bpf_func_proto named {p.name}")
            protos[p.name] = p
    return protos


_SIZES = {"u64": 8, "s64": 8, "u32": 4, "s32": 4, "int": 4, "long": 8, "unsigned long": 8,
          "__u64": 8, "__u32": 4,
          # the protocol headers the syncookie helpers take
          "struct iphdr": 20, "struct ipv6hdr": 40, "struct tcphdr": 20}


def _sizeof(expr: str) -> int:
    m = re.fullmatch(r"sizeof\((.+)\)", expr.strip())
    if m and m.group(1).strip() in _SIZES:
        return _SIZES[m.group(1).strip()]
    if expr.strip().isdigit():
        return int(expr)
    raise ValueError(f"cannot size {expr!r}")


# --------------------------------------------------------------------------- the C interpreter

_TOK = re.compile(r"\s*(?:(->|==|!=|&&|\|\||<=|>=|<<|>>)|(\d+)|(\w+)|(\S))")


def _tokens(text: str) -> list[str]:
    return [m.group(0).strip() for m in _TOK.finditer(text) if m.group(0).strip()]


class Unknown(Exception):
    """The interpreter met C it does not model."""


@dataclass
class Prog:
    type: ProgType
    attach: AttachType | None
    sleepable: bool = False


# kernel state the functions test: set up, as in a running kernel
_WORLD = {"md_dst": "allocated"}

# enum constants the functions compare with
_CONSTS: dict[str, int] = {}
for _f in FuncId:
    _CONSTS["BPF_FUNC_" + _f.name] = int(_f)
for _p in ProgType:
    _CONSTS["BPF_PROG_TYPE_" + _p.name] = int(_p)
for _a in AttachType:
    _CONSTS["BPF_" + _a.name] = int(_a)

_TRAMPOLINE = {AttachType.TRACE_FENTRY, AttachType.TRACE_FEXIT, AttachType.MODIFY_RETURN,
               AttachType.LSM_MAC, AttachType.LSM_CGROUP}


def _has_trampoline(p: Prog) -> bool:
    # bpf_prog_has_trampoline(): tracing fentry/fexit/fmod_ret and LSM programs
    return ((p.type is ProgType.TRACING and p.attach in (AttachType.TRACE_FENTRY,
             AttachType.TRACE_FEXIT, AttachType.MODIFY_RETURN))
            or (p.type is ProgType.LSM and p.attach is AttachType.LSM_MAC))


class Interp:
    """Runs ``*_func_proto(func_id, prog)`` functions of the sources."""

    def __init__(self, files: dict[str, str], protos: dict[str, Proto]) -> None:
        self.protos = protos
        self.funcs: dict[str, list[tuple[str, list[str], list[str]]]] = {}  # name -> [(file, params, body tokens)]
        for path, text in files.items():
            if not path.endswith(".c"):
                continue
            for m in re.finditer(r"^(?:static\s+)?(?:inline\s+)?(?:const\s+)?(?:struct\s+bpf_func_proto\s*\*|bool|int|static\s+bool)\s*\n?\s*(\w+)\(([^)]*)\)\s*\{",
                                 text, re.M):
                body, _ = _body(text, m.end() - 1)
                params = [p.split()[-1].lstrip("*") for p in m.group(2).split(",") if p.strip() != "void"]
                self.funcs.setdefault(m.group(1), []).append((path, params, _tokens(body)))
        self.trace: list[str] = []
        # iterator targets' get_func_proto (struct bpf_iter_reg), which
        # bpf_iter_get_func_proto() looks up by the program's attach target
        self.iter_funcs = sorted({m.group(1) for path, text in files.items()
                                  for m in re.finditer(r"\.get_func_proto\s*=\s*(\w+)", text)
                                  if "bpf_iter_" in m.group(1)})

    # -- predicates of struct bpf_prog the functions call
    def _builtin(self, name: str, args: list, file: str):
        p: Prog = self.prog
        if name in ("bpf_token_capable", "perfmon_capable", "capable", "bpf_capable"):
            return True
        if name == "security_locked_down":
            return 0
        if name == "bpf_prog_has_trampoline":
            return _has_trampoline(p)
        if name == "bpf_prog_check_recur":
            # tracing programs that may recurse (bpf_prog_check_recur)
            if p.type is ProgType.LSM:
                return False
            return p.type is ProgType.TRACING and p.attach is not AttachType.TRACE_ITER or \
                p.type in (ProgType.KPROBE, ProgType.TRACEPOINT, ProgType.PERF_EVENT,
                           ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE)
        if name in ("is_kprobe_multi",):
            return p.attach in (AttachType.TRACE_KPROBE_MULTI, AttachType.TRACE_KPROBE_SESSION)
        if name in ("is_kprobe_session",):
            return p.attach is AttachType.TRACE_KPROBE_SESSION
        if name in ("is_uprobe_multi",):
            return p.attach in (AttachType.TRACE_UPROBE_MULTI,)
        if name in ("is_uprobe_session",):
            return False
        if name == "prog_ops_moff":          # the struct_ops member: not tcp_ca's release()
            return 0
        if name == "bpf_sock_is_valid_access":
            raise Unknown(name)
        if name == "bpf_lsm_is_sleepable_hook" or name == "bpf_lsm_is_trusted":
            return False
        if name == "cgroup_sock_proto_guard" or name.startswith("cg_"):
            raise Unknown(name)
        raise Unknown(name)

    def call(self, name: str, args: list, file: str):
        if name == "bpf_iter_get_func_proto":
            # any iterator target's: the sources' answer is the union over targets
            for f in self.iter_funcs:
                v = self.call(f, args, file)
                if v is not None:
                    return v
            return None
        defs = self.funcs.get(name)
        if not defs:
            return self._builtin(name, args, file)
        # a static function of the caller's file before one of another file
        d = next((d for d in defs if d[0] == file), defs[0])
        path, params, body = d
        env = dict(zip(params, args))
        self.trace.append(name)
        r = self._block(body, 0, len(body), env, path)
        return r[1] if r and r[0] == "ret" else None

    def resolve(self, prog: Prog, fid: int, fn: str) -> tuple[str | None, list[str]]:
        """The proto ``fn(fid, prog)`` returns, and the functions it passed through."""
        self.prog = prog
        self.trace = []
        v = self.call(fn, [fid, "prog"], "")
        if v is not None and not (isinstance(v, str) and v in self.protos):
            raise Unknown(f"{fn} returned {v!r}")
        return v, list(self.trace)

    # -- statements
    def _match(self, t: list[str], i: int) -> int:
        """Index after the bracket group opening at t[i]."""
        o = t[i]
        c = {"(": ")", "{": "}", "[": "]"}[o]
        depth = 0
        for j in range(i, len(t)):
            if t[j] == o:
                depth += 1
            elif t[j] == c:
                depth -= 1
                if depth == 0:
                    return j + 1
        raise Unknown("unbalanced")

    def _stmt_end(self, t: list[str], i: int) -> int:
        """Index after the statement starting at t[i]."""
        if t[i] == "{":
            return self._match(t, i)
        if t[i] in ("if", "switch", "while", "for"):
            j = self._match(t, i + 1)
            j = self._stmt_end(t, j)
            if t[i] == "if" and j < len(t) and t[j] == "else":
                j = self._stmt_end(t, j + 1)
            return j
        j = i
        while t[j] != ";":
            if t[j] in "({[":
                j = self._match(t, j)
            else:
                j += 1
        return j + 1

    def _block(self, t, i, end, env, file):
        while i < end:
            tok = t[i]
            if tok in ("case", "default"):
                while t[i] != ":":
                    i += 1
                i += 1
                continue
            j = self._stmt_end(t, i)
            r = self._stmt(t, i, j, env, file)
            if r is not None:
                return r
            i = j
        return None

    def _stmt(self, t, i, end, env, file):
        tok = t[i]
        if tok == "{":
            return self._block(t, i + 1, end - 1, env, file)
        if tok == "return":
            return ("ret", self._expr(t[i + 1:end - 1], env, file))
        if tok == "break":
            return ("break", None)
        if tok == "if":
            c = self._match(t, i + 1)
            cond = self._expr(t[i + 2:c - 1], env, file)
            then_end = self._stmt_end(t, c)
            if cond:
                return self._stmt(t, c, then_end, env, file)
            if then_end < end and t[then_end] == "else":
                return self._stmt(t, then_end + 1, end, env, file)
            return None
        if tok == "switch":
            c = self._match(t, i + 1)
            val = self._expr(t[i + 2:c - 1], env, file)
            bs, be = c + 1, end - 1           # inside the braces
            # find the label to jump to, at this nesting level
            k, target, default = bs, None, None
            while k < be:
                if t[k] == "case":
                    colon = t.index(":", k)
                    if target is None and self._expr(t[k + 1:colon], env, file) == val:
                        target = colon + 1
                    k = colon + 1
                elif t[k] == "default":
                    default = t.index(":", k) + 1
                    k = default
                else:
                    k = self._stmt_end(t, k)
            start = target if target is not None else default
            if start is None:
                return None
            r = self._block(t, start, be, env, file)
            if r is not None and r[0] == "break":
                return None
            return r
        if tok in ("const", "struct"):      # a declaration
            k = i
            while t[k] not in ("=", ";"):
                k += 1
            if t[k] == "=":
                env[t[k - 1]] = self._expr(t[k + 1:end - 1], env, file)
            return None
        if len(t[i:end]) > 2 and t[i + 1] == "=":
            env[tok] = self._expr(t[i + 2:end - 1], env, file)
            return None
        if len(t[i:end]) > 3 and t[i + 1] == "(" and self._match(t, i + 1) == end - 1:
            return None     # a call for its side effect (mutex_lock, schedule_work, ...)
        raise Unknown("statement " + " ".join(t[i:end]))

    # -- expressions (a precedence climber over the C operators the functions use)
    _BIN = {"||": 1, "&&": 2, "|": 3, "&": 4, "==": 5, "!=": 5, "<": 6, ">": 6, "<=": 6, ">=": 6}

    def _expr(self, t: list[str], env, file):
        v, k = self._ternary(t, 0, env, file)
        if k != len(t):
            raise Unknown("expression " + " ".join(t))
        return v

    def _ternary(self, t, k, env, file):
        c, k = self._binary(t, k, 0, env, file)
        if k < len(t) and t[k] == "?":
            a, k = self._ternary(t, k + 1, env, file)
            if t[k] != ":":
                raise Unknown("ternary")
            b, k = self._ternary(t, k + 1, env, file)
            return (a if c else b), k
        return c, k

    def _binary(self, t, k, minp, env, file):
        lhs, k = self._unary(t, k, env, file)
        while k < len(t) and t[k] in self._BIN and self._BIN[t[k]] > minp:
            op = t[k]
            rhs, k = self._binary(t, k + 1, self._BIN[op], env, file)
            lhs = {"||": lambda a, b: bool(a or b), "&&": lambda a, b: bool(a and b),
                   "|": lambda a, b: a | b, "&": lambda a, b: a & b,
                   "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
                   "<": lambda a, b: a < b, ">": lambda a, b: a > b,
                   "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}[op](lhs, rhs)
        return lhs, k

    def _unary(self, t, k, env, file):
        tok = t[k]
        if tok == "!":
            v, k = self._unary(t, k + 1, env, file)
            return (not v), k
        if tok == "-":
            v, k = self._unary(t, k + 1, env, file)
            return -v, k
        if tok == "&":
            name = t[k + 1]
            if name not in self.protos:
                raise Unknown(f"&{name}")
            return name, k + 2
        if tok == "(":
            j = self._match(t, k)
            v = self._expr(t[k + 1:j - 1], env, file)
            return v, j
        if tok.isdigit():
            return int(tok), k + 1
        if tok == "NULL":
            return None, k + 1
        if tok in ("true", "false"):
            return tok == "true", k + 1
        if tok in _CONSTS:
            return _CONSTS[tok], k + 1
        if tok == "prog" or tok in env and env[tok] == "prog":
            return self._prog_field(t, k)
        if tok == "offsetof":              # of a struct member the program is not
            return -1, self._match(t, k + 1)
        if k + 1 < len(t) and t[k + 1] == "(":
            j = self._match(t, k + 1)
            args = self._args(t[k + 2:j - 1], env, file)
            return self.call(tok, args, file), j
        if tok in env:
            return env[tok], k + 1
        if tok in _WORLD:
            return _WORLD[tok], k + 1
        if re.fullmatch(r"[A-Z_0-9]+", tok):    # LOCKDOWN_*, CAP_*: arguments of builtins
            return tok, k + 1
        raise Unknown(f"name {tok}")

    def _args(self, t, env, file):
        out, depth, cur = [], 0, []
        for x in t:
            if x in "([":
                depth += 1
            elif x in ")]":
                depth -= 1
            if x == "," and depth == 0:
                out.append(cur)
                cur = []
            else:
                cur.append(x)
        if cur:
            out.append(cur)
        vals = []
        for a in out:
            if a == ["prog"] or (len(a) == 1 and env.get(a[0]) == "prog"):
                vals.append("prog")
            elif a[0] == "prog" and len(a) > 1:
                vals.append(" ".join(a))        # prog->aux->token
            else:
                vals.append(self._expr(a, env, file))
        return vals

    def _prog_field(self, t, k):
        path = []
        k += 1
        while k + 1 < len(t) and t[k] == "->":
            path.append(t[k + 1])
            k += 2
        p = self.prog
        if path == ["type"]:
            return int(p.type), k
        if path == ["expected_attach_type"]:
            return int(p.attach) if p.attach is not None else 0, k
        if path == ["sleepable"] or path == ["aux", "sleepable"]:
            return p.sleepable, k
        if path == []:
            return "prog", k
        if path[:2] == ["aux", "token"]:
            return "token", k
        raise Unknown("prog->" + "->".join(path))


# --------------------------------------------------------------------------- program types

def prog_type_funcs(files: dict[str, str]) -> dict[ProgType, str]:
    """Each program type's get_func_proto function (bpf_types.h -> bpf_verifier_ops)."""
    ops: dict[str, str] = {}
    for text in files.values():
        for m in re.finditer(r"struct bpf_verifier_ops\s+(\w+)\s*=\s*\{", text):
            body, _ = _body(text, m.end() - 1)
            f = re.search(r"\.get_func_proto\s*=\s*(\w+)", body)
            if f:
                ops[m.group(1)] = f.group(1)
    out: dict[ProgType, str] = {}
    for m in re.finditer(r"BPF_PROG_TYPE\(BPF_PROG_TYPE_(\w+),\s*(\w+)",
                         files["include/linux/bpf_types.h"]):
        name = m.group(2) + "_verifier_ops"
        if name in ops:
            out[ProgType[m.group(1)]] = ops[name]
    return out


# (program type, attach type) pairs resolved beyond the probe's (program types whose
# helpers depend on the attach type; the probe cannot load some of them here)
EXTRA_TARGETS = [
    (ProgType.TRACING, AttachType.TRACE_FENTRY), (ProgType.TRACING, AttachType.TRACE_FEXIT),
    (ProgType.TRACING, AttachType.MODIFY_RETURN), (ProgType.LSM, AttachType.LSM_MAC),
    (ProgType.KPROBE, AttachType.TRACE_UPROBE_MULTI),
    (ProgType.KPROBE, AttachType.TRACE_KPROBE_SESSION),
    (ProgType.LIRC_MODE2, AttachType.LIRC_MODE2),
    (ProgType.SOCK_OPS, AttachType.CGROUP_SOCK_OPS),
    (ProgType.STRUCT_OPS, None),
]

# struct_ops programs get their struct_ops' get_func_proto; tcp_congestion_ops' is the one
# with helpers of its own (bpf_tcp_send_ack)
STRUCT_OPS_FUNC = "bpf_tcp_ca_get_func_proto"


def targets() -> list[tuple[ProgType, AttachType | None]]:
    out = list(FUNC_PROTOS)
    for k in EXTRA_TARGETS:
        if k not in out:
            out.append(k)
    return out


# --------------------------------------------------------------------------- output

# the words the generated file is written in (a word the vocabulary lacks is reported)
_VOCAB = {"bpf_arg_type": {a.name: a.value for a in Arg},
          "bpf_return_type": {r.name: r.value for r in Ret},
          "bpf_type_flag": {f.name: f.value for f in Flag}}

def _arg_py(a) -> str:
    base, flags, size, btf = a
    s = "A." + base[4:]
    if flags:
        s = f"({s}, " + " | ".join("X." + f for f in flags) + ")"
    if size or btf:
        s = f"arg({s}" + (f", size={size}" if size else "") + (f", btf={btf!r}" if btf else "") + ")"
    return s


def _proto_py(p: Proto, fid: FuncId, keys: list[str]) -> str:
    base, flags = p.ret
    ret = "R." + base[4:]
    if flags:
        ret = f"(R.{base[4:]}, " + " | ".join("X." + f for f in flags) + ")"
    parts = [f"F.{fid.name}", repr(p.name), ret, "(" + ", ".join(_arg_py(a) for a in p.args)
             + ("," if len(p.args) == 1 else "") + ")"]
    for f in ("gpl_only", "pkt_access", "might_sleep", "allow_fastcall"):
        if p.flag(f):
            parts.append(f"{f}=True")
    if p.ret_btf:
        parts.append(f"ret_btf={p.ret_btf!r}")
    if "allowed" in p.fields:
        parts.append(f"allowed={p.fields['allowed']!r}")
    if keys:
        parts.append("keys=(" + ", ".join(keys) + ("," if len(keys) == 1 else "") + ")")
    return f"P({', '.join(parts)})"


def _pair_py(pt: ProgType, at: AttachType | None) -> str:
    return f"(T.{pt.name}, {'AT.' + at.name if at is not None else 'None'})"


def _keys_py(keys: set[tuple], all_keys: list[tuple]) -> list[str]:
    """Compress (type, attach, sleepable) keys: both sleepabilities -> (type, attach);
    every attach type of the type -> (type,)."""
    out = []
    by_type: dict[ProgType, list[tuple]] = {}
    for k in all_keys:
        by_type.setdefault(k[0], []).append(k)
    for pt in sorted(by_type, key=lambda t: t.value):
        mine = [k for k in by_type[pt] if k in keys]
        if not mine:
            continue
        if len(mine) == len(by_type[pt]):
            out.append(f"(T.{pt.name},)")
            continue
        for at in dict.fromkeys(k[1] for k in mine):
            a = "AT." + at.name if at is not None else "None"
            sl = {k[2] for k in mine if k[1] == at}
            out.append(f"(T.{pt.name}, {a})" if len(sl) == 2 else f"(T.{pt.name}, {a}, {sl.pop()})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=DEFAULT_SRC)
    ap.add_argument("--btf", default=DEFAULT_BTF)
    ap.add_argument("--docs", action="store_true",
                    help="write docs/helpers.md (from the installed table) instead")
    args = ap.parse_args()
    if args.docs:
        sys.stdout.write(docs())
        return
    files, src_name = read_sources(args.src)
    # its lists are #defines, which _clean blanks
    btf_h = re.sub(r"/\*.*?\*/", "", re.sub(r"\\\n", " ", files["include/linux/btf_ids.h"]), flags=re.S)
    files = {k: _clean(v) for k, v in files.items()}
    files["include/linux/btf_ids.h"] = btf_h
    _parse_aliases(files["include/linux/bpf.h"])
    btf = BtfIds(files)
    protos = parse_protos(files, btf)
    interp = Interp(files, protos)
    funcs = prog_type_funcs(files)
    funcs[ProgType.STRUCT_OPS] = STRUCT_OPS_FUNC

    # (fid) -> {proto name: [(prog type, attach type, sleepable)]}
    uses: dict[FuncId, dict[str, list[tuple]]] = {f: {} for f in FuncId if f.value}
    src_allowed: dict[tuple, set[FuncId]] = {}
    problems: list[str] = []
    for pt, at in targets():
        fn = funcs.get(pt)
        if fn is None:
            problems.append(f"{pt.name}: no get_func_proto in the sources")
            continue
        allowed = src_allowed.setdefault((pt, at), set())
        for sleepable in (False, True):
            for fid in uses:
                try:
                    name, _ = interp.resolve(Prog(pt, at, sleepable), int(fid), fn)
                except Unknown as e:
                    problems.append(f"{pt.name}/{at.name if at else '-'}/{fid.name}: {e}")
                    continue
                if name is None:
                    continue
                if not sleepable:
                    allowed.add(fid)
                uses[fid].setdefault(name, []).append((pt, at, sleepable))
    for p in problems:
        print("# problem:", p, file=sys.stderr)
    emit(uses, protos, src_allowed, src_name, btf_check(BTF.from_file(args.btf)), btf_sets(files))


_PROTO_FIELDS = ["func", "gpl_only", "pkt_access", "might_sleep", "allow_fastcall", "ret_type",
                 "", "", "ret_btf_id", "allowed"]     # the unions: arg types, sizes/btf ids


def btf_check(btf: BTF) -> list[str]:
    """Where the running kernel's BTF says otherwise than the sources' words."""
    out = []

    def values(name):
        return {v.name: v.value for v in btf.find(name, "enum").values}
    ids = values("bpf_func_id")
    mine = {"BPF_FUNC_" + f.name: int(f) for f in FuncId}
    for n in sorted(set(ids) ^ set(mine), key=lambda n: ids.get(n, mine.get(n, 0))):
        if not n.startswith("__"):
            out.append(f"enum bpf_func_id: {n} " + ("only in the kernel" if n in ids else "only in ebee.uapi"))
    for n, v in mine.items():
        if n in ids and ids[n] != v:
            out.append(f"enum bpf_func_id: {n} = {ids[n]} in the kernel, {v} in ebee.uapi")
    kflags = values("bpf_type_flag")
    for enum, prefix, shift in (("bpf_arg_type", "ARG_", 0), ("bpf_return_type", "RET_", 0),
                                ("bpf_type_flag", "", 8)):
        kv = values(enum)
        for n, v in kv.items():
            if n.startswith("__"):
                continue
            if n in _ALIASES:         # a shorthand: compare its spelling-out
                base, flags = _ALIASES[n]
                want = kv.get(base, -1) | sum(kflags.get(f, 0) for f in flags)
                if want != v:
                    out.append(f"enum {enum}: {n} = {v:#x}, the sources spell it "
                               f"{' | '.join([base, *flags])} = {want:#x}")
            elif not any(n == f"{prefix}{e}" for e in _VOCAB[enum]):
                out.append(f"enum {enum}: {n} only in the kernel")
            elif (_VOCAB[enum][n[len(prefix):]] << shift) != v:
                out.append(f"enum {enum}: {n} = {v:#x} in the kernel, "
                           f"{_VOCAB[enum][n[len(prefix):]] << shift:#x} in ebee.protos.vocab")
    for word, instead in NOT_IN_KERNEL.items():
        if word not in values("bpf_arg_type"):
            out.append(f"enum bpf_arg_type: {word} only in the sources (read as {instead})")
    members = [m.name for m in btf.find("bpf_func_proto", "struct").members]
    if members != _PROTO_FIELDS:
        out.append(f"struct bpf_func_proto: fields {members} in the kernel, {_PROTO_FIELDS} read")
    return out


# the BTF_SET_START sets the prototypes' .allowed callbacks test the attach target against
ALLOWED_SETS = ("btf_allowlist_d_path", "sleepable_lsm_hooks")


def btf_sets(files: dict[str, str]) -> dict[str, list[str]]:
    out = {}
    for path, text in files.items():
        for m in re.finditer(r"BTF_SET_START\((\w+)\)(.*?)BTF_SET_END\(\1\)", text, re.S):
            if m.group(1) in ALLOWED_SETS:
                out[m.group(1)] = re.findall(r"BTF_ID\(func,\s*(\w+)\)", m.group(2))
    return out


def emit(uses, protos, src_allowed, src_name, btf_notes, sets) -> None:
    w = sys.stdout.write
    rows = []
    for fid, by_proto in uses.items():
        # group protos by what the verifier sees; the most used signature is the default
        sigs: dict[tuple, list[str]] = {}
        for name in by_proto:
            sigs.setdefault(protos[name].signature(), []).append(name)
        rows.append((fid, by_proto, sigs))
    n_variant = sum(1 for _, _, s in rows if len(s) > 1)
    w('"""Every helper\'s prototype: Linux\'s ``struct bpf_func_proto``, one row per helper id.\n\n')
    w(f"Generated by tools/gen_helper_protos.py from {src_name} (the prototypes and each program\n"
      f"type's ``get_func_proto``) and the helpers Linux {platform.release()} lets each program type\n"
      "call (``ebee.progtypes.func_protos``); do not edit.  "
      f"{len(rows)} helpers, {n_variant} with prototypes\n"
      "that differ by program type.\n\n"
      "A row is the prototype most program types get, in the kernel's words (``A``: enum\n"
      "bpf_arg_type, ``R``: enum bpf_return_type, ``X``: enum bpf_type_flag), with the\n"
      "kernel struct's name; ``variants`` are the other prototypes of the helper and the\n"
      "(program type, attach type[, sleepable]) keys that get them.  A helper the sources\n"
      "give no program type has only its id (no prototype: the verifier refuses the call as\n"
      "Linux does, ``unknown func``).  ``DIFFERENCES``: where the sources' choice of helpers\n"
      "per program type differs from the running kernel's.\n"
      '"""\n')
    w("from __future__ import annotations\n\n")
    w("from ..uapi import AttachType as AT, FuncId as F, ProgType as T\n")
    w("from .helper_types import arg, proto as P, table\n")
    w("from .vocab import Arg as A, Flag as X, Ret as R\n\n")
    w('__all__ = ["ALLOWED_SETS", "BTF_DIFFERENCES", "DIFFERENCES", "HELPERS", "NO_PROTO", "SOURCES"]\n\n')
    w(f"SOURCES = {src_name!r}\n\n")
    w("HELPERS = table(\n")
    missing = []
    all_keys = [(pt, at, sl) for pt, at in targets() for sl in (False, True)]
    for fid, by_proto, sigs in rows:
        if not by_proto:
            missing.append(fid)
            continue
        count = {s: sum(len(by_proto[n]) for n in names) for s, names in sigs.items()}
        order = sorted(sigs, key=lambda s: -count[s])

        def keys_of(s):
            return _keys_py({k for n in sigs[s] for k in by_proto[n]}, all_keys)
        default = sigs[order[0]][0]
        w("    " + _proto_py(protos[default], fid, keys_of(order[0]) if len(order) > 1 else []))
        if len(order) > 1:
            w(".with_variants(\n")
            for s in order[1:]:
                w(f"        {_proto_py(protos[sigs[s][0]], fid, keys_of(s))},\n")
            w("    )")
        w(",\n")
    w(")\n\n")
    w("# helpers no program type of the sources offers: ids without prototypes\n")
    w("NO_PROTO = frozenset({" + ", ".join(f"F.{f.name}" for f in missing) + "})\n\n")
    # the sources' answer to "may this type call the helper" against the running kernel's
    w("# (program type, attach type): (helpers the kernel offers and the sources do not,\n"
      "#                               helpers the sources offer and the kernel does not)\n")
    w("DIFFERENCES: dict[tuple[T, AT | None], tuple[frozenset[F], frozenset[F]]] = {\n")
    for key, kernel in FUNC_PROTOS.items():
        src = src_allowed.get(key, set())
        only_k, only_s = set(kernel) - src, src - set(kernel)
        if only_k or only_s:
            fmt = lambda s: "frozenset({" + ", ".join(f"F.{f.name}" for f in sorted(s)) + "})"
            w(f"    {_pair_py(*key)}: (\n        {fmt(only_k)},\n        {fmt(only_s)}),\n")
    w("}\n\n")
    w("# the attach targets the .allowed callbacks accept (BTF_SET_START sets of the sources)\n")
    w("ALLOWED_SETS: dict[str, frozenset[str]] = {\n")
    for name in ALLOWED_SETS:
        w(f"    {name!r}: frozenset({{\n")
        items = sorted(sets.get(name, ()))
        for i in range(0, len(items), 4):
            w("        " + " ".join(f"{x!r}," for x in items[i:i + 4]) + "\n")
        w("    }),\n")
    w("}\n\n")
    w(f"# where Linux {platform.release()}'s BTF (/sys/kernel/btf/vmlinux) differs from the words\n"
      "# the sources use\n")
    w("BTF_DIFFERENCES: tuple[str, ...] = (\n")
    for n in btf_notes:
        w(f"    {n!r},\n")
    w(")\n")


# --------------------------------------------------------------------------- docs

def docs() -> str:
    """docs/helpers.md: every helper, the program types that may call it, whether ebee's
    runtime implements it, and why not for the few user space cannot."""
    # the runtime, only for the docs: the table itself is made without it
    from ebee.helpers.unimplemented import CANNOT, NOT_YET, implemented  # noqa: E402
    from ebee.protos.helpers import HELPERS, NO_PROTO, SOURCES  # noqa: E402

    all_types = {pt for pt, _ in FUNC_PROTOS}
    by_fid: dict[FuncId, dict[ProgType, set]] = {}
    for (pt, at), fids in FUNC_PROTOS.items():
        for f in fids:
            by_fid.setdefault(f, {}).setdefault(pt, set()).add(at)
    n_impl = sum(1 for f in HELPERS if implemented(f))
    lines = [
        "# Helpers",
        "",
        "<!-- generated by tools/gen_helper_protos.py --docs; do not edit -->",
        "",
        f"Every helper of Linux {platform.release()}: {len(HELPERS) + len(NO_PROTO)} ids, "
        f"{len(HELPERS)} with a prototype generated from the kernel sources ({SOURCES}; "
        "`ebee.protos.helpers`, tools/gen_helper_protos.py), which the verifier checks calls "
        f"against as Linux does. ebee's user-space runtime implements {n_impl}; calling "
        "another raises `VMError` (\"helper ... is not implemented by ebee\"). Those "
        "not implemented say why: *cannot* for the few without a meaning outside the "
        "kernel, *not yet* for those that need state ebee does not model yet.",
        "",
        "*Program types* are those this kernel lets call the helper (probed: "
        "tools/gen_func_protos.py); *all* means every type it loads here, and an attach "
        "type in parentheses that only some attach types of the type may. Where the "
        "prototype differs by program type, *variants* names the kernel's prototypes. "
        "Types this kernel does not load here (fentry/fexit/fmod_ret and lsm programs: "
        "EPERM; lirc_mode2) are not probed; the sources' answer for them is in the keys of "
        "`ebee.protos.helpers`.",
        "",
        "| id | helper | program types | user space | variants |",
        "| ---: | --- | --- | --- | --- |",
    ]
    for f in FuncId:
        if not f.value:
            continue
        types = by_fid.get(f, {})
        if set(types) == all_types:
            where = "all"
        else:
            parts = []
            for pt in sorted(types, key=lambda t: t.value):
                ats = {a for (p, a) in FUNC_PROTOS if p is pt}
                name = pt.name.lower()
                if types[pt] != ats:
                    name += " (" + ", ".join(sorted(a.name.lower() if a else "-"
                                                    for a in types[pt])) + ")"
                parts.append(name)
            where = ", ".join(parts) or "none here"
        row = HELPERS.get(f)
        if row is None:
            impl = "no prototype: no program type of the sources offers it"
        elif implemented(f):
            impl = "yes"
        elif f in CANNOT:
            impl = "cannot: " + CANNOT[f]
        elif f in NOT_YET:
            impl = "not yet: " + NOT_YET[f]
        else:
            impl = "not yet"
        variants = ", ".join(f"`{p.proto}`" for p in row.protos) if row and row.variants else ""
        lines.append(f"| {int(f)} | `bpf_{f.name}` | {where} | {impl} | {variants} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
