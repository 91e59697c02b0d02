"""``--kernel`` for ``ebee verify`` and ``ebee run``: the same object or instructions,
judged and run by the running kernel (PROG_LOAD's verifier and log, BPF_PROG_TEST_RUN)
instead of by ebee.

Maps an object pins by name go to a temporary directory of bpffs, removed afterwards:
a check or a test run leaves nothing pinned behind.
"""
from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Iterator

from .. import uapi as U
from ..isa import Instruction
from ..kernel.fs import ensure_bpffs
from ..kernel.obj import KernelObject, load_object
from ..kernel.prog import KernelLoadError, KernelProgram, bpf_available
from .object import Object

_PROCESSED = re.compile(r"processed (\d+) insns")


@dataclass
class KernelVerdict:
    """What PROG_LOAD said about one program."""
    name: str | None
    accepted: bool
    error: str | None
    log: str
    insns_processed: int | None


def _processed(log: str) -> int | None:
    m = _PROCESSED.search(log)
    return int(m.group(1)) if m else None


@contextlib.contextmanager
def _pin_root() -> Iterator[str]:
    """A fresh bpffs directory for the object's by-name pins, removed on the way out."""
    root = ensure_bpffs()
    d = tempfile.mkdtemp(prefix="ebee-check-", dir=str(root))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def kernel_object(obj: Object, *, log_level: int = 0,
                  programs: list[str] | None = None) -> Iterator[KernelObject]:
    """``obj`` loaded into the kernel for as long as the block runs."""
    with _pin_root() as root:
        kobj = load_object(obj, log_level=log_level, pin_root=root, programs=programs)
        try:
            yield kobj
        finally:
            kobj.close()


def verify_object(obj: Object, names: list[str], *, log_level: int = 1) -> list[KernelVerdict]:
    """The programs of ``names`` loaded together, as libbpf loads an object; if the kernel
    refuses one, each on its own, as ``veristat`` does, so one refusal does not hide the
    others' verdicts."""
    try:
        with kernel_object(obj, log_level=log_level, programs=names) as kobj:
            return [KernelVerdict(n, True, None, kobj.programs[n].log or "",
                                  _processed(kobj.programs[n].log or "")) for n in names]
    except KernelLoadError as e:
        if len(names) == 1:
            return [KernelVerdict(names[0], False, e.strerror, e.log or "",
                                  _processed(e.log or ""))]
    out = []
    for name in names:
        try:
            with kernel_object(obj, log_level=log_level, programs=[name]) as kobj:
                log = kobj.programs[name].log or ""
                out.append(KernelVerdict(name, True, None, log, _processed(log)))
        except KernelLoadError as e:
            out.append(KernelVerdict(name, False, e.strerror, e.log or "", _processed(e.log or "")))
        except OSError as e:
            # loaded, but a prog-array slot names a program not loaded with it alone
            out.append(KernelVerdict(name, True, None, f"(loaded alone: {e.strerror})\n", None))
    return out


def verify_insns(insns: list[Instruction], prog_type: U.ProgType, *,
                 log_level: int = 1) -> KernelVerdict:
    try:
        with KernelProgram(insns, prog_type, log_level=log_level) as kp:
            log = kp.log or ""
            return KernelVerdict(None, True, None, log, _processed(log))
    except KernelLoadError as e:
        return KernelVerdict(None, False, e.strerror, e.log or "", _processed(e.log or ""))


class KernelRunner:
    """What ``ebee.testrun.replay`` needs of a runner, on a program in the kernel: every
    packet one BPF_PROG_TEST_RUN."""

    def __init__(self, kp: KernelProgram, name: str):
        self.kp = kp
        self.info = SimpleNamespace(prog_type=kp.type)
        self.program = SimpleNamespace(name=name)

    def run(self, data: bytes | None = None, *, ctx: bytes | None = None, repeat: int = 0):
        return self.kp.run(data, ctx=ctx, repeat=repeat)


def available() -> str | None:
    """Why the kernel cannot be used here, or None."""
    return bpf_available()


__all__ = ["KernelRunner", "KernelVerdict", "available", "kernel_object", "verify_insns",
           "verify_object"]
