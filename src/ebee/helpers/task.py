"""The simulated current task: what ``bpf_get_current_*``, task helpers and CO-RE reads see.

Programs in ebee run on behalf of a :class:`Task`.  By default it is this thread of
the Python process -- thread id, process id, credentials, ``comm``, flags, parent
and memory layout read from /proc -- exactly what the kernel shows a program run
(or attached and triggered) from this thread, so differential tests agree.  Tests
make their own::

    ebee.helpers.task.set_current(Task(pid=42, tgid=40, comm="nginx"))   # every CPU
    machine.task = Task(...)          # one CPU (``Cpu.task``): its programs only

A task is a whole ``struct task_struct`` laid out from the kernel's BTF, in
``SHARED`` (the address ``bpf_get_current_task`` returns), with what a user task
has: ``pid``, ``tgid``, ``comm``, ``flags``, ``prio``; ``group_leader`` (the task
itself, or the thread group's leader), ``real_parent``/``parent`` (another task;
the chain ends at the idle task, pid 0, its own parent); ``mm``/``active_mm`` (a
``struct mm_struct`` with the code, stack, argument and environment bounds; NULL
for kernel threads); ``cred``/``real_cred`` (a ``struct cred`` with the real,
effective, saved and fs ids); ``thread_pid`` (a ``struct pid`` of level 0 whose
``numbers[0]`` is the pid in the initial pid namespace) and ``nsproxy``, both
pointing at that ``struct pid_namespace`` (its inode number the host's).  Every
other byte reads as zero.  A task of this process takes /proc's values when it is
made: its ``flags`` then are the kernel's (``PF_SUPERPRIV`` appears once root used
a privilege, so make it after that to compare).  ``kernel_stack`` and ``user_stack`` are the instruction
pointers ``bpf_get_stackid``/``bpf_get_stack`` report.
"""
from __future__ import annotations

import errno
import os
import re
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from .. import uapi as U
from ..btf import BTF
from ..memory import SHARED, Region
from ..uapi import FuncId
from .registry import implements

FALLBACK_TASK_SIZE = 4096
M64 = (1 << 64) - 1
# task->flags (include/linux/sched.h)
PF_IDLE = 0x00000002
PF_WQ_WORKER = 0x00000020
PF_FORKNOEXEC = 0x00000040
PF_KTHREAD = 0x00200000
PF_RANDOMIZE = 0x00400000
#: a user task after execve(): address-space randomization on, nothing else
USER_TASK_FLAGS = PF_RANDOMIZE
DEFAULT_PRIO = 120                  # MAX_RT_PRIO + NICE_WIDTH / 2: nice 0
#: /proc/<pid>/stat fields (1-based, proc(5)) of an mm's bounds
_MM_STAT = {"start_code": 26, "end_code": 27, "start_stack": 28, "arg_start": 48,
            "arg_end": 49, "env_start": 50, "env_end": 51}


# ------------------------------------------------------------------------------ layouts

class _Layouts:
    """Sizes of kernel structs and offsets of (nested) members, from the kernel's BTF."""

    def __init__(self) -> None:
        try:
            self.btf: BTF | None = BTF.load_vmlinux()
        except Exception:
            self.btf = None
        self._cache: dict[tuple[str, str], tuple[int, int] | None] = {}

    def size(self, struct: str, fallback: int = 0) -> int:
        try:
            return self.btf.find(struct, "STRUCT").size if self.btf is not None else fallback
        except KeyError:
            return fallback

    def at(self, struct: str, path: str) -> tuple[int, int] | None:
        """(offset, size) of ``path`` ("uid.val", "numbers[0].nr") in ``struct X``, None if
        the kernel has no such member."""
        key = (struct, path)
        if key not in self._cache:
            self._cache[key] = self._walk(struct, path)
        return self._cache[key]

    def _walk(self, struct: str, path: str) -> tuple[int, int] | None:
        b = self.btf
        if b is None:
            return None
        try:
            t = b.find(struct, "STRUCT")
        except KeyError:
            return None
        off, tid = 0, t.id
        for part in path.split("."):
            m = re.fullmatch(r"(\w+)(?:\[(\d+)\])?", part)
            found = _member(b, b.resolve(tid), m.group(1))
            if found is None:
                return None
            moff, tid = found
            off += moff
            if m.group(2) is not None:
                arr = b.resolve(tid)
                tid = arr.type_id
                off += int(m.group(2)) * b.sizeof(tid)
        return off, b.sizeof(tid)


