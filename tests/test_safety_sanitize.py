"""The soundness oracle: verified programs run with every access checked anyway.

``sanitize=True`` (``ebee run --sanitize``) takes a program the verifier
accepts and runs it in the interpreter or the checked JIT rather than the
JIT's unchecked code; a fault then is the verifier's fault and raises
``VerifierSoundnessError`` naming the instruction.  The differential fuzz
runs generated programs (``verifier_strategies``: about half of them
broken) that ebee's verifier accepts on generated packets, in both engines:
zero faults allowed.  ``EBEE_SLOW=1`` (or ``EBEE_SANITIZE_EXAMPLES``) runs
more.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ebee
from ebee.asm import assemble
from ebee.errors import VerifierSoundnessError, VMError
from ebee.program import Program
from ebee.testrun.common import TestRunError
from ebee.uapi import MapType, ProgType
from ebee.verifier import VerifierError, verify

from test_safety_jmp32 import pointer_comparisons
from test_safety_spill import spill_programs
from verifier_strategies import verifier_programs

SLOW = os.environ.get("EBEE_SLOW") == "1"
N = int(os.environ.get("EBEE_SANITIZE_EXAMPLES", "1000" if SLOW else "60"))
ROOT = Path(__file__).resolve().parent.parent
STATS = {"programs": 0, "accepted": 0, "runs": 0, "faults": 0}


class UnsoundlyAccepted(Program):
    """A program as an unsound verifier would judge it: the verdict of a harmless
    program (what a verifier bug looks like from the runtime)."""

    def verdict(self):
        return verify(assemble("r0 = 2\nexit"), prog_type=self.type)


@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_a_fault_in_a_verified_program_is_a_soundness_error(engine):
    p = UnsoundlyAccepted.from_insns(assemble("r1 = 0x1000\nr0 = *(u64 *)(r1 +8)\nexit"),
                                     ProgType.XDP)
    with pytest.raises(VerifierSoundnessError) as e:
        p.run(bytes(64), sanitize=True, engine=engine)
    assert e.value.pc == 1 and e.value.insn == "r0 = *(u64 *)(r1 +8)"
    assert "the verifier accepted this program, but it faulted: invalid read of 8 bytes " \
           "at 0x1008" in str(e.value)


def test_sanitize_needs_a_program_the_verifier_accepts():
    p = Program.from_insns(assemble("r1 = 0\nr0 = *(u64 *)(r1 +0)\nexit"), ProgType.XDP)
    with pytest.raises(VerifierError, match="R1 invalid mem access 'scalar'"):
        p.run(bytes(64), sanitize=True)


@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_sanitized_runs_give_the_same_results(engine):
    obj = ebee.load(str(ROOT / "examples" / "c" / "xdp_firewall.o"))
    try:
        prog = next(iter(obj.programs.values()))
        frame = bytes(12) + b"\x08\x00" + bytes(50)
        assert prog.run(frame, sanitize=True, engine=engine).retval == prog.run(frame).retval
    finally:
        obj.close()


def test_cli_sanitize(capsys, tmp_path, monkeypatch):
    from ebee.cli.main import main
    monkeypatch.setenv("EBEE_PIN_STORE", str(tmp_path / "pins.sqlite3"))
    obj = str(ROOT / "examples" / "c" / "xdp_firewall.o")
    pcap = str(ROOT / "examples" / "pcap" / "mixed.pcap")
    assert main(["run", obj, "--pcap", pcap, "--sanitize", "--json"]) == 0
    assert '"packets": 200' in capsys.readouterr().out
    assert main(["run", obj, "--pcap", pcap, "--sanitize", "--no-verify"]) == 2
    assert "--sanitize checks verified programs" in capsys.readouterr().err


@pytest.fixture(scope="module")
def fuzz_maps():
    arr = ebee.Map(MapType.ARRAY, 4, 48, 4)
    hsh = ebee.Map(MapType.HASH, 4, 48, 16)
    yield arr, hsh
    arr.close()
    hsh.close()


@settings(max_examples=N, deadline=None, database=None, derandomize=not SLOW,
          suppress_health_check=list(HealthCheck))
@given(prog=verifier_programs(max_snippets=8),
       packets=st.lists(st.binary(min_size=0, max_size=128), min_size=1, max_size=3))
def test_verified_programs_never_fault(fuzz_maps, prog, packets):
    arr, hsh = fuzz_maps
    text, pt = prog
    p = Program.from_insns(assemble(text.replace("{ARRAY}", str(arr.id))
                                    .replace("{HASH}", str(hsh.id))), pt)
    STATS["programs"] += 1
    if not p.verify().accepted:
        return
    STATS["accepted"] += 1
    for engine in ("interp", "jit"):
        for data in packets:
            STATS["runs"] += 1
            try:
                p.run(data, sanitize=True, engine=engine)
            except TestRunError:
                pass                    # an input BPF_PROG_TEST_RUN refuses (runt frames)
            except VerifierSoundnessError:
                STATS["faults"] += 1
                raise
            except VMError as e:        # nothing else may stop a verified program either
                raise AssertionError(f"verified program stopped: {e}\n{text}") from e


@pytest.fixture(scope="module")
def safety_maps():
    arr = ebee.Map(MapType.ARRAY, 4, 48, 4)
    rb = ebee.Map(MapType.RINGBUF, 0, 0, 4096)
    yield {"ARRAY": arr, "RINGBUF": rb}
    arr.close()
    rb.close()


def _run_sanitized(text: str, maps: dict, packets) -> None:
    for k, m in maps.items():
        text = text.replace("{" + k + "}", str(m.id))
    p = Program.from_insns(assemble(text), ProgType.SCHED_CLS)
    STATS["programs"] += 1
    if not p.verify().accepted:
        return
    STATS["accepted"] += 1
    for engine in ("interp", "jit"):
        for data in packets:
            STATS["runs"] += 1
            try:
                p.run(data, sanitize=True, engine=engine)
            except TestRunError:
                pass
            except VerifierSoundnessError:
                STATS["faults"] += 1
                raise


FRAMES = st.lists(st.binary(min_size=14, max_size=96), min_size=1, max_size=2)


@settings(max_examples=N, deadline=None, database=None, derandomize=not SLOW,
          suppress_health_check=list(HealthCheck))
@given(text=pointer_comparisons(), packets=FRAMES)
def test_verified_pointer_comparisons_never_fault(safety_maps, text, packets):
    """The programs of the 32-bit pointer-test hole (test_safety_jmp32), as the oracle
    sees them: any that ebee accepts runs clean."""
    _run_sanitized(text, safety_maps, packets)


@settings(max_examples=N, deadline=None, database=None, derandomize=not SLOW,
          suppress_health_check=list(HealthCheck))
@given(text=spill_programs(), packets=FRAMES)
def test_verified_spills_never_fault(safety_maps, text, packets):
    _run_sanitized(text, safety_maps, packets)


def test_fuzz_ran():
    """The fuzz above judged enough programs (and reports its counts)."""
    if STATS["programs"] == 0:
        pytest.skip("the fuzz did not run in this session")
    print(f"sanitize fuzz: {STATS}")
    assert STATS["faults"] == 0
    assert STATS["accepted"] >= STATS["programs"] // 5
