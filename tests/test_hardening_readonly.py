"""Read-only images: a verified program's instructions, the JIT's code pages, and maps
programs may only read (BPF_F_RDONLY_PROG, frozen).

The map cases are decided by the verifier for verified programs -- its verdict,
error and errno are compared with Linux's for the same program and map -- and by
checked memory for unverified ones, in both engines.
"""
from __future__ import annotations

import copy
import errno
import struct
from dataclasses import replace

import pytest

from ebee import Program, assemble, maps
from ebee.errors import MemoryFault, VMError
from ebee.isa import Kind
from ebee.maps.errors import MapError
from ebee.program import ImmutableProgramError
from ebee.uapi import BPF_F_RDONLY_PROG, ENOTSUPP, MapType, ProgType

SRC = "r0 = 5\nw0 += 7\nexit"


# ----------------------------------------------------------- program instructions

def _mutations(p):
    one = p.insns[0]
    return {
        "setitem": lambda: p.insns.__setitem__(0, one),
        "slice": lambda: p.insns.__setitem__(slice(0, 1), [one]),
        "delitem": lambda: p.insns.__delitem__(0),
        "append": lambda: p.insns.append(one),
        "extend": lambda: p.insns.extend([one]),
        "insert": lambda: p.insns.insert(0, one),
        "pop": lambda: p.insns.pop(),
        "remove": lambda: p.insns.remove(one),
        "clear": lambda: p.insns.clear(),
        "reverse": lambda: p.insns.reverse(),
        "iadd": lambda: p.insns.__iadd__([one]),
        "imul": lambda: p.insns.__imul__(2),
        "assign": lambda: setattr(p, "insns", [one]),
    }


@pytest.mark.parametrize("how", sorted(_mutations(Program.from_insns(assemble(SRC), 6))))
@pytest.mark.parametrize("after", ["verify", "run_verified", "run_unverified"])
def test_instructions_are_read_only_once_verified_or_run(how, after):
    p = Program.from_insns(assemble(SRC), ProgType.XDP, name="ro",
                           verify=after == "run_verified")
    if after == "verify":
        assert p.verdict().accepted
    else:
        assert p.run(bytes(16)).retval == 12
    before = list(p.insns)
    with pytest.raises(ImmutableProgramError, match="'ro': its instructions are read-only"):
        _mutations(p)[how]()
    assert list(p.insns) == before and p.sealed
    assert p.run(bytes(16)).retval == 12


def test_instructions_can_change_until_then_and_copies_stay_free():
    p = Program.from_insns(assemble(SRC), ProgType.XDP, verify=True)
    p.insns[0] = assemble("r0 = 1")[0]               # not verified yet: still editable
    assert p.run(bytes(16)).retval == 8
    mine = list(p.insns)
    mine.append(mine[0])                             # a copy is the caller's own list
    for c in (copy.copy(p.insns), copy.deepcopy(p.insns), p.insns[:]):
        assert type(c) is list and c == list(p.insns)
        c.clear()
    assert len(p.insns) == 3
    # the instructions themselves were always immutable
    with pytest.raises(AttributeError):
        p.insns[0].imm = 3


def test_rejected_programs_stay_editable():
    p = Program.from_insns(assemble("r0 = *(u64 *)(r10 + 8)\nexit"), ProgType.XDP)
    assert not p.verdict().accepted
    p.insns[0] = assemble("r0 = 0")[0]
    assert p.verdict().accepted and p.sealed


# ------------------------------------------------------------------ JIT code pages

def _maps() -> list[tuple[int, int, str]]:
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            rng, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in rng.split("-"))
            out.append((lo, hi, perms))
    return out


def _wx(maps_) -> set[tuple[int, int]]:
    return {(lo, hi) for lo, hi, p in maps_ if "w" in p and "x" in p}


