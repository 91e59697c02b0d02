"""Test runs of the tracing types Linux can test-run (raw_tp, syscall, fentry/fexit on
the kernel's bpf_fentry_test*()) and the types it cannot (ENOTSUPP)."""
from __future__ import annotations

import errno
import os
import struct

from ..maps import num_cpus
from ..btf import BTF
from ..btf.errors import BTFError
from ..memory import SHARED, Region
from ..packet.net import Network
from ..runtime import RunContext
from ..runtime.rewrite import find_ctx_accesses
from ..uapi import BPF_F_TEST_RUN_ON_CPU, ENOTSUPP, MAX_BPF_FUNC_ARGS, AttachType as A, ProgType as P
from .common import U16_MAX, U32_MAX, RunResult, TestRun, TestRunError


def _raw_args_run(p: TestRun, machine, bound, ctx_in, limit: int, what: str) -> RunResult:
    args = bytes(ctx_in or b"")
    region = SHARED.add(Region(args, what)) if args else None
    rc = RunContext(Network(), p.info.prog_type)
    machine.progctx = rc
    try:
        ex = bound.run(region.start if region else 0)
        return RunResult(ex.retval & U32_MAX, b"", None, 0, None, rc.trace, 0, ex.insns,
                         p.info.prog_type)
    finally:
        machine.progctx = None
        if region is not None:
            SHARED.remove(region)


def run_raw_tp(t: TestRun) -> RunResult:
    """bpf_prog_test_run_raw_tp(): ctx_in is the u64 argument array; nothing else."""
    p, machine, bound, data, ctx_in, repeat, flags, cpu, batch_size, data_size_out, \
        ctx_size_out, want_ctx_out, net = t.unpack()
    if data or data_size_out or want_ctx_out or repeat or batch_size:
        raise TestRunError(errno.EINVAL, "raw tracepoint test runs take only ctx_in (no data, "
                                         "ctx_out, repeat or batch_size)")
    n = len(ctx_in or b"")
    if n < _max_ctx_offset(p) or n > MAX_BPF_FUNC_ARGS * 8:
        raise TestRunError(errno.EINVAL, f"ctx_in is {n} bytes; the program reads up to "
                                         f"{_max_ctx_offset(p)} and at most "
                                         f"{MAX_BPF_FUNC_ARGS * 8} are allowed")
    if not (flags & BPF_F_TEST_RUN_ON_CPU) and cpu:
        raise TestRunError(errno.EINVAL, "cpu needs BPF_F_TEST_RUN_ON_CPU")
    if flags & ~BPF_F_TEST_RUN_ON_CPU:
        raise TestRunError(errno.EINVAL, f"unknown flags {flags:#x}")
    if flags & BPF_F_TEST_RUN_ON_CPU and cpu >= num_cpus():
        raise TestRunError(errno.ENXIO, f"cpu {cpu} is not online")
    # BPF_F_TEST_RUN_ON_CPU runs the program on that CPU (its per-CPU map slots)
    was = machine.cpu
    if flags & BPF_F_TEST_RUN_ON_CPU:
        machine.cpu = cpu
    try:
        return _raw_args_run(p, machine, bound, ctx_in, MAX_BPF_FUNC_ARGS * 8, "raw_tp args")
    finally:
        machine.cpu = was


def _max_ctx_offset(p: TestRun) -> int:
    """prog->aux->max_ctx_offset: the end of the furthest ctx access the program makes."""
    insns = p.insns
    best = 0
    for k in find_ctx_accesses(insns):
        i = insns[k]
        best = max(best, i.off + i.spec.size)
    return best


def run_syscall(t: TestRun) -> RunResult:
    """bpf_prog_test_run_syscall(): ctx_in is copied back out (the program may write it)."""
    p, machine, bound, data, ctx_in, repeat, flags, cpu, batch_size, data_size_out, \
        ctx_size_out, want_ctx_out, net = t.unpack()
    if data or data_size_out or want_ctx_out or repeat or flags or batch_size:
        raise TestRunError(errno.EINVAL, "syscall program test runs take only ctx_in")
    n = len(ctx_in or b"")
    if n < _max_ctx_offset(p) or n > U16_MAX:
        raise TestRunError(errno.EINVAL, f"ctx_in is {n} bytes; the program reads up to "
                                         f"{_max_ctx_offset(p)}")
    region = SHARED.add(Region(bytes(ctx_in or b""), "syscall ctx")) if n else None
    rc = RunContext(net, P.SYSCALL)
    machine.progctx = rc
    try:
        ex = bound.run(region.start if region else 0)
        out = bytes(region.buf) if region else None
        return RunResult(ex.retval & U32_MAX, b"", out, 0, None, rc.trace, 0, ex.insns, P.SYSCALL)
    finally:
        machine.progctx = None
        if region is not None:
            SHARED.remove(region)



# bpf_prog_test_run_tracing() calls these kernel functions; fentry/fexit programs attached
# to one of them run with its arguments.
FENTRY_TEST_CALLS: dict[str, tuple[tuple[int, ...], int]] = {
    "bpf_fentry_test1": ((1,), 2), "bpf_fentry_test2": ((2, 3), 5),
    "bpf_fentry_test3": ((4, 5, 6), 15), "bpf_fentry_test4": ((7, 8, 9, 10), 34),
    "bpf_fentry_test5": ((11, 12, 13, 14, 15), 65),
    "bpf_fentry_test6": ((16, 17, 18, 19, 20, 21), 111),
    "bpf_fentry_test7": ((0,), 0), "bpf_fentry_test8": ((0,), 0),
}




