"""bpftrace's language, parsed with lark into :mod:`ebee.trace.ast`.

Why lark: it is a maintained, pure-Python parsing library whose LALR(1) parser
with a *contextual* lexer handles the two places where bpftrace's grammar depends
on where the lexer is -- attach points (``uprobe:/bin/bash:readline`` is one token
at the top level, but ``/`` divides inside a block) and the end of a predicate
(``/`` followed by ``{``) -- without a hand-written lexer, and it reports positions
we turn into bpftrace's ``FILE:LINE:COL-COL`` diagnostics.  The grammar mirrors
bpftrace 0.17's ``parser.yy`` (precedence levels, casts, tuples, compound
assignment) and accepts the later spellings (``args.f``, ``for ($kv : @m)``).
"""
from __future__ import annotations

import re
from functools import lru_cache

import lark
from lark import Lark, Token, Transformer, v_args

from . import ast as A
from .errors import TraceError

BUILTINS = ("pid", "tid", "uid", "gid", "comm", "nsecs", "elapsed", "cpu", "curtask", "cgroup",
            "rand", "args", "retval", "func", "probe", "kstack", "ustack", "cpid", "ctx",
            "username", "jiffies", "numaid", "sarg[0-9]+", "arg[0-9]+", "__builtin_[a-z_]+")

GRAMMAR = r"""
start: preamble probe+
preamble: (CPP | STRUCT_DEF)*
probe: attach_points pred? block
attach_points: ATTACH ("," ATTACH)*
pred: "/" expr ENDPRED
block: "{" stmts "}"
stmts: stmt_item* simple_stmt?
?stmt_item: simple_stmt ";"
          | block_stmt
          | ";"                       -> empty
?simple_stmt: expr                   -> expr_stmt
            | map "=" expr            -> assign_map
            | var "=" expr            -> assign_var
            | map COMPOUND expr       -> compound_map
            | var COMPOUND expr       -> compound_var
            | "break"                 -> jump_break
            | "continue"              -> jump_continue
            | "return"                -> jump_return
?block_stmt: if_stmt
           | "while" "(" expr ")" block          -> while_stmt
           | "unroll" "(" expr ")" block         -> unroll_stmt
           | "for" "(" var ":" map ")" block      -> for_stmt
if_stmt: "if" "(" expr ")" block ("else" (block | if_stmt))?

?expr: ternary
?ternary: lor
        | lor "?" expr ":" ternary
?lor: land | lor OROR land           -> binop
?land: bor | land ANDAND bor         -> binop
?bor: bxor | bor BOR bxor            -> binop
?bxor: band | bxor BXOR band         -> binop
?band: eq | band BAND eq             -> binop
?eq: rel | eq EQOP rel               -> binop
?rel: shift | rel RELOP shift        -> binop
?shift: add | shift SHIFTOP add      -> binop
?add: mul | add ADDOP mul            -> binop
?mul: cast
    | mul MULOP cast                 -> binop
    | mul STAR cast                  -> binop
?cast: unary
     | "(" IDENT ")" cast                   -> cast0
     | "(" IDENT STAR ")" cast              -> cast1
     | "(" IDENT STAR STAR ")" cast         -> cast2
     | "(" AGGR IDENT ")" cast              -> scast0
     | "(" AGGR IDENT STAR ")" cast         -> scast1
     | "(" AGGR IDENT STAR STAR ")" cast    -> scast2
?unary: postfix
      | UNOP cast                    -> unop
      | STAR cast                    -> deref
      | ADDOP cast                   -> unop
      | INCDEC lvalue                -> preincdec
?postfix: primary
        | postfix "." ident          -> field
        | postfix ARROW ident        -> arrow
        | postfix "." INT            -> tuple_index
        | postfix "[" expr "]"       -> index
        | call
        | lvalue INCDEC              -> postincdec
?lvalue: map | var
call: (IDENT | BUILTIN) "(" [args] ")"
args: expr ("," expr)*
?primary: INT                        -> int
        | STRING                     -> string
        | BUILTIN                    -> builtin
        | IDENT                      -> identifier
        | PARAM                      -> param
        | PARAMCOUNT                 -> paramcount
        | "(" expr ")"
        | "(" expr "," args ")"      -> tuple
        | lvalue
map: MAP ("[" args "]")?
var: VAR
ident: IDENT | BUILTIN

ATTACH: /(BEGIN|END|begin|end)(?![A-Za-z0-9_:])|[A-Za-z_][A-Za-z0-9_]*:[A-Za-z0-9_\-.\/:*+\[\]$#]*/
CPP: /#[^!\n][^\n]*/
STRUCT_DEF.3: /(struct|union|enum)\s+\w*\s*\{([^{}]|\{([^{}]|\{[^{}]*\})*\})*\}\s*;?/
ENDPRED.2: /\/(?=\s*[\/{])/
COMPOUND.5: "<<=" | ">>=" | "+=" | "-=" | "*=" | "/=" | "%=" | "&=" | "|=" | "^="
INCDEC.2: "++" | "--"
ARROW.2: "->"
OROR.3: "||"
ANDAND.3: "&&"
BOR: "|"
BXOR: "^"
BAND: "&"
EQOP.3: "==" | "!="
RELOP.2: "<=" | ">=" | "<" | ">"
SHIFTOP.4: "<<" | ">>"
ADDOP: "+" | "-"
MULOP: "/" | "%"
STAR: "*"
UNOP: "!" | "~"
AGGR.2: /(struct|union|enum)(?![_a-zA-Z0-9])/
INT: /0[xX][0-9a-fA-F]+|[0-9]([0-9_]*[0-9])?([eE][0-9]+)?/
STRING: /"(\\.|[^"\\\n])*"/
MAP: /@[_a-zA-Z0-9]*/
VAR: /\$[_a-zA-Z][_a-zA-Z0-9]*/
PARAM: /\$[0-9]+/
PARAMCOUNT: "$#"
BUILTIN.1: /(?:BUILTIN_NAMES)(?![_a-zA-Z0-9])/
IDENT: /[_a-zA-Z][_a-zA-Z0-9]*/

COMMENT: /\/\/[^\n]*/
BLOCK_COMMENT: /\/\*(.|\n)*?\*\//
SHEBANG: /#![^\n]*/
%import common.WS
%ignore WS
%ignore COMMENT
%ignore BLOCK_COMMENT
%ignore SHEBANG
""".replace("BUILTIN_NAMES", "|".join(BUILTINS))


