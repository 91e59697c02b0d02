"""bpftrace's functions -- ``printf``, ``print``, ``str``, ``join``, ``ntop`` ... --
checked and typed as bpftrace 0.17 does (its argument counts, its messages), and its
printf format rules.

A mixin of :class:`ebee.trace.semantic.Analyzer`.
"""
from __future__ import annotations

import re

from . import ast as A
from . import types as T
from .types import Type

PRINTF_LENGTHS = ("", "hh", "h", "l", "ll", "j", "z", "t")
PRINTF_TYPES: dict[str, str] = {"s": "string", "r": "buffer", "c": "integer"}
PRINTF_TYPES.update({f"{ln}{c}": "integer" for ln in PRINTF_LENGTHS for c in "duxXpo"})
# bpftrace 0.17's format_specifier_re: "-", a width and a precision, then a known conversion
FORMAT_SPEC = re.compile(r"%-?[0-9]*(\.[0-9]+)?(" + "|".join(
    sorted(PRINTF_TYPES, key=len, reverse=True)) + ")")
STRINGISH = ("str", "ksym", "usym", "probe", "username", "kstack", "ustack", "inet",
             "timestamp", "mac", "cgroup_path", "strerror")
UNSAFE = ("system", "signal", "override")
SIGNALS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6,
           "SIGBUS": 7, "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12,
           "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15, "SIGCHLD": 17, "SIGCONT": 18,
           "SIGSTOP": 19, "SIGTSTP": 20}


