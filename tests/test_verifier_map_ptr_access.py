"""Reads and writes through a map pointer: ebee's verifier against the running kernel's.

``r1 = map ll; r0 = *(u32 *)(r1 + off)`` is a read of the kernel's struct for the
map type (``struct bpf_array``, ``struct bpf_htab``, ...; check_ptr_to_map_access
walks it with btf_struct_access, read-only).  For every map type that can be made
without BTF, every offset around every member boundary of that struct (and
negative, unaligned and past-the-end ones), every size and every kind of access
(load, sign-extending load, store, store immediate, atomic add), the program is
loaded into the kernel and verified by ebee:

- an unsound accept (the kernel rejects, ebee accepts) fails the test, always;
- where both reject, the final error lines must be the same;
- where the kernel accepts, ebee must too, unless ebee refuses the read because its
  map memory does not serve that member (``ebee.verifier.btfaccess.map_view``: a
  pointer, a lock, a reference count -- ENOTSUPP, never a made-up value); that
  refusal is counted and must be for a member the view does not serve.  Every served
  member, read whole and in parts, is accepted by both.

A deterministic sample of the grid runs by default (``SAMPLE`` cases and ``N``
hypothesis examples); ``EBEE_SLOW=1`` runs the whole grid and prints the figures.
"""
from __future__ import annotations

import os
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebee.asm import assemble
from ebee.btf import BTF
from ebee.uapi import BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, MapType as T, ProgType
from ebee.verifier import verify
from ebee.verifier.btfaccess import MAP_BTF_STRUCT, map_view

sys.path.insert(0, str(Path(__file__).resolve().parent))
from verifier_kernel import last_error_line  # noqa: E402

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel")]

SLOW = os.environ.get("EBEE_SLOW") == "1"
SAMPLE = 1500
N = 60

#: map type -> (key_size, value_size, max_entries, map_flags, map_extra): what creates one
MAPS = {
    T.ARRAY: (4, 12, 5, 0, 0), T.PERCPU_ARRAY: (4, 8, 3, 0, 0), T.PROG_ARRAY: (4, 4, 4, 0, 0),
    T.PERF_EVENT_ARRAY: (4, 4, 2, 0, 0), T.CGROUP_ARRAY: (4, 4, 2, 0, 0),
    T.HASH: (8, 16, 7, 0, 0), T.PERCPU_HASH: (4, 8, 4, 0, 0), T.LRU_HASH: (4, 8, 16, 0, 0),
    T.LRU_PERCPU_HASH: (4, 8, 16, 0, 0), T.STACK_TRACE: (4, 8 * 127, 4, 0, 0),
    T.LPM_TRIE: (8, 8, 4, BPF_F_NO_PREALLOC, 0), T.RINGBUF: (0, 0, 4096, 0, 0),
    T.USER_RINGBUF: (0, 0, 4096, 0, 0), T.QUEUE: (0, 8, 4, 0, 0), T.STACK: (0, 8, 4, 0, 0),
    T.BLOOM_FILTER: (0, 8, 4, 0, 3), T.DEVMAP: (4, 4, 4, 0, 0), T.DEVMAP_HASH: (4, 4, 4, 0, 0),
    T.CPUMAP: (4, 4, 4, 0, 0), T.XSKMAP: (4, 4, 4, 0, 0), T.SOCKMAP: (4, 4, 4, 0, 0),
    T.SOCKHASH: (4, 4, 4, 0, 0), T.REUSEPORT_SOCKARRAY: (4, 4, 4, 0, 0),
    T.ARRAY_OF_MAPS: (4, 4, 2, 0, 0), T.HASH_OF_MAPS: (4, 4, 2, 0, 0),
    T.CGROUP_STORAGE: (16, 8, 0, 0, 0), T.PERCPU_CGROUP_STORAGE: (8, 8, 0, 0, 0),
    T.ARENA: (0, 0, 4, BPF_F_MMAPABLE, 0),
}
OF_MAPS = (T.ARRAY_OF_MAPS, T.HASH_OF_MAPS)
SIZES = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}
OPS = ("ldx", "ldsx", "stx", "st", "atomic")


@dataclass(frozen=True)
class Case:
    map_type: T
    off: int
    size: int
    op: str

    def text(self, fd: int) -> str:
        at = f"(r1 {self.off:+d})"
        body = {
            "ldx": f"r0 = *({SIZES[self.size]} *){at}",
            "ldsx": f"r0 = *(s{8 * self.size} *){at}",
            "stx": f"*({SIZES[self.size]} *){at} = r0",
            "st": f"*({SIZES[self.size]} *){at} = 7",
            "atomic": f"lock *({SIZES[self.size]} *){at} += {'r' if self.size == 8 else 'w'}0",
        }[self.op]
        return f"r0 = 0\nr1 = map[fd:{fd}]\n{body}\nr0 = 0\nexit\n"

    def valid(self) -> bool:
        return not (self.op == "ldsx" and self.size == 8) and \
            not (self.op == "atomic" and self.size < 4)