def _member(btf, t, name: str) -> tuple[int, int] | None:
    """(byte offset, type id) of member ``name``, looking into anonymous members."""
    for m in getattr(t, "members", ()):
        if m.name == name:
            return m.bits_offset // 8, m.type_id
        if not m.name:
            inner = _member(btf, btf.resolve(m.type_id), name)
            if inner is not None:
                return m.bits_offset // 8 + inner[0], inner[1]
    return None


_layouts: _Layouts | None = None


def layouts() -> _Layouts:
    global _layouts
    if _layouts is None:
        _layouts = _Layouts()
    return _layouts


def _task_layout() -> tuple[int, dict[str, int]]:
    """sizeof(struct task_struct) and the offsets of pid, tgid and comm (the layout
    without kernel BTF otherwise)."""
    lay = layouts()
    if lay.btf is None:
        return FALLBACK_TASK_SIZE, {"pid": 0, "tgid": 4, "comm": 8}
    return lay.size("task_struct"), {n: lay.at("task_struct", n)[0]
                                     for n in ("pid", "tgid", "comm")}


class _Struct:
    """One kernel struct in ``SHARED``, written member by member."""

    def __init__(self, name: str, what: str, fallback: int = 64, extra: int = 0):
        self.name = name
        self.region = Region(max(layouts().size(name, fallback) + extra, 1), what)
        SHARED.add(self.region)

    @property
    def addr(self) -> int:
        return self.region.start

    def put(self, path: str, value: int | bytes) -> None:
        at = layouts().at(self.name, path)
        if at is None:
            return                     # not in this kernel: nothing to write
        off, size = at
        if off + size > len(self.region.buf):
            return
        if isinstance(value, bytes):
            data = value[:size] + bytes(max(0, size - len(value)))
        else:
            data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        self.region.buf[off:off + size] = data

    def release(self) -> None:
        try:
            SHARED.remove(self.region)
        except Exception:
            pass


# ------------------------------------------------------------------------------ the host

def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _stat(path: str) -> list[str] | None:
    """/proc/<pid>/stat as fields 1..52 (index 0 unused); comm may hold spaces."""
    text = _read(path)
    if text is None:
        return None
    head, _, rest = text.rpartition(")")
    pid, _, comm = head.partition(" (")
    return ["", pid, comm] + rest.split()


def _task_comm(proc_comm: str, flags: int) -> str:
    """task->comm of a task whose /proc comm is ``proc_comm``: /proc shows a workqueue
    worker's current work after its name (wq_worker_comm: "kworker/0:1-events"), which
    task->comm does not hold."""
    if flags & PF_WQ_WORKER and not proc_comm.startswith("kworker/R-"):
        proc_comm = re.split(r"[-+]", proc_comm, maxsplit=1)[0]
    return proc_comm[:U.TASK_COMM_LEN - 1]


