"""Typing and checking a parsed script: bpftrace's SemanticAnalyser, with its messages.

The analysis runs per *instance* -- one generated program: a probe with the attach
points that share its code -- because the same body types differently on
different attach points (``args`` of two tracepoints).  Maps are global: their
key and value types come from every assignment in the script, so the analysis
runs until they stop changing, then once more to report errors (a map may be
read in BEGIN and first assigned in a later probe, as in bpftrace).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import ast as A
from . import types as T
from .errors import TraceError
from .functions import FunctionChecks
from .probes import Target, expand, parse_attach_point
from .structs import Structs
from .types import Type


MAX_UNROLL = 100


@dataclass
class MapInfo:
    name: str
    loc: A.Loc
    keys: list[Type] | None = None       # [] for a map without a key
    value: Type | None = None

    @property
    def kind(self) -> str:
        return self.value.kind if self.value is not None else "none"

    @property
    def percpu(self) -> bool:
        return self.value is not None and self.value.is_aggregate


@dataclass
class Instance:
    """One program: a probe on the attach points that share its code."""
    probe: A.Probe
    targets: list[Target]
    index: int
    probe_index: int
    variables: dict[str, Type] = field(default_factory=dict)

    @property
    def provider(self) -> str:
        return self.targets[0].provider

    @property
    def name(self) -> str:
        return ",".join(t.name for t in self.targets)


class Analyzer(FunctionChecks):
    def __init__(self, program: A.Program, params: list[str] | None = None, *,
                 structs: Structs | None = None, unsafe: bool = False,
                 has_child: bool = False, missing_probes_ok: bool = False):
        self.program = program
        self.params = list(params or [])
        self.structs = structs or Structs()
        self.unsafe = unsafe
        self.has_child = has_child
        self.missing_ok = missing_probes_ok
        self.maps: dict[str, MapInfo] = {}
        self.instances: list[Instance] = []
        self.final = False
        self.changed = False
        self.warnings: list[tuple[str, A.Loc]] = []
        # per-instance state
        self.inst: Instance | None = None
        self.vars: dict[str, Type] = {}
        self.loop_depth = 0

    # -- driver ---------------------------------------------------------------------------

    def run(self) -> list[Instance]:
        try:
            self._expand()
            for _ in range(8):
                self.changed = False
                self._pass()
                if not self.changed:
                    break
            self.final = True
            self._pass()
        except TraceError as e:
            raise e.with_source(self.program.source, self.program.filename) from None
        return self.instances

    def _expand(self) -> None:
        for pi, probe in enumerate(self.program.probes):
            targets: list[Target] = []
            for ap in probe.attach_points:
                t = parse_attach_point(ap)
                targets += expand(t, ap, missing_ok=self.missing_ok)
            if not targets:
                continue
            uses = {n.name for n in A.walk(probe.body) if isinstance(n, A.Builtin)}
            if probe.pred is not None:
                uses |= {n.name for n in A.walk(probe.pred) if isinstance(n, A.Builtin)}
            per_target = bool(uses & {"args", "probe"}) or any(t.is_special for t in targets)
            groups: dict[tuple, list[Target]] = {}
            for k, t in enumerate(targets):
                key = (k,) if per_target else (t.prog_type, t.provider, t.target
                                               if t.provider in ("interval", "profile",
                                                                 "software", "hardware")
                                               else "", t.func if t.provider in (
                                                   "interval", "profile", "software",
                                                   "hardware") else "")
                groups.setdefault(key, []).append(t)
            for g in groups.values():
                self.instances.append(Instance(probe, g, len(self.instances), pi))

    def _pass(self) -> None:
        for inst in self.instances:
            self.analyze_instance(inst)

    def analyze_instance(self, inst: Instance) -> None:
        """Type ``inst``'s body (node types are left for the code generator)."""
        self.inst = inst
        self.vars = {}
        self.loop_depth = 0
        if inst.probe.pred is not None:
            t = self.expr(inst.probe.pred)
            if self.final and not (t.is_int or t.kind == "ptr"):
                raise TraceError(f"Invalid type for predicate: {t}", inst.probe.pred.loc)
        self.block(inst.probe.body)
        inst.variables = dict(self.vars)

    def error(self, msg: str, loc: A.Loc):
        raise TraceError(msg, loc)

    # -- statements -----------------------------------------------------------------------

    def block(self, stmts: list[A.Stmt]) -> None:
        for s in stmts:
            self.stmt(s)

    def stmt(self, s: A.Stmt) -> None:
        if isinstance(s, A.ExprStmt):
            if isinstance(s.expr, A.Call) and s.expr.name in T.AGGREGATES:
                self.error(f"{s.expr.name}() should be directly assigned to a map", s.expr.loc)
            self.expr(s.expr)
        elif isinstance(s, A.AssignMap):
            self.assign_map(s)
        elif isinstance(s, A.AssignVar):
            self.assign_var(s)
        elif isinstance(s, A.If):
            c = self.expr(s.cond)
            if self.final and not (c.is_int or c.kind == "ptr"):
                self.error(f"Invalid condition in if(): {c}", s.loc)
            self.block(s.then)
            if s.orelse:
                self.block(s.orelse)
        elif isinstance(s, A.While):
            c = self.expr(s.cond)
            if self.final and not (c.is_int or c.kind == "ptr"):
                self.error(f"Invalid condition in while(): {c}", s.loc)
            self.loop_depth += 1
            self.block(s.body)
            self.loop_depth -= 1
        elif isinstance(s, A.Unroll):
            n = self.const_int(s.count)
            if n is None:
                self.error("unroll() count must be an integer literal or positional parameter",
                           s.loc)
            if n > MAX_UNROLL:
                self.error(f"unroll maximum value is {MAX_UNROLL} ({n} provided)", s.loc)
            if n < 1:
                self.error(f"unroll minimum value is 1 ({n} provided)", s.loc)
            s.count.type = T.INT64
            self.block(s.body)
        elif isinstance(s, A.For):
            self.for_stmt(s)
        elif isinstance(s, A.Jump):
            if s.kind in ("break", "continue") and self.loop_depth == 0:
                self.error(f"{s.kind} used outside of a loop", s.loc)

    def for_stmt(self, s: A.For) -> None:
        """``for ($kv : @m) { ... }``: $kv is the tuple (key, value) of each element."""
        m = s.map
        if m.keys:
            self.error("for loops iterate over a whole map: give it without a key", m.loc)
        info = self.maps.get(m.name)
        if info is None or info.value is None or info.keys is None:
            if self.final:
                self.error(f"Undefined map: {m.name}", m.loc)
            kv = T.tuple_of([T.INT64, T.INT64])
        else:
            v = info.value
            if v.kind in ("hist", "lhist", "avg", "stats", "min", "max"):
                self.error(f"for loops over {v.kind}() maps are not supported", m.loc)
            keys = info.keys
            kt = keys[0] if len(keys) == 1 else T.tuple_of(keys) if keys else T.INT64
            vt = T.int_t(8, v.signed) if v.is_aggregate else v
            kv = T.tuple_of([kt, vt])
        m.type = kv
        old = self.vars.get(s.var.name)
        if old is not None and not old.compatible(kv):
            self.error(f"Type mismatch for {s.var.name}: trying to assign value of type '{kv}' "
                       f"when variable already contains a value of type '{old}'", s.var.loc)
        self.vars[s.var.name] = kv
        s.var.type = kv
        self.loop_depth += 1
        self.block(s.body)
        self.loop_depth -= 1

    def assign_map(self, s: A.AssignMap) -> None:
        m = s.map
        e = s.expr
        if s.op:
            vt = self.expr(e)
            if self.final and not vt.is_int:
                self.error(f"Type mismatch for {m.name}: compound assignment needs an integer",
                           m.loc)
            cur = self.maps.get(m.name)
            value = cur.value if cur is not None and cur.value is not None else T.INT64
            self.define_map(m, self.key_types(m), value)
            m.type = value
            return
        if isinstance(e, A.Call) and e.name in T.AGGREGATES:
            vt = self.aggregate(e)
        else:
            vt = self.expr(e)
            if vt.kind in ("none", "void"):
                self.error(f"Invalid expression for assignment: {vt}", s.map.loc)
            if vt.kind == "ctx" or (vt.kind == "record" and vt.ctx):
                self.error("context cannot be assigned to a map", s.map.loc)
            vt = T.stored(vt)
        self.define_map(m, self.key_types(m), vt)
        m.type = self.maps[m.name].value

    def assign_var(self, s: A.AssignVar) -> None:
        v = s.var
        if isinstance(s.expr, A.Call) and s.expr.name in T.AGGREGATES:
            self.error(f"{s.expr.name}() should be directly assigned to a map", s.expr.loc)
        t = self.expr(s.expr)
        if s.op:
            if v.name not in self.vars:
                self.error(f"Undefined or undeclared variable: {v.name}", v.loc)
            t = self.vars[v.name]
        if t.kind in ("none", "void"):
            self.error(f"Invalid expression for assignment: {t}", s.loc)
        t = T.stored(t)
        old = self.vars.get(v.name)
        if old is not None:
            if not old.compatible(t) and not (old.is_int and t.is_int):
                where = A.Loc(s.var.loc.line, s.var.loc.end_col + 1, s.var.loc.line,
                              s.var.loc.end_col + 2)
                self.error(f"Type mismatch for {v.name}: trying to assign value of type "
                           f"'{t}' when variable already contains a value of type '{old}'",
                           where)
            t = old.widened(t)
        self.vars[v.name] = t
        v.type = t

    def key_types(self, m: A.Map) -> list[Type]:
        out = []
        for k in m.keys or []:
            t = self.expr(k)
            if t.kind == "tuple":
                self.error("tuple cannot be used as a map key. Try a multi-key associative "
                           "array instead (eg `@map[$1, $2] = ...)`.", m.loc)
            if t.kind == "ctx" or (t.kind == "record" and t.ctx):
                self.error("context cannot be used as a map key", m.loc)
            if t.kind in ("none", "void") or t.is_aggregate:
                self.error(f"Invalid expression for assignment: {t}", k.loc)
            out.append(T.stored(t))
        return out

    def define_map(self, m: A.Map, keys: list[Type], value: Type) -> None:
        info = self.maps.get(m.name)
        if info is None:
            info = self.maps[m.name] = MapInfo(m.name, m.loc)
            self.changed = True
        if info.keys is None:
            info.keys = keys
            self.changed = True
        else:
            self.check_keys(m, info, keys)
            widened = [a.widened(b) for a, b in zip(info.keys, keys)]
            if widened != info.keys:
                info.keys = widened
                self.changed = True
        if info.value is None:
            info.value = value
            self.changed = True
            return
        old = info.value
        if old.is_aggregate or value.is_aggregate:
            if old.kind != value.kind or old.params != value.params:
                self.error(f"Type mismatch for {m.name}: trying to assign value of type "
                           f"'{value}' when map already contains a value of type '{old}'", m.loc)
            if value.signed and not old.signed:
                info.value = value
                self.changed = True
            return
        if not old.compatible(value) and not (old.is_int and value.is_int):
            self.error(f"Type mismatch for {m.name}: trying to assign value of type '{value}' "
                       f"when map already contains a value of type '{old}", m.loc)
        w = old.widened(value)
        if w != old:
            info.value = w
            self.changed = True

    def check_keys(self, m: A.Map, info: MapInfo, keys: list[Type]) -> None:
        ok = len(keys) == len(info.keys or []) and all(
            a.compatible(b) or (a.is_int and b.is_int) for a, b in zip(info.keys or [], keys))
        if not ok:
            got = ", ".join(str(k) for k in keys)
            want = ", ".join(str(k) for k in info.keys or [])
            self.error(f"Argument mismatch for {m.name}: trying to access with arguments: "
                       f"[{got}] when map expects arguments: [{want}]", m.loc)

    def const_int(self, e: A.Expr) -> int | None:
        if isinstance(e, A.Int):
            return e.value
        if isinstance(e, A.Param):
            v = self.param_value(e.n)
            try:
                return int(v, 0)
            except ValueError:
                return None
        if isinstance(e, A.Unop) and e.op == "-":
            v = self.const_int(e.expr)
            return -v if v is not None else None
        return None

    def param_value(self, n: int) -> str:
        if n == 0:
            return str(len(self.params))
        return self.params[n - 1] if n <= len(self.params) else ""

    # -- aggregates -----------------------------------------------------------------------

    def aggregate(self, c: A.Call) -> Type:
        name = c.name
        nargs = {"count": 0, "sum": 1, "min": 1, "max": 1, "avg": 1, "stats": 1, "hist": 1,
                 "lhist": 4}[name]
        self.nargs(c, nargs)
        signed = False
        for a in c.args:
            t = self.expr(a)
            if not t.is_int and self.final:
                self.error(f"{name}() expects an integer argument ({t} provided)", c.loc)
        if c.args:
            signed = c.args[0].type.signed if c.args[0].type is not None else False
        params: tuple[int, ...] = ()
        if name == "lhist":
            vals = [self.const_int(a) for a in c.args[1:]]
            if any(v is None for v in vals):
                self.error("lhist() expects integer literals for min, max and step", c.loc)
            lo, hi, step = vals
            if step < 1:
                self.error(f"lhist() step must be >= 1 ({step} provided)", c.loc)
            if lo < 0:
                self.error(f"lhist() min must be non-negative (provided min {lo})", c.loc)
            if lo > hi:
                self.error(f"lhist() min must be less than max (provided min {lo} and max {hi})",
                           c.loc)
            if (hi - lo) // step > 1000:
                self.error(f"lhist() too many buckets, must be <= 1000 (would need "
                           f"{(hi - lo) // step})", c.loc)
            if step > hi - lo:
                self.error(f"lhist() step is too large for the given range (provided step "
                           f"{step} for range {hi - lo})", c.loc)
            params = (lo, hi, step)
        base = T.aggregate(name, params)
        c.type = T.Type(base.kind, base.size, signed and name not in ("count", "hist", "lhist"),
                        params=params)
        return c.type

    def nargs(self, c: A.Call, n: int) -> None:
        got = len(c.args)
        if got != n:
            if n == 0:
                msg = f"{c.name}() requires no arguments"
            elif n == 1:
                msg = f"{c.name}() requires one argument"
            else:
                msg = f"{c.name}() requires {n} arguments"
            self.error(f"{msg} ({got} provided)", c.loc)

    def varargs(self, c: A.Call, lo: int, hi: int) -> None:
        got = len(c.args)
        if got < lo:
            msg = (f"{c.name}() requires at least one argument" if lo == 1 else
                   f"{c.name}() requires at least {lo} arguments")
            self.error(f"{msg} ({got} provided)", c.loc)
        if got > hi:
            msg = (f"{c.name}() requires no arguments" if hi == 0 else
                   f"{c.name}() takes up to one argument" if hi == 1 else
                   f"{c.name}() takes up to {hi} arguments")
            self.error(f"{msg} ({got} provided)", c.loc)

    # -- expressions ----------------------------------------------------------------------

    def expr(self, e: A.Expr) -> Type:
        t = self._expr(e)
        e.type = t
        return t

    def _expr(self, e: A.Expr) -> Type:
        if isinstance(e, A.Int):
            return T.INT64 if e.value < (1 << 63) else T.UINT64
        if isinstance(e, A.Str):
            return T.str_t(len(e.value.encode()) + 1)
        if isinstance(e, A.Param):
            if e.n == 0:
                return T.INT64
            v = self.param_value(e.n)
            try:
                int(v, 0)
                return T.INT64
            except ValueError:
                return T.str_t(len(v.encode()) + 1) if v else T.INT64
        if isinstance(e, A.Builtin):
            return self.builtin(e)
        if isinstance(e, A.Ident):
            if e.name in ("bpftrace", "perf", "raw"):
                return Type("stack_mode", name=e.name)
            self.error(f"Unknown identifier: '{e.name}'", e.loc)
        if isinstance(e, A.Var):
            if e.name not in self.vars:
                self.error(f"Undefined or undeclared variable: {e.name}", e.loc)
            return self.vars[e.name]
        if isinstance(e, A.Map):
            return self.map_read(e)
        if isinstance(e, A.Call):
            return self.call(e)
        if isinstance(e, A.Binop):
            return self.binop(e)
        if isinstance(e, A.Unop):
            return self.unop(e)
        if isinstance(e, A.Ternary):
            c = self.expr(e.cond)
            a = self.expr(e.left)
            b = self.expr(e.right)
            if self.final and not (c.is_int or c.kind == "ptr"):
                self.error(f"Invalid condition in ternary: {c}", e.loc)
            if a.kind != b.kind and not ({a.kind, b.kind} <= {"int", "ptr"}):
                self.error(f"Ternary operator must return the same type: have '{a}' and '{b}'",
                           e.loc)
            if a.is_int and b.is_int:
                return T.int_t(8, a.signed and b.signed)
            return a.widened(b)
        if isinstance(e, A.Field):
            return self.field(e)
        if isinstance(e, A.TupleIndex):
            t = self.expr(e.expr)
            if t.kind != "tuple":
                self.error(f"Can not access index '{e.index}' on expression of type '{t}'", e.loc)
            if e.index >= len(t.elems):
                self.error(f"Invalid tuple index: {e.index}. Found {len(t.elems)} elements in "
                           f"tuple.", e.loc)
            return t.elems[e.index]
        if isinstance(e, A.Index):
            t = self.expr(e.expr)
            it = self.expr(e.index)
            if not it.is_int:
                self.error(f"The array index operator [] requires an integer index ({it} "
                           f"provided)", e.loc)
            if t.kind == "array":
                return t.elem
            if t.kind == "ptr" and t.elem is not None:
                return t.elem
            if t.kind == "str":
                return T.int_t(1, True)
            self.error(f"The array index operator [] can only be used on arrays and pointers, "
                       f"found {t}.", e.loc)
        if isinstance(e, A.Cast):
            return self.cast(e)
        if isinstance(e, A.Tuple):
            elems = []
            for x in e.elems:
                t = self.expr(x)
                if t.kind in ("none", "void") or t.is_aggregate:
                    self.error(f"Invalid expression in tuple: {t}", x.loc)
                elems.append(T.stored(t))
            return T.tuple_of(elems)
        self.error(f"unsupported expression {type(e).__name__}", e.loc)

    def builtin(self, b: A.Builtin) -> Type:
        name = b.name
        inst = self.inst
        providers = {t.provider for t in inst.targets}
        if name in ("pid", "tid", "uid", "gid", "nsecs", "elapsed", "cgroup", "cpu", "rand",
                    "jiffies"):
            return T.UINT64
        if name == "numaid":
            return T.UINT32
        if name == "comm":
            return T.str_t(T.COMM_LEN)
        if name == "curtask":
            rec = self.structs.lookup("struct task_struct")
            return T.ptr_t(rec) if rec is not None else T.UINT64
        if name == "username":
            return T.USERNAME
        if name == "cpid":
            if not self.has_child:
                self.error("cpid cannot be used without child command", b.loc)
            return T.UINT32
        if name == "probe":
            return T.PROBE
        if name in ("kstack", "ustack"):
            return Type(name, 8 if name == "kstack" else 16, params=("bpftrace", T.STACK_DEPTH))
        if name == "retval":
            if not providers <= {"kretprobe", "uretprobe"}:
                extra = " (try to use args->ret instead)" if "tracepoint" in providers else ""
                self.error("The retval builtin can only be used with 'kretprobe' and "
                           f"'uretprobe' and 'kfunc' probes{extra}", b.loc)
            return T.UINT64
        if name == "func":
            if providers <= {"kprobe", "kretprobe"}:
                return T.KSYM
            if providers <= {"uprobe", "uretprobe"}:
                return T.USYM
            self.error(f"The func builtin can not be used with '{inst.targets[0].provider}' "
                       f"probes", b.loc)
        m = re.fullmatch(r"arg(\d+)", name)
        if m:
            if providers == {"rawtracepoint"}:
                return T.UINT64             # the raw tracepoint's u64 arguments
            if not providers <= {"kprobe", "uprobe"}:
                self.error(f"The {name} builtin can only be used with 'kprobes', 'uprobes' and "
                           f"'usdt' probes", b.loc)
            if int(m.group(1)) > 5:
                self.error(f"x86_64 doesn't support {name}", b.loc)
            return T.Type("int", 8, False, user=providers <= {"uprobe"})
        if name == "args":
            if providers == {"tracepoint"}:
                t = inst.targets[0]
                return self.structs.tracepoint_args(t.target, t.func, user=t.user)
            if providers == {"rawtracepoint"}:
                self.error("The args builtin can only be used with tracepoint/kfunc probes "
                           "(rawtracepoint used here)", b.loc)
            self.error(f"The args builtin can only be used with tracepoint/kfunc probes "
                       f"({inst.targets[0].provider} used here)", b.loc)
        if name == "ctx":
            return T.CTX
        self.error(f"Unknown builtin: {name}", b.loc)

    def map_read(self, m: A.Map) -> Type:
        keys = self.key_types(m)
        info = self.maps.get(m.name)
        if info is None or info.value is None:
            if self.final:
                self.error(f"Undefined map: {m.name}", m.loc)
            return T.INT64
        self.check_keys(m, info, keys)
        v = info.value
        if v.kind in ("hist", "lhist", "stats"):
            self.error(f"Map {m.name} holds a {v.kind}() and cannot be read in an expression",
                       m.loc)
        if v.is_aggregate:
            return T.int_t(8, v.signed)
        return v

    def binop(self, e: A.Binop) -> Type:
        a = self.expr(e.left)
        b = self.expr(e.right)
        op = e.op
        if op in ("==", "!=") and a.kind == "str" and b.kind == "str":
            return T.UINT64
        if op in ("&&", "||"):
            for t in (a, b):
                if not (t.is_int or t.kind == "ptr"):
                    self.error(f"The {op} operator can not be used on expressions of types {a}, "
                               f"{b}", e.loc)
            return T.UINT64
        if not (a.is_int or a.kind == "ptr") or not (b.is_int or b.kind == "ptr"):
            self.error(f"The {op} operator can not be used on expressions of types {a}, {b}",
                       e.loc)
        if op in ("==", "!=", "<", ">", "<=", ">="):
            return T.UINT64
        if op in ("+", "-") and a.kind == "ptr" and b.is_int:
            return a
        if op == "+" and b.kind == "ptr" and a.is_int:
            return b
        if op in ("/", "%") and a.signed and b.signed and self.final:
            self.warnings.append((f"signed operands for '{op}' can lead to undefined behavior "
                                  f"(cast to unsigned to silence warning)", e.loc))
        return T.int_t(8, a.signed and b.signed)

    def unop(self, e: A.Unop) -> Type:
        t = self.expr(e.expr)
        if e.op in ("++", "--"):
            if not isinstance(e.expr, (A.Var, A.Map)):
                self.error(f"The {e.op} operator must be applied to a map or variable", e.loc)
            if isinstance(e.expr, A.Map):
                info = self.maps.get(e.expr.name)
                if info is None or info.value is None:
                    self.define_map(e.expr, self.key_types(e.expr), T.INT64)
                    e.expr.type = T.INT64
                    return T.INT64
            elif e.expr.name not in self.vars:
                self.error(f"Undefined or undeclared variable: {e.expr.name}", e.expr.loc)
            if not t.is_int:
                self.error(f"The {e.op} operator can not be used on expressions of type {t}",
                           e.loc)
            return t
        if e.op == "*":
            if t.kind == "ptr":
                if t.elem is None:
                    self.error("Can not dereference a void pointer", e.loc)
                return t.elem
            if t.is_int:
                return T.UINT64
            self.error(f"Can not dereference type '{t}'", e.loc)
        if not t.is_int and not (t.kind == "ptr" and e.op == "!"):
            self.error(f"The {e.op} operator can not be used on expressions of type {t}", e.loc)
        if e.op == "!":
            return T.UINT64
        return T.int_t(8, t.signed or e.op == "-" and t.size < 8)

    def field(self, e: A.Field) -> Type:
        t = self.expr(e.expr)
        rec = t
        if t.kind == "ptr" and t.elem is not None and t.elem.kind == "record":
            rec = t.elem
        if rec.kind != "record":
            if t.kind == "tuple" and e.field.isdigit():
                return t.elems[int(e.field)]
            self.error(f"Can not access field '{e.field}' on expression of type '{t}'", e.loc)
        fi = self.structs.field(rec, e.field)
        if fi is None:
            self.error(f"Struct/union of type '{rec.name}' does not contain a field named "
                       f"'{e.field}'", e.loc)
        e.info = fi           # type: ignore[attr-defined]
        ft = fi.type
        if rec.ctx:
            ft = T.Type(ft.kind, ft.size, ft.signed, ft.elem, ft.count, ft.elems, ft.name,
                        ft.btf_id, ft.user, True, ft.params)
        return ft

    def cast(self, e: A.Cast) -> Type:
        src = self.expr(e.expr)
        name = e.typename
        if name.startswith(("struct ", "union ", "enum ")) or name not in T.CAST_INTS:
            rec = self.structs.lookup(name)
            if rec is None:
                if name in T.CAST_INTS:
                    rec = T.CAST_INTS[name]
                else:
                    self.error(f"Unknown struct/union: '{name}'", e.loc)
            if e.stars == 0:
                if rec.kind == "int":
                    return rec
                self.error(f"Cannot cast to '{name}'", e.loc)
            if not (src.is_int or src.kind == "ptr"):
                self.error(f"Cannot cast from '{src}' to '{name} *'", e.loc)
            t: Type = rec
            for _ in range(e.stars):
                t = T.ptr_t(t, user=src.user or self._user_probe())
            return t
        it = T.CAST_INTS[name]
        if e.stars:
            t = it
            for _ in range(e.stars):
                t = T.ptr_t(t, user=src.user or self._user_probe())
            return t
        if not (src.is_int or src.kind == "ptr"):
            self.error(f"Cannot cast from '{src}' to '{name}'", e.loc)
        return it

    def _user_probe(self) -> bool:
        return all(t.provider in ("uprobe", "uretprobe") for t in self.inst.targets)







