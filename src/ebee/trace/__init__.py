"""``ebee trace``: bpftrace's language, compiled by ebee, run in the kernel or in ebee's runtime.

- :func:`compile` gives a :class:`~ebee.trace.userspace.UserSpaceTrace`: the script's
  programs verified by ebee and run in ebee's runtime on synthetic events --
  ``t.fire("tracepoint:syscalls:sys_enter_openat", filename="/etc/passwd")``,
  ``t.maps["@"]``, ``t.output()`` (what bpftrace would print) -- no root needed.
- :func:`run` loads the same programs into the kernel and attaches them
  (``with ebee.trace.run(script) as t: ...; t.print_maps()``).

The compiler (:mod:`.parser`, :mod:`.semantic`, :mod:`.codegen`) makes no system
calls; :mod:`.kernelrun` is the only module that uses bpf().
"""
from __future__ import annotations

from typing import Any

from ..helpers.task import Task
from .compiler import Script, compile_script
from .errors import AttachError, TraceError
from .kernelrun import KernelTrace, start_kernel
from .userspace import UserSpaceTrace


def compile(script: str, *, params: list[str] | None = None, filename: str = "stdin",
            task: Task | None = None, unsafe: bool = False, engine: str = "interp",
            json: bool = False, quiet: bool = False, start: bool = True) -> UserSpaceTrace:
    """Compile ``script`` and start it in ebee's runtime (BEGIN runs now)."""
    s = compile_script(script, filename, params, unsafe=unsafe, missing_probes_ok=True)
    t = UserSpaceTrace(s, task=task, engine=engine, json=json, quiet=quiet)
    if start:
        t.start()
    return t


def run(script: str, **kw) -> Any:
    """Compile ``script``, load it into the kernel and attach it (needs root); use as a
    context manager.  See :class:`ebee.trace.kernelrun.KernelTrace`."""
    return start_kernel(script, **kw)


Trace = UserSpaceTrace

__all__ = ["AttachError", "KernelTrace", "Script", "Task", "Trace", "TraceError",
           "UserSpaceTrace", "compile", "compile_script", "run"]
