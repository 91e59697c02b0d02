"""The bpf(2) client itself: struct layouts against the running kernel's BTF, errors,
verifier logs, ids and info, pins, BTF objects, stats and the map handles' API."""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys

import pytest

import ebee
from ebee.kernel import attrs
from ebee.kernel.info import Kind, fd_by_id, ids, map_info, prog_info
from ebee.kernel.map_handle import KernelMapHandle
from ebee.kernel.maps import KernelMap
from ebee.kernel.prog import KernelLoadError, KernelProgram
from ebee.maps.errors import MapError, MapKeyError
from ebee.uapi import MapType, ProgType
from kernel_helpers import bpffs_dir, released, run_unprivileged

RET7 = "r0 = 7\nexit"


# --- layouts ----------------------------------------------------------------------------------

def _members(btf, tid, base=0, prefix=""):
    """name -> bit offset of every member, anonymous members flattened."""
    from ebee.btf import Kind as K
    t = btf.resolve(tid)
    out = {}
    for m in t.members:
        off = base + m.bits_offset
        mt = btf.resolve(m.type_id)
        if not m.name and mt.kind in (K.STRUCT, K.UNION):
            out.update(_members(btf, mt.id, off, prefix))
            continue
        out[prefix + m.name] = off
        if mt.kind in (K.STRUCT, K.UNION):
            out.update(_members(btf, mt.id, off, prefix + m.name + "."))
    return out


def _ctypes_members(cls, base=0, prefix="", anon=("u",)):
    out = {}
    for f in cls._fields_:
        name, typ = f[0], f[1]
        desc = getattr(cls, name)
        off = base + desc.offset * 8
        if len(f) == 3:                       # bitfield: (bits << 16) | bit position
            off += desc.size & 0xFFFF
        if name.startswith("_"):
            continue
        if isinstance(typ, type) and issubclass(typ, (ctypes.Structure, ctypes.Union)):
            if name in anon:
                out.update(_ctypes_members(typ, off, prefix, anon))
                continue
            out[prefix + name] = off
            out.update(_ctypes_members(typ, off, prefix + name + ".", anon))
            continue
        out[prefix + name] = off
    return out


ATTR_PARTS = {   # our struct -> a member name that identifies its part of union bpf_attr
    attrs.MapCreateAttr: "map_type", attrs.MapElemAttr: "next_key", attrs.MapBatchAttr: "batch",
    attrs.ProgLoadAttr: "insn_cnt", attrs.ObjAttr: "pathname", attrs.ProgAttachAttr:
    "attach_bpf_fd", attrs.TestRunAttr: "test", attrs.GetIdAttr: "next_id",
    attrs.InfoAttr: "info", attrs.ProgQueryAttr: "query", attrs.RawTracepointAttr:
    "raw_tracepoint", attrs.BtfLoadAttr: "btf_log_buf", attrs.TaskFdQueryAttr: "task_fd_query",
    attrs.LinkCreateAttr: "link_create", attrs.LinkUpdateAttr: "link_update",
    attrs.LinkDetachAttr: "link_detach", attrs.EnableStatsAttr: "enable_stats",
    attrs.IterCreateAttr: "iter_create", attrs.ProgBindMapAttr: "prog_bind_map",
}
RENAMED = {"perf_event_cookie": "perf_event.bpf_cookie", "iter.iter_info": "iter_info",
           "iter.iter_len": "iter_info_len", "iter.iter_info_len": "iter_info_len",
           "iter": None, "target_fd": "target_fd", "count": "count"}


@pytest.fixture(scope="module")
def vmlinux():
    from ebee.btf import BTF
    try:
        return BTF.load_vmlinux()
    except Exception as e:
        pytest.skip(f"no kernel BTF: {e}")


def _compare(ours: dict, theirs: dict, what: str):
    checked = 0
    for name, off in ours.items():
        k = RENAMED.get(name, name)
        if k is None:
            continue
        assert k in theirs, f"{what}.{name}: no such member in the kernel's BTF"
        assert theirs[k] == off, f"{what}.{name}: bit offset {off}, kernel says {theirs[k]}"
        checked += 1
    return checked


