"""User-space mode: the compiled programs run in ebee's runtime, output as bpftrace's.

The golden outputs in data/bpftrace017.json were printed by bpftrace 0.17 on the
development machine (tests/trace/gen_golden.py); these tests need neither root nor
bpftrace.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import ebee.trace
from ebee.cli.main import main
from ebee.helpers.task import Task
from ebee.trace.compiler import compile_script
from ebee.trace.userspace import UserSpaceTrace
from cases import BY_ID, CASES
from harness import HERE, argv, script_text, untie

GOLDEN = json.loads((HERE / "data" / "bpftrace017.json").read_text())


@pytest.mark.parametrize("cid", sorted(GOLDEN))
def test_userspace_cli_matches_bpftrace(cid, capsys):
    case = BY_ID[cid]
    want = GOLDEN[cid]
    rc = main(["trace", "--userspace"] + argv(case, None))
    out, err = capsys.readouterr()
    assert rc == want["rc"], err
    assert untie(out) == untie(want["stdout"])


def test_api_fire_maps_output():
    t = ebee.trace.compile('tracepoint:syscalls:sys_enter_openat { printf("%s opened %s\\n", '
                           'comm, str(args->filename)); @[comm] = count(); }')
    t.fire("tracepoint:syscalls:sys_enter_openat", filename="/etc/passwd",
           task=Task(pid=42, tgid=42, comm="cat"))
    t.fire("tracepoint:syscalls:sys_enter_openat", filename="/etc/group",
           task=Task(pid=43, tgid=43, comm="cat"))
    t.fire("tracepoint:syscalls:sys_enter_openat", filename="/x", task=Task(comm="ls"))
    assert t.maps["@"] == {"cat": 2, "ls": 1}
    assert t.output() == ("Attaching 1 probe...\ncat opened /etc/passwd\ncat opened /etc/group\n"
                          "ls opened /x\n\n\n@[ls]: 1\n@[cat]: 2\n")


def test_api_block_latency_with_virtual_clock():
    t = ebee.trace.compile(
        "tracepoint:block:block_rq_issue { @start[args->dev, args->sector] = nsecs; } "
        "tracepoint:block:block_rq_complete /@start[args->dev, args->sector]/ { "
        "@usecs = hist((nsecs - @start[args->dev, args->sector]) / 1000); "
        "delete(@start[args->dev, args->sector]); }")
    for sector, us in ((8, 100), (16, 300), (24, 5000)):
        t.fire("tracepoint:block:block_rq_issue", dev=259, sector=sector)
        t.clock.advance(us * 1000)
        t.fire("tracepoint:block:block_rq_complete", dev=259, sector=sector)
    t.fire("tracepoint:block:block_rq_complete", dev=259, sector=99)     # never issued
    assert t.maps["@usecs"] == {"[64, 128)": 1, "[256, 512)": 1, "[4K, 8K)": 1}
    assert t.maps["@start"] == {}
    out = t.output()
    assert "@start: \n" not in out and out.endswith("\n\n") and "\n\n\n@start" not in out


def test_api_uprobe_args_retval_and_strings():
    t = ebee.trace.compile('uprobe:/bin/sh:main { printf("%s %d\\n", str(arg0), arg1); } '
                           'uretprobe:/bin/sh:main { @r[retval] = count(); }')
    t.fire("uprobe:/bin/sh:main", args=("hello", 7))
    t.fire("uretprobe:*:main", retval=3)
    assert t.maps["@r"] == {3: 1}
    assert t.printed.splitlines()[1] == "hello 7"


EXECSNOOP = """BEGIN
{
	printf("%-10s %-5s %s\\n", "TIME(ms)", "PID", "ARGS");
}

