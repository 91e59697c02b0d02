"""ebee on the running kernel: bpftool's commands, through ebee's bpf(2) client.

``ebee --kernel prog|map|btf ...`` switches those command groups from ebee's
runtime (and pin store) to the kernel (and the real bpffs).  ``ebee link``,
``ebee trace-pipe`` and ``ebee feature probe`` always work on the kernel.
Output has bpftool's shapes, and ``--json`` where bpftool has it.

Objects are named as bpftool names them: ``id N``, ``pinned PATH``,
``name NAME``, ``tag TAG`` (programs), or just ``N`` / ``PATH``.

This module is the commands' grammar; each noun's commands are in its own
module (:mod:`.kernel_prog`, :mod:`.kernel_prog_dump`, :mod:`.kernel_map`,
:mod:`.kernel_btf`, :mod:`.kernel_link`, :mod:`.kernel_misc`), imported when
one of its commands runs: every ``ebee`` invocation builds this parser, and
only kernel commands need the kernel backend.
"""
from __future__ import annotations

import importlib
from typing import Callable


class KernelCmdError(Exception):
    """A kernel operation failed: one line, exit code 1."""


def _cmd(module: str, name: str) -> Callable[[object], int]:
    """``args.func`` running ``module.name``, the module imported on the first call."""
    def run(args) -> int:
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(args)
    return run


def register(sub) -> None:
    """Commands that only make sense on a kernel: link, trace-pipe, feature."""
    p = sub.add_parser("link", help="show, pin and detach BPF links in the kernel "
                                    "(like bpftool link)")
    ls = p.add_subparsers(dest="link_cmd", metavar="CMD")
    ls.required = True
    q = ls.add_parser("show", aliases=["list"], help="list links: show [id N | pinned PATH]")
    q.add_argument("sel", nargs="*", metavar="LINK")
    _json(q)
    q.set_defaults(func=_cmd("kernel_link", "cmd_link_show"))
    q = ls.add_parser("detach", help="detach a link: detach id N | pinned PATH")
    q.add_argument("sel", nargs="+", metavar="LINK")
    q.set_defaults(func=_cmd("kernel_link", "cmd_link_detach"))
    q = ls.add_parser("pin", help="pin a link: pin LINK FILE")
    q.add_argument("sel", nargs="+", metavar="LINK FILE")
    q.set_defaults(func=_cmd("kernel_link", "cmd_link_pin"))

    p = sub.add_parser("trace-pipe", help="print bpf_printk output from the kernel's trace pipe "
                                          "(like bpftool prog tracelog)")
    _json(p)
    p.add_argument("--count", type=int, default=0, metavar="N", help="stop after N lines")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop after this long without output")
    p.set_defaults(func=_cmd("kernel_misc", "cmd_trace_pipe"))

    p = sub.add_parser("feature", help="what this kernel supports (like bpftool feature)")
    fs = p.add_subparsers(dest="feature_cmd", metavar="CMD")
    fs.required = True
    q = fs.add_parser("probe", help="probe the system configuration, program types, map "
                                    "types, helpers: probe [kernel] [unprivileged] "
                                    "[macros [prefix PREFIX]]")
    q.add_argument("words", nargs="*", metavar="kernel|unprivileged|macros|prefix PREFIX",
                   help="kernel: the running kernel (the default); unprivileged: as a "
                        "process without capabilities; macros: C #defines")
    q.add_argument("--no-helpers", action="store_true", help="skip the helper probes")
    _json(q)
    q.set_defaults(func=_cmd("kernel_misc", "cmd_feature_probe"))


