"""The user-space map API: creation rules, dict access, per-CPU values, special map types."""
from __future__ import annotations

import ctypes
import errno
import resource
import struct

import pytest

from ebee import maps
from ebee.maps import Map, MapError, MapKeyError
from ebee.uapi import (BPF_ANY, BPF_EXIST, BPF_F_INNER_MAP, BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU,
                       BPF_F_NO_PREALLOC, BPF_F_RDONLY, BPF_F_RDONLY_PROG, BPF_F_WRONLY,
                       BPF_F_WRONLY_PROG, BPF_F_ZERO_SEED, BPF_NOEXIST, ENOTSUPP, MapType as T)
from ebee.memory import SHARED

U32 = struct.Struct("<I")


def test_map_returns_the_subclass_and_registers_by_id_and_address():
    with Map(T.HASH, 4, 8, 16, name="counts") as m:
        assert isinstance(m, maps.HashMap) and m.id > 0 and m.name == "counts"
        assert maps.by_id(m.id) is m and maps.by_addr(m.addr) is m
        assert SHARED.find(m.addr) is m.handle and not m.handle.writable
    with pytest.raises(MapKeyError):
        maps.by_id(m.id)


def test_every_supported_type_is_a_registered_subclass():
    for t in maps.SUPPORTED:
        assert Map._types[t].map_type == t
    assert T.ARENA not in maps.SUPPORTED
    with pytest.raises(MapError) as e:
        Map(T.ARENA, 0, 0, 1, BPF_F_MMAPABLE)
    assert e.value.errno == errno.EINVAL and "docs/maps.md" in str(e.value)


@pytest.mark.parametrize("args, code", [
    ((T.HASH, 4, 4, 0), errno.EINVAL),
    ((T.HASH, 0, 4, 4), errno.EINVAL),
    ((T.HASH, 4, 4, 4, BPF_F_NO_COMMON_LRU), errno.EINVAL),
    ((T.LRU_HASH, 4, 4, 4, BPF_F_NO_PREALLOC), ENOTSUPP),
    ((T.ARRAY, 8, 4, 4), errno.EINVAL),
    ((T.PERCPU_ARRAY, 4, 4, 4, BPF_F_MMAPABLE), errno.EINVAL),
    ((T.LPM_TRIE, 8, 4, 4), errno.EINVAL),
    ((T.LPM_TRIE, 4, 4, 4, BPF_F_NO_PREALLOC), errno.EINVAL),
    ((T.RINGBUF, 0, 0, 4096 * 3), errno.EINVAL),
    ((T.QUEUE, 4, 4, 4), errno.EINVAL),
    ((T.HASH, 4, 4, 4, BPF_F_RDONLY | BPF_F_WRONLY), errno.EINVAL),
    ((T.HASH, 4, 4, 4, BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG), errno.EINVAL),
    ((T.PROG_ARRAY, 4, 8, 4), errno.EINVAL),
    ((T.ARRAY_OF_MAPS, 4, 4, 4), errno.EINVAL),
    ((T.PERCPU_HASH, 4, 40000, 4), errno.E2BIG),
])
def test_creation_errors(args, code):
    with pytest.raises(MapError) as e:
        Map(*args)
    assert e.value.errno == code