def _loc(meta_or_tok) -> A.Loc:
    m = meta_or_tok
    if isinstance(m, Token):
        return A.Loc(m.line, m.column, m.end_line, m.end_column)
    if getattr(m, "empty", False):
        return A.Loc()
    return A.Loc(m.line, m.column, m.end_line, m.end_column)


_ESC = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def unescape(body: str, tok: Token) -> str:
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESC:
            out.append(_ESC[nxt])
            i += 2
        elif nxt in "xX":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            if not m:
                raise TraceError(f"invalid escape character '\\{nxt}'", _loc(tok))
            out.append(chr(int(m.group(0), 16)))
            i += 2 + len(m.group(0))
        elif nxt in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            v = int(m.group(0), 8)
            if v > 255:
                raise TraceError(f"octal escape sequence out of range '\\{m.group(0)}'", _loc(tok))
            out.append(chr(v))
            i += 1 + len(m.group(0))
        else:
            raise TraceError(f"invalid escape character '\\{nxt}'", _loc(tok))
    return "".join(out)


def parse_int(text: str) -> int:
    t = text.replace("_", "")
    if t[:2].lower() == "0x":
        return int(t, 16)
    if "e" in t.lower():
        base, _, exp = t.lower().partition("e")
        return int(base) * 10 ** int(exp)
    return int(t, 10)


