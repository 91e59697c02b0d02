"""Helpers and kfuncs in ebee: behaviour the kernel differential tests cannot reach."""
from __future__ import annotations

import errno
import struct

import pytest

import ebee
from ebee import maps
from ebee.runtime import trace_pipe as trace
from ebee.errors import MemoryFault, VMError
from ebee.helpers import REGISTRY
from ebee.helpers.calls import VirtualClock, pending_timers
from ebee.helpers.kfuncs import collection, impl_of, live_objects
from ebee.helpers.task import Task
from ebee.maps import Map
from ebee.protos import HELPERS, KFUNCS, Arg, Flag, Ret, kfunc_id
from ebee.uapi import BPF_F_RDONLY_PROG, BPF_F_NO_PREALLOC, FuncId, KF_ACQUIRE, KF_RELEASE, \
    KF_RET_NULL, MapType as T
from ebee.engines import Machine


def run(src: str, machine: Machine | None = None, r1: int = 0) -> int:
    insns = ebee.assemble(src)
    if machine is not None:
        return machine.run(insns, r1).retval
    with Machine() as m:
        return m.run(insns, r1).retval


def test_registry_prototypes_are_complete():
    h = HELPERS[FuncId.map_lookup_elem]
    assert h.name == "bpf_map_lookup_elem" and h.proto == "bpf_map_lookup_elem_proto"
    assert h.ret is Ret.PTR_TO_MAP_VALUE and h.ret_flags == Flag.PTR_MAYBE_NULL
    assert [a.type for a in h.args] == [Arg.CONST_MAP_PTR, Arg.PTR_TO_MAP_KEY]
    assert HELPERS[FuncId.trace_printk].gpl_only
    needed = ["map_lookup_elem", "map_update_elem", "map_delete_elem", "map_push_elem",
              "map_pop_elem", "map_peek_elem", "map_lookup_percpu_elem", "ktime_get_ns",
              "ktime_get_boot_ns", "ktime_get_coarse_ns", "ktime_get_tai_ns", "jiffies64",
              "get_prandom_u32", "get_smp_processor_id", "get_numa_node_id", "trace_printk",
              "trace_vprintk", "snprintf", "get_current_pid_tgid", "get_current_uid_gid",
              "get_current_comm", "get_current_task", "tail_call", "perf_event_output",
              "ringbuf_output", "ringbuf_reserve", "ringbuf_submit", "ringbuf_discard",
              "ringbuf_query", "probe_read", "probe_read_kernel", "probe_read_user",
              "probe_read_kernel_str", "probe_read_user_str", "loop", "for_each_map_elem",
              "spin_lock", "spin_unlock", "csum_diff", "strncmp", "strtol", "strtoul",
              "get_func_ip", "timer_init", "timer_set_callback", "timer_start", "timer_cancel",
              "kptr_xchg", "ringbuf_reserve_dynptr", "ringbuf_submit_dynptr",
              "ringbuf_discard_dynptr", "dynptr_read", "dynptr_write", "dynptr_data"]
    for name in needed:
        assert FuncId[name] in REGISTRY, name
    k = KFUNCS["bpf_obj_new_impl"]
    assert k.flags == KF_ACQUIRE | KF_RET_NULL and KFUNCS["bpf_obj_drop_impl"].flags == KF_RELEASE


def test_every_implementation_has_a_prototype():
    """Implementations bind to prototypes by id; none may exist without one."""
    assert set(REGISTRY) <= set(HELPERS)
    assert all(h.proto is HELPERS[fid] for fid, h in REGISTRY.items())
    # the prototypes are every kfunc of the emulated kernel; ebee implements the graph ones
    graph = ("bpf_obj_new_impl", "bpf_obj_drop_impl", "bpf_refcount_acquire_impl",
             "bpf_list_push_front_impl", "bpf_list_push_back_impl", "bpf_list_pop_front",
             "bpf_list_pop_back", "bpf_rbtree_add_impl", "bpf_rbtree_first", "bpf_rbtree_remove")
    assert all(impl_of(KFUNCS[name].id) is not None for name in graph)


def test_a_helper_with_only_a_prototype_fails_when_called():
    src = """
        r1 = 0
        r2 = 0
        call bpf_sys_close
        exit
    """
    assert FuncId.sys_close in HELPERS
    with pytest.raises(VMError, match=r"helper bpf_sys_close#168 is not implemented by ebee"):
        run(src)