@pytest.mark.kernel
@pytest.mark.parametrize("args", [
    (T.HASH, 4, 4, 0), (T.HASH, 0, 4, 4), (T.HASH, 4, 4, 4, BPF_F_NO_COMMON_LRU),
    (T.LRU_HASH, 4, 4, 4, BPF_F_NO_PREALLOC), (T.ARRAY, 8, 4, 4), (T.ARRAY, 4, 4, 4, BPF_F_MMAPABLE),
    (T.PERCPU_ARRAY, 4, 4, 4, BPF_F_MMAPABLE), (T.LPM_TRIE, 8, 4, 4),
    (T.LPM_TRIE, 4, 4, 4, BPF_F_NO_PREALLOC), (T.LPM_TRIE, 261, 4, 4, BPF_F_NO_PREALLOC),
    (T.RINGBUF, 0, 0, 4096 * 3), (T.RINGBUF, 0, 0, 8192), (T.QUEUE, 4, 4, 4), (T.STACK, 0, 4, 4),
    (T.BLOOM_FILTER, 0, 4, 4), (T.HASH, 4, 4, 4, 1 << 20), (T.PROG_ARRAY, 4, 8, 4),
    (T.PROG_ARRAY, 4, 4, 4, BPF_F_RDONLY_PROG), (T.PERCPU_HASH, 4, 40000, 4),
    (T.STACK_TRACE, 4, 12, 4), (T.STACK_TRACE, 4, 16, 4), (T.CPUMAP, 4, 4, 4), (T.CPUMAP, 4, 12, 4),
    (T.DEVMAP, 4, 8, 4), (T.XSKMAP, 4, 8, 4), (T.LRU_PERCPU_HASH, 4, 4, 5, BPF_F_NO_COMMON_LRU),
])
def test_creation_errnos_match_the_kernel(kernel, args):
    from ebee.kernel.maps import KernelMap
    try:
        KernelMap(*args).close()
        theirs = 0
    except OSError as e:
        theirs = e.errno
    try:
        Map(*args).close()
        ours = 0
    except MapError as e:
        ours = e.errno
    assert ours == theirs


def test_dict_api_with_ints_bytes_and_ctypes():
    class Key(ctypes.Structure):
        _fields_ = [("a", ctypes.c_uint32), ("b", ctypes.c_uint16), ("c", ctypes.c_uint16)]

    m = Map(T.HASH, 8, 8, 4)
    m.key_type, m.value_type = Key, int
    m[Key(1, 2, 3)] = 10
    m[bytes(Key(4, 5, 6))] = 20
    assert m[Key(1, 2, 3)] == 10 and Key(4, 5, 6) in m and Key(9, 9, 9) not in m
    assert sorted(v for v in m.values()) == [10, 20] and len(m) == 2
    assert m.get(Key(7, 7, 7), "none") == "none"
    with pytest.raises(KeyError):
        m[Key(7, 7, 7)]
    with pytest.raises(MapKeyError) as e:
        del m[Key(7, 7, 7)]
    assert e.value.errno == errno.ENOENT
    m.update(Key(1, 2, 3), 11, BPF_EXIST)
    with pytest.raises(MapError) as e:
        m.update(Key(1, 2, 3), 12, BPF_NOEXIST)
    assert e.value.errno == errno.EEXIST
    m[Key(0, 0, 1)] = 1
    m[Key(0, 0, 2)] = 2
    with pytest.raises(MapError) as e:
        m[Key(0, 0, 3)] = 3
    assert e.value.errno == errno.E2BIG
    assert m.lookup_and_delete(Key(0, 0, 1)) == 1 and len(m) == 3
    with pytest.raises(ValueError):
        m[b"short"] = 1
    with pytest.raises(TypeError):
        m[1.5] = 1


def test_percpu_values_are_one_per_cpu():
    old = maps.num_cpus()
    maps.set_num_cpus(3)
    try:
        m = Map(T.PERCPU_HASH, 4, 4, 4, value_type=int)
        m[1] = [10, 11, 12]
        assert m[1] == [10, 11, 12]
        m[2] = 7                         # one value for every CPU
        assert m[2] == [7, 7, 7]
        a = Map(T.PERCPU_ARRAY, 4, 4, 2, value_type=int)
        assert a[0] == [0, 0, 0]
        with pytest.raises(ValueError):
            m[3] = [1, 2]
        # value (slot, cpu) lives at values + (slot * ncpus + cpu) * elem_size
        addr = a.prog_lookup(U32.pack(1), 2)
        assert addr == a.value_region.start + (1 * 3 + 2) * 8
    finally:
        maps.set_num_cpus(old)


def test_array_semantics_and_get_next_key():
    a = Map(T.ARRAY, 4, 4, 3, value_type=int)
    assert list(a.keys()) == [b"\0\0\0\0", U32.pack(1), U32.pack(2)]
    assert a.get_next_key(U32.pack(99)) == U32.pack(0)   # out of range restarts
    with pytest.raises(MapKeyError):
        a.get_next_key(U32.pack(2))
    with pytest.raises(MapError) as e:
        del a[0]
    assert e.value.errno == errno.EINVAL
    with pytest.raises(MapError) as e:
        a[3] = 1
    assert e.value.errno == errno.E2BIG
    a[2] = 5
    assert dict(a.items())[U32.pack(2)] == 5


