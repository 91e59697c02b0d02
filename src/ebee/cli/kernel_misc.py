"""``ebee trace-pipe`` (bpftool prog tracelog) and ``ebee feature probe``."""
from __future__ import annotations

import json
import sys
from dataclasses import asdict

from ..kernel.probe import helper_names, probe
from ..kernel.sysconfig import (MACRO_OPTIONS, probe_unprivileged, system_config,
                                system_config_lines)
from ..kernel.prog import bpf_available
from ..kernel.trace_pipe import TracePipe, tracing_on
from .common import UsageError, print_json
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
        if not tracing_on():
            print("ebee: warning: tracing is off (tracing_on is 0): nothing reaches "
                  "trace_pipe until `echo 1 > /sys/kernel/tracing/tracing_on`",
                  file=sys.stderr, flush=True)
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


def _probe_words(words: list[str]) -> tuple[bool, bool, str]:
    """bpftool's ``feature probe [kernel] [unprivileged] [macros [prefix P]]``."""
    unpriv = macros = False
    prefix = ""
    it = iter(words)
    for w in it:
        if w == "kernel":
            continue
        if w == "unprivileged":
            unpriv = True
        elif w == "macros":
            macros = True
        elif w == "prefix":
            prefix = next(it, None)
            if prefix is None:
                raise UsageError("error: expected a prefix after 'prefix'")
        elif w == "full":
            continue
        else:
            raise UsageError(f"error: unexpected {w!r} (expected kernel, unprivileged, "
                             f"macros, prefix PREFIX)")
    if prefix and not macros:
        raise UsageError("error: 'prefix' goes with 'macros'")
    return unpriv, macros, prefix


def _macros(cfg: dict, f, prefix: str) -> str:
    """bpftool's ``feature probe macros`` C header."""
    out = ["/*** Misc kernel config items ***/"]
    out += [f"#define {prefix}{k} {cfg[k]}" for k in MACRO_OPTIONS if cfg.get(k) is not None]
    out += ["", "/*** System call availability ***/", f"#define {prefix}HAVE_BPF_SYSCALL", "",
            "/*** eBPF program types ***/"]
    out += [f"#define {prefix}{'' if v else 'NO_'}HAVE_{n.upper()}_PROG_TYPE"
            for n, v in f.program_types.items()]
    out += ["", "/*** eBPF map types ***/"]
    out += [f"#define {prefix}{'' if v else 'NO_'}HAVE_{n.upper()}_MAP_TYPE"
            for n, v in f.map_types.items()]
    if f.helpers:
        out += ["", "/*** eBPF helper functions ***/", *_HELPER_MACRO_DOC.format(p=prefix)
                .splitlines()]
        names = [n for _, n in sorted(helper_names().items())]
        for t, have in f.helpers.items():
            have_set = set(have)
            out += [f"#define {prefix}BPF__PROG_TYPE_{t}__HELPER_{h} {int(h in have_set)}"
                    for h in names]
    out += ["", "/*** eBPF misc features ***/"]
    out += [f"#define {prefix}{'' if v else 'NO_'}{k.upper()}" for k, v in f.misc.items()]
    return "\n".join(out) + "\n"


_HELPER_MACRO_DOC = """/*
 * Use {p}HAVE_PROG_TYPE_HELPER(prog_type_name, helper_name)
 * to determine if <helper_name> is available for <prog_type_name>,
 * e.g.
 *	#if {p}HAVE_PROG_TYPE_HELPER(xdp, bpf_redirect)
 *		// do stuff with this helper
 *	#elif
 *		// use a workaround
 *	#endif
 */
#define {p}HAVE_PROG_TYPE_HELPER(prog_type, helper)	\\
	{p}BPF__PROG_TYPE_ ## prog_type ## __HELPER_ ## helper"""


@kernel_errors
def cmd_feature_probe(args) -> int:
    unpriv, macros, prefix = _probe_words(args.words)
    if macros and args.json:
        raise UsageError("error: macros and JSON output are exclusive, as in bpftool")
    why = bpf_available()
    if why:
        if args.json:
            print_json({"system_config": system_config(),
                        "syscall_config": {"have_bpf_syscall": False}})
            return 0
        raise KernelCmdError(why)
    if unpriv:
        cfg, f = probe_unprivileged(helpers=not args.no_helpers)
    else:
        cfg, f = system_config(), probe(helpers=not args.no_helpers)
    if macros:
        sys.stdout.write(_macros(cfg, f, prefix))
        return 0
    if args.json:
        print_json({"system_config": cfg, **f.to_json()})
        return 0
    print("Scanning system configuration...")
    print("\n".join(system_config_lines(cfg)) + "\n")
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
