"""BPF iterators in user space: a SEC("iter/...") program run over ebee's objects as
bpf_seq_read() runs it over the kernel's, and the text it wrote.

Linux calls the program once per object with ``ctx->meta->seq_num`` counting the
objects shown before it, then once more with the object pointer(s) NULL (the stop call,
where programs print trailers; its seq_num is still the last object's, as bpf_seq_read()
counts only on finding a next object); a program that returns 1 makes the read fail with
EAGAIN.  Targets:

- ``bpf_map``: every live ebee map, in id order; ``ctx->map`` is a ``struct bpf_map``
  laid out at the kernel's offsets (``ebee.layouts.kernel.BPF_MAP``).
- ``bpf_map_elem``: the elements of one map (``map=``), in get_next_key order, with
  ``ctx->key`` a copy of the key and ``ctx->value`` the element itself (the program may
  write it, as the kernel's rdwr buffer allows); per-CPU maps show a copy of every
  CPU's value one after the other.
- ``task``: every task of ``ebee.helpers.task.all_tasks()`` (this machine's threads from
  /proc unless ``set_tasks()`` gave a list), in pid order; ``ctx->task`` is the task's
  ``struct task_struct`` laid out from the kernel's BTF, so CO-RE reads of pid, tgid,
  comm, real_parent, cred, mm ... see the modelled values.  ``tid=`` walks one thread,
  ``pid=`` one process's threads (the link's ``iter_info.task``).

``read_iter(prog, map=m)`` returns what ``cat`` of the pinned iterator would print.
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from ..engines import Machine, select_engine
from ..helpers import RUNTIME
from ..helpers.seq import SeqFile
from ..helpers.task import all_tasks
from ..idr import map_idr
from ..layouts.kernel import BPF_ITER_META, BPF_MAP
from ..memory import SHARED, Region
from ..packet.net import Network
from ..runtime import RunContext
from ..runtime.trace_pipe import capture
from ..uapi import AttachType as A, ProgType as P
from .common import TestRunError, TestTarget

TARGETS = ("bpf_map", "bpf_map_elem", "task")


@dataclass
class IterResult:
    text: bytes           # what read() of the iterator fd returns, to EOF
    objects: int          # objects shown
    trace_output: list[str]


def map_struct(mp) -> bytes:
    """``struct bpf_map`` of ebee map ``mp``, with the fields iterator programs read."""
    buf = bytearray(BPF_MAP.size)
    for name, v in (("map_type", int(mp.type)), ("key_size", mp.key_size),
                    ("value_size", mp.value_size), ("max_entries", mp.max_entries),
                    ("map_flags", mp.flags), ("id", mp.id)):
        struct.pack_into("<I", buf, BPF_MAP.off(name), v & 0xFFFFFFFF)
    name = (mp.name or "").encode()[:BPF_MAP.size_of("name") - 1]
    buf[BPF_MAP.off("name"):BPF_MAP.off("name") + len(name)] = name
    return bytes(buf)


def _target(prog: TestTarget) -> str:
    at = prog.info.expected_attach_type
    if prog.info.prog_type is not P.TRACING or at is not A.TRACE_ITER:
        raise TestRunError(errno.EINVAL, f"program {prog.name!r} is not an iterator "
                                         f"(SEC(\"iter/...\"))")
    t = prog.attach_target or ""
    if t not in TARGETS:
        raise TestRunError(errno.EOPNOTSUPP, f"iterator target {t!r} is not modelled by ebee "
                                             f"(modelled: {', '.join(TARGETS)})")
    return t


def read_iter(prog: TestTarget, *, map=None, tid: int | None = None, pid: int | None = None,
              engine: str | None = None) -> IterResult:
    """Create the iterator (the link's ``iter_info`` names ``map`` for bpf_map_elem, the
    thread ``tid`` or the process ``pid`` for task) and read it to the end."""
    target = _target(prog)
    if (tid is not None or pid is not None) and target != "task":
        raise TestRunError(errno.EINVAL, f"iter/{target} takes no tid or pid")
    if tid is not None and pid is not None:
        raise TestRunError(errno.EINVAL, "a task iterator takes a tid or a pid, not both")
    if target == "bpf_map_elem" and map is None:
        raise TestRunError(errno.EINVAL, "iter/bpf_map_elem needs the map to iterate (map=)")
    if target != "bpf_map_elem" and map is not None:
        raise TestRunError(errno.EINVAL, f"iter/{target} takes no map")
    exe = prog.executable(evidence=engine != "interp")
    m = Machine()
    if prog.btf is not None:
        m.btf = prog.btf
    seq = SeqFile()
    regions: list[Region] = []

    def region(data: bytes, what: str, writable: bool = False) -> int:
        r = SHARED.add(Region(data, what, writable=writable))
        regions.append(r)
        return r.start

    try:
        bound = select_engine(engine, exe.evidence).compile(exe.insns, exe.evidence) \
            .bind(m, RUNTIME)
        meta = SHARED.add(Region(BPF_ITER_META.size, "bpf_iter_meta", writable=False))
        regions.append(meta)
        struct.pack_into("<Q", meta.buf, BPF_ITER_META.off("seq"), seq.addr)
        ctx = SHARED.add(Region(32, "iterator ctx", writable=False))
        regions.append(ctx)
        struct.pack_into("<Q", ctx.buf, 0, meta.start)
        m.progctx = RunContext(Network(), P.TRACING)
        shown = 0

        def show(*ptrs: int, stop: bool = False) -> None:
            seq_num = max(shown - 1, 0) if stop else shown
            struct.pack_into("<Q", meta.buf, BPF_ITER_META.off("seq_num"), seq_num)
            struct.pack_into(f"<{len(ptrs)}Q", ctx.buf, 8, *ptrs)
            seq.begin_object()
            if bound.run(ctx.start).retval & 0xFFFFFFFF:
                raise TestRunError(errno.EAGAIN, "the iterator program returned 1")
            if seq.overflowed:
                raise TestRunError(errno.E2BIG, "one object's output overflowed the seq_file")

        with capture() as lines:
            if target == "bpf_map":
                for mp in map_idr.live():
                    show(region(map_struct(mp), f"struct bpf_map {mp.id}"))
                    shown += 1
                show(0, stop=True)
            elif target == "task":
                for task in all_tasks():
                    if tid is not None and task.pid != tid or \
                            pid is not None and task.tgid != pid:
                        continue
                    show(task.addr)
                    shown += 1
                show(0, stop=True)
            else:
                mstruct = region(map_struct(map), f"struct bpf_map {map.id}")
                for key in list(map.raw_keys()):
                    if map.percpu:      # a copy of every CPU's value, as percpu_value_buf
                        value = region(map.raw_lookup(key), "iterator values", True)
                    else:
                        value = map.prog_lookup(key, 0)
                    if not value:
                        continue
                    show(mstruct, region(key, "iterator key"), value)
                    shown += 1
                show(mstruct, 0, 0, stop=True)
        return IterResult(bytes(seq.out), shown, [ln.message for ln in lines])
    finally:
        m.progctx = None
        seq.close()
        for r in regions:
            SHARED.remove(r)
        m.close()