def test_hash_get_next_key_restarts_for_a_missing_key():
    m = Map(T.HASH, 4, 4, 8, BPF_F_ZERO_SEED)
    for k in range(5):
        m[k] = k
    first = m.get_next_key()
    assert m.get_next_key(U32.pack(1000)) == first
    assert sorted(m.keys()) == sorted(U32.pack(k) for k in range(5))


def test_hash_batches_walk_whole_buckets():
    m = Map(T.HASH, 4, 4, 16, BPF_F_ZERO_SEED, key_type=int, value_type=int)
    for k in range(10):
        m[k] = k * k
    seen, token = {}, None
    while True:
        b = m.lookup_batch(token, 4)
        seen.update(zip(b.keys, b.values))
        if b.done:
            break
        token = b.out_batch
    assert seen == {k: k * k for k in range(10)}
    with pytest.raises(MapError) as e:
        m.lookup_batch(None, 0 + 1, elem_flags=8)
    assert e.value.errno == errno.EINVAL
    assert m.update_batch([20, 21], [1, 2]) == 2 and m[21] == 2
    assert m.delete_batch([20, 21]) == 2
    got = m.lookup_and_delete_batch(None, 100)
    assert got.done and len(got) == 10 and len(m) == 0


def test_lru_evicts_instead_of_failing():
    m = Map(T.LRU_HASH, 4, 4, 8, key_type=int, value_type=int)
    for k in range(100):
        m[k] = k
    assert 0 < len(m) <= 8 and 99 in m


def test_lru_no_common_lru_rounds_max_entries_to_cpus():
    old = maps.num_cpus()
    maps.set_num_cpus(4)
    try:
        assert Map(T.LRU_HASH, 4, 4, 5, BPF_F_NO_COMMON_LRU).max_entries == 8
    finally:
        maps.set_num_cpus(old)


def lpm_key(plen: int, addr: str) -> bytes:
    return U32.pack(plen) + bytes(int(x) for x in addr.split("."))


def test_lpm_longest_prefix_and_postorder_iteration():
    m = Map(T.LPM_TRIE, 8, 4, 10, BPF_F_NO_PREALLOC, value_type=int)
    m[lpm_key(16, "192.168.0.0")] = 16
    m[lpm_key(24, "192.168.0.0")] = 240
    m[lpm_key(24, "192.168.1.0")] = 241
    m[lpm_key(24, "192.168.128.0")] = 242
    assert m[lpm_key(32, "192.168.1.7")] == 241
    assert m[lpm_key(32, "192.168.7.7")] == 16
    assert lpm_key(32, "10.0.0.1") not in m
    # the kernel's documented order: more specific prefixes first
    assert list(m.keys()) == [lpm_key(24, "192.168.0.0"), lpm_key(24, "192.168.1.0"),
                              lpm_key(24, "192.168.128.0"), lpm_key(16, "192.168.0.0")]
    with pytest.raises(MapError) as e:
        m[lpm_key(33, "1.2.3.4")] = 1
    assert e.value.errno == errno.EINVAL
    del m[lpm_key(16, "192.168.0.0")]
    assert lpm_key(32, "192.168.7.7") not in m


def test_queue_stack_bloom():
    q = Map(T.QUEUE, 0, 4, 2, value_type=int)
    q.push(1), q.push(2)
    with pytest.raises(MapError) as e:
        q.push(3)
    assert e.value.errno == errno.E2BIG
    q.push(3, flags=BPF_EXIST)          # drops the oldest
    assert q.peek() == 2 and q.pop() == 2 and q.pop() == 3
    with pytest.raises(MapKeyError):
        q.pop()
    s = Map(T.STACK, 0, 4, 4, value_type=int)
    for v in (1, 2, 3):
        s.push(v)
    assert [s.pop(), s.pop(), s.pop()] == [3, 2, 1]
    b = Map(T.BLOOM_FILTER, 0, 4, 100, BPF_F_ZERO_SEED, map_extra=3)
    b.push(42)
    assert 42 in b and b.nr_hash_funcs == 3
    assert sum(v in b for v in range(1000, 1100)) < 10


