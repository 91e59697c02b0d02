#!/usr/bin/env python3
"""Regenerate src/ebee/progtypes/func_protos.py: which helpers each program type may call.

Linux decides this in each program type's ``get_func_proto`` (a switch per type,
falling back to ``bpf_base_func_proto``), and the answer depends on the kernel
version, its config and sometimes the attach type.  Rather than transcribe the
switches, this asks the running kernel: for every (program type, attach type)
and every helper id it loads ``call N; r0 = 0; exit`` and reads the verifier
log.  "program of this type cannot use helper" (or "unknown func") means the
helper is not offered; any other outcome (typically a complaint about the
arguments) means it is.  Needs root (bpf()) and /sys/kernel/btf/vmlinux.

    sudo python3 tools/gen_func_protos.py > src/ebee/progtypes/func_protos.py
"""
from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from ebee.asm import assemble  # noqa: E402
from ebee.isa import encode  # noqa: E402
from ebee.kernel.syscall import ProgLoadAttr, addr, bpf  # noqa: E402
from ebee.uapi import BPF_F_SLEEPABLE, AttachType as A, Cmd, FuncId, ProgType as P  # noqa: E402

# (program type, expected attach type, BTF target name or None)
TARGETS = [
    (P.SOCKET_FILTER, None, None), (P.KPROBE, None, None), (P.KPROBE, A.TRACE_KPROBE_MULTI, None),
    (P.SCHED_CLS, None, None), (P.SCHED_ACT, None, None), (P.TRACEPOINT, None, None),
    (P.XDP, None, None), (P.XDP, A.XDP_DEVMAP, None), (P.XDP, A.XDP_CPUMAP, None),
    (P.PERF_EVENT, None, None),
    (P.CGROUP_SKB, A.CGROUP_INET_INGRESS, None), (P.CGROUP_SKB, A.CGROUP_INET_EGRESS, None),
    (P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, None), (P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND, None),
    (P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE, None),
    (P.LWT_IN, None, None), (P.LWT_OUT, None, None), (P.LWT_XMIT, None, None),
    (P.LWT_SEG6LOCAL, None, None),
    (P.SOCK_OPS, None, None),
    (P.SK_SKB, A.SK_SKB_STREAM_PARSER, None), (P.SK_SKB, A.SK_SKB_STREAM_VERDICT, None),
    (P.SK_SKB, A.SK_SKB_VERDICT, None),
    (P.CGROUP_DEVICE, A.CGROUP_DEVICE, None), (P.SK_MSG, A.SK_MSG_VERDICT, None),
    (P.RAW_TRACEPOINT, None, None), (P.RAW_TRACEPOINT_WRITABLE, None, None),
    (P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND, None), (P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, None),
    (P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG, None), (P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG, None),
    (P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME, None),
    (P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETSOCKNAME, None),
    (P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_CONNECT, None),
    (P.LIRC_MODE2, A.LIRC_MODE2, None),
    (P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT, None),
    (P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE, None),
    (P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, None), (P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, None),
    (P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, None), (P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT, None),
    (P.TRACING, A.TRACE_FENTRY, "bpf_fentry_test1"), (P.TRACING, A.TRACE_FEXIT, "bpf_fentry_test1"),
    (P.TRACING, A.MODIFY_RETURN, "bpf_modify_return_test"),
    (P.TRACING, A.TRACE_RAW_TP, "btf_trace_sched_switch"),
    (P.TRACING, A.TRACE_ITER, "bpf_iter_task"),
    (P.LSM, A.LSM_MAC, "bpf_lsm_file_open"),
    (P.SK_LOOKUP, A.SK_LOOKUP, None), (P.SYSCALL, None, None),
    (P.NETFILTER, A.NETFILTER, None),
]

DENIED = ("program of this type cannot use helper", "unknown func")


def btf_ids(names: set[str]) -> dict[str, int]:
    out = subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux"],
                         capture_output=True, text=True, check=True).stdout
    ids = {}
    for line in out.splitlines():
        if not line.startswith("["):
            continue
        head, _, rest = line.partition("] ")
        parts = rest.split(" ", 2)
        if len(parts) >= 2 and parts[1].strip("'") in names:
            ids[parts[1].strip("'")] = int(head[1:])
    return ids


def offered(ptype: P, attach: A | None, btf_id: int, fid: int) -> bool:
    image = encode(assemble(f"call {fid}\nr0 = 0\nexit"))
    buf = ctypes.create_string_buffer(image, len(image))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    flags = BPF_F_SLEEPABLE if ptype is P.SYSCALL else 0   # syscall programs must be sleepable
    attr = ProgLoadAttr(prog_type=int(ptype), insn_cnt=len(image) // 8, insns=addr(buf),
                        license=addr(lic), log_level=1, log_size=1 << 16, log_buf=addr(log),
                        expected_attach_type=int(attach) if attach is not None else 0,
                        attach_btf_id=btf_id, prog_flags=flags)
    try:
        fd = bpf(Cmd.PROG_LOAD, attr)
    except OSError:
        text = log.value.decode(errors="replace")
        if not text:
            raise
        if "call" not in text:      # refused before reaching the call: the probe says nothing
            raise OSError(22, f"{ptype.name}: {text.strip().splitlines()[0]}")
        return not any(d in text for d in DENIED)
    os.close(fd)
    return True


def main() -> None:
    ids = btf_ids({t for _, _, t in TARGETS if t})
    print('"""Helpers each program type may call, as Linux decides in its get_func_proto.')
    print()
    print(f"Generated by tools/gen_func_protos.py from Linux {platform.release()} "
          f"({platform.machine()}); do not edit.")
    print("Keys are (program type, expected attach type or None); values are helper ids.")
    print('"""')
    print("from __future__ import annotations")
    print()
    print("from ..uapi import AttachType as A, FuncId as F, ProgType as P")
    print()
    print("FUNC_PROTOS: dict[tuple[P, A | None], frozenset[F]] = {")
    for ptype, attach, target in TARGETS:
        btf_id = ids.get(target, 0) if target else 0
        key = f"(P.{ptype.name}, {'A.' + attach.name if attach is not None else 'None'})"
        try:
            fids = [f for f in FuncId if f.value and offered(ptype, attach, btf_id, f.value)]
        except OSError as e:   # this kernel cannot load the type at all (config)
            print(f"    # {key}: not loadable here ({e.strerror})")
            continue
        print(f"    {key}: frozenset({{")
        line = "       "
        for f in fids:
            item = f" F.{f.name},"
            if len(line) + len(item) > 99:
                print(line)
                line = "       "
            line += item
        if line.strip():
            print(line)
        print("    }),")
    print("}")


if __name__ == "__main__":
    main()
