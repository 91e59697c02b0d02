"""Loading verifies: a program runs only once the verifier has
accepted it, as in Linux; ``verify=False`` / ``--no-verify`` is the explicit opt-in
to running unverified programs (still with checked memory access)."""
from __future__ import annotations

from pathlib import Path

import pytest

import ebee
from ebee import verifier
from ebee.cli.main import main
from ebee.verifier import VerifierError
from ebee import MemoryFault

DATA = Path(__file__).resolve().parent / "data" / "verifier"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
OFF_BY_ONE = DATA / "xdp_offbyone.o"
RODATA_GATE = DATA / "rodata_gate.o"
IPV4 = bytes(12) + b"\x08\x00" + bytes(50)


def test_a_rejected_program_does_not_run():
    with ebee.load(OFF_BY_ONE) as obj:
        prog = obj.programs["xdp_offbyone"]
        with pytest.raises(VerifierError) as ei:
            prog.run(IPV4)
        err = ei.value
        assert isinstance(err, ebee.LoadError)
        assert err.prog_name == "xdp_offbyone"
        assert not err.result.accepted
        # the error line is the verifier's own, and the same a fresh verification gives
        assert err.result.error == verifier.verify(prog).error
        assert err.summary.endswith(err.result.error)
        assert str(err).startswith(err.summary + "\n  at insn ")       # and where, and the log
        assert err.result.error == "R1 offset is outside of the packet"   # Linux's words
        assert prog.verifier_result is err.result


def test_unverified_execution_is_an_explicit_opt_in():
    with ebee.load(OFF_BY_ONE, verify=False) as obj:
        prog = obj.programs["xdp_offbyone"]
        assert prog.run(IPV4).retval == 2                         # XDP_PASS
        assert prog.verifier_result is None or not prog.verifier_result.accepted


def test_each_program_is_verified_once(monkeypatch):
    calls = []
    real = verifier.verify

    def counting(prog, **kw):
        calls.append(getattr(prog, "name", None))
        return real(prog, **kw)

    monkeypatch.setattr(ebee.program, "verify", counting)
    monkeypatch.setenv("EBEE_CACHE", "0")     # a cached verdict would need no verifier call
    with ebee.load(EXAMPLES / "c" / "xdp_firewall.o") as obj:
        prog = obj.programs["xdp_firewall"]
        for _ in range(3):
            prog.run(IPV4)
        assert calls == ["xdp_firewall"]
        assert prog.verifier_result.accepted
        assert prog.verifier_result.insns_processed > 0


def test_verification_waits_for_rodata_set_after_load():
    """The verifier reads frozen .rodata as constants, so the verdict depends on what
    user space wrote between load and first run (libbpf: between open and load)."""
    with ebee.load(RODATA_GATE) as obj:
        assert obj.programs["rodata_gate"].run(bytes(64)).retval == 2
    with ebee.load(RODATA_GATE) as obj:
        obj.rodata.unsafe = 1
        with pytest.raises(VerifierError, match=r"R1 invalid mem access 'map_value_or_null'"):
            obj.programs["rodata_gate"].run(bytes(64))
    with ebee.load(RODATA_GATE, verify=False) as obj:
        obj.rodata.unsafe = 1
        with pytest.raises(MemoryFault):     # unverified, the NULL dereference is caught at run time
            obj.programs["rodata_gate"].run(bytes(64))


def test_cli_run_refuses_a_rejected_object(capsys):
    assert main(["run", str(OFF_BY_ONE), "--data-hex", IPV4.hex()]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"{OFF_BY_ONE}: error: program 'xdp_offbyone' rejected by the "
                          f"verifier: R1 offset is outside of the packet")
    assert main(["run", str(OFF_BY_ONE), "--data-hex", IPV4.hex(), "--no-verify"]) == 0
    assert "retval: 2" in capsys.readouterr().out


def test_cli_run_verifies_typed_raw_programs(tmp_path, capsys):
    src = tmp_path / "no_r0.s"
    src.write_text("r1 = 0\nexit\n")
    assert main(["run", str(src), "--type", "socket", "--data-hex", "00" * 64]) == 2
    err = capsys.readouterr().err
    assert "rejected by the verifier: R0 !read_ok" in err
    assert main(["run", str(src), "--type", "socket", "--data-hex", "00" * 64,
                 "--no-verify"]) == 0


@pytest.mark.parametrize("name", ["list_push_pop", "rbtree_add_remove"])
@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_verified_list_and_rbtree_programs_run(name, engine):
    """bpf_obj_new, a global bpf_spin_lock, bpf_list push/pop and bpf_rbtree add
    (with its `less` callback)/first/remove: verified like Linux
    (tests/test_verifier_kernel_diff.py compares the logs), then run."""
    from ebee.engines import jit
    if engine == "jit" and not jit.available():
        pytest.skip(f"no JIT: {jit.unavailable_reason()}")
    with ebee.load(DATA / f"{name}.o") as obj:
        prog = obj.programs[name]
        assert prog.run(bytes(64), engine=engine).retval == 42
        assert prog.verifier_result.accepted


@pytest.mark.parametrize("name,error", [
    ("list_after_unlock", "R6 invalid mem access 'scalar'"),
    ("map_wronly", "read from map forbidden, value_size=8 off=0 size=8"),
])
def test_rejected_programs_do_not_run(name, error):
    with ebee.load(DATA / f"{name}.o") as obj:
        with pytest.raises(VerifierError) as ei:
            obj.programs[name].run(bytes(64))
        assert ei.value.result.error == error


def test_verify_facts_show_what_was_proved(capsys):
    """`ebee verify --facts`: each instruction with the facts over every path."""
    path = str(EXAMPLES / "c" / "xdp_firewall.o")
    assert main(["verify", path, "--log-level", "0", "--facts"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("xdp_firewall: accepted")
    by_pc = {int(ln.split(":")[0]): ln for ln in lines[1:]}
    assert by_pc[5].endswith("; R2=ptr_to_packet_end R3=ptr_to_packet(off=14)")
    assert by_pc[9].endswith("; R3=scalar(umax=65280) R4=scalar(umax=255)")
    assert by_pc[21].endswith("; R0=ptr_to_map_value_or_null")
    assert main(["verify", path, "--facts", "--json"]) == 0
    rows = __import__("json").loads(capsys.readouterr().out)["facts"]
    assert all(row["reached"] for row in rows)
    assert rows[5]["regs"]["r3"] == {"type": "PTR_TO_PACKET", "off": 14, "umin": 0, "umax": 0,
                                     "smin": 0, "smax": 0, "const": 0}