def test_map_in_map_template_compatibility():
    inner = Map(T.ARRAY, 4, 4, 4)
    outer = Map(T.ARRAY_OF_MAPS, 4, 4, 2, inner_map=inner)
    outer[0] = Map(T.ARRAY, 4, 4, 4)
    with pytest.raises(MapError) as e:
        outer[1] = Map(T.ARRAY, 4, 4, 8)           # max_entries differs
    assert e.value.errno == errno.EINVAL
    flex = Map(T.HASH_OF_MAPS, 4, 4, 2, inner_map=Map(T.ARRAY, 4, 4, 4, BPF_F_INNER_MAP))
    flex[7] = Map(T.ARRAY, 4, 4, 64, BPF_F_INNER_MAP)
    assert flex[7].max_entries == 64
    assert flex.prog_lookup(U32.pack(7), 0) == flex[7].addr
    with pytest.raises(MapError):
        Map(T.ARRAY_OF_MAPS, 4, 4, 2, inner_map=outer)


def test_freeze_rdonly_and_mmap():
    a = Map(T.ARRAY, 4, 8, 4, BPF_F_MMAPABLE)
    with a.mmap() as view:
        view[8:16] = (5).to_bytes(8, "little")
        with pytest.raises(MapError) as e:
            a.freeze()
        assert e.value.errno == errno.EBUSY
    assert a[1] == (5).to_bytes(8, "little")
    a.freeze()
    with pytest.raises(MapError) as e:
        a[0] = 1
    assert e.value.errno == errno.EPERM
    with pytest.raises(MapError) as e:
        a.freeze()
    assert e.value.errno == errno.EPERM
    r = Map(T.HASH, 4, 4, 4, BPF_F_RDONLY)
    with pytest.raises(MapError) as e:
        r[1] = 1
    assert e.value.errno == errno.EPERM
    w = Map(T.HASH, 4, 4, 4, BPF_F_WRONLY)
    w[1] = 1
    with pytest.raises(MapError) as e:
        w[1]
    assert e.value.errno == errno.EPERM
    p = Map(T.ARRAY, 4, 4, 4, BPF_F_RDONLY_PROG)
    assert not p.value_region.writable


def test_ring_buffer_reserve_commit_ordering_and_reader():
    rb = Map(T.RINGBUF, 0, 0, 4096)
    a = rb.reserve(5)
    b = rb.reserve(3)
    rb.data.buf[b - rb.data.start:b - rb.data.start + 3] = b"bbb"
    rb.commit(b, 0, False)
    assert rb.consume() == []           # a is still busy: b waits behind it
    rb.data.buf[a - rb.data.start:a - rb.data.start + 5] = b"aaaaa"
    rb.commit(a, 0, True)               # discarded
    assert rb.consume() == [b"bbb"]
    got = []
    with rb.reader(lambda rec: got.append(rec.data)) as rd:
        assert rb.output(b"x" * 10, 0) == 0
        assert rd.poll(0) == 1
    assert got == [b"x" * 10]
    assert rb.query(1) == 4096
    # a record that runs past the end of the ring is folded back for the consumer
    for _ in range(3):
        assert rb.output(b"y" * 1000, 0) == 0
    rb.consume()
    assert rb.output(bytes(range(256)) * 4, 0) == 0
    assert rb.consume() == [bytes(range(256)) * 4]
    assert rb.reserve(5000) == 0
    assert rb.output(b"z", 4) == -errno.EINVAL


def test_perf_event_array_rings_and_lost_samples():
    pe = Map(T.PERF_EVENT_ARRAY, 4, 4, 2)
    assert pe.output(0xFFFFFFFF, b"x", 0) == -errno.ENOENT
    lost = []
    rd = pe.reader(lost_callback=lambda cpu, n: lost.append((cpu, n)), page_cnt=1)
    assert pe.output(0xFFFFFFFF, b"hello", 1) == 0
    assert pe.output(0, b"x", 1) == -errno.EOPNOTSUPP      # slot 0 is CPU 0's ring
    while pe.output(0xFFFFFFFF, b"y" * 100, 0) == 0:
        pass
    recs = rd.drain()
    assert any(r.data == b"hello" and r.cpu == 1 for r in recs)
    assert lost == [(0, 1)]