@pytest.mark.parametrize("cls", list(ATTR_PARTS), ids=lambda c: c.__name__)
def test_bpf_attr_parts_match_kernel_btf(vmlinux, cls):
    from ebee.btf import Kind as K
    union = vmlinux.find("bpf_attr", K.UNION)
    key = ATTR_PARTS[cls]
    for m in union.members:
        mt = vmlinux.resolve(m.type_id)
        if m.name == key:
            theirs = _members(vmlinux, mt.id)
            break
        if not m.name and key in _members(vmlinux, mt.id):
            theirs = _members(vmlinux, mt.id)
            break
    else:
        pytest.fail(f"no part of union bpf_attr has {key!r}")
    assert _compare(_ctypes_members(cls), theirs, cls.__name__) == len(
        [n for n in _ctypes_members(cls) if RENAMED.get(n, n) is not None])
    assert ctypes.sizeof(cls) <= vmlinux.sizeof(union)


@pytest.mark.parametrize("cls,name", [
    (attrs.BpfProgInfo, "bpf_prog_info"), (attrs.BpfMapInfo, "bpf_map_info"),
    (attrs.BpfBtfInfo, "bpf_btf_info"), (attrs.BpfLinkInfo, "bpf_link_info"),
    (attrs.PerfEventAttr, "perf_event_attr"), (attrs.PerfEventMmapPage, "perf_event_mmap_page"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_info_and_perf_structs_match_kernel_btf(vmlinux, cls, name):
    from ebee.btf import Kind as K
    t = vmlinux.find(name, K.STRUCT)
    ours = _ctypes_members(cls)
    assert _compare(ours, _members(vmlinux, t.id), name) == len(ours)
    if cls is not attrs.PerfEventMmapPage:
        assert ctypes.sizeof(cls) == vmlinux.sizeof(t)


# --- errors and logs -------------------------------------------------------------------------

def test_load_error_carries_the_verifier_log(kernel):
    with pytest.raises(KernelLoadError) as ei:
        KernelProgram(ebee.assemble("exit"), ProgType.SOCKET_FILTER, name="bad")
    e = ei.value
    assert isinstance(e, OSError) and e.errno == errno.EACCES
    assert "R0 !read_ok" in e.log and "R0 !read_ok" in str(e)


@pytest.mark.parametrize("level", [1, 2, 4, 1 | 4])
def test_verifier_log_levels(kernel, level):
    with KernelProgram(ebee.assemble("r0 = 1\nif r0 > 0 goto +1\nr0 = 2\nexit"),
                       log_level=level, log_size=64) as p:   # grown on ENOSPC
        if level & 1:
            assert "processed" in p.log
        if level & 2:
            assert "R0_w=1" in p.log or "R0=1" in p.log
        if level == 4:
            assert p.log.startswith("verification time")
        assert len(p.log) > 64


def test_unprivileged_errors_name_the_capabilities(kernel):
    def attempt():
        try:
            KernelProgram(ebee.assemble("r0 = 0\nexit"))
        except OSError as e:
            return f"{e.errno} {e.strerror}"
        return "loaded"
    out = run_unprivileged(attempt)
    assert out.startswith(f"{errno.EPERM} ") and "needs CAP_BPF and CAP_PERFMON, or root" in out


# --- ids, info, pins, links -----------------------------------------------------------------

def test_ids_info_and_fd_by_id(kernel):
    with KernelMap(MapType.HASH, 4, 8, 16, name="ebee_ids") as m, \
            KernelProgram(ebee.assemble(f"r1 = map[fd:{m.fd}] ll\n" + RET7),
                          name="ebee_ids") as p:
        pi, mi = prog_info(p.fd), map_info(m.fd)
        assert pi.id in ids(Kind.PROG) and mi.id in ids(Kind.MAP)
        assert (pi.name, pi.type, pi.map_ids, pi.gpl_compatible) == \
            ("ebee_ids", ProgType.SOCKET_FILTER, [mi.id], True)
        assert (mi.name, mi.type, mi.key_size, mi.value_size, mi.max_entries) == \
            ("ebee_ids", MapType.HASH, 4, 8, 16)
        assert pi.xlated_prog_len == 8 * 4 and pi.memlock > 0
        with KernelProgram.from_id(pi.id) as again:
            assert again.tag == p.tag and again.run(bytes(64)).retval == 7
        fd = fd_by_id(Kind.MAP, mi.id)
        assert map_info(fd).id == mi.id
        os.close(fd)
        insns = p.xlated()
        assert insns[0].imm == mi.id          # the kernel shows maps by id
    with pytest.raises(OSError, match="no prog with id"):
        fd_by_id(Kind.PROG, 0x7FFFFFF0)


def test_pins_on_the_real_bpffs(kernel):
    with bpffs_dir() as d, KernelProgram(ebee.assemble(RET7), name="pinned") as p, \
            KernelMapHandle(KernelMap(MapType.ARRAY, 4, 4, 2)) as m:
        p.pin(d / "prog")
        m.pin(d / "map")
        m[1] = 99
        with KernelProgram.from_pinned(d / "prog") as q, \
                KernelMapHandle.from_pinned(d / "map") as n:
            assert q.id == p.id and q.run(bytes(64)).retval == 7
            assert n.id == m.id and n[1] == (99).to_bytes(4, "little")
        with pytest.raises(OSError, match="nothing pinned there"):
            KernelProgram.from_pinned(d / "nope")
        from ebee.kernel.fs import MountError, ensure_bpffs
        with pytest.raises(MountError, match="not on a bpf filesystem"):
            ensure_bpffs("/tmp")


def test_link_pin_survives_close_and_detach(kernel):
    from ebee.kernel.attach import raw_tracepoint
    from ebee.kernel.links import Link
    with bpffs_dir() as d, KernelProgram(ebee.assemble("r0 = 0\nexit"),
                                         ProgType.RAW_TRACEPOINT, name="lpin") as p:
        link = raw_tracepoint(p, "sys_enter")
        link.pin(d / "link")
        link_id = link.id
        link.close()                          # pinned: still attached
        with Link.from_pinned(d / "link") as again:
            assert again.id == link_id and again.info().prog_id == p.id
            again.detach()
            again.unpin()
        assert released(lambda: ids(Kind.LINK), link_id)     # freed from a workqueue


def test_enable_stats_counts_runs(kernel):
    from ebee.kernel.attach import socket_filter
    from ebee.kernel.info import enable_stats
    from ebee.uapi import StatsType
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    stats = enable_stats(StatsType.RUN_TIME)
    try:
        with KernelProgram(ebee.assemble("r0 = 0xffff\nexit"), name="stats") as p, \
                socket_filter(p, rx):
            for _ in range(5):
                tx.sendto(b"x", rx.getsockname())
                rx.recv(10)
            assert p.info().run_cnt == 5
    finally:
        os.close(stats)
        rx.close()
        tx.close()


def test_btf_load_and_map_with_btf(kernel):
    from ebee.btf.builder import BTFBuilder
    from ebee.kernel.btf import BTFLoadError, KernelBTF
    b = BTFBuilder()
    u32 = b.add_int("unsigned int", 4)
    u64 = b.add_int("long long unsigned int", 8)
    val = b.add_struct("pair", 16, [("a", u64, 0), ("b", u64, 64)])
    with KernelBTF(b.to_bytes()) as kb, \
            KernelMap(MapType.HASH, 4, 16, 8, btf_fd=kb.fd, btf_key_type_id=u32,
                      btf_value_type_id=val) as km:
        info = map_info(km.fd)
        assert (info.btf_id, info.btf_key_type_id, info.btf_value_type_id) == (kb.id, u32, val)
        parsed = kb.parse()
        assert parsed.find("pair").name == "pair"
        h = KernelMapHandle(KernelMap.from_fd(os.dup(km.fd)), btf=parsed, btf_key_type_id=u32,
                            btf_value_type_id=val)
        h[5] = struct.pack("QQ", 1, 2)
        assert h.format_items() == [(5, {"a": 1, "b": 2})]
        h.close()
    with pytest.raises(BTFLoadError) as ei:
        KernelBTF(b"\x9f\xeb\x01\x00" + bytes(20))
    assert ei.value.errno == errno.EINVAL and ei.value.log


def test_vmlinux_btf_by_id(kernel):
    from ebee.kernel.btf import KernelBTF, find_kernel_type
    with KernelBTF.from_id(1) as vm:
        info = vm.info()
        assert info.kernel_btf and info.name == "vmlinux"
        assert vm.data == open("/sys/kernel/btf/vmlinux", "rb").read()
    t = find_kernel_type("task_struct", "struct")
    assert t.module is None and t.type_id > 0
    with pytest.raises(OSError, match="not found in kernel BTF"):
        find_kernel_type("no_such_function_ebee")


# --- map handles: ebee.Map's API on kernel maps ---------------------------------------------

def test_map_handle_dict_api(kernel):
    with KernelMapHandle(KernelMap(MapType.HASH, 4, 8, 4)) as m:
        assert isinstance(m, ebee.Map) and len(m) == 0
        m[1] = 10
        m.update(2, 20)
        m.value_type = int
        assert m[1] == 10 and m.get(3, "none") == "none" and 2 in m and 3 not in m
        assert sorted(m.keys()) == [b"\x01\0\0\0", b"\x02\0\0\0"]
        m.key_type = int
        assert dict(m.items()) == {1: 10, 2: 20}
        with pytest.raises(MapKeyError) as ei:
            m[3]
        assert ei.value.errno == errno.ENOENT and isinstance(ei.value, KeyError)
        from ebee.uapi import BPF_NOEXIST
        with pytest.raises(MapError) as ei:
            m.update(1, 5, BPF_NOEXIST)
        assert ei.value.errno == errno.EEXIST
        m[3], m[4] = 3, 4
        with pytest.raises(MapError) as ei:
            m[5] = 5
        assert ei.value.errno == errno.E2BIG
        del m[4]
        assert m.lookup_and_delete(3) == 3 and len(m) == 2
        m.clear()
        assert len(m) == 0


def test_map_handle_batches_percpu_and_freeze(kernel):
    with KernelMapHandle(KernelMap(MapType.HASH, 4, 4, 64)) as m:
        assert m.update_batch(list(range(10)), [i * i for i in range(10)]) == 10
        b = m.lookup_batch(None, 64)
        assert b.done and sorted(int.from_bytes(v, "little") for v in b.values) == \
            [i * i for i in range(10)]
        assert m.delete_batch([0, 1, 2]) == 3 and len(m) == 7
    with KernelMapHandle(KernelMap(MapType.PERCPU_ARRAY, 4, 4, 1)) as pc:
        pc[0] = list(range(pc.ncpus))
        assert [int.from_bytes(v, "little") for v in pc[0]] == list(range(pc.ncpus))
    with KernelMapHandle(KernelMap(MapType.ARRAY, 4, 4, 1)) as a:
        a[0] = 1
        a.freeze()
        assert a.frozen and a.info().frozen
        with pytest.raises(MapError) as ei:
            a[0] = 2
        assert ei.value.errno == errno.EPERM


def test_mmapable_array(kernel):
    from ebee.uapi import BPF_F_MMAPABLE
    with KernelMapHandle(KernelMap(MapType.ARRAY, 4, 8, 4, BPF_F_MMAPABLE)) as m:
        with m.mmap() as view:
            view[8:16] = (42).to_bytes(8, "little")
        assert m[1] == (42).to_bytes(8, "little")


def test_missing_tracefs_and_bpffs_are_mounted_or_explained(kernel):
    """In a private mount namespace without tracefs and bpffs: with mounting forbidden the
    error says what to run; allowed, ebee mounts them (the host's mounts are untouched)."""
    import ctypes
    from ebee.kernel import fs
    from ebee.kernel.syscall import libc
    from ebee.uapi import CLONE_NEWNS, MNT_DETACH, MS_PRIVATE, MS_REC

    def in_child():
        c = libc()
        if c.unshare(CLONE_NEWNS) != 0 or \
                c.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            return f"setup failed: {os.strerror(ctypes.get_errno())}"
        for mnt, typ in fs.mounts():
            if typ in ("tracefs", "bpf"):
                c.umount2(mnt.encode(), MNT_DETACH)
        out = []
        for what, call in (("trace", lambda m: fs.tracefs(mount=m)),
                           ("bpf", lambda m: fs.ensure_bpffs("/sys/fs/bpf/x", mount=m))):
            try:
                call(False)
                out.append(f"{what}: no error")
            except fs.MountError as e:
                out.append(f"{what}: {e.strerror}")
            out.append(f"{what}: mounted {call(None)}")
        out.append("trace_pipe" if (fs.tracefs() / "trace_pipe").exists() else "no trace_pipe")
        return "\n".join(out)

    pid_r, pid_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            res = in_child()
        except BaseException as e:      # noqa: BLE001
            res = f"exception {e!r}"
        os.write(pid_w, res.encode())
        os._exit(0)
    os.close(pid_w)
    out = os.read(pid_r, 65536).decode()
    os.close(pid_r)
    os.waitpid(pid, 0)
    lines = out.splitlines()
    assert lines[0] == "trace: tracefs is not mounted; run 'mount -t tracefs tracefs " \
                       "/sys/kernel/tracing' (or allow ebee to, without EBEE_NO_MOUNT)", out
    assert lines[1] == "trace: mounted /sys/kernel/tracing"
    assert lines[2].startswith("bpf: /sys/fs/bpf/x: no bpf filesystem is mounted; run "
                               "'mount -t bpf bpf /sys/fs/bpf'")
    assert lines[3] == "bpf: mounted /sys/fs/bpf/x" and lines[4] == "trace_pipe"
    assert fs.fs_type("/sys/fs/bpf") == "bpf"          # ours are still there