def test_lookup_returns_a_pointer_into_map_memory():
    h = Map(T.HASH, 4, 8, 4, key_type=int, value_type=int)
    h[3] = 10
    src = f"""
        r1 = 3
        *(u32 *)(r10 - 4) = r1
        r1 = map[id:{h.id}] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = 32
        lock *(u64 *)(r0 + 0) += r1
        r0 = *(u64 *)(r0 + 0)
    out:
        exit
    """
    assert run(src) == 42 and h[3] == 42
    h.key_type = None
    addr = h.prog_lookup(struct.pack("<I", 3), 0)
    assert addr == h.value_region.start + h._find(struct.pack("<I", 3), h._hash(struct.pack("<I", 3)))[0] * 8


def test_rdonly_prog_maps_fault_on_program_writes():
    a = Map(T.ARRAY, 4, 8, 1, BPF_F_RDONLY_PROG)
    with pytest.raises(MemoryFault):
        run(f"r1 = map[id:{a.id}][0]+0 ll\nr2 = 1\n*(u64 *)(r1 + 0) = r2\nexit")
    with pytest.raises(VMError, match="BPF_F_RDONLY_PROG"):
        run(f"""r1 = 0
        *(u32 *)(r10 - 4) = r1
        *(u64 *)(r10 - 16) = r1
        r1 = map[id:{a.id}] ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 0
        call bpf_map_update_elem
        exit""")


def test_percpu_lookup_uses_the_machine_cpu():
    old = maps.num_cpus()
    maps.set_num_cpus(4)
    try:
        a = Map(T.PERCPU_ARRAY, 4, 8, 1, value_type=int)
        a[0] = [10, 11, 12, 13]
        src = f"""
            r1 = 0
            *(u32 *)(r10 - 4) = r1
            r1 = map[id:{a.id}] ll
            r2 = r10
            r2 += -4
            call bpf_map_lookup_elem
            r6 = *(u64 *)(r0 + 0)
            call bpf_get_smp_processor_id
            r6 <<= 8
            r6 += r0
            r1 = map[id:{a.id}] ll
            r2 = r10
            r2 += -4
            r3 = 3
            call bpf_map_lookup_percpu_elem
            r0 = *(u64 *)(r0 + 0)
            r6 <<= 8
            r0 += r6
            exit
        """
        with Machine(cpu=2) as m:
            assert run(src, m) == (12 << 16) | (2 << 8) | 13
    finally:
        maps.set_num_cpus(old)


def test_trace_printk_writes_trace_pipe_lines():
    fmt = b"x=%d s=%s\0"
    hi = int.from_bytes(b"hi".ljust(8, b"\0"), "little")
    f0 = int.from_bytes(fmt[:8], "little")
    f1 = int.from_bytes(fmt[8:].ljust(8, b"\0"), "little")
    src = f"""
        r1 = {hi}
        *(u64 *)(r10 - 32) = r1
        r1 = {f0} ll
        *(u64 *)(r10 - 16) = r1
        r1 = {f1} ll
        *(u64 *)(r10 - 8) = r1
        r1 = r10
        r1 += -16
        r2 = {len(fmt)}
        r3 = -5
        r4 = r10
        r4 += -32
        call bpf_trace_printk
        exit
    """
    ebee.helpers.task.set_current(Task(pid=77, tgid=70, comm="nginx"))
    try:
        with trace.capture() as lines, Machine(cpu=1) as m:
            n = run(src, m)
    finally:
        ebee.helpers.task.set_current(None)
    assert n == len("x=-5 s=hi")
    line = str(lines[0])
    assert line.endswith("bpf_trace_printk: x=-5 s=hi") and "nginx-77" in line and "[001]" in line
    assert lines[0].pid == 77 and lines[0].message == "x=-5 s=hi"


def test_printk_format_rules():
    from ebee.helpers.printk import FormatError, format_bprintf
    with Machine() as m:
        assert format_bprintf(m, b"%5d|%-4u|%08x|%lld", [7, 3, 0xAB, -1], 12) == \
            "    7|3   |000000ab|-1"
        for bad in (b"%f", b"%.2d", b"%#x", b"%d %d %d %d", b"\x01"):
            with pytest.raises(FormatError):
                format_bprintf(m, bad, [0, 0, 0, 0], 3)


