"""The kernel backend: the same programs and objects, loaded into Linux through bpf(2).

No libbpf, no BCC, no C toolchain: ``ebee.load("prog.o").load_kernel()`` puts an
object into the running kernel (:mod:`.obj`); :mod:`.attach` attaches programs
(links detached on exit); :mod:`.trace_pipe`, :mod:`.ringbuf` and
:mod:`.perfbuf` read what they produce; :mod:`.info` lists what the kernel
holds; :mod:`.probe` finds what this kernel supports.
"""
from .btf import KernelBTF
from .links import Attachment, Link, detach_all, live_attachments
from .obj import KernelObject, load_object
from .prog import KernelLoadError, KernelProgram, TestRun, bpf_available
from .syscall import PRIVILEGE_HINT, bpf

__all__ = ["Attachment", "KernelBTF", "KernelLoadError", "KernelObject", "KernelProgram", "Link",
           "PRIVILEGE_HINT", "TestRun", "bpf", "bpf_available", "detach_all", "live_attachments",
           "load_object"]