class FunctionChecks:
    # -- calls ----------------------------------------------------------------------------

    def call(self, c: A.Call) -> Type:
        name = c.name
        if name in T.AGGREGATES:
            self.error(f"{name}() should be directly assigned to a map", c.loc)
        if name in UNSAFE and not self.unsafe:
            self.error(f"{name}() is an unsafe function being used in safe mode", c.loc)
        handler = getattr(self, f"call_{name}", None)
        if handler is None:
            self.error(f"Unknown function: {name}", c.name_loc)
        return handler(c)

    def _args(self, c: A.Call) -> list[Type]:
        return [self.expr(a) for a in c.args]

    def call_printf(self, c: A.Call) -> Type:
        self.varargs(c, 1, 128)
        fmt = c.args[0]
        if not isinstance(fmt, A.Str):
            self.error(f"{c.name}() expects a string literal as the first argument", c.loc)
        fmt.type = T.str_t(len(fmt.value) + 1)
        types = [self.expr(a) for a in c.args[1:]]
        if self.final:
            msg = check_format(fmt.value, types)
            if msg:
                self.error(msg if c.name == "printf" else msg.replace("printf", c.name, 1), c.loc)
        return T.NONE

    call_system = call_printf

    call_cat = call_printf

    def call_print(self, c: A.Call) -> Type:
        self.varargs(c, 1, 3)
        a = c.args[0]
        if isinstance(a, A.Map):
            if a.keys:
                self.error(f"The map passed to {c.name}() should not be indexed by a key", c.loc)
            if a.name not in self.maps and self.final:
                self.error(f"Undefined map: {a.name}", a.loc)
            for x in c.args[1:]:
                if self.const_int(x) is None:
                    self.error("print() top and div arguments must be integer literals", x.loc)
                x.type = T.INT64
            a.type = self.maps[a.name].value if a.name in self.maps else T.INT64
            return T.NONE
        if len(c.args) > 1:
            self.error(f"Non-map print() only takes 1 argument, {len(c.args)} found", c.loc)
        t = self.expr(a)
        if t.kind in ("none", "void", "record", "ctx"):
            self.error(f"{t} type passed to {c.name}() is not printable", c.loc)
        return T.NONE

    def _map_arg(self, c: A.Call, *, keyed: bool = False) -> A.Map:
        if not c.args or not isinstance(c.args[0], A.Map):
            self.error(f"{c.name}() expects a map to be provided", c.loc)
        m = c.args[0]
        if m.keys and not keyed:
            self.error(f"The map passed to {c.name}() should not be indexed by a key", c.loc)
        if self.final and m.name not in self.maps:
            self.error(f"Undefined map: {m.name}", m.loc)
        return m

    def call_clear(self, c: A.Call) -> Type:
        self.nargs(c, 1)
        self._map_arg(c)
        return T.NONE

    def call_zero(self, c: A.Call) -> Type:
        self.nargs(c, 1)
        self._map_arg(c)
        return T.NONE

    def call_delete(self, c: A.Call) -> Type:
        self.varargs(c, 1, 2)
        m = self._map_arg(c, keyed=True)
        if len(c.args) == 2:
            if m.keys:
                self.error("delete() takes either a keyed map or a map and a key", c.loc)
            m.keys = [c.args[1]]
            c.args = [m]
        keys = self.key_types(m)
        info = self.maps.get(m.name)
        if info is not None and info.keys is not None:
            self.check_keys(m, info, keys)
        return T.NONE

    def call_has_key(self, c: A.Call) -> Type:
        self.nargs(c, 2)
        m = self._map_arg(c)
        keys = [self.expr(c.args[1])] if not isinstance(c.args[1], A.Tuple) else \
            [self.expr(x) for x in c.args[1].elems]
        info = self.maps.get(m.name)
        if info is not None and info.keys is not None:
            probe = A.Map(m.name, [c.args[1]], loc=m.loc)
            self.check_keys(probe, info, [T.stored(k) for k in keys])
        return T.UINT64

    def call_exit(self, c: A.Call) -> Type:
        self.varargs(c, 0, 1)
        self._args(c)
        return T.NONE

    def call_str(self, c: A.Call) -> Type:
        self.varargs(c, 1, 2)
        t = self.expr(c.args[0])
        if t.kind == "str":
            return t
        if not (t.is_int or t.kind == "ptr"):
            self.error(f"str() expects an integer or a pointer type as first argument ({t} "
                       f"provided)", c.loc)
        size = T.STRLEN
        if len(c.args) == 2:
            self.expr(c.args[1])
            n = self.const_int(c.args[1])
            if n is not None:
                if n < 0:
                    self.error(f"str cannot use negative length ({n})", c.loc)
                size = min(size, n + 1)
        return T.str_t(size)

    def call_buf(self, c: A.Call) -> Type:
        self.varargs(c, 1, 2)
        t = self.expr(c.args[0])
        n = None
        if len(c.args) == 2:
            self.expr(c.args[1])
            n = self.const_int(c.args[1])
            if n is None:
                self.error("buf() length must be an integer literal", c.loc)
        elif t.kind in ("array", "str"):
            n = t.size
        else:
            self.error(f"buf() expects a length argument for non-array type {t}", c.loc)
        if n > T.STRLEN:
            n = T.STRLEN
        return T.buf_t(n)

    def call_ksym(self, c: A.Call) -> Type:
        self.nargs(c, 1)
        t = self.expr(c.args[0])
        if not (t.is_int or t.kind == "ptr"):
            self.error(f"{c.name}() expects an integer or pointer argument", c.loc)
        return T.KSYM if c.name == "ksym" else T.USYM

    call_usym = call_ksym

    def call_kaddr(self, c: A.Call) -> Type:
        self.nargs(c, 1)
        if not isinstance(c.args[0], A.Str):
            self.error(f"{c.name}() expects a string literal", c.loc)
        self.expr(c.args[0])
        return T.UINT64

    def call_uaddr(self, c: A.Call) -> Type:
        self.nargs(c, 1)
        if not isinstance(c.args[0], A.Str):
            self.error("uaddr() expects a string literal", c.loc)
        self.expr(c.args[0])
        if not self._user_probe():
            self.error("uaddr can only be used with uprobes", c.loc)
        return T.ptr_t(T.int_t(8), user=True)

    def call_ntop(self, c: A.Call) -> Type:
        self.varargs(c, 1, 2)
        ts = self._args(c)
        addr = ts[-1]
        if not (addr.is_int or addr.kind in ("array", "ptr") or addr.kind == "str"):
            self.error(f"ntop() expects an integer or array argument, got {addr}", c.loc)
        if addr.kind in ("array", "str") and addr.size not in (4, 16):
            self.error("ntop() argument must be 4 or 16 bytes in size", c.loc)
        return T.INET

    def call_join(self, c: A.Call) -> Type:
        self.varargs(c, 1, 2)
        t = self.expr(c.args[0])
        if not (t.is_int or t.kind == "ptr"):
            self.error(f"join() only supports int or pointer arguments ({t.kind} provided)",
                       c.loc)
        if len(c.args) == 2:
            if not isinstance(c.args[1], A.Str):
                self.error("join() expects a string literal as the delimiter", c.loc)
            self.expr(c.args[1])
        return T.NONE

    def call_time(self, c: A.Call) -> Type:
        self.varargs(c, 0, 1)
        if c.args and not isinstance(c.args[0], A.Str):
            self.error("time() expects a string literal", c.loc)
        self._args(c)
        return T.NONE

    def call_strftime(self, c: A.Call) -> Type:
        self.nargs(c, 2)
        if not isinstance(c.args[0], A.Str):
            self.error("strftime() expects a string literal as the first argument", c.loc)
        ts = self._args(c)
        if not ts[1].is_int:
            self.error(f"strftime() expects an integer as the second argument ({ts[1]} "
                       f"provided)", c.loc)
        return Type("timestamp", 8, params=(c.args[0].value,))

    def call_kstack(self, c: A.Call) -> Type:
        self.varargs(c, 0, 2)
        mode, limit = "bpftrace", T.STACK_DEPTH
        for a in c.args:
            if isinstance(a, A.Ident) and a.name in ("bpftrace", "perf", "raw"):
                mode = a.name
                a.type = Type("stack_mode", name=a.name)
                continue
            n = self.const_int(a)
            if n is None:
                self.error(f"{c.name}() expects an integer literal or a stack mode", a.loc)
            a.type = T.INT64
            if n < 0 or n > 1024:
                self.error(f"{c.name}: limit must be between 0 and 1024", a.loc)
            limit = n
        return Type(c.name, 8 if c.name == "kstack" else 16, params=(mode, limit))

    call_ustack = call_kstack

    def call_signal(self, c: A.Call) -> Type:
        self.nargs(c, 1)
        a = c.args[0]
        if isinstance(a, A.Str):
            if signal_number(a.value) is None:
                self.error(f"Invalid string for signal: {a.value}", c.loc)
        self.expr(a)
        return T.NONE

    def call_sizeof(self, c: A.Call) -> Type:
        self.nargs(c, 1)
        a = c.args[0]
        if isinstance(a, A.Ident):
            rec = self.structs.lookup(a.name) or T.CAST_INTS.get(a.name)
            if rec is None:
                self.error(f"Unknown type: {a.name}", a.loc)
            a.type = rec
            return T.UINT64
        self.expr(a)
        return T.UINT64

    def call_strncmp(self, c: A.Call) -> Type:
        self.nargs(c, 3)
        ts = self._args(c)
        if ts[0].kind != "str" or ts[1].kind != "str":
            self.error("strncmp() expects string arguments", c.loc)
        if self.const_int(c.args[2]) is None:
            self.error("strncmp() expects an integer literal as the third argument", c.loc)
        return T.UINT64

    def call_cgroupid(self, c: A.Call) -> Type:
        self.nargs(c, 1)
        self._args(c)
        return T.UINT64

    def call_macaddr(self, c: A.Call) -> Type:
        self.nargs(c, 1)
        self._args(c)
        return T.MAC

    def call_len(self, c: A.Call) -> Type:
        self.nargs(c, 1)
        self._map_arg(c)
        return T.UINT64


def check_format(fmt: str, types: list[Type]) -> str | None:
    """bpftrace's verify_format_string(): the message for a format/argument mismatch."""
    tokens = list(FORMAT_SPEC.finditer(fmt))
    n = len(tokens)
    if len(types) < n:
        return (f"printf: Not enough arguments for format string ({len(types)} supplied, {n} "
                f"expected)")
    if len(types) > n:
        return (f"printf: Too many arguments for format string ({len(types)} supplied, {n} "
                f"expected)")
    for tok, t in zip(tokens, types):
        conv = tok.group(2)
        want = PRINTF_TYPES[conv]
        have = "string" if t.kind in STRINGISH else "integer" if t.kind in ("int", "ptr") \
            else "buffer" if t.kind == "buf" else t.kind
        if want != have:
            return f"printf: %{conv} specifier expects a value of type {want} ({have} supplied)"
    return None


def signal_number(name: str) -> int | None:
    n = name.upper()
    if not n.startswith("SIG"):
        n = "SIG" + n
    return SIGNALS.get(n)