def test_timers_fire_when_the_virtual_clock_advances():
    a = Map(T.ARRAY, 4, 32, 1)         # value: u64 count, then struct bpf_timer at +16
    clock = VirtualClock()
    src = f"""
        r1 = map[id:{a.id}][0]+16 ll
        r2 = map[id:{a.id}] ll
        r3 = 1
        call bpf_timer_init
        r6 = r0
        r1 = map[id:{a.id}][0]+16 ll
        r2 = subprog[cb] ll
        call bpf_timer_set_callback
        r1 = map[id:{a.id}][0]+16 ll
        r2 = 1000
        r3 = 0
        call bpf_timer_start
        r0 += r6
        exit
    cb:
        r1 = *(u64 *)(r3 + 0)
        r1 += 1
        *(u64 *)(r3 + 0) = r1
        if r1 > 2 goto done
        r1 = r3
        r1 += 16
        r2 = 1000
        r3 = 0
        call bpf_timer_start
    done:
        r0 = 0
        exit
    """
    with Machine(clock=clock) as m:
        assert run(src, m) == 0
        assert int.from_bytes(a[0][:8], "little") == 0
        assert clock.advance(999) == 0
        assert clock.advance(1) == 1 and int.from_bytes(a[0][:8], "little") == 1
        assert clock.advance(10_000) == 2 and int.from_bytes(a[0][:8], "little") == 3
        assert not [t for t in pending_timers() if t.map is a]
        # a second init of the same timer is EBUSY
        again = f"""
            r1 = map[id:{a.id}][0]+16 ll
            r2 = map[id:{a.id}] ll
            r3 = 1
            call bpf_timer_init
            exit"""
        assert run(again, m) == -errno.EBUSY & (2 ** 64 - 1)


def test_spin_lock_and_kptr_xchg():
    a = Map(T.ARRAY, 4, 16, 1)
    src = f"""
        r1 = map[id:{a.id}][0]+0 ll
        call bpf_spin_lock
        r1 = map[id:{a.id}][0]+0 ll
        r0 = *(u32 *)(r1 + 0)
        r6 = r0
        call bpf_spin_unlock
        r1 = map[id:{a.id}][0]+8 ll
        r2 = 0x1234
        call bpf_kptr_xchg
        r1 = map[id:{a.id}][0]+8 ll
        r2 = 0
        call bpf_kptr_xchg
        r6 <<= 16
        r0 += r6
        exit
    """
    assert run(src) == (1 << 16) | 0x1234


def test_probe_read_faults_are_efault_with_zeroed_destination():
    src = """
        r1 = -1
        *(u64 *)(r10 - 8) = r1
        r1 = r10
        r1 += -8
        r2 = 8
        r3 = 0x10
        call bpf_probe_read_kernel
        r1 = *(u64 *)(r10 - 8)
        r0 += r1
        exit
    """
    # a user address: x86-64's copy_from_kernel_nofault_allowed() refuses it (-ERANGE, as
    # tests/test_safety_errno.py checks against the kernel); the _user variant faults
    assert run(src) == -errno.ERANGE & (2 ** 64 - 1)
    assert run(src.replace("probe_read_kernel", "probe_read_user")) == -errno.EFAULT & (2 ** 64 - 1)
    t = Task(pid=5, tgid=5, comm="worker")
    src2 = """
        call bpf_get_current_task
        r3 = r0
        r1 = r10
        r1 += -16
        r2 = 16
        call bpf_probe_read_kernel_str
        exit
    """
    with Machine() as m:
        m.task = t
        from ebee.helpers.task import _task_layout
        _, offs = _task_layout()
        assert run(src2.replace("r3 = r0", f"r3 = r0\nr3 += {offs['comm']}"), m) == len("worker") + 1


def test_ringbuf_reserve_submit_from_a_program_and_dynptrs():
    rb = Map(T.RINGBUF, 0, 0, 4096)
    src = f"""
        r1 = map[id:{rb.id}] ll
        r2 = 8
        r3 = 0
        call bpf_ringbuf_reserve
        if r0 == 0 goto out
        r1 = 0x41424344
        *(u64 *)(r0 + 0) = r1
        r1 = r0
        r2 = 0
        call bpf_ringbuf_submit
        r1 = map[id:{rb.id}] ll
        r2 = 4
        r3 = 0
        r4 = r10
        r4 += -16
        call bpf_ringbuf_reserve_dynptr
        r6 = r0
        r1 = 0x58595a5b
        *(u32 *)(r10 - 24) = r1
        r1 = r10
        r1 += -16
        r2 = 0
        r3 = r10
        r3 += -24
        r4 = 4
        r5 = 0
        call bpf_dynptr_write
        r6 += r0
        r1 = r10
        r1 += -16
        r2 = 2
        r3 = 4
        call bpf_dynptr_data
        r7 = r0
        r1 = r10
        r1 += -16
        r2 = 0
        call bpf_ringbuf_submit_dynptr
        r0 = r6
        if r7 == 0 goto out
        r0 = 100
    out:
        exit
    """
    with rb.reader() as rd:
        assert run(src) == 0          # dynptr_data with off 2 + len 4 > size 4: NULL
        recs = [r.data for r in rd.drain()]
    assert recs == [struct.pack("<Q", 0x41424344), struct.pack("<I", 0x58595a5b)]


