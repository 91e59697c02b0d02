"""ebee maps against Linux maps: the same random operations, the same results and errnos.

Hypothesis state machines apply one random sequence of syscall-side operations
(update with every flag, lookup, delete, get_next_key from present, missing and
no key, lookup_and_delete, batches, freeze) to a kernel map and to an ebee map
created with the same attributes, and compare every result, every errno and
the map's contents after each step.  Where Linux is deterministic the
comparison is exact: hash tables created with BPF_F_ZERO_SEED hash with jhash
as Linux does, so iteration and batch order must match; LRU eviction must pick
the same victims (the process is pinned to CPU 0 so the kernel's per-CPU LRU
state is deterministic); bloom filters with BPF_F_ZERO_SEED must report the
same false positives.  Without ZERO_SEED, iteration is compared as a set.

EBEE_MAP_DIFF_EXAMPLES sets the number of sequences per map type (default 25).
"""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ebee import maps
from ebee.kernel.maps import KernelMap, possible_cpus
from ebee.maps.errors import MapError
from ebee.uapi import BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC, \
    BPF_F_ZERO_SEED, BPF_NOEXIST, MapType as T

EXAMPLES = int(os.environ.get("EBEE_MAP_DIFF_EXAMPLES", "25"))
STEPS = 40
STATS = {"steps": 0, "sequences": 0}

FLAGS = st.sampled_from([BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_ANY, BPF_ANY, 3, BPF_F_LOCK])


def _call(fn, *a):
    try:
        return ("ok", fn(*a))
    except MapError as e:
        return ("err", e.errno)
    except OSError as e:
        return ("err", e.errno)


class MapDiff(RuleBasedStateMachine):
    """Subclasses set the map attributes and key/value strategies."""

    map_type: T
    key_size = 4
    value_size = 8
    max_entries = 8
    flags = 0
    map_extra = 0
    ordered = True        # iteration order must match exactly
    keys = st.integers(0, 15)
    values = st.integers(0, 2 ** 64 - 1)

    def __init__(self):
        super().__init__()
        self.k = KernelMap(self.map_type, self.key_size, self.value_size, self.max_entries,
                           self.flags, map_extra=self.map_extra)
        self.e = maps.Map(self.map_type, self.key_size, self.value_size, self.max_entries,
                          self.flags, map_extra=self.map_extra)
        self.percpu = self.e.percpu
        STATS["sequences"] += 1

    def teardown(self):
        self.k.close()
        self.e.close()

    # -- encoding ---------------------------------------------------------------------

    def kb(self, k: int) -> bytes:
        return (k % (1 << (8 * self.key_size))).to_bytes(self.key_size, "little")

    def vb(self, v: int) -> bytes:
        raw = (v % (1 << (8 * self.value_size))).to_bytes(self.value_size, "little")
        if self.percpu:
            pad = bytes(self.e.elem_size - self.value_size)
            return b"".join(((v + c) % (1 << (8 * self.value_size))).to_bytes(self.value_size, "little")
                            + pad for c in range(possible_cpus()))
        return raw

    def e_raw(self, v):
        if isinstance(v, list):
            pad = bytes(self.e.elem_size - self.value_size)
            return b"".join(x + pad for x in v)
        return v

    def same(self, ours, theirs, what):
        STATS["steps"] += 1
        assert ours == theirs, f"{what}: ebee {ours!r} != kernel {theirs!r}"

    # -- operations -------------------------------------------------------------------

    @rule(k=st.data(), v=st.data(), flags=FLAGS)
    def update(self, k, v, flags):
        key, val = self.kb(k.draw(self.keys)), self.vb(v.draw(self.values))
        theirs = _call(self.k.update, key, val, flags)
        ours = _call(self.e.update, key, val if not self.percpu else
                     [val[i * self.e.elem_size:i * self.e.elem_size + self.value_size]
                      for i in range(self.e.ncpus)], flags)
        self.same(ours, theirs, f"update({key.hex()}, flags={flags})")

    @rule(k=st.data())
    def lookup(self, k):
        key = self.kb(k.draw(self.keys))
        theirs = _call(self.k.lookup, key)
        ours = _call(lambda: self.e_raw(self.e.lookup(key)))
        self.same(ours, theirs, f"lookup({key.hex()})")

    @rule(k=st.data())
    def delete(self, k):
        key = self.kb(k.draw(self.keys))
        self.same(_call(self.e.delete, key), _call(self.k.delete, key), f"delete({key.hex()})")

    @rule(k=st.data())
    def lookup_and_delete(self, k):
        key = self.kb(k.draw(self.keys))
        theirs = _call(self.k.lookup_and_delete, key)
        ours = _call(lambda: self.e_raw(self.e.lookup_and_delete(key)))
        self.same(ours, theirs, f"lookup_and_delete({key.hex()})")

    @rule(k=st.data(), none=st.booleans())
    def get_next_key(self, k, none):
        key = None if none else self.kb(k.draw(self.keys))
        theirs = _call(self.k.get_next_key, key)
        ours = _call(self.e.get_next_key, key)
        if not self.ordered:
            # which key comes next (and whether key is the last) depends on the kernel's
            # random hash seed; only "there is a first key" is comparable
            if key is None:
                self.same(ours[0], theirs[0], "get_next_key(None)")
            return
        self.same(ours, theirs, f"get_next_key({key.hex() if key else None})")

    @rule(count=st.integers(0, 6), data=st.data(), delete=st.booleans())
    def batch(self, count, data, delete):
        """Walk the whole map in batches of ``count``; compare each call."""
        if not self.ordered:
            return
        kin = ein = None
        for _ in range(64):
            kk, kv, kout, kerr = self.k.lookup_batch(kin, count, delete=delete)
            ek, ev, eout, eerr = self.e._lookup_batch(ein, count, 0, delete)
            kerrno = kerr.errno if kerr else 0
            if kerrno not in (0, 2, 28):     # refused up front: count is not an answer
                self.same(eerr, kerrno, f"lookup_batch(count={count}, delete={delete})")
                break
            self.same((eerr, ek, [self.e_raw(v) for v in ev]), (kerrno, kk, kv),
                      f"lookup_batch(count={count}, delete={delete})")
            if kerrno or not count or not kk:
                break
            kin = kout
            ein = eout

    @rule(data=st.data())
    def update_batch(self, data):
        ks = data.draw(st.lists(self.keys, max_size=4))
        vs = [self.vb(data.draw(self.values)) for _ in ks]
        flags = data.draw(st.sampled_from([BPF_ANY, BPF_NOEXIST, BPF_EXIST]))
        keys = [self.kb(k) for k in ks]
        n, err = self.k.update_batch(keys, vs, flags)
        ours = self.e._update_batch(keys, vs, flags)
        if ours[0] is None:     # refused up front: the kernel leaves count untouched
            n = None
        self.same(ours, (n, err.errno if err else 0), "update_batch")

    @rule(data=st.data())
    def delete_batch(self, data):
        keys = [self.kb(k) for k in data.draw(st.lists(self.keys, max_size=4))]
        n, err = self.k.delete_batch(keys)
        ours = self.e._delete_batch(keys, 0)
        if ours[0] is None:
            n = None
        self.same(ours, (n, err.errno if err else 0), "delete_batch")

    @invariant()
    def contents_agree(self):
        if not hasattr(self, "k"):
            return
        theirs = self.k.keys()
        ours = list(self.e._raw_keys())
        if not self.ordered:
            theirs, ours = sorted(theirs), sorted(ours)
        self.same(ours, theirs, "keys")


