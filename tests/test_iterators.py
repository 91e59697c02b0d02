"""BPF iterators: SEC("iter/bpf_map") and SEC("iter/bpf_map_elem") programs (clang-built)
read in user space over ebee's maps (ebee.testrun.iter) and, for iter/bpf_map, through
the kernel's iterator link and fd (ebee.kernel.iter) over the same maps made in the
kernel: the same text.  bpf_seq_printf's formats and errnos are compared with the kernel
through the iterator's output."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import ebee
from ebee.helpers.task import Task, set_tasks
from ebee.kernel.info import map_info
from ebee.testrun import TestRunError
from ebee.testrun.iter import read_iter
from ebee.uapi import MapType as T

SRC = r'''
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16); __type(key, __u32);
         __type(value, __u32); } wanted SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);
         __type(value, __s64); } errs SEC(".maps");

SEC("iter/bpf_map")
int dump_maps(struct bpf_iter__bpf_map *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct bpf_map *map = ctx->map;
	__u32 id, *tag;
	if (!map) {
		BPF_SEQ_PRINTF(seq, "-- end\n");
		return 0;
	}
	id = map->id;
	tag = bpf_map_lookup_elem(&wanted, &id);
	if (!tag)
		return 0;
	BPF_SEQ_PRINTF(seq, "%u type=%d key=%u value=%u max=%u flags=%x name=%s\n", *tag,
		       map->map_type, map->key_size, map->value_size, map->max_entries,
		       map->map_flags, map->name);
	BPF_SEQ_PRINTF(seq, "[%-6u|%6x|%06lld|%c]\n", *tag * 1000, map->max_entries, -(long long)*tag,
		       'a' + *tag);
	bpf_seq_write(seq, "raw:", 4);
	bpf_seq_write(seq, &map->key_size, 4);
	bpf_seq_write(seq, "\n", 1);
	return 0;
}

SEC("iter/bpf_map")
int bad_formats(struct bpf_iter__bpf_map *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	__u64 args[13] = {};
	__s64 r = 0;
	__u32 zero = 0;
	if (ctx->map)
		return 0;
	/* too many arguments, an odd data length, invalid conversions (%k, %n, %#x) */
	r = r * 131 + bpf_seq_printf(seq, "%d", 2, args, 13 * 8);
	r = r * 131 + bpf_seq_printf(seq, "%d", 3, args, 7);
	r = r * 131 + bpf_seq_printf(seq, "%k", 3, args, 8);
	r = r * 131 + bpf_seq_printf(seq, "%n", 3, args, 8);
	r = r * 131 + bpf_seq_printf(seq, "%#x", 4, args, 8);
	r = r * 131 + bpf_seq_printf(seq, "ok\n", 4, args, 0);
	bpf_map_update_elem(&errs, &zero, &r, 0);
	return 0;
}

SEC("iter/bpf_map_elem")
int dump_elems(struct bpf_iter__bpf_map_elem *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	__u32 *key = ctx->key;
	__u64 *val = ctx->value;
	if (!key || !val) {
		BPF_SEQ_PRINTF(seq, "%llu elements of %s\n", ctx->meta->seq_num, ctx->map->name);
		return 0;
	}
	BPF_SEQ_PRINTF(seq, "%u: %llu\n", *key, *val);
	*val += 1;
	return 0;
}

SEC("iter/task")
int dump_tasks(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	if (!task) {
		BPF_SEQ_PRINTF(seq, "-- %llu tasks\n", ctx->meta->seq_num);
		return 0;
	}
	BPF_SEQ_PRINTF(seq, "%d %d %s ppid=%d\n", task->pid, task->tgid, task->comm,
		       task->real_parent->tgid);
	return 0;
}

/* targets ebee does not model in user space yet: verified, and read in the kernel */
SEC("iter/bpf_prog")
int dump_progs(struct bpf_iter__bpf_prog *ctx)
{
	struct bpf_prog *p = ctx->prog;
	if (p)
		BPF_SEQ_PRINTF(ctx->meta->seq, "%u %s\n", p->aux->id, p->aux->name);
	return 0;
}

SEC("iter/tcp")
int dump_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *sk = ctx->sk_common;
	if (sk)
		BPF_SEQ_PRINTF(ctx->meta->seq, "tcp %u %u\n", sk->skc_num, sk->skc_state);
	return 0;
}

SEC("iter/udp")
int dump_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *u = ctx->udp_sk;
	if (u)
		BPF_SEQ_PRINTF(ctx->meta->seq, "udp %u\n", u->inet.sk.__sk_common.skc_num);
	return 0;
}

SEC("iter/task_file")
int dump_files(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	if (task && ctx->file)
		BPF_SEQ_PRINTF(ctx->meta->seq, "%d %u\n", task->tgid, ctx->fd);
	return 0;
}

SEC("iter/task_vma")
int dump_vmas(struct bpf_iter__task_vma *ctx)
{
	struct task_struct *task = ctx->task;
	struct vm_area_struct *v = ctx->vma;
	if (task && v)
		BPF_SEQ_PRINTF(ctx->meta->seq, "%d %lx-%lx\n", task->tgid, v->vm_start, v->vm_end);
	return 0;
}

SEC("iter/ksym")
int dump_ksyms(struct bpf_iter__ksym *ctx)
{
	struct kallsym_iter *k = ctx->ksym;
	if (k && ctx->meta->seq_num < 3)
		BPF_SEQ_PRINTF(ctx->meta->seq, "%c %s\n", k->type, k->name);
	return 0;
}

/* ctx->task is NULL in the stop call: the kernel rejects a dereference without a check */
SEC("iter/task")
int task_unchecked(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%d\n", task->pid);
	return 0;
}
'''


# this kernel refuses iter/bpf_map_elem programs (EPERM with an empty log, as it does
# programs needing a trampoline), so only the iter/bpf_map programs go into it
KERNEL_PROGS = ["dump_maps", "bad_formats", "dump_tasks"]


def _clang(tmp: Path) -> Path:
    clang, bpftool = shutil.which("clang-19"), shutil.which("bpftool")
    if clang is None or bpftool is None or not Path("/usr/include/bpf/bpf_helpers.h").exists() \
            or not Path("/sys/kernel/btf/vmlinux").exists():
        pytest.skip("needs clang-19, bpftool, libbpf headers and the kernel's BTF")
    vmlinux_h = subprocess.run([bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux",
                                "format", "c"], capture_output=True, text=True, check=True)
    (tmp / "vmlinux.h").write_text(vmlinux_h.stdout)
    (tmp / "it.c").write_text(SRC)
    r = subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86",
                        "-I/usr/include/x86_64-linux-gnu", "-I", str(tmp), "-c",
                        str(tmp / "it.c"), "-o", str(tmp / "it.o")],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    return tmp / "it.o"


@pytest.fixture(scope="module")
def iter_obj(tmp_path_factory):
    return _clang(tmp_path_factory.mktemp("iter"))


SHAPES = [(T.HASH, 4, 8, 10, 0), (T.ARRAY, 4, 16, 3, 0), (T.PERCPU_HASH, 8, 4, 7, 1),
          (T.LRU_HASH, 4, 4, 5, 2)]     # BPF_F_NO_PREALLOC, BPF_F_NO_COMMON_LRU


def _maps(cls, wanted_put):
    made = []
    for n, (mt, ks, vs, me, fl) in enumerate(SHAPES):
        m = cls(mt, ks, vs, me, fl, name=f"h19b_m{n}")
        made.append(m)
        wanted_put(m.id if isinstance(m, ebee.Map) else map_info(m.fd).id, n + 1)
    return made


def test_iter_bpf_map_over_ebees_maps(iter_obj):
    obj = ebee.load(iter_obj)
    wanted = obj.maps["wanted"]
    made = _maps(ebee.Map, lambda mid, tag: wanted.__setitem__(mid, tag))
    res = read_iter(obj.programs["dump_maps"])
    lines = res.text.split(b"\n")
    assert lines[0] == b"1 type=1 key=4 value=8 max=10 flags=0 name=h19b_m0"
    assert lines[1] == b"[1000  |     a|-00001|b]"
    assert lines[2] == b"raw:\x04\x00\x00\x00"
    assert res.text.endswith(b"-- end\n") and res.text.count(b"name=h19b_m") == len(made)
    assert res.objects >= len(made) + 3         # every live map is shown, wanted or not


@pytest.mark.kernel
def test_iter_bpf_map_text_equals_the_kernels(kernel, iter_obj):
    from ebee.kernel import load_object
    from ebee.kernel.maps import KernelMap
    from ebee.kernel.iter import read_iter as kernel_read
    obj = ebee.load(iter_obj)
    wanted = obj.maps["wanted"]
    ours_maps = _maps(ebee.Map, lambda mid, tag: wanted.__setitem__(mid, tag))
    ours = read_iter(obj.programs["dump_maps"]).text
    with load_object(ebee.load(iter_obj), programs=KERNEL_PROGS) as ko:
        kw = ko.maps["wanted"]
        theirs_maps = _maps(KernelMap, lambda mid, tag: kw.update(mid.to_bytes(4, "little"),
                                                                  tag.to_bytes(4, "little")))
        try:
            theirs = kernel_read(ko.programs["dump_maps"])
        finally:
            for m in theirs_maps:
                m.close()
    assert ours == theirs
    assert ours.count(b"\n") == 3 * len(ours_maps) + 1


@pytest.mark.kernel
def test_seq_printf_errnos_match(kernel, iter_obj):
    from ebee.kernel import load_object
    from ebee.kernel.iter import read_iter as kernel_read
    obj = ebee.load(iter_obj)
    ours = read_iter(obj.programs["bad_formats"]).text
    mine = obj.maps["errs"][0]
    with load_object(ebee.load(iter_obj), programs=KERNEL_PROGS) as ko:
        theirs = kernel_read(ko.programs["bad_formats"])
        kernels = ko.maps["errs"].lookup(bytes(4))
    assert ours == theirs == b"ok\n"
    assert int.from_bytes(mine, "little") == int.from_bytes(kernels, "little") != 0


def test_iter_bpf_map_elem_over_an_array_and_a_hash(iter_obj):
    obj = ebee.load(iter_obj)
    prog = obj.programs["dump_elems"]
    arr = ebee.Map(T.ARRAY, 4, 8, 4, name="h19b_arr")
    for k in range(4):
        arr[k] = (k * 10).to_bytes(8, "little")
    res = read_iter(prog, map=arr)
    # the stop call's seq_num is the last element's (bpf_seq_read counts on finding a next)
    assert res.text == b"0: 0\n1: 10\n2: 20\n3: 30\n3 elements of h19b_arr\n"
    # the program's writes go to the elements themselves
    assert read_iter(prog, map=arr).text.startswith(b"0: 1\n1: 11\n")
    h = ebee.Map(T.HASH, 4, 8, 8, name="h19b_h")
    h[7] = (70).to_bytes(8, "little")
    h[3] = (30).to_bytes(8, "little")
    text = read_iter(prog, map=h).text
    assert sorted(text.splitlines()[:2]) == [b"3: 30", b"7: 70"]
    assert text.endswith(b"1 elements of h19b_h\n")
    assert int.from_bytes(h[7], "little") == 71


def test_iterator_misuse_is_a_clear_error(iter_obj):
    obj = ebee.load(iter_obj)
    with pytest.raises(TestRunError, match="needs the map"):
        read_iter(obj.programs["dump_elems"])
    with pytest.raises(TestRunError, match="takes no map"):
        read_iter(obj.programs["dump_maps"], map=obj.maps["wanted"])


def test_iter_task_over_a_modelled_task_list(iter_obj):
    obj = ebee.load(iter_obj)
    tasks = [Task(pid=42, tgid=40, comm="nginx"), Task(pid=40, tgid=40, comm="nginx"),
             Task(pid=7, tgid=7, comm="sshd")]
    set_tasks(tasks)
    try:
        res = read_iter(obj.programs["dump_tasks"])
    finally:
        set_tasks(None)
    # pid order, threads beside processes; parents default to init; the stop call's
    # seq_num is the last task's
    assert res.text == (b"7 7 sshd ppid=1\n40 40 nginx ppid=1\n42 40 nginx ppid=1\n"
                        b"-- 2 tasks\n")
    assert res.objects == 3


def _rows(text: bytes) -> dict[int, bytes]:
    return {int(ln.split()[0]): ln for ln in text.splitlines() if not ln.startswith(b"--")}


@pytest.mark.kernel
def test_iter_task_rows_match_the_kernels(kernel, iter_obj):
    from ebee.kernel import load_object
    from ebee.kernel.iter import read_iter as kernel_read
    obj = ebee.load(iter_obj)
    ours = read_iter(obj.programs["dump_tasks"]).text
    with load_object(ebee.load(iter_obj), programs=["dump_tasks"]) as ko:
        theirs = kernel_read(ko.programs["dump_tasks"])
    for text in (ours, theirs):
        last = text.splitlines()[-1]
        assert last.startswith(b"-- ") and last.endswith(b" tasks")
        assert int(last.split()[1]) + 1 == len(_rows(text)) == text.count(b"\n") - 1
    mine, kern = _rows(ours), _rows(theirs)
    me = os.getpid()
    # this host's kernel hides pid 1 (its supervisor) from the iterator, as it does
    # /proc/1/ns from root; where it shows it, the rows agree
    if 1 in kern:
        assert mine[1] == kern[1] and kern[1].endswith(b"ppid=0")
    assert mine[2] == kern[2] == b"2 2 kthreadd ppid=0"
    assert mine[me] == kern[me]
    assert kern[me].endswith(b"ppid=%d" % os.getppid())
    assert list(kern) == sorted(kern) and list(mine) == sorted(mine)     # pid order
    # tasks come and go between the two walks; those in both show the same row
    both = set(mine) & set(kern)
    same = sum(mine[p] == kern[p] for p in both)
    assert len(both) >= 10 and same >= 0.9 * len(both), \
        [(mine[p], kern[p]) for p in both if mine[p] != kern[p]][:5]


@pytest.mark.kernel
def test_iter_task_null_deref_is_rejected_as_the_kernel_does(kernel, iter_obj):
    from ebee.kernel import KernelLoadError, load_object
    ours = ebee.load(iter_obj).programs["task_unchecked"].verify()
    assert not ours.accepted and ours.error == "R2 invalid mem access 'trusted_ptr_or_null_'"
    with pytest.raises(KernelLoadError) as e:
        load_object(ebee.load(iter_obj), programs=["task_unchecked"]).close()
    assert ours.error in str(e.value) and e.value.errno == ours.errno
    assert ebee.load(iter_obj).programs["dump_tasks"].verify().accepted


@pytest.mark.kernel
def test_iter_task_of_one_thread_and_one_process_equals_the_kernels(kernel, iter_obj):
    from ebee.kernel import load_object
    from ebee.kernel.iter import read_iter as kernel_read
    prog = ebee.load(iter_obj).programs["dump_tasks"]
    me = os.getpid()
    with load_object(ebee.load(iter_obj), programs=["dump_tasks"]) as ko:
        kprog = ko.programs["dump_tasks"]
        for kw in ({"tid": me}, {"pid": me}, {"tid": 2}, {"tid": 0x3FFFFFFF}):
            ours = read_iter(prog, **kw).text
            theirs = kernel_read(kprog, **kw)
            assert ours == theirs, kw
    assert read_iter(prog, tid=me).text.startswith(b"%d %d " % (me, me))
    with pytest.raises(TestRunError, match="not both"):
        read_iter(prog, tid=me, pid=me)


OTHER_TARGETS = ["dump_progs", "dump_tcp", "dump_udp", "dump_files", "dump_vmas", "dump_ksyms"]


@pytest.mark.kernel
def test_other_targets_verify_as_in_the_kernel_and_read_there(kernel, iter_obj):
    import socket
    from ebee.kernel import load_object
    from ebee.kernel.iter import read_iter as kernel_read
    obj = ebee.load(iter_obj)
    for name in OTHER_TARGETS:
        assert obj.programs[name].verify().accepted, name
        # not modelled in user space: a clear refusal naming what is
        with pytest.raises(TestRunError, match="not modelled by ebee"):
            read_iter(obj.programs[name])
    tcp, udp = socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        tport, uport = tcp.getsockname()[1], udp.getsockname()[1]
        with load_object(ebee.load(iter_obj), programs=OTHER_TARGETS) as ko:   # all load
            out = {n: kernel_read(ko.programs[n]) for n in OTHER_TARGETS}
    finally:
        tcp.close()
        udp.close()
    me = os.getpid()
    assert b"tcp %d 10\n" % tport in out["dump_tcp"]          # TCP_LISTEN
    assert b"udp %d\n" % uport in out["dump_udp"]
    assert b" dump_progs\n" in out["dump_progs"]
    assert b"%d 0\n" % me in out["dump_files"] and b"%d 1\n" % me in out["dump_files"]
    assert any(ln.startswith(b"%d " % me) for ln in out["dump_vmas"].splitlines())
    assert len(out["dump_ksyms"].splitlines()) == 3