def test_perf_event_output_from_a_program():
    pe = Map(T.PERF_EVENT_ARRAY, 4, 4, 2)
    rd = pe.reader()
    src = f"""
        r1 = 0x6f6c6c6568
        *(u64 *)(r10 - 8) = r1
        r1 = 0
        r2 = map[id:{pe.id}] ll
        r3 = 0xffffffff ll
        r4 = r10
        r4 += -8
        r5 = 5
        call bpf_perf_event_output
        exit
    """
    with Machine(cpu=1) as m:
        assert run(src, m) == 0
    recs = rd.drain()
    assert [(r.data, r.cpu) for r in recs] == [(b"hello", 1)]


def test_get_stackid_uses_the_task_stacks():
    st = Map(T.STACK_TRACE, 4, 8 * 8, 16)
    with Machine() as m:
        m.task = Task(kernel_stack=[0xffffffff81000010, 0xffffffff81000020])
        sid = run(f"r2 = map[id:{st.id}] ll\nr3 = 0\ncall bpf_get_stackid\nexit", m)
        assert sid < 16 and st[sid][:16] == struct.pack("<QQ", 0xffffffff81000010, 0xffffffff81000020)
        skip1 = run(f"r2 = map[id:{st.id}] ll\nr3 = 1\ncall bpf_get_stackid\nexit", m)
        assert st[skip1][:8] == struct.pack("<Q", 0xffffffff81000020)


def test_tail_call_replaces_the_frame_and_falls_through():
    callee = ebee.assemble("r0 = 7\nexit")
    pa = Map(T.PROG_ARRAY, 4, 4, 4)
    pa[1] = callee
    src = f"""
        r6 = r1
        r2 = map[id:{pa.id}] ll
        r3 = 0
        call bpf_tail_call
        r1 = r6
        r2 = map[id:{pa.id}] ll
        r3 = 9
        call bpf_tail_call
        r1 = r6
        r2 = map[id:{pa.id}] ll
        r3 = 1
        call bpf_tail_call
        r0 = 1
        exit
    """
    assert run(src) == 7
    with pytest.raises(maps.MapError) as e:
        pa[2] = "not a program"
    assert e.value.errno == errno.EINVAL


def test_kfuncs_obj_new_lists_and_rbtree_with_hand_built_btf():
    from ebee.btf.builder import BTFBuilder
    b = BTFBuilder()
    u64 = b.add_int("u64", 8)
    node_t = b.add_struct("bpf_list_node", 24, [])
    rb_t = b.add_struct("bpf_rb_node", 32, [])
    elem = b.add_struct("elem", 8 + 24 + 32, [("key", u64, 0), ("node", node_t, 64),
                                              ("rb", rb_t, 256)])
    btf = b.build()
    holder = Map(T.ARRAY, 4, 32, 1)     # a bpf_list_head at +0, a bpf_rb_root at +16
    new, drop = kfunc_id("bpf_obj_new_impl"), kfunc_id("bpf_obj_drop_impl")
    push, pop = kfunc_id("bpf_list_push_back_impl"), kfunc_id("bpf_list_pop_front")
    add, first = kfunc_id("bpf_rbtree_add_impl"), kfunc_id("bpf_rbtree_first")
    src = f"""
        r6 = 0
    again:
        r1 = {elem}
        r2 = 0
        call kernel-function#{new}
        if r0 == 0 goto out
        r1 = 30
        r1 -= r6
        *(u64 *)(r0 + 0) = r1
        r7 = r0
        r1 = map[id:{holder.id}][0]+0 ll
        r2 = r7
        r2 += 8
        r3 = 0
        r4 = 8
        call kernel-function#{push}
        r6 += 10
        if r6 < 30 goto again
        r1 = map[id:{holder.id}][0]+0 ll
        call kernel-function#{pop}
        r1 = r0
        r1 += -8
        r8 = *(u64 *)(r1 + 0)
        r9 = r1
        r1 = map[id:{holder.id}][0]+16 ll
        r2 = r9
        r2 += 32
        r3 = subprog[less] ll
        r4 = 0
        r5 = 32
        call kernel-function#{add}
        r1 = map[id:{holder.id}][0]+16 ll
        call kernel-function#{first}
        r0 += -32
        r0 = *(u64 *)(r0 + 0)
        r0 += r8
    out:
        exit
    less:
        r1 += -32
        r2 += -32
        r1 = *(u64 *)(r1 + 0)
        r2 = *(u64 *)(r2 + 0)
        r0 = 0
        if r1 >= r2 goto ge
        r0 = 1
    ge:
        exit
    """
    before = len(live_objects())
    with Machine() as m:
        m.btf = btf
        assert run(src, m) == 30 + 30
    head = holder.value_region.start
    assert len(collection(head)) == 2 and len(collection(head + 16)) == 1
    assert len(live_objects()) == before + 3
    with Machine() as m, pytest.raises(VMError, match="BTF"):
        run(f"r1 = {elem}\nr2 = 0\ncall kernel-function#{new}\nexit", m)
    assert drop


