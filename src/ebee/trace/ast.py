"""The syntax tree of a bpftrace script.

Nodes are plain dataclasses; every node carries the :class:`Loc` of the source
text it came from, so later passes (typing, code generation, the verifier's
verdict on the generated code) can point at the script line that caused them.
The semantic pass fills in ``Expr.type``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Loc:
    """A source range: 1-based line and column, ``end_col`` one past the last column."""
    line: int = 1
    col: int = 1
    end_line: int = 1
    end_col: int = 2

    def __add__(self, other: "Loc") -> "Loc":
        return Loc(self.line, self.col, other.end_line, other.end_col)


# -- expressions -------------------------------------------------------------------------

@dataclass(eq=False)
class Expr:
    loc: Loc = field(default_factory=Loc, kw_only=True)
    type: Any = field(default=None, kw_only=True)


@dataclass(eq=False)
class Int(Expr):
    value: int


@dataclass(eq=False)
class Str(Expr):
    value: str


@dataclass(eq=False)
class Builtin(Expr):
    name: str


@dataclass(eq=False)
class Ident(Expr):
    name: str


@dataclass(eq=False)
class Var(Expr):
    name: str


@dataclass(eq=False)
class Map(Expr):
    name: str
    keys: list[Expr] | None = None


@dataclass(eq=False)
class Param(Expr):
    n: int              # $1 -> 1; 0 for $# (the count)


@dataclass(eq=False)
class Call(Expr):
    name: str
    args: list[Expr]
    name_loc: Loc = field(default_factory=Loc, kw_only=True)


@dataclass(eq=False)
class Binop(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass(eq=False)
class Unop(Expr):
    op: str             # "-", "!", "~", "*", "++", "--"
    expr: Expr
    postfix: bool = False


@dataclass(eq=False)
class Ternary(Expr):
    cond: Expr
    left: Expr
    right: Expr


@dataclass(eq=False)
class Field(Expr):
    expr: Expr
    field: str
    arrow: bool = False     # "->" rather than "."


@dataclass(eq=False)
class Index(Expr):
    expr: Expr
    index: Expr


@dataclass(eq=False)
class TupleIndex(Expr):
    expr: Expr
    index: int


@dataclass(eq=False)
class Cast(Expr):
    typename: str       # "struct sk_buff", "uint8", "int32" ...
    stars: int
    expr: Expr


@dataclass(eq=False)
class Tuple(Expr):
    elems: list[Expr]


# -- statements --------------------------------------------------------------------------

@dataclass(eq=False)
class Stmt:
    loc: Loc = field(default_factory=Loc, kw_only=True)


@dataclass(eq=False)
class ExprStmt(Stmt):
    expr: Expr


@dataclass(eq=False)
class AssignMap(Stmt):
    map: Map
    expr: Expr
    op: str = ""        # compound operator ("+" for +=), "" for plain =


@dataclass(eq=False)
class AssignVar(Stmt):
    var: Var
    expr: Expr
    op: str = ""


@dataclass(eq=False)
class If(Stmt):
    cond: Expr
    then: list[Stmt]
    orelse: list[Stmt] | None = None


@dataclass(eq=False)
class While(Stmt):
    cond: Expr
    body: list[Stmt]


@dataclass(eq=False)
class Unroll(Stmt):
    count: Expr
    body: list[Stmt]


@dataclass(eq=False)
class For(Stmt):
    var: Var
    map: Map
    body: list[Stmt]


@dataclass(eq=False)
class Jump(Stmt):
    kind: str           # "break", "continue", "return"


# -- probes ------------------------------------------------------------------------------

@dataclass(eq=False)
class AttachPoint:
    raw: str
    loc: Loc = field(default_factory=Loc)


@dataclass(eq=False)
class Probe:
    attach_points: list[AttachPoint]
    pred: Expr | None
    body: list[Stmt]
    loc: Loc = field(default_factory=Loc)


@dataclass(eq=False)
class Program:
    preamble: list[str]          # #include lines and C definitions, kept as text
    probes: list[Probe]
    source: str = ""
    filename: str = "stdin"


def walk(node: Any):
    """Every node under ``node`` (itself included), depth first, in source order."""
    yield node
    if isinstance(node, list):
        for n in node:
            yield from walk(n)
        return
    for name in getattr(node, "__dataclass_fields__", {}):
        if name in ("loc", "type", "name_loc"):
            continue
        v = getattr(node, name)
        if isinstance(v, (Expr, Stmt, list, Probe, AttachPoint)):
            yield from walk(v)