def test_redirect_maps_and_stack_trace():
    d = Map(T.DEVMAP, 4, 8, 4)
    d[1] = struct.pack("<II", 3, 0)
    assert d.target(1) == struct.pack("<II", 3, 0) and d.target(2) is None
    with pytest.raises(MapError) as e:
        d.update(1, struct.pack("<II", 3, 0), BPF_NOEXIST)
    assert e.value.errno == errno.EEXIST
    c = Map(T.CPUMAP, 4, 4, 2)
    with pytest.raises(MapError) as e:
        c[0] = 20000
    assert e.value.errno == errno.EOVERFLOW
    st = Map(T.STACK_TRACE, 4, 8 * 4, 8)
    sid = st.get_stackid([0x1000, 0x2000], 0)
    assert sid >= 0 and st.get_stackid([0x1000, 0x2000], 0) == sid
    assert st[sid][:16] == struct.pack("<QQ", 0x1000, 0x2000)
    # another stack hashing to a taken bucket: EEXIST, unless BPF_F_REUSE_STACKID
    results = [st.get_stackid([0x3000 + i], 0) for i in range(64)]
    assert -errno.EEXIST in results
    i = results.index(-errno.EEXIST)
    assert st.get_stackid([0x3000 + i], 0x400) >= 0


def test_local_storage_by_owner():
    s = Map(T.TASK_STORAGE, 4, 8, 0, BPF_F_NO_PREALLOC, value_type=int)
    s["task-a"] = 5
    assert s["task-a"] == 5
    addr = s.storage_get(0x1234, None, 1)
    assert addr and s.storage_get(0x1234, None, 0) == addr
    assert s.storage_delete(0x1234) == 0 and s.storage_delete(0x1234) == -errno.ENOENT
    with pytest.raises(MapError):
        Map(T.TASK_STORAGE, 4, 8, 0)


@pytest.mark.kernel
@pytest.mark.parametrize("mt", [T.HASH, T.ARRAY])
def test_spin_lock_values_and_bpf_f_lock_match_the_kernel(kernel, mt):
    """A value type with a struct bpf_spin_lock (from BTF): BPF_F_LOCK updates and
    lookups, the lock reading as zero, and freeze refused (ENOTSUPP), as in Linux."""
    from ebee.btf.builder import BTFBuilder
    from ebee.kernel.btf import KernelBTF
    from ebee.kernel.maps import KernelMap
    b = BTFBuilder()
    u32 = b.add_int("unsigned int", 4)
    lock = b.add_struct("bpf_spin_lock", 4, [("val", u32, 0)])
    val = b.add_struct("val", 12, [("a", u32, 0), ("lock", lock, 32), ("b", u32, 64)])
    kb = KernelBTF(b.to_bytes())
    km = KernelMap(mt, 4, 12, 4, btf_fd=kb.fd, btf_key_type_id=u32, btf_value_type_id=val)
    em = Map(mt, 4, 12, 4, btf=b.build(), btf_key_type_id=u32, btf_value_type_id=val)
    assert em.spin_lock_off == 4

    def both(f):
        out = []
        for side in (em, km):
            try:
                out.append(("ok", f(side)))
            except OSError as e:
                out.append(("err", e.errno))
        return out[0], out[1]

    key, value = U32.pack(1), bytes(range(1, 13))
    for flags in (4, 0, 4 | BPF_EXIST, 4 | BPF_NOEXIST, 8):
        a, b_ = both(lambda s: s.update(key, value, flags))
        assert a == b_, flags
    for flags in (4, 0, 1):
        a, b_ = both(lambda s: s.lookup(key, flags))
        assert a == b_, flags
    a, b_ = both(lambda s: s.freeze())
    assert a == b_ == ("err", ENOTSUPP)
    km.close()
    kb.close()


def test_fd_array_slots_cost_nothing_until_filled():
    """A program array may declare billions of slots (a mutated object did): creating
    it allocates nothing per slot, lookups of empty slots are ENOENT, filled ones work."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m = Map(T.PROG_ARRAY, 4, 4, (1 << 32) - 1)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024   # KiB
    assert m.program(123456789) is None and m.program((1 << 32) - 2) is None
    with pytest.raises(MapError) as e:
        m.lookup(struct.pack("<I", 7))
    assert e.value.errno == errno.ENOENT
