"""The language: parsing, typing and bpftrace-shaped diagnostics (no root needed)."""
from __future__ import annotations

import pytest

from ebee.trace import ast as A
from ebee.trace.compiler import compile_script
from ebee.trace.errors import TraceError
from ebee.trace.parser import parse


def test_probe_structure():
    p = parse('t:syscalls:sys_enter_openat, tracepoint:syscalls:sys_enter_exec* '
              '/pid == 1 && @x[1, "a"] / 2 > 0/ { @[comm] = count(); }')
    probe = p.probes[0]
    assert [ap.raw for ap in probe.attach_points] == [
        "t:syscalls:sys_enter_openat", "tracepoint:syscalls:sys_enter_exec*"]
    assert isinstance(probe.pred, A.Binop) and probe.pred.op == "&&"
    assert isinstance(probe.body[0], A.AssignMap)


def test_precedence_and_literals():
    p = parse("BEGIN { $a = 1 + 2 * 3; $b = 1_000 + 1e3 + 0x10; $c = 1 << 4 | 1; }")
    a = p.probes[0].body[0].expr
    assert a.op == "+" and a.right.op == "*"
    b = p.probes[0].body[1].expr
    assert b.right.value == 16 and b.left.right.value == 1000 and b.left.left.value == 1000
    c = p.probes[0].body[2].expr
    assert c.op == "|" and c.left.op == "<<"


def test_uprobe_paths_and_offsets():
    p = parse("uprobe:/bin/bash:readline+8 { } uretprobe:/lib/x86_64-linux-gnu/libc.so.6:malloc"
              " { } interval:ms:100 { } begin { } end { }")
    assert [ap.raw for pr in p.probes for ap in pr.attach_points] == [
        "uprobe:/bin/bash:readline+8", "uretprobe:/lib/x86_64-linux-gnu/libc.so.6:malloc",
        "interval:ms:100", "begin", "end"]


def test_statements_after_blocks():
    p = parse("BEGIN { if (1) { @x = 1; } else if (2) { @y = 2; } printf(\"a\"); "
              "while ($i < 3) { $i++; } unroll(2) { @z++ } exit(); }")
    kinds = [type(s).__name__ for s in p.probes[0].body]
    assert kinds == ["If", "ExprStmt", "While", "Unroll", "ExprStmt"]


def test_casts_fields_tuples():
    p = parse("k:icmp_echo { $skb = (struct sk_buff *) arg0; "
              "$ip = (struct iphdr *) ($skb->head + $skb->network_header); "
              "$t = (1, \"a\"); print($t.1); $x = args.filename; $u = (uint8)5; }")
    body = p.probes[0].body
    assert body[0].expr.typename == "struct sk_buff" and body[0].expr.stars == 1
    assert isinstance(body[1].expr.expr, A.Binop)
    assert isinstance(body[2].expr, A.Tuple)
    assert isinstance(body[3].expr.args[0], A.TupleIndex)
    assert isinstance(body[4].expr, A.Field) and not body[4].expr.arrow
    assert body[5].expr.typename == "uint8"


def test_comments_includes_shebang():
    p = parse("#!/usr/bin/env bpftrace\n#include <linux/sched.h>\n/* c */ BEGIN { // x\n }\n")
    assert p.preamble == ["#include <linux/sched.h>"]


def test_string_escapes():
    p = parse(r'BEGIN { printf("a\tb\n\x41\101\"\\"); }')
    assert p.probes[0].body[0].expr.args[0].value == 'a\tb\nAA"\\'


