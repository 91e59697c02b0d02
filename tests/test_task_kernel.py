"""The synthetic current task against the kernel's: a CO-RE tracing program reads it in both.

The program walks ``current``: its group leader's and real parent's tgid, the
grandparent, ``mm`` and the bounds in it, ``cred``, ``flags``, ``prio``, the pid
namespace through ``thread_pid``/``nsproxy``.  It runs in ebee as this thread
and in the kernel -- test-run from this thread, and attached to the
``sys_enter`` raw tracepoint and triggered by a syscall of this thread -- and
every value must agree.  A task made in Python (``ebee.helpers.task.Task``, per
CPU with ``Cpu.task``) is read back the same way.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

import ebee
from ebee.helpers.task import PF_KTHREAD, Task, set_current

SRC = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define __ca __attribute__((preserve_access_index))
typedef struct { __u32 val; } kuid_t;
typedef struct { __u32 val; } kgid_t;
struct ns_common { unsigned int inum; } __ca;
struct pid_namespace { unsigned int level; struct ns_common ns; } __ca;
struct upid { int nr; struct pid_namespace *ns; } __ca;
struct pid { unsigned int level; struct upid numbers[1]; } __ca;
struct nsproxy { struct pid_namespace *pid_ns_for_children; } __ca;
struct cred { kuid_t uid; kgid_t gid; kuid_t euid; kgid_t egid; } __ca;
struct mm_struct { unsigned long start_stack, arg_start, env_end; } __ca;
struct task_struct {
    int pid, tgid, prio, static_prio;
    unsigned int flags;
    char comm[16];
    struct task_struct *group_leader, *real_parent, *parent;
    struct mm_struct *mm, *active_mm;
    const struct cred *cred, *real_cred;
    struct pid *thread_pid;
    struct nsproxy *nsproxy;
} __ca;

struct out {
    __s32 pid, tgid, leader_pid, leader_tgid, parent_tgid, grandparent_tgid, prio, static_prio;
    __u32 flags, uid, gid, euid, pid_level, pid_nr, ns_level, ns_inum, children_ns_same;
    __u32 has_mm, active_mm_same, cred_same, parent_same, hit;
    __u64 start_stack, arg_start, env_end;
    char comm[16], parent_comm[16], leader_comm[16];
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct out);
} results SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} want SEC(".maps");

SEC("raw_tp/sys_enter")
int read_task(void *ctx)
{
    __u32 zero = 0, *tid = bpf_map_lookup_elem(&want, &zero);
    struct out *o = bpf_map_lookup_elem(&results, &zero);
    if (!tid || !o)
        return 0;
    if (*tid && (__u32)bpf_get_current_pid_tgid() != *tid)
        return 0;
    struct task_struct *t = (struct task_struct *)bpf_get_current_task();
    o->pid = BPF_CORE_READ(t, pid);
    o->tgid = BPF_CORE_READ(t, tgid);
    o->leader_pid = BPF_CORE_READ(t, group_leader, pid);
    o->leader_tgid = BPF_CORE_READ(t, group_leader, tgid);
    o->parent_tgid = BPF_CORE_READ(t, real_parent, tgid);
    o->grandparent_tgid = BPF_CORE_READ(t, real_parent, real_parent, tgid);
    o->parent_same = BPF_CORE_READ(t, real_parent) == BPF_CORE_READ(t, parent);
    o->prio = BPF_CORE_READ(t, prio);
    o->static_prio = BPF_CORE_READ(t, static_prio);
    o->flags = BPF_CORE_READ(t, flags);
    o->uid = BPF_CORE_READ(t, cred, uid.val);
    o->gid = BPF_CORE_READ(t, cred, gid.val);
    o->euid = BPF_CORE_READ(t, cred, euid.val);
    o->cred_same = BPF_CORE_READ(t, cred) == BPF_CORE_READ(t, real_cred);
    o->has_mm = BPF_CORE_READ(t, mm) != 0;
    o->active_mm_same = BPF_CORE_READ(t, mm) == BPF_CORE_READ(t, active_mm);
    o->start_stack = BPF_CORE_READ(t, mm, start_stack);
    o->arg_start = BPF_CORE_READ(t, mm, arg_start);
    o->env_end = BPF_CORE_READ(t, mm, env_end);
    o->pid_level = BPF_CORE_READ(t, thread_pid, level);
    o->pid_nr = BPF_CORE_READ(t, thread_pid, numbers[0].nr);
    o->ns_level = BPF_CORE_READ(t, thread_pid, numbers[0].ns, level);
    o->ns_inum = BPF_CORE_READ(t, thread_pid, numbers[0].ns, ns.inum);
    o->children_ns_same = BPF_CORE_READ(t, nsproxy, pid_ns_for_children) ==
                          BPF_CORE_READ(t, thread_pid, numbers[0].ns);
    BPF_CORE_READ_STR_INTO(&o->comm, t, comm);
    BPF_CORE_READ_STR_INTO(&o->parent_comm, t, real_parent, comm);
    BPF_CORE_READ_STR_INTO(&o->leader_comm, t, group_leader, comm);
    o->hit++;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

FIELDS = ("pid tgid leader_pid leader_tgid parent_tgid grandparent_tgid prio static_prio flags "
          "uid gid euid pid_level pid_nr ns_level ns_inum children_ns_same has_mm "
          "active_mm_same cred_same parent_same hit").split()


class Out(ctypes.Structure):
    _fields_ = ([(n, ctypes.c_int32) for n in FIELDS[:8]] +
                [(n, ctypes.c_uint32) for n in FIELDS[8:]] +
                [("start_stack", ctypes.c_uint64), ("arg_start", ctypes.c_uint64),
                 ("env_end", ctypes.c_uint64), ("comm", ctypes.c_char * 16),
                 ("parent_comm", ctypes.c_char * 16), ("leader_comm", ctypes.c_char * 16)])


def _as_dict(raw: bytes) -> dict:
    o = Out.from_buffer_copy(raw)
    return {n: getattr(o, n) for n, _ in Out._fields_ if n != "hit"}


@pytest.fixture(scope="module")
def task_obj(tmp_path_factory):
    clang = shutil.which("clang-19")
    if clang is None or not Path("/usr/include/bpf/bpf_core_read.h").exists():
        pytest.skip("needs clang-19 and libbpf headers")
    try:
        ebee.btf.BTF.load_vmlinux()
    except OSError as e:
        pytest.skip(f"no kernel BTF for CO-RE: {e}")
    d = tmp_path_factory.mktemp("task")
    (d / "t.c").write_text(SRC)
    r = subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
                        "-c", str(d / "t.c"), "-o", str(d / "t.o")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return d / "t.o"


ZERO = bytes(4)


def _ebee_read(obj, task: Task | None = None) -> dict:
    prog = obj.programs["read_task"]
    if task is not None:
        set_current(task)
    try:
        prog.run()
    finally:
        set_current(None)
    return _as_dict(obj.maps["results"].lookup(ZERO))


@pytest.mark.kernel
def test_current_task_matches_the_kernels_test_run(kernel, task_obj):
    obj = ebee.load(task_obj)
    with obj.load_kernel() as k:
        k.programs["read_task"].run()
        theirs = _as_dict(k.maps["results"].lookup(ZERO))
    # made after the kernel's run: task->flags (PF_SUPERPRIV once root used its privileges)
    # are read from /proc when the Task is made
    mine = _ebee_read(obj, Task())
    assert theirs["pid"] == threading.get_native_id() and theirs["has_mm"]
    assert mine == theirs


@pytest.mark.kernel
def test_current_task_matches_the_kernel_at_a_raw_tracepoint(kernel, task_obj):
    from ebee.kernel.attach import raw_tracepoint
    obj = ebee.load(task_obj)
    tid = threading.get_native_id()
    obj.maps["want"].update(ZERO, tid.to_bytes(4, "little"))
    with obj.load_kernel() as k:
        k.maps["want"].update(ZERO, tid.to_bytes(4, "little"))
        link = raw_tracepoint(k.programs["read_task"], "sys_enter")
        try:
            os.getppid()                      # a syscall of this thread fires sys_enter
        finally:
            link.detach()
        theirs = _as_dict(k.maps["results"].lookup(ZERO))
    mine = _ebee_read(obj, Task())
    assert theirs["pid"] == tid
    assert mine == theirs


def test_tasks_made_in_python(task_obj):
    obj = ebee.load(task_obj)
    worker = Task(pid=77, tgid=70, uid=1000, gid=1000, comm="nginx", euid=0)
    got = _ebee_read(obj, worker)
    assert (got["pid"], got["tgid"], got["leader_pid"], got["leader_tgid"]) == (77, 70, 70, 70)
    assert got["leader_comm"] == b"nginx" and got["parent_tgid"] == 1
    assert (got["uid"], got["gid"], got["euid"]) == (1000, 1000, 0)
    assert got["has_mm"] and got["active_mm_same"] and got["cred_same"] and got["parent_same"]
    assert got["pid_nr"] == 77 and got["pid_level"] == 0 and got["children_ns_same"]
    assert got["grandparent_tgid"] == 0          # init's parent: the idle task
    kt = _ebee_read(obj, Task(pid=3, tgid=3, comm="kworker/0:0", kthread=True))
    assert not kt["has_mm"] and kt["flags"] & PF_KTHREAD
    # per CPU: the machine's own task wins over the global one
    from ebee.engines import Machine
    m = Machine()
    m.task = Task(pid=5, tgid=5, comm="per-cpu")
    assert m.task.comm == "per-cpu"