def register_kernel(sub) -> None:
    """``prog``, ``map`` and ``btf`` on the kernel (``ebee --kernel ...``)."""
    p = sub.add_parser("prog", help="programs in the kernel (like bpftool prog)")
    ps = p.add_subparsers(dest="prog_cmd", metavar="CMD")
    ps.required = True
    q = ps.add_parser("show", aliases=["list"], help="show [PROG]")
    q.add_argument("sel", nargs="*", metavar="PROG")
    _json(q)
    q.set_defaults(func=_cmd("kernel_prog", "cmd_prog_show"))
    for name, help_ in (("load", "load OBJ and pin its first program at PATH"),
                        ("loadall", "load OBJ and pin every program under DIR")):
        q = ps.add_parser(name, help=help_)
        q.add_argument("obj")
        q.add_argument("path")
        q.add_argument("--type", help="program type for sections libbpf does not know")
        q.add_argument("--pinmaps", metavar="DIR", help="also pin the object's maps under DIR")
        q.add_argument("--pin-root", metavar="DIR", help="where maps marked LIBBPF_PIN_BY_NAME "
                                                         "are pinned (default /sys/fs/bpf)")
        q.add_argument("-d", "--debug", action="store_true", help="print the verifier log")
        q.set_defaults(func=_cmd("kernel_prog", "cmd_prog_load"), all=name == "loadall")
    q = ps.add_parser("dump", help="dump xlated|jited PROG [opcodes] [linum]")
    q.add_argument("what", choices=("xlated", "jited"))
    q.add_argument("sel", nargs="+", metavar="PROG [opcodes] [linum]")
    q.add_argument("--opcodes", action="store_true")
    q.add_argument("--linum", action="store_true")
    _json(q)
    q.set_defaults(func=_cmd("kernel_prog_dump", "cmd_prog_dump"))
    q = ps.add_parser("run", help="run PROG data_in FILE [data_out FILE] [ctx_in FILE] "
                                  "[ctx_out FILE] [repeat N] (BPF_PROG_TEST_RUN)")
    q.add_argument("sel", nargs="+", metavar="PROG ARGS")
    _json(q)
    q.set_defaults(func=_cmd("kernel_prog", "cmd_prog_run"))
    q = ps.add_parser("pin", help="pin PROG FILE")
    q.add_argument("sel", nargs="+", metavar="PROG FILE")
    q.set_defaults(func=_cmd("kernel_prog", "cmd_prog_pin"))
    q = ps.add_parser("attach", help="attach PROG [TARGET]: where its section says, or to an "
                                     "interface/cgroup; with --pin the link outlives ebee, "
                                     "else it stays until Ctrl-C")
    q.add_argument("sel", nargs="+", metavar="PROG [TARGET]")
    q.add_argument("--pin", metavar="PATH", help="pin the link at PATH and return")
    q.add_argument("--mode", choices=("skb", "drv", "hw"), help="XDP mode")
    q.add_argument("--direction", choices=("ingress", "egress"), help="tc direction")
    q.add_argument("--section", help="attach as this section says (kprobe/FUNC ...)")
    q.set_defaults(func=_cmd("kernel_prog", "cmd_prog_attach"))
    q = ps.add_parser("detach", help="detach PROG: every link of the program (and its pins)")
    q.add_argument("sel", nargs="+", metavar="PROG")
    q.set_defaults(func=_cmd("kernel_prog", "cmd_prog_detach"))

    p = sub.add_parser("map", help="maps in the kernel (like bpftool map)")
    ms = p.add_subparsers(dest="map_cmd", metavar="CMD")
    ms.required = True
    q = ms.add_parser("show", aliases=["list"], help="show [MAP]")
    q.add_argument("sel", nargs="*", metavar="MAP")
    _json(q)
    q.set_defaults(func=_cmd("kernel_map", "cmd_map_show"))
    q = ms.add_parser("dump", help="dump MAP")
    q.add_argument("sel", nargs="+", metavar="MAP")
    _json(q)
    q.set_defaults(func=_cmd("kernel_map", "cmd_map_dump"))
    for name, help_ in (("lookup", "lookup MAP key BYTES"), ("delete", "delete MAP key BYTES"),
                        ("update", "update MAP key BYTES value BYTES [any|exist|noexist]")):
        q = ms.add_parser(name, help=help_)
        q.add_argument("sel", nargs="+", metavar="MAP key BYTES")
        _json(q)
        q.set_defaults(func=_cmd("kernel_map", "cmd_map_elem"), op=name)
    q = ms.add_parser("pin", help="pin MAP FILE")
    q.add_argument("sel", nargs="+", metavar="MAP FILE")
    q.set_defaults(func=_cmd("kernel_map", "cmd_map_pin"))
    q = ms.add_parser("freeze", help="freeze MAP: no more writes from user space")
    q.add_argument("sel", nargs="+", metavar="MAP")
    q.set_defaults(func=_cmd("kernel_map", "cmd_map_freeze"))

    p = sub.add_parser("btf", help="BTF objects in the kernel (like bpftool btf)")
    bs = p.add_subparsers(dest="btf_command", metavar="CMD")
    bs.required = True
    q = bs.add_parser("show", aliases=["list"], help="show [id N]")
    q.add_argument("sel", nargs="*", metavar="BTF")
    _json(q)
    q.set_defaults(func=_cmd("kernel_btf", "cmd_btf_show"))
    q = bs.add_parser("dump", help="dump id N | file PATH [format raw|c]")
    q.add_argument("source", choices=("id", "file", "map", "prog"))
    q.add_argument("what", metavar="N|PATH")
    q.add_argument("format", nargs="*", metavar="format {raw|c}")
    _json(q)
    q.add_argument("-B", "--base-btf", metavar="FILE", help="base BTF for split BTF files")
    q.set_defaults(func=_cmd("kernel_btf", "cmd_btf_dump"))


def _json(q) -> None:
    q.add_argument("-j", "--json", action="store_true", help="JSON output")


__all__ = ["register", "register_kernel", "KernelCmdError"]