def _boundaries(btf, t, base: int, depth: int, out: set[int]) -> None:
    for m in getattr(t, "members", ()):
        off = base + m.bits_offset // 8
        mt = btf.resolve(m.type_id)
        try:
            end = off + btf.sizeof(mt)
        except Exception:
            end = off
        out.update((off, off + 1, off + 2, off + 4, end - 4, end - 2, end - 1, end))
        if depth and mt.kind.name in ("STRUCT", "UNION"):
            _boundaries(btf, mt, off, depth - 1, out)


def offsets(map_type: T) -> list[int]:
    """Offsets worth trying in the map type's kernel struct: every member's edges (two
    levels deep), before it, and past its end."""
    btf = BTF.load_vmlinux()
    t = btf.find(MAP_BTF_STRUCT[int(map_type)], "struct")
    out = {-32768, -8, -1, 4096, 32767}
    _boundaries(btf, t, 0, 2, out)
    out.update(range(t.size - 8, t.size + 9))
    return sorted(o for o in out if -32768 <= o < 32768)      # insn.off is an s16


def grid(map_types) -> list[Case]:
    return [c for mt in map_types for off in offsets(mt) for size in SIZES for op in OPS
            if (c := Case(mt, off, size, op)).valid()]


@pytest.fixture(scope="module")
def kmaps():
    from ebee.kernel.maps import KernelMap
    made, refused = {}, {}
    inner = KernelMap(T.ARRAY, 4, 8, 2)
    for mt, (ks, vs, n, flags, extra) in MAPS.items():
        try:
            made[mt] = KernelMap(mt, ks, vs, n, flags, map_extra=extra,
                                 inner_map_fd=inner.fd if mt in OF_MAPS else 0)
        except OSError as e:          # ARENA where bpf_arena is not allowed
            refused[mt] = e
    assert T.ARRAY in made and T.HASH in made, refused
    yield made
    for m in made.values():
        m.close()
    inner.close()


def kernel_verdict(insns) -> tuple[bool, str]:
    from ebee.kernel import KernelLoadError, KernelProgram
    try:
        kp = KernelProgram(insns, ProgType.SOCKET_FILTER, log_level=1)
    except KernelLoadError as e:
        return False, last_error_line(e.log or "")
    kp.close()
    return True, ""


REFUSED = "through a map pointer is not supported"


def compare(case: Case, km) -> str:
    """'agree', or 'refused' (ebee's map memory does not serve it; the kernel accepts);
    AssertionError for any other difference."""
    insns = assemble(case.text(km.fd))
    kacc, kerr = kernel_verdict(insns)
    r = verify(insns, prog_type=ProgType.SOCKET_FILTER, log_level=1, maps={km.fd: km},
               facts=False)
    what = f"{case}: kernel {'accepts' if kacc else 'rejects: ' + repr(kerr)}; ebee: {r.error!r}"
    assert not (r.accepted and not kacc), "UNSOUND " + what
    if kacc and not r.accepted:
        assert REFUSED in (r.error or ""), what
        view = map_view(case.map_type)
        assert case.op in ("ldx", "ldsx") and (view is None or
                                               view.serving(case.off, case.size) is None), what
        return "refused"
    assert r.accepted == kacc, what
    if not kacc:
        assert r.error == kerr, what
    return "agree"


def _run(cases, kmaps) -> Counter:
    tally: Counter = Counter()
    for c in cases:
        if c.map_type in kmaps:
            tally[compare(c, kmaps[c.map_type])] += 1
    return tally


def test_map_pointer_accesses_match_kernel(kmaps):
    cases = grid(list(kmaps))
    if not SLOW:
        cases = random.Random(20261204).sample(cases, min(SAMPLE, len(cases)))
    tally = _run(cases, kmaps)
    total = sum(tally.values())
    print(f"\nmap-pointer accesses: {total} cases over {len(kmaps)} map types; "
          f"{tally['agree']} agree with the kernel (verdict and error line), "
          f"{tally['refused']} accepted by the kernel and refused by ebee (unserved "
          f"members), 0 unsound accepts")
    assert total >= min(SAMPLE, 1000)


@pytest.mark.parametrize("map_type", [T.ARRAY, T.HASH, T.RINGBUF, T.QUEUE])
def test_every_served_member_is_readable(kmaps, map_type):
    """Each member the view serves, read whole and in aligned parts, as loads and
    sign-extending loads: the kernel and ebee both accept."""
    view = map_view(map_type)
    if view is None:
        pytest.skip("no kernel BTF")
    cases = [Case(map_type, off + part, size, op) for off, msize in view.members.values()
             for size in SIZES if size <= msize for part in range(0, msize, size)
             for op in ("ldx", "ldsx")]
    cases = [c for c in cases if c.valid()]
    assert cases
    for c in cases:
        assert compare(c, kmaps[map_type]) == "agree", c


@settings(max_examples=1000 if SLOW else N, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_arbitrary_offsets_match_kernel(kmaps, data):
    mt = data.draw(st.sampled_from(sorted(kmaps)))
    size = data.draw(st.sampled_from(sorted(SIZES)))
    op = data.draw(st.sampled_from(OPS))
    off = data.draw(st.integers(-64, map_view(mt).size + 64 if map_view(mt) else 1024))
    c = Case(mt, off, size, op)
    if c.valid():
        compare(c, kmaps[mt])
