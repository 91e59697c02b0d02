"""The kernel backend: the same programs and objects, loaded into Linux through bpf(2).

No libbpf, no BCC, no C toolchain: ``ebee.load("prog.o").load_kernel()`` puts an
object into the running kernel (:mod:`.obj`); :mod:`.attach` attaches programs
(links detached on exit); :mod:`.trace_pipe`, :mod:`.ringbuf` and
:mod:`.perfbuf` read what they produce; :mod:`.info` lists what the kernel
holds; :mod:`.probe` finds what this kernel supports.

Names are imported lazily, so ``import ebee.kernel.ledger`` (or anything small)
does not pull in the loader and the map runtime.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Attachment": "links", "Link": "links", "detach_all": "links", "live_attachments": "links",
    "KernelBTF": "btf", "KernelObject": "obj", "load_object": "obj",
    "KernelLoadError": "prog", "KernelProgram": "prog", "TestRun": "prog",
    "bpf_available": "prog", "PRIVILEGE_HINT": "syscall", "bpf": "syscall",
    "KernelMapHandle": "map_handle", "TracePipe": "trace_pipe", "RingBufReader": "ringbuf",
    "PerfBufReader": "perfbuf", "attach": "attach", "UserRingBufWriter": "user_ringbuf",
    "host_jit_harden": "sysctl", "host_blinds": "sysctl", "follow_host": "sysctl",
    "jit_harden_set": "sysctl",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'ebee.kernel' has no attribute {name!r}")
    m = importlib.import_module(f".{mod}", __name__)
    value = m if name == mod else getattr(m, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
