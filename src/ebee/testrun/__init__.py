"""Running programs with BPF_PROG_TEST_RUN semantics (net/bpf/test_run.c), without a kernel.

The same inputs (data_in, ctx_in, repeat, flags, cpu, batch_size, output buffer
sizes), the same validation and errno values, the same context the kernel builds
(an ``sk_buff`` from the loopback device with the protocol from eth_type_trans, an
``xdp_buff`` with 256 bytes of headroom, ...), and the same outputs (data_out,
ctx_out with only the fields Linux copies back, retval, duration).  Redirects are
recorded as the run's outcome (``RunResult.redirect``).  One module per family of
program types; :mod:`.runner` binds a program once for many runs; :mod:`.replay`
runs captures through it.
"""
from .common import RunResult, TestRun, TestRunError, TestTarget
from .runner import Runner, default_net, run, run_event

__all__ = ["RunResult", "Runner", "TestRun", "TestRunError", "TestTarget", "default_net", "run",
           "run_event"]