tracepoint:syscalls:sys_enter_exec*
{
	printf("%-10u %-5d ", elapsed / 1e6, pid);
	join(args->argv);
}
"""


def test_api_execsnoop_join():
    # bpftrace's tools/execsnoop.bt (as Debian installs it in /usr/sbin)
    t = ebee.trace.compile(EXECSNOOP, filename="execsnoop.bt")
    t.clock.advance(12_000_000)
    t.fire("tracepoint:syscalls:sys_enter_execve", filename="/bin/ls",
           argv=["ls", "-l", "/tmp"], task=Task(pid=777, tgid=777, comm="bash"))
    lines = t.output().splitlines()
    assert lines[1] == "TIME(ms)   PID   ARGS"
    assert lines[2] == "12         777   ls -l /tmp"


def test_api_interval_and_exit():
    t = ebee.trace.compile("interval:ms:100 { @ticks++; if (@ticks == 3) { exit(); } }")
    t.advance(1_000_000_000)
    assert t.maps["@ticks"] == 3
    assert t.output() == "Attaching 1 probe...\n\n\n@ticks: 3\n"


def test_api_stacks_with_symbols():
    t = ebee.trace.compile("kprobe:do_nanosleep { @[kstack] = count(); }")
    t.resolver_impl.ksyms.update({0xffffffff81000000: "do_syscall_64",
                                  0xffffffff81100000: "__x64_sys_nanosleep"})
    task = Task(kernel_stack=[0xffffffff8110001d, 0xffffffff8100020f])
    t.fire("kprobe:do_nanosleep", task=task)
    t.fire("kprobe:do_nanosleep", task=task)
    assert t.output().endswith("@[\n    __x64_sys_nanosleep+29\n    do_syscall_64+527\n]: 2\n")


def test_verifier_rejection_names_the_line():
    # an endless loop: ebee's verifier refuses it, as the kernel's does, and the
    # diagnostic points at the statement whose code it stopped at
    with pytest.raises(ebee.trace.TraceError) as ei:
        ebee.trace.compile("BEGIN {\n  $i = 0;\n  while (1) { $i = 1; }\n}")
    assert ei.value.render() == (
        "stdin:3:15-21: ERROR: the BPF verifier rejected the program for BEGIN: infinite loop "
        "detected at insn 4\n  while (1) { $i = 1; }\n              ~~~~~~")


def test_for_loop_and_len():
    # later bpftrace spellings (not in 0.17): for over a map, len()
    t = ebee.trace.compile('BEGIN { @m[1] = 10; @m[2] = 20; @m[3] = 5; $sum = 0; '
                           'for ($kv : @m) { $sum += $kv.1; if ($kv.0 == 2) { continue; } '
                           '@seen[$kv.0] = 1; } printf("sum %d len %d\\n", $sum, len(@m)); '
                           '@s["a"] = "x"; @s["bb"] = "y"; for ($e : @s) { @cat[$e.1] = $e.0; } '
                           'exit(); }')
    assert t.printed.splitlines()[1] == "sum 35 len 3"
    assert t.maps["@seen"] == {1: 1, 3: 1}
    assert t.maps["@cat"] == {"x": "a", "y": "bb"}


def test_lost_counter_and_strings_in_tuples():
    t = ebee.trace.compile('BEGIN { $t = ("ab", "c", 7); print($t); @x[comm, "k"] = $t; '
                           'exit(); }')
    out = t.output()
    assert out.splitlines()[1] == "(ab, c, 7)"
    assert "@x[ebee, k]: (ab, c, 7)" in out


@pytest.mark.parametrize("case", [c for c in CASES if not c.script.startswith("@file:")],
                         ids=lambda c: c.id)
def test_parity_scripts_pass_ebees_verifier(case):
    """Every program of the parity set is accepted by ebee's verifier (the kernel's verdict
    is checked by the parity runs themselves)."""
    _, text = script_text(case, Path("/bin/true"))
    s = compile_script(text, params=list(case.params), has_child=bool(case.cmd),
                       missing_probes_ok=True)
    UserSpaceTrace(s, quiet=True).close()


ICMP_SEED = """#include <linux/skbuff.h>
#include <linux/ip.h>

k:icmp_echo
{
    $skb = (struct sk_buff *) arg0;
    $iphdr = (struct iphdr *) ($skb->head + $skb->network_header);
    @pingers[ntop($iphdr->saddr)] = count();
}
"""


def test_kprobe_seeds_dry_run(tmp_path, capsys):
    """The seeds' kprobe scripts compile and pass ebee's verifier (-d); headers come from
    BTF (bpftrace 0.17 itself stops at the missing linux/skbuff.h here)."""
    script = tmp_path / "icmp.bt"
    script.write_text(ICMP_SEED)
    assert main(["trace", "-d", str(script)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("; kprobe:icmp_echo: kprobe program, ") and ", verified" in out
    assert "; map @pingers: percpu_hash" in out
    assert main(["trace", "-d", "-e", "kprobe:tcp_connect { @start[tid] = nsecs; } "
                 "kretprobe:tcp_connect /@start[tid]/ { @us = hist((nsecs - @start[tid]) / "
                 "1000); delete(@start[tid]); }"]) == 0
    assert capsys.readouterr().out.count(", verified") == 2


def test_icmp_seed_in_user_space():
    # an sk_buff whose network header is an IPv4 header from 192.0.2.7
    from ebee.memory import SHARED, Region
    from ebee.trace.structs import Structs
    structs = Structs()
    skb_t = structs.lookup("struct sk_buff")
    if skb_t is None:
        pytest.skip("no vmlinux BTF")
    head = SHARED.add(Region(bytes(14) + bytes([0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0,
                                                192, 0, 2, 7, 10, 0, 0, 1]), "packet"))
    skb = bytearray(skb_t.size)
    for name, value in (("head", head.start), ("network_header", 14)):
        f = structs.field(skb_t, name)
        skb[f.offset:f.offset + f.type.size] = value.to_bytes(f.type.size, "little")
    skb_r = SHARED.add(Region(bytes(skb), "sk_buff"))
    try:
        t = ebee.trace.compile(ICMP_SEED)
        t.fire("kprobe:icmp_echo", args=(skb_r.start,))
        t.fire("kprobe:icmp_echo", args=(skb_r.start,))
        assert t.maps["@pingers"] == {"192.0.2.7": 2}
    finally:
        SHARED.remove(head)
        SHARED.remove(skb_r)