def test_jit_code_is_never_writable_and_executable(monkeypatch):
    jit = pytest.importorskip("ebee.engines.jit.runtime", reason="llvmlite is not installed")
    from ebee.engines import Machine
    from ebee.engines.jit.codegen import CodeLibrary
    seen: list[list] = []
    finalize = CodeLibrary.finalize

    def watched(self):
        seen.append(_maps())       # the code is written, not yet made executable
        finalize(self)
        seen.append(_maps())
    monkeypatch.setattr(CodeLibrary, "finalize", watched)
    jit.JIT._cache.clear()
    baseline = _wx(_maps())
    machines, images = [], []
    try:
        for k in range(12):
            src = f"r1 = {k}\nr0 = r1\nr0 += 3\ncall 7\nr0 += {k}\nexit"   # 7: get_prandom_u32
            m = Machine()
            b = m.bind(assemble(src), engine="jit")
            b.run()
            machines.append(m)
            images.append(b.image)
        seen.append(_maps())
    finally:
        for m in machines:
            m.close()
    assert len(seen) >= 2 * 12
    for snap in seen:
        # no mapping the JIT made is ever writable and executable: the only W+X pages in the
        # process are the ones that were there before it compiled anything (CPython 3.11's
        # ctypes trampolines, see docs/hardening.md)
        assert _wx(snap) <= baseline, [hex(lo) for lo, _ in _wx(snap) - baseline]
    now = _maps()
    for img in images:
        for addr in (img.run_addr, img.batch_addr, img.main_addr):
            (perms,) = [p for lo, hi, p in now if lo <= addr < hi]
            assert perms.startswith("r-x"), (hex(addr), perms)


# ------------------------------------------------------------------- read-only maps

_HEAD = "*(u32 *)(r10 -4) = 0\nr2 = r10\nr2 += -4\nr1 = map[id:{id}]\n"
WRITES = {
    "st": _HEAD + "call 1\nif r0 == 0 goto +1\n*(u64 *)(r0 +0) = 1\nr0 = 0\nexit",
    "stx": _HEAD + "call 1\nif r0 == 0 goto +2\nr1 = 7\n*(u32 *)(r0 +4) = r1\nr0 = 0\nexit",
    "atomic": _HEAD + "call 1\nif r0 == 0 goto +2\nr1 = 1\nlock *(u64 *)(r0 +0) += r1\n"
                      "r0 = 0\nexit",
    "xchg": _HEAD + "call 1\nif r0 == 0 goto +2\nr1 = 1\nr1 = xchg_64(r0 + 0, r1)\n"
                    "r0 = 0\nexit",
}
HELPERS = {
    "update": "*(u64 *)(r10 -16) = 5\n" + _HEAD + "r3 = r10\nr3 += -16\nr4 = 0\ncall 2\n"
                                                 "r0 = 0\nexit",
    "delete": _HEAD + "call 3\nr0 = 0\nexit",
}
READ = _HEAD + "call 1\nif r0 == 0 goto +1\nr0 = *(u64 *)(r0 +0)\nr0 = 0\nexit"
PROGS = {**WRITES, **HELPERS, "read": READ}
KEY0, VALUE = struct.pack("<I", 0), struct.pack("<Q", 0x1122334455667788)
CASES = [(mt, flags, frozen, entries)
         for mt in (MapType.ARRAY, MapType.HASH)
         for flags, frozen in ((0, False), (BPF_F_RDONLY_PROG, False), (0, True),
                               (BPF_F_RDONLY_PROG, True))
         for entries in ((1, 4) if mt is MapType.ARRAY else (4,))]


def _ids(c):
    mt, flags, frozen, entries = c
    return f"{mt.name.lower()}-{'rdonly_prog' if flags else 'rw'}{'-frozen' if frozen else ''}-{entries}"


def _ebee_map(mt, flags, frozen, entries):
    m = maps.Map(mt, 4, 8, entries, flags)
    m.update(KEY0, VALUE)
    if frozen:
        m.freeze()
    return m


def _expect(flags, frozen, mt, entries, name) -> tuple[bool, int, str | None]:
    """Linux's verdict, read from kernel/bpf/verifier.c (and checked against the kernel
    below where bpf() works)."""
    direct = flags and frozen and mt is MapType.ARRAY and entries != 1
    if direct and name in ("read", "xchg"):
        # the read (xchg fetches first) goes to array_map_direct_value_addr(), which
        # serves one-entry arrays only
        return False, ENOTSUPP, None
    if flags and name in WRITES:
        return False, errno.EACCES, "write into map forbidden, value_size=8 off="
    if flags and name in HELPERS:
        return False, errno.EACCES, "write into map forbidden"
    return True, 0, None


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("name", sorted(PROGS))
def test_verifier_keeps_read_only_maps_read_only(case, name):
    mt, flags, frozen, entries = case
    m = _ebee_map(*case)
    try:
        r = Program.from_insns(assemble(PROGS[name].format(id=m.id)),
                               ProgType.SOCKET_FILTER).verify()
        ok, err, msg = _expect(flags, frozen, mt, entries, name)
        assert r.accepted == ok, r.error
        if not ok:
            assert r.errno == err and (msg is None or r.error.startswith(msg)), r.error
    finally:
        m.close()