def run_tracing(t: TestRun) -> RunResult:
    """bpf_prog_test_run_tracing(): fentry/fexit run on the kernel's bpf_fentry_test*()."""
    p, machine, bound, data, ctx_in, repeat, flags, cpu, batch_size, data_size_out, \
        ctx_size_out, want_ctx_out, net = t.unpack()
    if flags or cpu or batch_size:
        raise TestRunError(errno.EINVAL, "flags, cpu and batch_size must be 0 for this "
                                         "program type")
    at = p.info.expected_attach_type
    if at not in (A.TRACE_FENTRY, A.TRACE_FEXIT):
        raise TestRunError(ENOTSUPP, f"tracing programs of attach type "
                                     f"{at.name if at is not None else '?'} have no test run "
                                     f"in ebee (Linux runs fmod_ret only on its own test hooks)")
    target = p.target.attach_target
    call = FENTRY_TEST_CALLS.get(target or "")
    if call is not None:
        args, ret = call
        vals = list(args) + ([ret] if at is A.TRACE_FEXIT else [])
        _raw_args_run(p, machine, bound, struct.pack(f"<{len(vals)}Q", *vals), 96, "fentry args")
    return RunResult(0, b"", None, 0, None, [], 0, 0, P.TRACING)


def run_unsupported(p, *a, **k) -> RunResult:
    raise TestRunError(ENOTSUPP, f"BPF_PROG_TEST_RUN is not supported for "
                                 f"{p.info.prog_type.name} programs (Linux returns ENOTSUPP); "
                                 f"use run_event() for tracing programs")


def run_struct_ops(t: TestRun) -> RunResult:
    """bpf_struct_ops_test_run(): only ``bpf_dummy_ops`` members run (EOPNOTSUPP for the
    rest).  ctx_in is the member's u64 arguments, exactly as many as it takes (EINVAL);
    args[0] is a user pointer to a ``struct bpf_dummy_ops_state`` (or 0: NULL, allowed
    for ``__nullable`` arguments only), copied in before the run and back after it --
    this process's memory, as the kernel's copy_from_user/copy_to_user see it (EFAULT
    where nothing is mapped)."""
    p = t.target
    if p.attach_target != "bpf_dummy_ops":
        raise TestRunError(errno.EOPNOTSUPP, "struct_ops test runs are for bpf_dummy_ops "
                                             "members only")
    try:
        btf = BTF.load_vmlinux()
        st = btf.find("bpf_dummy_ops", "STRUCT")
        state_size = btf.find("bpf_dummy_ops_state", "STRUCT").size
    except (OSError, KeyError, BTFError):
        raise TestRunError(errno.EINVAL, "no bpf_dummy_ops in the kernel's BTF") from None
    idx = int(getattr(p, "expected_attach_type", 0) or 0)
    if idx >= len(st.members):
        raise TestRunError(errno.EINVAL, f"bpf_dummy_ops has no member {idx}")
    proto = btf.resolve(btf.resolve(st.members[idx].type_id).type_id)
    nr = len(proto.params)
    ctx_in = t.ctx_in or b""
    if len(ctx_in) != 8 * nr:
        raise TestRunError(errno.EINVAL, f"ctx_in must be the {nr} u64 arguments of "
                                         f"{st.members[idx].name} ({8 * nr} bytes)")
    args = list(struct.unpack(f"<{nr}Q", ctx_in))
    nullable = _nullable_params(btf, f"bpf_dummy_ops__{st.members[idx].name}")
    for i, prm in enumerate(proto.params):
        if btf.resolve(prm.type_id).kind.name == "PTR" and not args[i] and i not in nullable:
            raise TestRunError(errno.EINVAL, f"argument {i} of {st.members[idx].name} is a "
                                             f"pointer that may not be NULL")
    state = Region(state_size, "bpf_dummy_ops_state")
    if args[0]:
        state.buf[:] = _user_read(args[0], state_size)
    SHARED.add(state)
    try:
        if args[0]:
            args[0] = state.start
        res = _raw_args_run(t, t.machine, t.bound, struct.pack(f"<{nr}Q", *args),
                            MAX_BPF_FUNC_ARGS * 8, "bpf_dummy_ops args")
        if args[0]:
            _user_write(struct.unpack("<Q", ctx_in[:8])[0], bytes(state.buf))
    finally:
        SHARED.remove(state)
    return res


def _nullable_params(btf, stub: str) -> set[int]:
    """The ``__nullable`` parameters of a CFI stub (prepare_arg_info)."""
    try:
        f = btf.find(stub, "FUNC")
    except KeyError:
        return set()
    return {i for i, prm in enumerate(btf[f.type_id].params) if prm.name.endswith("__nullable")}


def _user_read(addr: int, size: int) -> bytes:
    try:
        with open("/proc/self/mem", "rb", buffering=0) as f:
            data = os.pread(f.fileno(), size, addr)
    except (OSError, OverflowError, ValueError):
        data = b""
    if len(data) != size:
        raise TestRunError(errno.EFAULT, f"cannot read {size} bytes at {addr:#x}")
    return data


def _user_write(addr: int, data: bytes) -> None:
    try:
        with open("/proc/self/mem", "r+b", buffering=0) as f:
            n = os.pwrite(f.fileno(), data, addr)
    except (OSError, OverflowError, ValueError):
        n = -1
    if n != len(data):
        raise TestRunError(errno.EFAULT, f"cannot write {len(data)} bytes at {addr:#x}")


def run_nf(p, *a, **k) -> RunResult:
    raise TestRunError(ENOTSUPP, "netfilter test runs are not modelled by ebee "
                                 "(struct bpf_nf_ctx / nf_hook_state)")
