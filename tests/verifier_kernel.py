"""Kernel verdicts for the verifier's differential tests: load one program at a time.

``ebee.kernel.load_object`` loads a whole object and stops at the first
program the kernel refuses; comparing verifiers needs every program's own
verdict and log.  This module creates the object's BTF and maps in the
kernel once, then loads each program separately with a log, using the
kernel backend's building blocks.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from ebee.kernel.prog import KernelLoadError


@dataclass
class KernelVerdict:
    accepted: bool
    log: str
    error: str | None
    errno: int
    insns_processed: int | None
    duration_ns: int | None = None


_PROCESSED = re.compile(r"processed (\d+) insns")
_VTIME = re.compile(r"verification time (\d+) usec")


def last_error_line(log: str) -> str:
    lines = [ln for ln in log.splitlines() if ln.strip() and not ln.startswith(
        ("processed ", "verification time", "stack depth"))]
    if not lines:
        return ""
    # a few kernel messages lack their newline: the statistics run on
    return re.sub(r"(processed \d+ insns|verification time \d+ usec).*$", "", lines[-1])


def verdict_of(log: str, accepted: bool, errno_: int = 0) -> KernelVerdict:
    """The verdict from a log written with BPF_LOG_STATS (level | 4)."""
    m = _PROCESSED.search(log)
    t = _VTIME.search(log)
    log = "\n".join(ln for ln in log.splitlines()
                    if not ln.startswith(("verification time", "stack depth"))) + "\n"
    return KernelVerdict(accepted, log, None if accepted else last_error_line(log), errno_,
                         int(m.group(1)) if m else None, int(t.group(1)) * 1000 if t else None)


@contextlib.contextmanager
def kernel_object(obj):
    """BTF and maps of ``obj`` created in the kernel; yields a per-program loader.

    Maps the object asks to pin are pinned under a private bpffs directory
    that is removed afterwards, so nothing is left behind and no earlier pin
    is reused.
    """
    import os
    import shutil
    import uuid
    from ebee.kernel import obj as K
    spec = obj.spec
    warn: list[str] = []
    made: list = []
    root = f"/sys/fs/bpf/ebee-verifier-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        kbtf = K._load_btf(spec, warn) if spec.btf is not None else None
        if kbtf is not None:
            made.append(kbtf)
        maps, _pinned, _reused = K._create_maps(obj, spec, kbtf, root, warn, made)

        def load(prog, log_level: int = 1) -> KernelVerdict:
            try:
                kp = K._load_program(obj, prog, maps, kbtf, log_level | 4)
            except KernelLoadError as e:
                return verdict_of(e.log or "", False, e.errno)
            except OSError as e:
                return KernelVerdict(False, "", f"(load failed: {e})", e.errno or 0, None)
            try:
                return verdict_of(kp.log or "", True, 0)
            finally:
                kp.close()
        yield load
    finally:
        for m in reversed(made):
            try:
                m.close()
            except Exception:
                pass
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def ebee_object(path: str, prog_type=None):
    """``ebee.load(path)`` with a private pin store, released afterwards.

    Pinned maps live as long as their pin (as on bpffs); a harness that
    loads hundreds of objects must not keep every object's maps alive, nor
    reuse maps another test pinned.  Programs in sections libbpf does not
    know get ``prog_type`` or, failing that, XDP for files named ``*xdp*``
    and SCHED_CLS otherwise (what tc/ip would load them as).
    """
    import os
    import tempfile
    import ebee
    from ebee.fs.store import PinStore
    from ebee.uapi import ProgType
    locs: list[str] = []
    stores: list = []

    def fresh_store():
        fd, loc = tempfile.mkstemp(prefix="ebee-verifier-pins-", suffix=".sqlite3")
        os.close(fd)
        locs.append(loc)
        stores.append(PinStore(loc))
        return stores[-1]

    obj = None
    try:
        obj = ebee.load(path, store=fresh_store(), prog_type=prog_type)
        if prog_type is None and any(p.type == ProgType.UNSPEC for p in obj.programs.values()):
            obj.close()
            obj = None
            guess = ProgType.XDP if "xdp" in os.path.basename(path) else ProgType.SCHED_CLS
            obj = ebee.load(path, store=fresh_store(), prog_type=guess)
        obj.first_use()
        yield obj
    finally:
        if obj is not None:
            obj.close()
        for store in stores:
            store._live.clear()
            store._synced.clear()
            try:
                store.close()
            except Exception:
                pass
        for loc in locs:
            for suffix in ("", "-wal", "-shm", "-journal"):
                try:
                    os.unlink(loc + suffix)
                except OSError:
                    pass


_ADDR = re.compile(r"0x[0-9a-f]{10,}")
_MAPID = re.compile(r"map\[id:\d+\]")
_PAD = re.compile(r"ADDR +;")


def comparable_log(log: str) -> list[str]:
    """A verifier log with what legitimately differs between two loads removed:
    map addresses (``r1 = 0xffff8881...`` / map ids), the statistics lines the
    harness adds (BPF_LOG_STATS), and the stack-liveness trace of Linux 6.18's
    liveness.c (``(0) frame 0 insn 7 +live -8``), which ebee does not print."""
    out = []
    for ln in log.splitlines():
        if ln.startswith("(") or "live stack update done" in ln or \
                ln.startswith(("verification time", "stack depth")):
            continue
        # a map's address is as wide as the machine makes it: so is the padding after it
        out.append(_PAD.sub("ADDR ;", _ADDR.sub("ADDR", _MAPID.sub("ADDR", ln))))
    return out
