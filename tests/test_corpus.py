"""The ebpf-samples corpus: every object outside invalid/ loads, malformed ones don't.

``tests/data/corpus_listing.json`` lists, per object, the programs (section,
type, instruction slots) and maps (type, key, value, max_entries) ebee finds;
regenerate it with ``EBEE_UPDATE_CORPUS=1`` after a deliberate change.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ebee
import ebee.fs

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "ebpf-samples"
LISTING = ROOT / "tests" / "data" / "corpus_listing.json"
EXAMPLES = ROOT / "examples" / "c"

# Objects whose own loaders set map attributes before creating the maps (as a libbpf
# user does between open and load); the kernel would refuse them as written.
MAP_OVERRIDES = {
    # Falco's loader sizes its per-CPU scratch arrays to the number of CPUs
    "falco/probe.o": {m: {"max_entries": 2} for m in
                      ("frame_scratch_map", "tmp_scratch_map", "local_state_map")},
    # PREVAIL verifier tests (not loadable by Linux as written): an array with an empty
    # value and one with an 8-byte key; the programs are what they test
    "build/badrelo.o": {"map": {"value_size": 4}},
    "build/exposeptr2.o": {"map": {"key_size": 4}},
}

# Files in invalid/ that are well-formed objects: libbpf opens them too.  PREVAIL keeps
# this one in invalid/ because its verifier timed out on the 35-deep tail-call chain.
WELL_FORMED_IN_INVALID = {"timeout-29db93548c671165313b314d4f83a3eefa24df37"}


def _objects(invalid: bool) -> list[str]:
    if not CORPUS.is_dir():
        return []
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.glob("*/*")
                  if (p.parent.name == "invalid") == invalid and p.is_file())


def _load(rel: str, tmp_path):
    spec = ebee.open_object(CORPUS / rel)
    for name, attrs in MAP_OVERRIDES.get(rel, {}).items():
        for k, v in attrs.items():
            setattr(spec.maps[name], k, v)
    return ebee.load(spec, store=ebee.fs.PinStore(tmp_path / "pins.sqlite3"))


def listing(obj) -> dict:
    return {
        "programs": {n: [p.section, p.type.name, sum(i.slots for i in p.insns)]
                     for n, p in obj.programs.items()},
        "maps": {n: [m.type.name, m.key_size, m.value_size, m.max_entries]
                 for n, m in obj.maps.items()},
    }


@pytest.fixture(scope="module")
def expected() -> dict:
    if os.environ.get("EBEE_UPDATE_CORPUS"):
        return {}
    if not LISTING.exists():
        pytest.skip(f"{LISTING} missing; run with EBEE_UPDATE_CORPUS=1")
    return json.loads(LISTING.read_text())


_found: dict[str, dict] = {}


@pytest.mark.parametrize("rel", _objects(False) or ["<no corpus>"])
def test_corpus_object_loads(rel, tmp_path, expected):
    if rel == "<no corpus>":
        pytest.skip(f"corpus not found at {CORPUS}")
    obj = _load(rel, tmp_path)
    got = listing(obj)
    _found[rel] = got
    assert obj.programs, f"{rel}: no programs"
    for p in obj.programs.values():
        assert p.insns and p.license == obj.license
    obj.close()
    if expected:
        assert got == expected.get(rel), f"{rel}: programs/maps differ from {LISTING.name}"


def test_corpus_listing_is_complete(expected):
    """Every listed object still exists, and the update mode writes the listing."""
    names = _objects(False)
    if not names:
        pytest.skip("no corpus")
    if os.environ.get("EBEE_UPDATE_CORPUS"):
        if len(_found) == len(names):
            LISTING.write_text(json.dumps(_found, indent=1, sort_keys=True) + "\n")
        return
    assert sorted(expected) == names


def test_corpus_totals(expected):
    if not expected:
        pytest.skip("update mode")
    progs = sum(len(v["programs"]) for v in expected.values())
    maps = sum(len(v["maps"]) for v in expected.values())
    assert len(expected) >= 150 and progs >= 500 and maps >= 800


@pytest.mark.parametrize("rel", _objects(True) or ["<no corpus>"])
def test_invalid_objects_are_refused(rel, tmp_path):
    if rel == "<no corpus>":
        pytest.skip(f"corpus not found at {CORPUS}")
    path = CORPUS / rel
    if path.name in WELL_FORMED_IN_INVALID:
        _load(rel, tmp_path).close()
        return
    with pytest.raises(ebee.LoadError) as ei:
        _load(rel, tmp_path)
    msg = str(ei.value)
    assert msg.startswith(str(path) + ": ") and "\n" not in msg and len(msg) > len(str(path)) + 10


def test_cli_reports_one_line_exit_2():
    bad = [CORPUS / "invalid" / r.split("/", 1)[1] for r in _objects(True)
           if r.split("/", 1)[1] not in WELL_FORMED_IN_INVALID][:1]
    if not bad:
        pytest.skip("no corpus")
    r = subprocess.run([sys.executable, "-m", "ebee", "prog", "dump", "xlated", str(bad[0])],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and str(bad[0]) in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------- fuzzing

_SEEDS = [p.read_bytes() for p in (EXAMPLES / "bpf2bpf.o", EXAMPLES / "globals.o",
                                    EXAMPLES / "tail_calls.o", EXAMPLES / "core_task.o",
                                    CORPUS / "linux" / "sockex3_kern.o",
                                    CORPUS / "linux" / "test_map_in_map_kern.o")
          if p.exists()]


def _load_mutant(data: bytes, tmp_path) -> None:
    try:
        obj = ebee.load(data, store=ebee.fs.PinStore(tmp_path / "fuzz.sqlite3"))
    except ebee.LoadError as e:
        assert str(e).startswith("<bytes>: ") and "\n" not in str(e)
    else:
        obj.close()


@settings(max_examples=int(os.environ.get("EBEE_FUZZ_EXAMPLES", "150")), deadline=20000,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 5), cut=st.integers(0, 1 << 20))
def test_truncated_objects(seed, cut, tmp_path):
    data = _SEEDS[seed % len(_SEEDS)]
    _load_mutant(data[:cut % len(data)], tmp_path)


@settings(max_examples=int(os.environ.get("EBEE_FUZZ_EXAMPLES", "150")), deadline=20000,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 5),
       edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1,
                      max_size=8))
def test_mutated_objects(seed, edits, tmp_path):
    data = bytearray(_SEEDS[seed % len(_SEEDS)])
    for pos, val in edits:
        data[pos % len(data)] = val
    _load_mutant(bytes(data), tmp_path)
