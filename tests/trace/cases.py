"""The parity set: scripts run under bpftrace 0.17 and ``ebee trace`` with the same workload.

``BIN`` in a script is replaced by the path of the workload (``data/ebwl.c``, compiled
with gcc in the test's tmp dir).  ``cmd`` is the ``-c`` command (``BIN`` likewise,
``OUT`` a scratch file beside it), ``params`` the positional parameters.  ``mode``: ``exact`` compares stdout byte for
byte (map elements with equal values may come in either order: bpftrace sorts with
std::sort); ``structural`` compares after ``normalize`` (keys present, bucket layout,
numbers masked).  ``userspace``: the script needs no real events, so ebee's runtime
must print the same (checked against ``data/bpftrace017.json`` without root).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    id: str
    script: str
    cmd: str = ""
    params: tuple[str, ...] = ()
    mode: str = "exact"
    userspace: bool = False
    flags: tuple[str, ...] = ()
    expect_rc: int = 0
    sample: bool = False          # part of the default (fast) run
    normalize: str = ""           # structural: "numbers", "keys", "hist"


W = "BIN 10"          # the workload: 10 rounds of calls and getpid()

CASES: list[Case] = [
    # -- the commands ------------------------------------------------------------
    Case("issue_raw_syscalls", "tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }",
         cmd=W, mode="structural", normalize="keys"),
    Case("issue_openat", 'tracepoint:syscalls:sys_enter_openat { printf("%s opened %s\\n", '
         'comm, str(args->filename)); }', cmd=W, mode="structural", normalize="openat"),
    Case("issue_fork", "tracepoint:sched:sched_process_fork { @[comm] = count(); }",
         cmd="/bin/sh -c /bin/true;/bin/true", mode="structural", normalize="keys"),
    Case("issue_block", "tracepoint:block:block_rq_issue { @start[args->dev, args->sector] = "
         "nsecs; } tracepoint:block:block_rq_complete /@start[args->dev, args->sector]/ { "
         "@usecs = hist((nsecs - @start[args->dev, args->sector]) / 1000); "
         "delete(@start[args->dev, args->sector]); }",
         cmd="/bin/dd if=/dev/zero of=OUT bs=4k count=16 oflag=direct",
         mode="structural", normalize="hist"),
    Case("issue_execsnoop", "@file:/usr/sbin/execsnoop.bt", cmd=W, mode="structural",
         normalize="execsnoop", sample=True),
    # -- uprobes on the workload ---------------------------------------------------------
    Case("uprobe_count_args", "uprobe:BIN:ebwl_target { @[arg0, arg1] = count(); }", cmd=W,
         sample=True),
    Case("uretprobe_hist", "uretprobe:BIN:ebwl_square { @r = hist(retval); }", cmd=W,
         sample=True),
    Case("uprobe_printf", 'uprobe:BIN:ebwl_target { printf("%d + %d\\n", arg0, arg1); }',
         cmd=W),
    Case("uprobe_str", 'uprobe:BIN:ebwl_str { printf("%s\\n", str(arg0)); }', cmd=W),
    Case("uprobe_str_key", "uprobe:BIN:ebwl_str { @s[str(arg0)] = count(); }", cmd=W),
    Case("uprobe_aggregates", "uprobe:BIN:ebwl_square { @sum = sum(arg0); @min = min(arg0); "
         "@max = max(arg0); @avg = avg(arg0); @st = stats(arg0); @cnt = count(); }", cmd=W,
         sample=True),
    Case("uprobe_lhist", "uprobe:BIN:ebwl_target { @l = lhist(arg0, 0, 10, 2); }", cmd=W),
    Case("uretprobe_signed", "uretprobe:BIN:ebwl_neg { @[(int32)retval] = count(); }", cmd=W),
    Case("uprobe_predicates", "uprobe:BIN:ebwl_target /arg0 % 2 == 0/ { @even = count(); } "
         "uprobe:BIN:ebwl_target /arg0 % 2 == 1/ { @odd = count(); }", cmd=W),
    Case("uprobe_printf_formats", 'uprobe:BIN:ebwl_target { printf("%-5d|%5d|%x|%X|%o|%c|%p|'
         '%lu|%s|%-8s|%05d|\\n", arg0, arg1, arg1 * 1000, arg1 * 1000, arg0, arg0 + 64, arg1, '
         'arg0, "str", "ab", arg0); }', cmd=W, sample=True),
    Case("uprobe_probe_builtin", 'uprobe:BIN:ebwl_target { printf("%s\\n", probe); exit(); }',
         cmd=W),
    # printf("%s", func) in a uprobe aborts bpftrace 0.17 (exit -6): not a parity case
    Case("uprobe_comm_pid", 'uprobe:BIN:ebwl_str { printf("%s %d\\n", comm, pid == cpid); }',
         cmd=W),
    Case("uprobe_comm_key", "uprobe:BIN:ebwl_target { @[comm, pid == cpid] = count(); }",
         cmd=W),
    Case("uprobe_vars", "uprobe:BIN:ebwl_target { $x = arg0; $y = $x * $x; @[$x] = $y; }",
         cmd=W),
    Case("uprobe_str_len", "uprobe:BIN:ebwl_str { @len[str(arg0, 4)] = count(); }", cmd=W),
    Case("uprobe_exit_early", 'uprobe:BIN:ebwl_target /arg0 > 5/ { printf("%d\\n", arg0); '
         'exit(); }', cmd=W),
    Case("uprobe_end", 'uprobe:BIN:ebwl_square { @ = hist(arg0 * 100); } END { '
         'printf("end\\n"); }', cmd=W),
    Case("uprobe_end_print_clear", "uprobe:BIN:ebwl_target { @a[arg0 % 3] = sum(arg1); } "
         "END { print(@a); clear(@a); }", cmd=W),
    Case("uretprobe_strlen", "uretprobe:BIN:ebwl_str { @[retval] = count(); }", cmd=W),
    Case("uprobe_last_value", 'uprobe:BIN:ebwl_target { @x = arg0; } END { '
         'printf("last %d\\n", @x); }', cmd=W),
    Case("uprobe_json", "uprobe:BIN:ebwl_target { @[arg0] = count(); @h = hist(arg1); }",
         cmd=W, flags=("-f", "json")),
    # bpftrace 0.17 leaves stack garbage after a string from a ternary in a map key, so
    # one string counts under several keys that print alike: compared as totals per key
    Case("uprobe_ternary_key", 'uprobe:BIN:ebwl_target { @[arg0 > 5 ? "big" : "small"] = '
         'count(); }', cmd=W, mode="structural", normalize="sum"),
    Case("uprobe_ustack", "uprobe:BIN:ebwl_target { @[ustack] = count(); }", cmd=W,
         mode="structural", normalize="numbers"),
    # -- system calls of the workload ----------------------------------------------------
    Case("getpid_count", "tracepoint:syscalls:sys_enter_getpid /pid == cpid/ { @ = count(); }",
         cmd=W, sample=True),
    Case("openat_files", 'tracepoint:syscalls:sys_enter_openat /pid == cpid/ { '
         'printf("%s\\n", str(args->filename)); }', cmd=W),
    Case("write_hist", "tracepoint:syscalls:sys_enter_write /pid == cpid/ { @bytes = "
         "hist(args->count); }", cmd=W),
    Case("write_sum_by_fd", "tracepoint:syscalls:sys_enter_write /pid == cpid/ { "
         "@w[args->fd] = sum(args->count); }", cmd=W),
    Case("openat_ret", "tracepoint:syscalls:sys_exit_openat /pid == cpid/ { "
         "@[args->ret] = count(); }", cmd=W),
    Case("getp_wildcard", "tracepoint:syscalls:sys_enter_getp* /pid == cpid/ { "
         "@[probe] = count(); }", cmd=W),
    Case("exec_data_loc", 'tracepoint:sched:sched_process_exec /pid == cpid/ { '
         'printf("%s\\n", str(args->filename)); }', cmd=W),
    Case("exit_comm", 'tracepoint:sched:sched_process_exit /pid == cpid/ { '
         'printf("exit %s\\n", comm); }', cmd=W),
    # -- BEGIN/END and timers (no real events: user space too) ---------------------------
    Case("begin_hello", 'BEGIN { printf("hello\\n"); exit(); }', userspace=True),
    Case("begin_values", 'BEGIN { @a = 1; @b = "str"; @c = (1, "two"); print(@a); '
         'print((3, "x")); exit(); }', userspace=True),
    Case("begin_while", 'BEGIN { $i = 0; while ($i < 5) { printf("%d\\n", $i); $i++; } '
         'exit(); }', userspace=True),
    Case("begin_unroll", "BEGIN { unroll(3) { @x++; } exit(); }", userspace=True),
    Case("begin_compound", 'BEGIN { $a = 10; $a += 5; $a -= 3; $a *= 2; $a /= 4; $a %= 5; '
         '$a <<= 3; $a >>= 1; $a |= 1; $a &= 7; $a ^= 2; printf("%d\\n", $a); exit(); }',
         userspace=True),
    Case("begin_arith", 'BEGIN { printf("%d %d %d %d\\n", 7 / 2, 7 % 3, 1 << 4, 0xff >> 4); '
         'printf("%d %d %d\\n", 3 > 2, 2 >= 3, 1 == 1 && 0 == 0 || 0); exit(); }',
         userspace=True),
    Case("begin_if_ternary", 'BEGIN { $x = 5; if ($x > 3) { printf("big\\n"); } else { '
         'printf("small\\n"); } printf("%s\\n", $x == 5 ? "five" : "other"); exit(); }',
         userspace=True),
    Case("begin_hist", "BEGIN { @h = hist(1); @h = hist(2); @h = hist(1000); "
         "@h = hist(1 << 20); exit(); }", userspace=True),
    Case("begin_lhist", "BEGIN { @l = lhist(-5, 0, 100, 10); @l = lhist(150, 0, 100, 10); "
         "@l = lhist(55, 0, 100, 10); exit(); }", userspace=True),
    Case("begin_delete_clear_zero", "BEGIN { @x[1] = 1; @x[2] = 2; @x[3] = 3; delete(@x[2]); "
         "@y = 5; zero(@x); @z[1] = 1; clear(@z); exit(); }", userspace=True),
    Case("begin_print_top_div", "BEGIN { @[1] = 10; @[2] = 30; @[3] = 20; print(@, 2); "
         "print(@, 0, 10); exit(); }", userspace=True),
    Case("begin_strings", 'BEGIN { printf("%s %s %s\\n", "a", "bb", "ccc"); '
         'printf("%5s|%-5s|\\n", "x", "y"); exit(); }', userspace=True),
    Case("begin_params", 'BEGIN { printf("%d\\n", $1 + $2); printf("%s\\n", str($3)); '
         'exit(); }', params=("3", "4", "hello"), userspace=True),
    Case("begin_ntop", 'BEGIN { printf("%s\\n", ntop(0x0100007f)); printf("%s\\n", '
         'ntop(0x08080808)); exit(); }', userspace=True),
    Case("begin_stats_avg", "BEGIN { @s = stats(10); @s = stats(20); @a = avg(3); "
         "@a = avg(4); exit(); }", userspace=True),
    Case("begin_min_max", "BEGIN { @m = min(5); @m = min(-3); @M = max(-1); @M = max(-9); "
         "exit(); }", userspace=True),
    Case("begin_tuples", 'BEGIN { $t = (1, "a", 2); printf("%d %s %d\\n", $t.0, $t.1, $t.2); '
         '@t = $t; exit(); }', userspace=True),
    Case("begin_casts", 'BEGIN { printf("%d %u %x\\n", (int8)-1, (uint16)-1, (uint32)-1); '
         '@c = (int16)70000; exit(); }', userspace=True),
    Case("begin_json", 'BEGIN { @c = count(); @h = hist(5); @s = stats(3); @m["a"] = 1; '
         'printf("x\\n"); print((1, "y")); exit(); }', flags=("-f", "json"), userspace=True),
    Case("begin_quiet", 'BEGIN { printf("quiet\\n"); exit(); }', flags=("-q",),
         userspace=True),
    Case("begin_multikey", 'BEGIN { @x["b", 2] = 1; @x["a", 1] = 2; @y[5] = "five"; '
         '@y[3] = "three"; exit(); }', userspace=True),
    Case("begin_percent", 'BEGIN { printf("100%% done %d%%\\n", 5); exit(); }',
         userspace=True),
    Case("end_only", 'BEGIN { @n = 7; exit(); } END { printf("n=%d\\n", @n); }',
         userspace=True),
    Case("interval_ticks", "interval:ms:100 { @ticks++; if (@ticks == 3) { exit(); } }",
         userspace=True),
    Case("profile_samples", "profile:hz:99 { @samples = count(); } interval:ms:300 { "
         "exit(); }", mode="structural", normalize="numbers"),
    # -- kprobes: compile, verify, fail to attach here -----------------------------------
    Case("kprobe_tcp_connect", "kprobe:tcp_connect { @start[tid] = nsecs; } "
         "kretprobe:tcp_connect /@start[tid]/ { @connect_us = hist((nsecs - @start[tid]) / "
         "1000); delete(@start[tid]); }", mode="attach_fail", expect_rc=255),
]

BY_ID = {c.id: c for c in CASES}