@v_args(meta=True)
class _Build(Transformer):
    """lark tree -> ast nodes."""

    def start(self, meta, ch):
        return A.Program(ch[0], ch[1:])

    def preamble(self, meta, ch):
        return [str(t) for t in ch]

    def probe(self, meta, ch):
        aps = ch[0]
        pred = ch[1] if len(ch) == 3 else None
        return A.Probe(aps, pred, ch[-1], _loc(meta))

    def attach_points(self, meta, ch):
        return [A.AttachPoint(str(t), _loc(t)) for t in ch]

    def pred(self, meta, ch):
        return ch[0]

    def block(self, meta, ch):
        return ch[0]

    def stmts(self, meta, ch):
        return [s for s in ch if s is not None]

    def empty(self, meta, ch):
        return None

    def expr_stmt(self, meta, ch):
        return A.ExprStmt(ch[0], loc=ch[0].loc)

    def assign_map(self, meta, ch):
        return A.AssignMap(ch[0], ch[1], loc=_loc(meta))

    def assign_var(self, meta, ch):
        return A.AssignVar(ch[0], ch[1], loc=_loc(meta))

    def compound_map(self, meta, ch):
        return A.AssignMap(ch[0], ch[2], str(ch[1])[:-1], loc=_loc(meta))

    def compound_var(self, meta, ch):
        return A.AssignVar(ch[0], ch[2], str(ch[1])[:-1], loc=_loc(meta))

    def jump_break(self, meta, ch):
        return A.Jump("break", loc=_loc(meta))

    def jump_continue(self, meta, ch):
        return A.Jump("continue", loc=_loc(meta))

    def jump_return(self, meta, ch):
        return A.Jump("return", loc=_loc(meta))

    def while_stmt(self, meta, ch):
        return A.While(ch[0], ch[1], loc=_loc(meta))

    def unroll_stmt(self, meta, ch):
        return A.Unroll(ch[0], ch[1], loc=_loc(meta))

    def for_stmt(self, meta, ch):
        return A.For(ch[0], ch[1], ch[2], loc=_loc(meta))

    def if_stmt(self, meta, ch):
        orelse = None
        if len(ch) == 3:
            orelse = ch[2] if isinstance(ch[2], list) else [ch[2]]
        return A.If(ch[0], ch[1], orelse, loc=_loc(meta))

    def ternary(self, meta, ch):
        return A.Ternary(ch[0], ch[1], ch[2], loc=_loc(meta))

    def binop(self, meta, ch):
        left, op, right = ch
        return A.Binop(str(op), left, right, loc=_loc(op))

    def cast0(self, meta, ch):
        return A.Cast(str(ch[0]), 0, ch[1], loc=_loc(meta))

    def cast1(self, meta, ch):
        return A.Cast(str(ch[0]), 1, ch[2], loc=_loc(meta))

    def cast2(self, meta, ch):
        return A.Cast(str(ch[0]), 2, ch[3], loc=_loc(meta))

    def scast0(self, meta, ch):
        return A.Cast(f"{ch[0]} {ch[1]}", 0, ch[2], loc=_loc(meta))

    def scast1(self, meta, ch):
        return A.Cast(f"{ch[0]} {ch[1]}", 1, ch[3], loc=_loc(meta))

    def scast2(self, meta, ch):
        return A.Cast(f"{ch[0]} {ch[1]}", 2, ch[4], loc=_loc(meta))

    def unop(self, meta, ch):
        return A.Unop(str(ch[0]), ch[1], loc=_loc(meta))

    def deref(self, meta, ch):
        return A.Unop("*", ch[1], loc=_loc(meta))

    def preincdec(self, meta, ch):
        return A.Unop(str(ch[0]), ch[1], loc=_loc(meta))

    def postincdec(self, meta, ch):
        return A.Unop(str(ch[1]), ch[0], True, loc=_loc(meta))

    def field(self, meta, ch):
        return A.Field(ch[0], ch[1], loc=_loc(meta))

    def arrow(self, meta, ch):
        return A.Field(ch[0], ch[2], True, loc=_loc(meta))

    def tuple_index(self, meta, ch):
        return A.TupleIndex(ch[0], parse_int(str(ch[1])), loc=_loc(meta))

    def index(self, meta, ch):
        return A.Index(ch[0], ch[1], loc=_loc(meta))

    def call(self, meta, ch):
        name = ch[0]
        args = ch[1] if len(ch) > 1 and ch[1] is not None else []
        return A.Call(str(name), args, loc=_loc(meta), name_loc=_loc(name))

    def args(self, meta, ch):
        return list(ch)

    def int(self, meta, ch):
        return A.Int(parse_int(str(ch[0])), loc=_loc(ch[0]))

    def string(self, meta, ch):
        t = ch[0]
        return A.Str(unescape(str(t)[1:-1], t), loc=_loc(t))

    def builtin(self, meta, ch):
        return A.Builtin(str(ch[0]), loc=_loc(ch[0]))

    def ident(self, meta, ch):
        return str(ch[0])

    def identifier(self, meta, ch):
        return A.Ident(str(ch[0]), loc=_loc(ch[0]))

    def param(self, meta, ch):
        return A.Param(int(str(ch[0])[1:]), loc=_loc(ch[0]))

    def paramcount(self, meta, ch):
        return A.Param(0, loc=_loc(ch[0]))

    def tuple(self, meta, ch):
        return A.Tuple([ch[0]] + ch[1], loc=_loc(meta))

    def map(self, meta, ch):
        keys = ch[1] if len(ch) > 1 else None
        return A.Map(str(ch[0]), keys, loc=_loc(meta))

    def var(self, meta, ch):
        return A.Var(str(ch[0]), loc=_loc(ch[0]))


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", propagate_positions=True,
                maybe_placeholders=True)