class KeylessDiff(MapDiff):
    """Queues, stacks: push, pop, peek."""

    key_size = 0
    value_size = 4
    max_entries = 4
    values = st.integers(0, 2 ** 32 - 1)

    @rule(v=st.data(), flags=FLAGS)
    def update(self, v, flags):
        val = self.vb(v.draw(self.values))
        self.same(_call(self.e.update, None, val, flags), _call(self.k.update, None, val, flags),
                  f"push(flags={flags})")

    @rule()
    def lookup(self):
        self.same(_call(self.e.lookup), _call(self.k.lookup, None), "peek")

    @rule(flags=st.sampled_from([0, 0, BPF_F_LOCK, 1]))
    def lookup_and_delete(self, flags):
        self.same(_call(self.e.lookup_and_delete, None, flags),
                  _call(self.k.lookup_and_delete, None, flags), f"pop(flags={flags})")

    @rule()
    def delete(self):
        self.same(_call(self.e.delete, None), _call(self.k.delete, None), "delete")

    @rule()
    def get_next_key(self):
        self.same(_call(self.e.get_next_key, None), _call(self.k.get_next_key, None), "get_next_key")

    batch = update_batch = delete_batch = None

    @invariant()
    def contents_agree(self):
        pass


class BloomDiff(KeylessDiff):
    map_type = T.BLOOM_FILTER
    value_size = 4
    max_entries = 4
    flags = BPF_F_ZERO_SEED
    map_extra = 3
    values = st.integers(0, 63)

    @rule(v=st.data())
    def lookup(self, v):
        val = self.vb(v.draw(self.values))
        # the syscall passes the value to test in the value buffer
        theirs = _call(lambda: _bloom_peek(self.k, val))
        ours = _call(lambda: self.e.lookup(val) and b"")
        self.same(ours, theirs, f"peek({val.hex()})")