def test_storage_helpers_key_on_the_owner_pointer():
    s = Map(T.TASK_STORAGE, 4, 8, 0, BPF_F_NO_PREALLOC)
    src = f"""
        call bpf_get_current_task_btf
        r2 = r0
        r1 = map[id:{s.id}] ll
        r3 = 0
        r4 = 1
        call bpf_task_storage_get
        if r0 == 0 goto out
        r1 = 5
        lock *(u64 *)(r0 + 0) += r1
        r0 = *(u64 *)(r0 + 0)
    out:
        exit
    """
    with Machine() as m:
        m.task = Task(pid=9)
        assert run(src, m) == 5 and run(src, m) == 10


def test_snprintf_and_vprintk():
    fmt = b"%d-%s\0"
    f0 = int.from_bytes(fmt.ljust(8, b"\0"), "little")
    ab = int.from_bytes(b"ab".ljust(8, b"\0"), "little")
    src = f"""
        r1 = {f0} ll
        *(u64 *)(r10 - 8) = r1
        r1 = {ab}
        *(u64 *)(r10 - 16) = r1
        r1 = 12
        *(u64 *)(r10 - 32) = r1
        r1 = r10
        r1 += -16
        *(u64 *)(r10 - 24) = r1
        r1 = r10
        r1 += -48
        r2 = 4
        r3 = r10
        r3 += -8
        r4 = r10
        r4 += -32
        r5 = 16
        call bpf_snprintf
        r6 = r0
        r0 = *(u32 *)(r10 - 48)
        r0 <<= 8
        r0 += r6
        exit
    """
    r = run(src)
    assert r & 0xFF == len("12-ab") + 1
    assert (r >> 8).to_bytes(4, "little") == b"12-\0"



def test_freeing_a_value_cancels_its_timer():
    """Deleting (or replacing) a hash element, or closing its map, cancels and frees
    the bpf_timer in it, as Linux's bpf_obj_free_fields does: the callback never runs."""
    src_of = lambda h: f"""
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r2 = r10
        r2 += -4
        r1 = map[id:{h.id}] ll
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r6 = r0
        r1 = r6
        r1 += 16
        r2 = map[id:{h.id}] ll
        r3 = 1
        call bpf_timer_init
        r1 = r6
        r1 += 16
        r2 = subprog[cb] ll
        call bpf_timer_set_callback
        r1 = r6
        r1 += 16
        r2 = 1000
        r3 = 0
        call bpf_timer_start
    out:
        r0 = 0
        exit
    cb:
        r1 = 1
        *(u64 *)(r3 + 0) = r1
        r0 = 0
        exit
    """
    btf = _timer_value_btf()
    for how in ("delete", "replace", "close"):
        h = Map(T.HASH, 4, 32, 4, btf=btf[0], btf_key_type_id=btf[1], btf_value_type_id=btf[2])
        h[0] = bytes(32)
        clock = VirtualClock()
        with Machine(clock=clock) as m:
            assert run(src_of(h), m) == 0
            assert [t for t in pending_timers() if t.map is h]
            if how == "delete":
                del h[0]
            elif how == "replace":
                h[0] = bytes(32)
            else:
                h.close()
            assert not [t for t in pending_timers() if t.map is h], how
            assert clock.advance(10_000) == 0, how
        if how != "close":
            h.close()


def _timer_value_btf():
    """BTF for u32 keys and `struct v { u64 count; u64 pad; struct bpf_timer t; }`."""
    from ebee.btf.builder import BTFBuilder
    b = BTFBuilder()
    u32 = b.add_int("unsigned int", 4)
    u64 = b.add_int("unsigned long long", 8)
    timer = b.add_struct("bpf_timer", 16, [("__opaque", u64, 0), ("__opaque2", u64, 64)])
    v = b.add_struct("v", 32, [("count", u64, 0), ("pad", u64, 64), ("t", timer, 128)])
    return b.build(), u32, v
