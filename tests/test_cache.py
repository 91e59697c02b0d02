"""ebee.cache: entries are checked on every read; corrupt or stale ones are rebuilt.

Covers the store itself (checksum, key, truncation, the off switch) and its two users:
kernel BTF kept parsed (``BTF.load_vmlinux``) and JIT images (``JIT.compile``).
"""
from __future__ import annotations

from pathlib import Path

import pytest

import ebee
from ebee import cache
from ebee.btf import btf as btf_mod
from ebee.btf.btf import BTF
from ebee.btf.elf import btf_sections

ROOT = Path(__file__).resolve().parent.parent
CORE_OBJ = ROOT / "examples" / "c" / "core_task.o"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EBEE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EBEE_CACHE", raising=False)
    return tmp_path / "cache"


def entries(d: Path, kind: str) -> list[Path]:
    return sorted((d / kind).glob("*/*.bin"))


def test_round_trip_and_location(cache_dir):
    c = cache.Cache("t")
    key = cache.digest("a", b"b")
    assert c.get(key) is None
    c.put(key, b"payload")
    assert c.get(key) == b"payload"
    assert entries(cache_dir, "t") == [c.path(key)]


def test_default_location_is_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("EBEE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.root() == tmp_path / "ebee"


@pytest.mark.parametrize("damage", ["flip", "truncate", "other_key", "garbage"])
def test_damaged_entries_are_dropped(cache_dir, damage):
    c = cache.Cache("t")
    key, other = cache.digest("k"), cache.digest("other")
    c.put(key, b"x" * 100)
    p = c.path(key)
    raw = bytearray(p.read_bytes())
    if damage == "flip":
        raw[-10] ^= 1
    elif damage == "truncate":
        raw = raw[:-1]
    elif damage == "garbage":
        raw = bytearray(b"not a cache entry")
    else:                      # an intact entry of another key under this key's name
        c.put(other, b"x" * 100)
        raw = bytearray(c.path(other).read_bytes())
    p.write_bytes(bytes(raw))
    assert c.get(key) is None
    assert not p.exists()              # removed, so the next put rebuilds it
    c.put(key, b"y")
    assert c.get(key) == b"y"


def test_off_switch(cache_dir, monkeypatch):
    c = cache.Cache("t")
    key = cache.digest("k")
    c.put(key, b"1")
    monkeypatch.setenv("EBEE_CACHE", "0")
    assert c.get(key) is None
    c.put(cache.digest("k2"), b"2")
    monkeypatch.delenv("EBEE_CACHE")
    assert c.get(cache.digest("k2")) is None and c.get(key) == b"1"


# -- kernel BTF ---------------------------------------------------------------------------


def raw_btf(tmp_path: Path, name: str = "btf") -> Path:
    """A raw BTF file (what /sys/kernel/btf/vmlinux is), from an example object."""
    p = tmp_path / name
    p.write_bytes(btf_sections(CORE_OBJ.read_bytes()).btf)
    return p


def load(path: Path) -> BTF:
    """BTF.load_vmlinux(path) as a new process runs it (past the per-process cache)."""
    return btf_mod._load_cached.__wrapped__(str(path))


def summary(b: BTF) -> tuple:
    names = {t.name for t in b if t.name}
    return (b.format_raw(), sorted((n, [t.id for t in b.find_all(n)]) for n in names),
            sorted(b.core_index().items()), b.pointer_size)


def test_btf_parsed_once_then_read_back(cache_dir, tmp_path):
    path = raw_btf(tmp_path)
    cold = load(path)
    assert len(entries(cache_dir, "btf")) == 1
    warm = load(path)
    assert warm is not cold and warm._core_index is not None   # came with its index
    assert summary(warm) == summary(cold)
    fresh = BTF.from_bytes(path.read_bytes())                   # no cache involved
    assert summary(fresh) == summary(cold)


def test_btf_corrupt_entry_rebuilt(cache_dir, tmp_path):
    path = raw_btf(tmp_path)
    want = summary(load(path))
    (entry,) = entries(cache_dir, "btf")
    raw = bytearray(entry.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    entry.write_bytes(bytes(raw))
    assert summary(load(path)) == want
    (again,) = entries(cache_dir, "btf")
    assert again.read_bytes() != bytes(raw)          # rewritten intact
    assert summary(load(path)) == want


def test_btf_stale_entry_not_used(cache_dir, tmp_path):
    path = raw_btf(tmp_path)
    load(path)
    # another BTF at the same path (a new kernel): its own entry, never the old one's
    data = bytearray(path.read_bytes())
    other = BTF.from_bytes(bytes(data))
    first = next(t for t in other if t.name)
    data[data.index(first.name.encode() + b"\0")] ^= 0x20    # change one name's case
    path.write_bytes(bytes(data))
    new = load(path)
    assert summary(new) == summary(BTF.from_bytes(bytes(data)))
    assert len(entries(cache_dir, "btf")) == 2


def test_btf_cache_off(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EBEE_CACHE", "0")
    path = raw_btf(tmp_path)
    load(path)
    assert entries(cache_dir, "btf") == []


# -- JIT images ---------------------------------------------------------------------------

jit_runtime = pytest.importorskip("ebee.engines.jit.runtime")


def jit_image(src: str, checked: bool = True):
    """A fresh image (past the engine's per-process cache), as a new process compiles it."""
    return jit_runtime.JitImage(ebee.assemble(src), checked=checked)


def run_image(img, r1: int = 0) -> int:
    from ebee.engines import Machine
    from ebee.helpers import RUNTIME
    with Machine() as m:
        return img.bind(m, RUNTIME).run(r1).retval


PROG = "r0 = r1\nr0 *= 7\nr0 += 6\nexit"


def test_jit_image_compiled_once_then_loaded(cache_dir):
    cold = jit_image(PROG)
    assert not cold.from_cache and len(entries(cache_dir, "jit")) == 1
    warm = jit_image(PROG)
    assert warm.from_cache and warm.layout == cold.layout
    assert run_image(warm, 5) == run_image(cold, 5) == 41
    unchecked = jit_image(PROG, checked=False)          # another mode: its own entry
    assert not unchecked.from_cache and len(entries(cache_dir, "jit")) == 2


def test_jit_corrupt_entry_recompiled(cache_dir):
    jit_image(PROG)
    (entry,) = entries(cache_dir, "jit")
    raw = bytearray(entry.read_bytes())
    raw[-20] ^= 0xFF                        # anywhere in the payload: the checksum fails
    entry.write_bytes(bytes(raw))
    img = jit_image(PROG)
    assert not img.from_cache and run_image(img, 1) == 13
    assert jit_image(PROG).from_cache       # rewritten intact


def test_jit_stale_entry_not_used(cache_dir, tmp_path, monkeypatch):
    src = tmp_path / "translator.py"
    src.write_text("one")
    monkeypatch.setattr(jit_runtime, "_SOURCES", (*jit_runtime._SOURCES, str(src)))
    assert not jit_image(PROG).from_cache
    assert jit_image(PROG).from_cache
    src.write_text("an edited translator")  # the code that made the entry changed
    cache.source_digest.cache_clear()
    img = jit_image(PROG)
    assert not img.from_cache and run_image(img, 2) == 20
    cache.source_digest.cache_clear()


def test_jit_cache_off(cache_dir, monkeypatch):
    monkeypatch.setenv("EBEE_CACHE", "0")
    assert not jit_image(PROG).from_cache and not jit_image(PROG).from_cache
    assert entries(cache_dir, "jit") == []


# -- verifier verdicts ---------------------------------------------------------------------

from ebee import Program  # noqa: E402
from ebee.maps import Map  # noqa: E402
from ebee.program import verdict_key  # noqa: E402
from ebee.uapi import MapType, ProgType as P  # noqa: E402
from ebee.verifier import VerifierError  # noqa: E402


def xdp(src: str) -> Program:
    return Program.from_insns(ebee.assemble(src), P.XDP, verify=True)


def verdict_fields(r) -> tuple:
    return (r.accepted, r.log, r.error, r.insns_processed, r.states, r.errno, r.peak_states,
            r.max_states_per_insn, r.stack_depth, r.ctx_insns)


def lookup_src(m: Map, off: int = 0) -> str:
    return f"""
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r1 = map[id:{m.id}] ll
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto out
        r0 = *(u64 *)(r0 + {off})
    out:
        r0 = 2
        exit
    """


def test_verdict_computed_once_then_read_back(cache_dir):
    m = Map(MapType.ARRAY, 4, 8, 4)
    cold = xdp(lookup_src(m)).verdict()
    assert cold.accepted and cold.facts is not None
    assert len(entries(cache_dir, "verdicts")) == 1
    other = Map(MapType.ARRAY, 4, 8, 4)        # another map of the same definition: a hit
    warm = xdp(lookup_src(other)).verdict()
    assert warm.facts is None and verdict_fields(warm) == verdict_fields(cold)


def test_rejections_are_cached_and_still_refuse_to_run(cache_dir, monkeypatch):
    import ebee.program as program_mod
    calls = []
    real = program_mod.verify
    monkeypatch.setattr(program_mod, "verify", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    m = Map(MapType.ARRAY, 4, 8, 4)
    for _ in range(2):
        prog = xdp(lookup_src(m, off=8))       # past the 8-byte value
        with pytest.raises(VerifierError):
            prog.run(bytes(64))
        assert not prog.verifier_result.accepted
    assert len(calls) == 1                     # the second verdict came from the cache


def test_verdict_key_holds_what_decides_the_verdict(cache_dir):
    a, b = Map(MapType.ARRAY, 4, 8, 4), Map(MapType.ARRAY, 4, 16, 4)
    ka, kb = verdict_key(xdp(lookup_src(a))), verdict_key(xdp(lookup_src(b)))
    assert ka and kb and ka != kb                               # value size
    assert verdict_key(xdp(lookup_src(a, off=0))) != verdict_key(xdp(lookup_src(a, off=8)))
    p = xdp(lookup_src(a))
    p.expected_attach_type = None
    t = Program.from_insns(p.insns, P.SCHED_CLS, verify=True)
    assert verdict_key(t) != verdict_key(p)                     # program type
    # frozen maps are read as constants: their contents are part of the key
    ro = Map(MapType.ARRAY, 4, 8, 1)
    ro.update(0, (1).to_bytes(8, "little"))
    ro.freeze()
    ro2 = Map(MapType.ARRAY, 4, 8, 1)
    ro2.update(0, (2).to_bytes(8, "little"))
    ro2.freeze()
    src = "r1 = map[id:{}][0]+0 ll\nr0 = *(u64 *)(r1 + 0)\nexit"
    assert verdict_key(xdp(src.format(ro.id))) != verdict_key(xdp(src.format(ro2.id)))


def test_verdicts_of_programs_using_prog_arrays_are_not_cached(cache_dir):
    pa = Map(MapType.PROG_ARRAY, 4, 4, 2)
    prog = xdp(f"r2 = map[id:{pa.id}] ll\nr3 = 0\ncall 12\nr0 = 2\nexit")
    assert verdict_key(prog) is None
    prog.verdict()
    assert entries(cache_dir, "verdicts") == []


def test_corrupt_verdict_recomputed(cache_dir):
    m = Map(MapType.ARRAY, 4, 8, 4)
    want = verdict_fields(xdp(lookup_src(m)).verdict())
    (entry,) = entries(cache_dir, "verdicts")
    raw = bytearray(entry.read_bytes())
    raw[-3] ^= 0x55
    entry.write_bytes(bytes(raw))
    again = xdp(lookup_src(m)).verdict()
    assert again.facts is not None and verdict_fields(again) == want
    assert xdp(lookup_src(m)).verdict().facts is None            # rewritten intact