def _bloom_peek(k: KernelMap, val: bytes) -> bytes:
    import ctypes
    from ebee.kernel.syscall import MapElemAttr, addr, bpf
    from ebee.uapi import Cmd
    buf = ctypes.create_string_buffer(val, len(val))
    bpf(Cmd.MAP_LOOKUP_ELEM, MapElemAttr(map_fd=k.fd, key=0, value=addr(buf), flags=0))
    return b""


def _lpm_keys():
    # prefixes over a few networks so that nodes nest, split and merge
    return st.tuples(st.integers(0, 32), st.sampled_from([0x0A000000, 0x0A010000, 0x0A018000,
                                                          0xC0A80000, 0xC0A80100, 0x0AFF0000,
                                                          0x0A000001, 0]))


class LpmDiff(MapDiff):
    map_type = T.LPM_TRIE
    key_size = 8
    value_size = 4
    max_entries = 6
    flags = BPF_F_NO_PREALLOC
    values = st.integers(0, 2 ** 32 - 1)
    keys = _lpm_keys()

    def kb(self, k) -> bytes:
        plen, net = k
        return struct.pack("<I", plen) + struct.pack(">I", net)

    batch = None


def _machine(name, mt, **attrs):
    cls = type(name, (attrs.pop("base", MapDiff),), {"map_type": mt, **attrs})
    cls.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=STEPS,
                                     deadline=None, database=None)
    return cls


MACHINES = [
    _machine("HashZeroSeed", T.HASH, flags=BPF_F_ZERO_SEED),
    _machine("HashRandomSeed", T.HASH, ordered=False),
    _machine("HashNoPrealloc", T.HASH, flags=BPF_F_ZERO_SEED | BPF_F_NO_PREALLOC, key_size=3,
             value_size=5, max_entries=5),
    _machine("PercpuHash", T.PERCPU_HASH, flags=BPF_F_ZERO_SEED, value_size=4),
    _machine("Array", T.ARRAY, value_size=12, max_entries=6, keys=st.integers(0, 8)),
    _machine("PercpuArray", T.PERCPU_ARRAY, value_size=4, max_entries=5, keys=st.integers(0, 7)),
    _machine("LruHash", T.LRU_HASH, flags=BPF_F_ZERO_SEED, keys=st.integers(0, 31)),
    _machine("LruHashNoCommon", T.LRU_HASH, flags=BPF_F_ZERO_SEED | BPF_F_NO_COMMON_LRU,
             keys=st.integers(0, 31)),
    _machine("LruPercpuHash", T.LRU_PERCPU_HASH, flags=BPF_F_ZERO_SEED, value_size=4,
             keys=st.integers(0, 31)),
    _machine("Lpm", T.LPM_TRIE, base=LpmDiff),
    _machine("Queue", T.QUEUE, base=KeylessDiff),
    _machine("Stack", T.STACK, base=KeylessDiff),
    _machine("Bloom", T.BLOOM_FILTER, base=BloomDiff),
    # redirect maps with values the kernel accepts here: ifindex 1 (lo) or 0 (clear);
    # CPU queue sizes, including 0 (clear) and one over the limit
    _machine("DevMap", T.DEVMAP, value_size=4, max_entries=4, keys=st.integers(0, 5),
             values=st.sampled_from([0, 1])),
    _machine("CpuMap", T.CPUMAP, value_size=4, max_entries=4, keys=st.integers(0, 5),
             values=st.sampled_from([0, 1, 100, 16384, 16385])),
]


@pytest.fixture(scope="module")
def pinned(kernel):
    """Run as CPU 0 on both sides, with as many CPUs as the kernel's possible CPUs."""
    old_aff = os.sched_getaffinity(0)
    old_n, old_u = maps.num_cpus(), maps.user_cpu()
    os.sched_setaffinity(0, {0})
    maps.set_num_cpus(possible_cpus())
    maps.set_user_cpu(0)
    yield
    maps.set_num_cpus(old_n)
    maps.set_user_cpu(old_u)
    os.sched_setaffinity(0, old_aff)


@pytest.mark.kernel
@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.__name__)
def test_map_agrees_with_the_kernel(pinned, machine):
    machine.TestCase().runTest()


@pytest.mark.kernel
def test_the_differential_run_compared(pinned):
    """Runs last in this file: the state machines must have compared something."""
    if STATS["sequences"] == 0:
        pytest.skip("state machines did not run")
    print(f"\nmap differential: {STATS['sequences']} sequences, {STATS['steps']} comparisons")
    assert STATS["steps"] > STATS["sequences"]
