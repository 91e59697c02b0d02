"""``ebee trace-pipe`` (bpftool prog tracelog) and ``ebee feature probe``."""
from __future__ import annotations

import json
from dataclasses import asdict

from ..kernel.probe import probe
from ..kernel.prog import bpf_available
from ..kernel.trace_pipe import TracePipe
from .common import print_json
from .kernel_common import KernelCmdError, kernel_errors

# bpftool's sentences for the miscellaneous features
_MISC = {"have_large_insn_limit": "Large program size limit",
         "have_bounded_loops": "Bounded loop support",
         "have_v2_isa_extension": "ISA extension v2", "have_v3_isa_extension": "ISA extension v3",
         "have_v4_isa_extension": "ISA extension v4"}


@kernel_errors
def cmd_trace_pipe(args) -> int:
    n = 0
    with TracePipe() as tp:
        try:
            while True:
                line = tp.read(args.timeout)
                if line is None:
                    break
                if args.json:
                    print(json.dumps(asdict(line)), flush=True)
                else:
                    print(str(line), flush=True)
                n += 1
                if args.count and n >= args.count:
                    break
        except KeyboardInterrupt:
            pass
    return 0


def _avail(v) -> str:
    return "is available" if v else "is NOT available"


@kernel_errors
def cmd_feature_probe(args) -> int:
    why = bpf_available()
    if why:
        if args.json:
            print_json({"syscall_config": {"have_bpf_syscall": False}})
            return 0
        raise KernelCmdError(why)
    f = probe(helpers=not args.no_helpers)
    if args.json:
        print_json(f.to_json())
        return 0
    print("Scanning system call availability...\nbpf() syscall is available\n")
    print("Scanning eBPF program types...")
    for n, v in f.program_types.items():
        print(f"eBPF program_type {n} {_avail(v)}")
    print("\nScanning eBPF map types...")
    for n, v in f.map_types.items():
        print(f"eBPF map_type {n} {_avail(v)}")
    if f.helpers:
        print("\nScanning eBPF helper functions...")
        for n, hs in f.helpers.items():
            print(f"eBPF helpers supported for program type {n}:")
            for h in hs:
                print(f"\t- {h}")
    print("\nScanning miscellaneous eBPF features...")
    for k, v in f.misc.items():
        print(f"{_MISC.get(k, k)} {_avail(v)}")
    return 0
