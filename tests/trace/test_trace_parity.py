"""Parity with bpftrace 0.17 on this machine: the same script, workload and flags under
both tools (needs root, bpf() and bpftrace 0.17; skipped otherwise).

A deterministic sample runs by default; EBEE_SLOW=1 runs the whole set.  ``exact``
cases compare stdout byte for byte (ties in map order excepted: bpftrace leaves them
unspecified); ``structural`` cases compare what the workload fixes.
"""
from __future__ import annotations

import os

import pytest

from cases import CASES
from harness import normalize, run_bpftrace, run_ebee, untie

SLOW = os.environ.get("EBEE_SLOW") == "1"
SELECTED = [c for c in CASES if SLOW or c.sample]


def compare(case, b, e) -> None:
    brc, bout, berr = b
    erc, eout, eerr = e
    assert erc == brc, f"exit {erc} != bpftrace's {brc}\nebee stderr:\n{eerr}"
    if case.mode == "exact":
        assert untie(eout) == untie(bout), f"bpftrace:\n{bout}\nebee:\n{eout}"
    else:
        assert normalize(case.normalize, eout) == normalize(case.normalize, bout), \
            f"bpftrace:\n{bout}\nebee:\n{eout}"


@pytest.mark.parametrize("case", [c for c in SELECTED if c.mode != "attach_fail"],
                         ids=lambda c: c.id)
def test_parity(case, bpftrace017, kernel, workload):
    b = run_bpftrace(case, workload)
    e = run_ebee(case, workload)
    compare(case, b, e)


@pytest.mark.parametrize("case", [c for c in CASES if c.mode == "attach_fail"],
                         ids=lambda c: c.id)
def test_kprobe_scripts_fail_cleanly(case, bpftrace017, kernel):
    """No kprobes here (CONFIG_KPROBES off): both tools stop at attach, exit 255, and name
    the probe; ebee's -d compiles and verifies the same script."""
    b = run_bpftrace(case, None)
    e = run_ebee(case, None)
    assert b[0] == e[0] == case.expect_rc
    assert b[1] == e[1]                       # "Attaching 2 probes..."
    assert "ERROR: Error attaching probe: 'k" in e[2]
    dry = run_ebee(case, None, extra=("-d",))
    assert dry[0] == 0 and "verified" in dry[1]


def _bpftrace(*args):
    import subprocess
    from harness import BPFTRACE
    p = subprocess.run([BPFTRACE, *args], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout


def _ebee(*args, env=None, timeout=60):
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "ebee", "trace", *args], capture_output=True,
                       text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize("args", [("-l", "tracepoint:syscalls:sys_enter_open*"),
                                  ("-lv", "tracepoint:syscalls:sys_enter_openat")],
                         ids=["l", "lv"])
def test_listing(args, bpftrace017, kernel):
    assert _ebee(*args)[:2] == _bpftrace(*args)


def test_notify_probes_attached(kernel, workload):
    env = dict(os.environ, __BPFTRACE_NOTIFY_PROBES_ATTACHED="1")
    rc, out, err = _ebee("-e", f"uprobe:{workload}:ebwl_target {{ @ = count(); }}", "-c",
                         f"{workload} 3", env=env)
    assert rc == 0 and "__BPFTRACE_NOTIFY_PROBES_ATTACHED" in err
    assert out.endswith("@: 3\n")


def test_pid_stops_with_the_process(kernel):
    import subprocess
    import time
    sleeper = subprocess.Popen(["sleep", "1"])
    t0 = time.monotonic()
    rc, out, _ = _ebee("-p", str(sleeper.pid), "-e", "interval:s:30 { @ = count(); }")
    sleeper.wait()
    assert rc == 0 and out.startswith("Attaching 1 probe...")
    assert time.monotonic() - t0 < 20


def test_python_api_in_the_kernel(kernel, workload):
    """``with ebee.trace.run(script) as t``: BCC's shape, maps as Python values."""
    import subprocess
    import ebee.trace
    out: list[str] = []
    with ebee.trace.run(f"uprobe:{workload}:ebwl_square {{ @sq = hist(arg0); @n = count(); "
                        f"@by[arg0 % 2] = sum(arg0); }}", write=out.append) as t:
        subprocess.run([str(workload), "10"])
        t.poll(0.2)
        assert t.maps["@n"] == 10
        assert t.maps["@by"] == {0: 30, 1: 25}
        assert t.maps["@sq"] == {"[1]": 1, "[2, 4)": 2, "[4, 8)": 4, "[8, 16)": 3}
        t.print_log2_hist("@sq")
    assert "".join(out).splitlines()[0].startswith("[1]                    1 |")
