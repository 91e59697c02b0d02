"""The simulated current task: what ``bpf_get_current_*`` and task helpers see.

Programs in ebee run on behalf of a :class:`Task`.  By default it is the
Python process itself (thread id, process id, uid/gid, ``comm`` from
/proc/self/comm) -- exactly what the kernel reports to a program run with
BPF_PROG_TEST_RUN from this process, so differential tests agree.  Tests
set their own::

    ebee.helpers.task.set_current(Task(pid=42, tgid=40, comm="nginx"))
    machine.task = Task(...)          # or per machine

``Task.memory`` is a ``task_struct``-sized region in ``SHARED`` (the address
``bpf_get_current_task`` returns) with ``pid``, ``tgid`` and ``comm`` at the
offsets the running kernel's BTF gives them, so CO-RE reads of those fields
work; every other field reads as zero.  ``kernel_stack`` and ``user_stack``
are the instruction pointers ``bpf_get_stackid``/``bpf_get_stack`` report.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from .. import uapi as U
from ..uapi import FuncId
from ..memory import SHARED, Region
from .registry import implements
from ..btf import BTF

FALLBACK_TASK_SIZE = 4096


def _self_comm() -> str:
    try:
        return open("/proc/self/comm").read().strip()[:U.TASK_COMM_LEN - 1]
    except OSError:
        return "python3"


_layout_cache: dict = {}


def _task_layout() -> tuple[int, dict[str, int]]:
    """sizeof(struct task_struct) and the offsets of pid, tgid, comm from vmlinux BTF."""
    if "v" in _layout_cache:
        return _layout_cache["v"]
    size, offs = FALLBACK_TASK_SIZE, {"pid": 0, "tgid": 4, "comm": 8}
    try:
        btf = BTF.load_vmlinux()
        t = btf.find("task_struct", "STRUCT")
        size = t.size
        offs = {n: t.member(n).byte_offset for n in ("pid", "tgid", "comm")}
    except Exception:
        pass
    _layout_cache["v"] = (size, offs)
    return size, offs


@dataclass
class Task:
    pid: int = field(default_factory=threading.get_native_id)
    tgid: int = field(default_factory=os.getpid)
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    comm: str = field(default_factory=_self_comm)
    cgroup_id: int = 1
    kernel_stack: list[int] = field(default_factory=list)
    user_stack: list[int] = field(default_factory=list)
    memory: Region | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        size, offs = _task_layout()
        self.memory = Region(size, f"task_struct {self.comm}-{self.pid}")
        buf = self.memory.buf
        buf[offs["pid"]:offs["pid"] + 4] = (self.pid & 0xFFFFFFFF).to_bytes(4, "little")
        buf[offs["tgid"]:offs["tgid"] + 4] = (self.tgid & 0xFFFFFFFF).to_bytes(4, "little")
        c = self.comm.encode()[:U.TASK_COMM_LEN - 1]
        buf[offs["comm"]:offs["comm"] + U.TASK_COMM_LEN] = c + bytes(U.TASK_COMM_LEN - len(c))
        SHARED.add(self.memory)

    @property
    def addr(self) -> int:
        return self.memory.start

    def __del__(self) -> None:
        try:
            SHARED.remove(self.memory)
        except Exception:
            pass


_current: Task | None = None


def current_task(m=None) -> Task:
    """The task a machine's programs run as: ``machine.task`` if set, else the global one."""
    global _current
    t = m.task if m is not None else None
    if t is not None:
        return t
    if _current is None:
        _current = Task()
    return _current


def set_current(task: Task | None) -> None:
    """Make ``task`` the current task of every machine without its own (None: this process)."""
    global _current
    _current = task


@implements(FuncId.get_current_pid_tgid)
def get_current_pid_tgid(m, *_):
    t = current_task(m)
    return ((t.tgid & 0xFFFFFFFF) << 32) | (t.pid & 0xFFFFFFFF)


@implements(FuncId.get_current_uid_gid)
def get_current_uid_gid(m, *_):
    t = current_task(m)
    return ((t.gid & 0xFFFFFFFF) << 32) | (t.uid & 0xFFFFFFFF)


@implements(FuncId.get_current_comm)
def get_current_comm(m, buf, size, *_):
    if size == 0:
        return 0
    c = current_task(m).comm.encode()[:U.TASK_COMM_LEN - 1]
    # strscpy_pad: truncated, NUL-terminated, the rest zeroed
    out = c[:size - 1]
    m.write(buf, out + bytes(size - len(out)))
    return 0


@implements(FuncId.get_current_task)
def get_current_task(m, *_):
    return current_task(m).addr


@implements(FuncId.get_current_task_btf)
def get_current_task_btf(m, *_):
    return current_task(m).addr


@implements(FuncId.get_current_cgroup_id)
def get_current_cgroup_id(m, *_):
    return current_task(m).cgroup_id