def _describe(tok) -> str:
    if tok is None or tok.type == "$END":
        return "end of file"
    text = str(tok)
    if tok.type == "IDENT":
        return "identifier"
    if tok.type == "INT":
        return "integer"
    if tok.type == "STRING":
        return "string"
    if tok.type == "MAP":
        return "map"
    if tok.type == "VAR":
        return "variable"
    if tok.type == "BUILTIN":
        return "builtin"
    return text


def parse(source: str, filename: str = "stdin") -> A.Program:
    """Parse a script; raises :class:`TraceError` (with bpftrace's wording) on bad input."""
    try:
        tree = _lark().parse(source)
        prog = _Build().transform(tree)
    except TraceError as e:
        raise e.with_source(source, filename) from None
    except lark.exceptions.VisitError as e:
        if isinstance(e.orig_exc, TraceError):
            raise e.orig_exc.with_source(source, filename) from None
        raise
    except lark.exceptions.UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            line, col = _last_pos(source)
            loc = A.Loc(line, col, line, col + 1)
            msg = "syntax error, unexpected end of file"
            if "RBRACE" in e.expected:
                msg += ", expecting }"
        else:
            loc = _loc(tok)
            msg = f"syntax error, unexpected {_describe(tok)}"
        raise TraceError(msg, loc, source=source, filename=filename) from None
    except lark.exceptions.UnexpectedCharacters as e:
        loc = A.Loc(e.line, e.column, e.line, e.column + 1)
        ch = source[e.pos_in_stream] if e.pos_in_stream < len(source) else ""
        if ch == '"':
            msg = "unterminated string"
        else:
            msg = f"syntax error, unexpected {ch}" if ch in "{}()[];,=" else \
                f"invalid character '{ch}'"
        raise TraceError(msg, loc, source=source, filename=filename) from None
    except lark.exceptions.UnexpectedEOF:
        line, col = _last_pos(source)
        raise TraceError("syntax error, unexpected end of file",
                         A.Loc(line, col, line, col + 1), source=source,
                         filename=filename) from None
    prog.source = source
    prog.filename = filename
    return prog


def _last_pos(source: str) -> tuple[int, int]:
    """The position bpftrace blames for an unexpected end: the last token's."""
    stripped = source.rstrip()
    line = stripped.count("\n") + 1
    col = len(stripped) - (stripped.rfind("\n") + 1)
    return line, max(col, 1)