# messages and ranges as bpftrace 0.17 prints them on this machine
ERRORS = [
    ("BEGIN { @x = ; }", "stdin:1:14-15: ERROR: syntax error, unexpected ;\n"
     "BEGIN { @x = ; }\n             ~"),
    ("BEGIN { foo(1); }", "stdin:1:9-12: ERROR: Unknown function: foo\n"
     "BEGIN { foo(1); }\n        ~~~"),
    ('BEGIN { printf("%d\\n", $x); }', "stdin:1:24-26: ERROR: Undefined or undeclared "
     "variable: $x\nBEGIN { printf(\"%d\\n\", $x); }\n                       ~~"),
    ("BEGIN { @x = \"a\"; @x = 1; }", "stdin:1:19-21: ERROR: Type mismatch for @x: trying "
     "to assign value of type 'int64' when map already contains a value of type "
     "'string[2]\nBEGIN { @x = \"a\"; @x = 1; }\n                  ~~"),
    ('BEGIN { printf("%d %d\\n", 1); }', "stdin:1:9-29: ERROR: printf: Not enough arguments "
     "for format string (1 supplied, 2 expected)\nBEGIN { printf(\"%d %d\\n\", 1); }\n"
     "        ~~~~~~~~~~~~~~~~~~~~"),
    ("BEGIN { $x = 1; $x = \"s\"; }", "stdin:1:20-21: ERROR: Type mismatch for $x: trying to "
     "assign value of type 'string[2]' when variable already contains a value of type "
     "'int64'\nBEGIN { $x = 1; $x = \"s\"; }\n                   ~"),
    ("BEGIN { @ = hist(1, 2); }", "stdin:1:13-23: ERROR: hist() requires one argument "
     "(2 provided)\nBEGIN { @ = hist(1, 2); }\n            ~~~~~~~~~~"),
    ('BEGIN { printf("%s\\n", 1); }', "stdin:1:9-26: ERROR: printf: %s specifier expects a "
     "value of type string (integer supplied)\nBEGIN { printf(\"%s\\n\", 1); }\n"
     "        ~~~~~~~~~~~~~~~~~"),
    ('BEGIN { system("echo hi"); exit(); }', "stdin:1:9-26: ERROR: system() is an unsafe "
     "function being used in safe mode\nBEGIN { system(\"echo hi\"); exit(); }\n"
     "        ~~~~~~~~~~~~~~~~~"),
    ("kprobe:foo { printf(\"%d\\n\", retval); }", "stdin:1:29-35: ERROR: The retval builtin "
     "can only be used with 'kretprobe' and 'uretprobe' and 'kfunc' probes\n"
     "kprobe:foo { printf(\"%d\\n\", retval); }\n                            ~~~~~~"),
    ('BEGIN { @x[1,"a"] = 2; @y[(1,"b")] = 3; }', "stdin:1:24-35: ERROR: tuple cannot be "
     "used as a map key. Try a multi-key associative array instead (eg `@map[$1, $2] = ...)`."
     "\nBEGIN { @x[1,\"a\"] = 2; @y[(1,\"b\")] = 3; }\n                       ~~~~~~~~~~~"),
]


@pytest.mark.parametrize("src,want", ERRORS, ids=range(len(ERRORS)))
def test_bpftrace_errors(src, want):
    with pytest.raises(TraceError) as ei:
        compile_script(src, missing_probes_ok=True)
    assert ei.value.render() == want


def test_map_key_mismatch_message():
    with pytest.raises(TraceError, match=r"Argument mismatch for @x: trying to access with "
                                         r"arguments: \[int64, int64\] when map expects "
                                         r"arguments: \[int64\]"):
        compile_script("BEGIN { @x[1] = 1; @x[1,2] = 2; }")


def test_tracepoint_field_errors():
    with pytest.raises(TraceError, match="Struct/union of type 'struct _tracepoint_syscalls_"
                                         "sys_enter_openat' does not contain a field named "
                                         "'nofield'"):
        compile_script('tracepoint:syscalls:sys_enter_openat { printf("%d\\n", '
                       'args->nofield); }')


def test_unknown_tracepoint():
    with pytest.raises(TraceError) as ei:
        compile_script("tracepoint:syscalls:sys_enter_nope { }")
    assert ei.value.render().startswith("stdin:1:1-35: ERROR: tracepoint not found: "
                                        "syscalls:sys_enter_nope")


def test_typing_of_builtins_and_maps():
    s = compile_script('tracepoint:syscalls:sys_enter_openat { @[comm, pid] = count(); '
                       '@f[str(args->filename)] = sum(args->flags); @m = max(args->mode); '
                       '@h = lhist(args->flags, 0, 100, 10); }')
    maps = s.resources.maps
    assert [str(t) for t in maps["@"].info.keys] == ["string[16]", "unsigned int64"]
    assert maps["@"].value.kind == "count" and maps["@"].percpu
    assert str(maps["@f"].info.keys[0]) == "string[64]"
    assert maps["@h"].value.params == (0, 100, 10) and maps["@h"].bucketed


def test_btf_casts_without_headers():
    s = compile_script("#include <linux/skbuff.h>\n#include <linux/ip.h>\nk:icmp_echo { "
                       "$skb = (struct sk_buff *) arg0; "
                       "$iphdr = (struct iphdr *) ($skb->head + $skb->network_header); "
                       "@pingers[ntop($iphdr->saddr)] = count(); }")
    assert s.probes[0].prog_type.name == "KPROBE"
    assert str(s.resources.maps["@pingers"].info.keys[0]) == "inet"


def test_attach_count_expands_wildcards():
    s = compile_script("BEGIN { } tracepoint:syscalls:sys_enter_getp* { } END { }",
                       missing_probes_ok=False)
    assert s.attach_count == 2 + len(s.attached[0].targets) * len(s.attached)