def _ids(status: str | None, key: str) -> list[int] | None:
    m = re.search(rf"^{key}:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status or "", re.M)
    return [int(x) for x in m.groups()] if m else None


def _self_comm() -> str:
    c = _read("/proc/thread-self/comm") or _read("/proc/self/comm")
    return c.strip()[:U.TASK_COMM_LEN - 1] if c else "python3"


def _pidns_inum() -> int:
    try:
        m = re.search(r"\[(\d+)\]", os.readlink("/proc/self/ns/pid"))
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


class _Namespace:
    """The initial pid namespace (``init_pid_ns``) and the ``nsproxy`` tasks point to."""

    def __init__(self) -> None:
        self.pid_ns = _Struct("pid_namespace", "pid_namespace (init)")
        self.pid_ns.put("level", 0)
        self.pid_ns.put("ns.inum", _pidns_inum())
        self.nsproxy = _Struct("nsproxy", "nsproxy (init)")
        self.nsproxy.put("pid_ns_for_children", self.pid_ns.addr)


_ns: _Namespace | None = None
_ns_lock = threading.Lock()


def init_ns() -> _Namespace:
    global _ns
    with _ns_lock:
        if _ns is None:
            _ns = _Namespace()
    return _ns


# ------------------------------------------------------------------------------ tasks

@dataclass(eq=False)
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
    # the rest of a task_struct: None takes the host's value for a task of this
    # process, else what a user task started by init has
    euid: int | None = None
    egid: int | None = None
    suid: int | None = None
    sgid: int | None = None
    flags: int | None = None
    prio: int | None = None
    parent: "Task | None" = field(default=None, repr=False)   # real_parent
    leader: "Task | None" = field(default=None, repr=False)   # group_leader
    kthread: bool = False
    mm: dict[str, int] | None = field(default=None, repr=False)   # mm_struct bounds
    # signals programs sent it (bpf_send_signal: "process", bpf_send_signal_thread:
    # "thread"), in order: ebee records them, it does not deliver them
    signals: list[tuple[int, str]] = field(default_factory=list, repr=False)
    # the address space bpf_find_vma searches: None takes /proc/<pid>/maps for a task
    # of this process, else none
    vmas: "list[Vma] | None" = field(default=None, repr=False)
    # the user registers saved at the top of its kernel stack (task_pt_regs), by name
    # (``ip``, ``sp``, ``ax``, ...): 0 unless given
    regs: dict[str, int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        host = _host_task_info(self.pid) if self.tgid == os.getpid() else None
        if host is not None:
            for k in ("euid", "egid", "suid", "sgid", "flags", "prio"):
                if getattr(self, k) is None:
                    setattr(self, k, host[k])
            if self.mm is None and not self.kthread:
                self.mm = host["mm"]
        if self.flags is None:
            self.flags = PF_KTHREAD if self.kthread else USER_TASK_FLAGS
        if self.parent is None:
            self.parent = (proc_task(os.getppid()) if host is not None else
                           proc_task(1) if self.pid != 1 else idle_task())
        if self.leader is None and self.pid != self.tgid:
            self.leader = proc_task(self.tgid) if host is not None else \
                Task(pid=self.tgid, tgid=self.tgid, uid=self.uid, gid=self.gid, comm=self.comm,
                     euid=self.euid, egid=self.egid, flags=self.flags, prio=self.prio,
                     parent=self.parent, kthread=self.kthread, mm=self.mm)
        self._structs: list[_Struct] = []
        self._lay_out()

    def _new(self, name: str, extra: int = 0) -> _Struct:
        s = _Struct(name, f"{name} {self.comm}-{self.pid}",
                    FALLBACK_TASK_SIZE if name == "task_struct" else 64, extra)
        self._structs.append(s)
        return s

    def _lay_out(self) -> None:
        t = self._new("task_struct")
        self.memory = t.region
        _by_addr[t.region.start] = self
        lay = layouts()
        if lay.btf is None:            # no kernel BTF: pid, tgid and comm at fixed places
            buf = t.region.buf
            buf[0:4] = (self.pid & 0xFFFFFFFF).to_bytes(4, "little")
            buf[4:8] = (self.tgid & 0xFFFFFFFF).to_bytes(4, "little")
            c = self.comm.encode()[:U.TASK_COMM_LEN - 1]
            buf[8:8 + U.TASK_COMM_LEN] = c + bytes(U.TASK_COMM_LEN - len(c))
            return
        prio = self.prio if self.prio is not None else DEFAULT_PRIO
        t.put("pid", self.pid)
        t.put("tgid", self.tgid)
        t.put("comm", self.comm.encode()[:U.TASK_COMM_LEN - 1])
        t.put("flags", self.flags)
        for f in ("prio", "static_prio", "normal_prio"):
            t.put(f, prio)
        t.put("group_leader", (self.leader or self).addr)
        t.put("real_parent", self.parent.addr if self.parent is not None else t.addr)
        t.put("parent", self.parent.addr if self.parent is not None else t.addr)
        if not self.kthread:
            mm = self._new("mm_struct")
            for k, v in (self.mm or {}).items():
                mm.put(k, v)
            mm.put("owner", t.addr)
            t.put("mm", mm.addr)
            t.put("active_mm", mm.addr)
        cred = self._new("cred")
        ids = {"uid": self.uid, "gid": self.gid, "euid": _or(self.euid, self.uid),
               "egid": _or(self.egid, self.gid), "suid": _or(self.suid, self.uid),
               "sgid": _or(self.sgid, self.gid), "fsuid": _or(self.euid, self.uid),
               "fsgid": _or(self.egid, self.gid)}
        for k, v in ids.items():
            cred.put(f"{k}.val", v)
        t.put("cred", cred.addr)
        t.put("real_cred", cred.addr)
        ns = init_ns()
        upid = layouts().size("upid", 16)
        pid = self._new("pid", upid)        # numbers[] holds level + 1 entries: one here
        pid.put("level", 0)
        pid.put("numbers[0].nr", self.pid)
        pid.put("numbers[0].ns", ns.pid_ns.addr)
        t.put("thread_pid", pid.addr)
        t.put("nsproxy", ns.nsproxy.addr)

    @property
    def addr(self) -> int:
        return self.memory.start

    def __del__(self) -> None:
        for s in getattr(self, "_structs", ()):
            s.release()


# vm_flags (include/linux/mm.h)
VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 1, 2, 4, 8


@dataclass(eq=False)
class Vma:
    """One mapping of a task's address space, laid out as a vm_area_struct when a
    program is shown it."""
    start: int
    end: int
    flags: int = VM_READ
    pgoff: int = 0
    _struct: "_Struct | None" = field(default=None, repr=False)

    def laid_out(self, mm_addr: int) -> int:
        if self._struct is None:
            s = _Struct("vm_area_struct", f"vma {self.start:#x}-{self.end:#x}")
            s.put("vm_start", self.start)
            s.put("vm_end", self.end)
            s.put("vm_flags", self.flags)
            s.put("vm_pgoff", self.pgoff)
            s.put("vm_mm", mm_addr)
            self._struct = s
        return self._struct.addr


def _host_vmas(pid: int) -> list[Vma]:
    out = []
    text = _read(f"/proc/{pid}/maps") or ""
    for line in text.splitlines():
        f = line.split()
        if len(f) < 5:
            continue
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        perms = f[1]
        flags = (VM_READ if "r" in perms else 0) | (VM_WRITE if "w" in perms else 0) | \
            (VM_EXEC if "x" in perms else 0) | (VM_SHARED if "s" in perms else 0)
        out.append(Vma(lo, hi, flags, int(f[2], 16) >> 12))
    return out


def task_vmas(t: "Task") -> list[Vma]:
    if t.vmas is None:
        t.vmas = _host_vmas(t.pid) if t.tgid == os.getpid() and not t.kthread else []
    return sorted(t.vmas, key=lambda v: v.start)


# every live task by the address of its task_struct (what task pointers hold)
_by_addr: "weakref.WeakValueDictionary[int, Task]" = weakref.WeakValueDictionary()


def task_at(addr: int) -> Task | None:
    """The task whose task_struct is at ``addr`` (a task pointer a program holds)."""
    return _by_addr.get(addr)


def _or(v: int | None, default: int) -> int:
    return default if v is None else v


def _host_task_info(tid: int) -> dict[str, Any] | None:
    """What /proc says of thread ``tid`` of this process (None if it cannot be read)."""
    st = _stat(f"/proc/self/task/{tid}/stat") or _stat(f"/proc/{tid}/stat")
    if st is None or len(st) < 20:
        return None
    status = _read(f"/proc/self/task/{tid}/status") or _read(f"/proc/{tid}/status")
    uids, gids = _ids(status, "Uid"), _ids(status, "Gid")
    mm = {k: int(st[i]) for k, i in _MM_STAT.items() if i < len(st)}
    return {"euid": uids[1] if uids else None, "suid": uids[2] if uids else None,
            "egid": gids[1] if gids else None, "sgid": gids[2] if gids else None,
            "flags": int(st[9]), "prio": int(st[18]) + 100, "mm": mm}


_proc_tasks: dict[int, Task] = {}
_proc_lock = threading.RLock()


def proc_task(pid: int) -> Task:
    """Process ``pid`` of this machine as a task (its main thread), from /proc; its parent
    chain down to the idle task comes along.  Built once per pid."""
    with _proc_lock:
        t = _proc_tasks.get(pid)
        if t is not None:
            return t
        if pid <= 0:
            return idle_task()
        st = _stat(f"/proc/{pid}/stat")
        if st is None or len(st) < 20:        # gone, or hidden: a plain user task
            t = Task(pid=pid, tgid=pid, uid=0, gid=0, comm="init" if pid == 1 else "?",
                     parent=idle_task() if pid == 1 else proc_task(1))
        else:
            status = _read(f"/proc/{pid}/status")
            uids, gids = _ids(status, "Uid") or [0] * 4, _ids(status, "Gid") or [0] * 4
            flags = int(st[9])
            ppid = int(st[4])
            kthread = bool(flags & PF_KTHREAD)
            t = Task(pid=pid, tgid=pid, uid=uids[0], gid=gids[0],
                     comm=_task_comm(st[2], flags), euid=uids[1], egid=gids[1],
                     suid=uids[2], sgid=gids[2], flags=flags, prio=int(st[18]) + 100,
                     parent=proc_task(ppid) if ppid > 0 else idle_task(), kthread=kthread,
                     mm=None if kthread else {k: int(st[i]) for k, i in _MM_STAT.items()
                                              if i < len(st)})
        _proc_tasks[pid] = t
        return t


_idle: list[Task] = []


def idle_task() -> Task:
    """The idle task (pid 0, ``swapper/0``): a kernel thread, its own parent -- where every
    parent chain ends, as ``init_task`` ends it in Linux."""
    with _proc_lock:
        if not _idle:
            t = Task.__new__(Task)
            for k, v in dict(pid=0, tgid=0, uid=0, gid=0, comm="swapper/0", cgroup_id=1,
                             kernel_stack=[], user_stack=[], memory=None, euid=0, egid=0,
                             suid=0, sgid=0, flags=PF_KTHREAD | PF_IDLE, prio=DEFAULT_PRIO,
                             parent=None, leader=None, kthread=True, mm=None).items():
                setattr(t, k, v)
            t._structs = []
            t._lay_out()               # real_parent: itself
            _idle.append(t)
        return _idle[0]


# the tasks iter/task shows: None is every task of this machine (each thread, from /proc)
_task_list: "list[Task] | None" = None
_threads: dict[tuple[int, int], Task] = {}


def set_tasks(tasks: "list[Task] | None") -> None:
    """Make ``tasks`` the machine's task list (what iter/task walks); None: this
    machine's own, read from /proc at each walk."""
    global _task_list
    _task_list = list(tasks) if tasks is not None else None


def _thread(pid: int, tid: int) -> Task | None:
    """Thread ``tid`` of process ``pid`` as a task (the leader is proc_task(pid))."""
    if tid == pid and pid != os.getpid():
        return proc_task(pid)
    key = (pid, tid)
    t = _threads.get(key)
    if t is None:
        base = f"/proc/{pid}/task/{tid}"
        comm = (_read(f"{base}/comm") or "").strip()[:U.TASK_COMM_LEN - 1]
        if pid == os.getpid():      # this process: Task() reads the host's values itself
            t = current_task() if tid == threading.get_native_id() and _current is not None \
                and _current.pid == tid else Task(pid=tid, tgid=pid, comm=comm)
        else:
            st = _stat(f"{base}/stat")
            if st is None or len(st) < 20:
                return None
            leader = proc_task(pid)
            t = Task(pid=tid, tgid=pid, uid=leader.uid, gid=leader.gid,
                     comm=_task_comm(comm, int(st[9])),
                     euid=leader.euid, egid=leader.egid, suid=leader.suid, sgid=leader.sgid,
                     flags=int(st[9]), prio=int(st[18]) + 100, parent=leader.parent,
                     leader=leader, kthread=leader.kthread, mm=leader.mm)
        _threads[key] = t
    return t


def all_tasks() -> list[Task]:
    """Every task, in pid order as the kernel's task iterator walks them (find_ge_pid):
    the list set_tasks() gave, else each thread of this machine."""
    if _task_list is not None:
        return sorted(_task_list, key=lambda t: t.pid)
    seen: list[Task] = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            tids = [int(x) for x in os.listdir(f"/proc/{d}/task") if x.isdigit()]
        except OSError:
            continue                 # gone meanwhile
        for tid in tids:
            t = _thread(int(d), tid)
            if t is not None:
                seen.append(t)
    alive = {(t.tgid, t.pid) for t in seen}
    for key in [k for k in _threads if k not in alive]:
        del _threads[key]
    return sorted(seen, key=lambda t: t.pid)


_current: Task | None = None


def current_task(m=None) -> Task:
    """The task a machine's programs run as: ``machine.task`` (its CPU's) if set, else the
    global one."""
    global _current
    t = m.task if m is not None else None
    if t is not None:
        return t
    if _current is None:
        _current = Task()
    return _current


def set_current(task: Task | None) -> None:
    """Make ``task`` the current task of every machine without its own (None: this thread)."""
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
    size &= 0xFFFFFFFF                  # u32 size_of_buf
    if size == 0:
        return 0
    c = current_task(m).comm.encode()[:U.TASK_COMM_LEN - 1]
    # strscpy_pad: truncated, NUL-terminated, the rest zeroed
    m.zero(buf, size)                   # checks the whole buffer before filling it
    m.write(buf, c[:size - 1])
    return 0


@implements(FuncId.get_current_task)
def get_current_task(m, *_):
    return current_task(m).addr


@implements(FuncId.get_current_task_btf)
def get_current_task_btf(m, *_):
    return current_task(m).addr


def _nsfs_dev() -> int:
    """The nsfs device as the kernel encodes a dev_t (MKDEV: major << 20 | minor)."""
    try:
        st = os.stat("/proc/self/ns/pid")
    except OSError:
        return 0
    return (os.major(st.st_dev) << 20) | os.minor(st.st_dev)


BPF_PIDNS_INFO_SIZE = 8          # struct bpf_pidns_info { u32 pid; u32 tgid; }


@implements(FuncId.get_ns_current_pid_tgid)
def get_ns_current_pid_tgid(m, dev, ino, nsdata, size, _):
    # every modelled task is in the initial pid namespace (init_ns()): its numbers there
    size &= 0xFFFFFFFF
    t = current_task(m)
    if size == BPF_PIDNS_INFO_SIZE and dev <= 0xFFFFFFFF and dev == _nsfs_dev() \
            and ino == _pidns_inum():
        m.write(nsdata, (t.pid & 0xFFFFFFFF).to_bytes(4, "little") +
                (t.tgid & 0xFFFFFFFF).to_bytes(4, "little"))
        return 0
    m.write(nsdata, bytes(size))
    return -errno.EINVAL & M64


_NSIG = 64


def _send_signal(m, sig: int, scope: str) -> int:
    t = current_task(m)
    sig &= 0xFFFFFFFF
    if t.kthread or t.flags & PF_KTHREAD or (t.tgid == 1 and not t.kthread):
        return -errno.EPERM & M64        # kernel threads and init are never signalled
    if sig > _NSIG:
        return -errno.EINVAL & M64
    if sig:                               # 0: only the permission check
        t.signals.append((sig, scope))
    return 0


@implements(FuncId.send_signal)
def send_signal(m, sig, *_):
    return _send_signal(m, sig, "process")


@implements(FuncId.send_signal_thread)
def send_signal_thread(m, sig, *_):
    return _send_signal(m, sig, "thread")


@implements(FuncId.task_pt_regs)
def task_pt_regs(m, task, *_):
    t = task_at(task)
    if t is None:
        return 0
    if getattr(t, "_pt_regs", None) is None:
        r = t._new("pt_regs")
        for name, v in (t.regs or {}).items():
            r.put(name, v)
        t._pt_regs = r
    return t._pt_regs.addr


@implements(FuncId.find_vma)
def find_vma(m, task, addr, callback, ctx, flags):
    if flags:
        return -errno.EINVAL & M64
    t = task_at(task) if task else None
    if t is None or t.kthread or t.memory is None:
        return -errno.ENOENT & M64
    mm = layouts().at("task_struct", "mm")
    mm_addr = int.from_bytes(t.memory.buf[mm[0]:mm[0] + 8], "little") if mm else 0
    for v in task_vmas(t):                   # find_vma(): the first that ends past addr
        if v.end > addr:
            if v.start <= addr:
                m.call_function(callback, task, v.laid_out(mm_addr), ctx)
                return 0
            break
    return -errno.ENOENT & M64


@implements(FuncId.get_current_cgroup_id)
def get_current_cgroup_id(m, *_):
    return current_task(m).cgroup_id