@pytest.mark.kernel
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_read_only_map_verdicts_match_the_kernel(case, kernel):
    from ebee.kernel.maps import KernelMap
    from ebee.kernel.prog import KernelLoadError, KernelProgram
    mt, flags, frozen, entries = case
    km = KernelMap(mt, 4, 8, entries, flags)
    em = _ebee_map(*case)
    try:
        km.update(KEY0, VALUE)
        if frozen:
            km.freeze()
        for name, src in PROGS.items():
            kinsns = [replace(i, imm=km.fd) if i.kind is Kind.LD_IMM64 else i
                      for i in assemble(src.format(id=0))]
            try:
                KernelProgram(kinsns, ProgType.SOCKET_FILTER, log_level=1).close()
                theirs = (True, 0, None)
            except KernelLoadError as e:
                log = [ln for ln in e.log.splitlines() if ln.strip()
                       and not ln.startswith(("processed ", "verification time"))]
                theirs = (False, e.errno, log[-1] if log else "")
            ours = Program.from_insns(assemble(src.format(id=em.id)),
                                      ProgType.SOCKET_FILTER).verify(log_level=1)
            assert ours.accepted == theirs[0], (name, theirs, ours.error)
            if not ours.accepted:
                assert ours.errno == theirs[1], (name, theirs, ours.error)
                if theirs[1] != ENOTSUPP:        # Linux logs no reason for this one
                    assert ours.error == theirs[2], name
        # user space: a frozen map refuses updates with EPERM in both, reads still work
        for target in (km, em):
            if frozen:
                with pytest.raises((OSError, MapError)) as ei:
                    target.update(KEY0, VALUE)
                assert ei.value.errno == errno.EPERM
            assert target.lookup(KEY0)[:8] == VALUE
    finally:
        km.close()
        em.close()


@pytest.mark.parametrize("engine", ["interp", "jit"])
@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("mt", [MapType.ARRAY, MapType.HASH])
def test_unverified_programs_cannot_write_rdonly_prog_maps(engine, frozen, mt):
    """Unverified programs run checked: a store into a read-only value faults, a write
    helper is refused, and the value is unchanged."""
    if engine == "jit":
        pytest.importorskip("ebee.engines.jit.runtime", reason="llvmlite is not installed")
    m = _ebee_map(mt, BPF_F_RDONLY_PROG, frozen, 4)
    try:
        for name, src in {**WRITES, **HELPERS}.items():
            p = Program.from_insns(assemble(src.format(id=m.id)), ProgType.SOCKET_FILTER)
            want = MemoryFault if name in WRITES else VMError
            with pytest.raises(want) as ei:
                p.run(bytes(64), engine=engine)
            assert "read-only" in str(ei.value), (name, str(ei.value))
            assert m.lookup(KEY0) == VALUE, name
        p = Program.from_insns(assemble(READ.format(id=m.id)), ProgType.SOCKET_FILTER)
        assert p.run(bytes(64), engine=engine).retval == 0
    finally:
        m.close()


@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_frozen_maps_stay_writable_to_programs(engine):
    """Freezing (BPF_MAP_FREEZE) locks out user space only; Linux lets programs write."""
    if engine == "jit":
        pytest.importorskip("ebee.engines.jit.runtime", reason="llvmlite is not installed")
    m = _ebee_map(MapType.ARRAY, 0, True, 1)
    try:
        p = Program.from_insns(assemble(WRITES["st"].format(id=m.id)), ProgType.SOCKET_FILTER,
                               verify=True)
        p.run(bytes(64), engine=engine)
        assert m.lookup(KEY0) == struct.pack("<Q", 1)
        with pytest.raises(MapError) as ei:
            m.update(KEY0, VALUE)
        assert ei.value.errno == errno.EPERM
    finally:
        m.close()
