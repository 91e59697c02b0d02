"""The verifier on hand-written programs: verdicts, Linux's messages, logs, facts, CLI.

The expected messages were taken from Linux 6.18 (the same programs are
loaded into the kernel by tests/test_verifier_kernel_diff.py); these tests
need no kernel.
"""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ebee
from ebee.asm import assemble
from ebee.uapi import MapType, ProgType
from ebee.verifier import VerifierError, verify

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "c"
BROKEN = ROOT / "tests" / "data" / "verifier"


@pytest.fixture(scope="module")
def maps():
    arr = ebee.Map(MapType.ARRAY, 4, 48, 4, name="arr")
    hsh = ebee.Map(MapType.HASH, 4, 48, 16, name="hsh")
    yield {"ARRAY": arr.id, "HASH": hsh.id}
    arr.close()
    hsh.close()


def run(src: str, pt=ProgType.XDP, maps=None, **kw):
    for name, mid in (maps or {}).items():
        src = src.replace(name, str(mid))
    return verify(assemble(src), prog_type=pt, **kw)


CASES = [
    ("r0 = r5\nexit", ProgType.XDP, "R5 !read_ok"),
    ("exit", ProgType.XDP, "R0 !read_ok"),
    ("r0 = 0\nexit\nr0 = 1\nexit", ProgType.XDP, "unreachable insn 2"),
    ("r0 = 0\nif r0 == 0 goto +5\nexit", ProgType.XDP, "jump out of range from insn 1 to 7"),
    ("r0 = *(u64 *)(r10 -520)\nexit", ProgType.XDP, "invalid read from stack R10 off=-520 size=8"),
    ("r10 = 0\nexit", ProgType.XDP, "frame pointer is read only"),
    ("r1 += 4\nr0 = *(u32 *)(r1 +0)\nexit", ProgType.XDP,
     "dereference of modified ctx ptr R1 off=4 disallowed"),
    ("r2 = *(u32 *)(r1 +0)\nr0 = *(u8 *)(r2 +0)\nexit", ProgType.XDP,
     "R2 offset is outside of the packet"),
    ("r0 = 1\nr0 /= 0\nexit", ProgType.XDP, "div by zero"),
    ("r0 = 1\nr0 <<= 64\nexit", ProgType.XDP, "invalid shift 64"),
    ("r0 = r10\nr0 += r10\nexit", ProgType.XDP, "R0 pointer += pointer prohibited"),
    ("r0 = 2\nexit", ProgType.CGROUP_SKB,
     "At program exit the register R0 has smin=2 smax=2 should have been in [0, 1]"),
    ("call bpf_get_prandom_u32\nexit", ProgType.CGROUP_SKB,
     "At program exit the register R0 has unknown scalar value should have been in [0, 1]"),
    ("r0 = 0\nl1:\ngoto l1", ProgType.XDP, "old state: R0=0 R1=ctx() R10=fp0"),
    ("r0 = 0\n*(u64 *)(r10 -6) = r0\nexit", ProgType.XDP,
     "misaligned stack access off 0+0+-6 size 8"),
    ("r6 = r1\nr0 = *(u8 *)skb[0]\nexit", ProgType.XDP,
     "BPF_LD_[ABS|IND] instructions not allowed for this program type"),
    ("r0 = r10\nexit", ProgType.SOCKET_FILTER, None),
    ("r2 = r10\nr2 += -40\n" + "".join(f"*(u64 *)(r10 -{8 * i}) = 0\n" for i in range(1, 6)) +
     "r3 = 36\nr4 = 0\nr5 = 0\ncall bpf_sk_lookup_tcp\nr0 = 0\nexit", ProgType.SCHED_CLS,
     "BPF_EXIT instruction in main prog would lead to reference leak"),
]


@pytest.mark.parametrize("src,pt,error", CASES)
def test_linux_messages(src, pt, error):
    r = run(src, pt)
    assert r.error == error
    assert r.accepted is (error is None)


MAP_CASES = [
    ("*(u32 *)(r10 -4) = 0\nr2 = r10\nr2 += -4\nr1 = map[id:ARRAY]\ncall bpf_map_lookup_elem\n"
     "if r0 == 0 goto +2\nr0 = *(u32 *)(r0 +48)\nexit\nr0 = 0\nexit",
     "R0 min value is outside of the allowed memory range"),
    ("*(u32 *)(r10 -4) = 0\nr2 = r10\nr2 += -4\nr1 = map[id:HASH]\ncall bpf_map_lookup_elem\n"
     "r0 = *(u32 *)(r0 +0)\nexit", "R0 invalid mem access 'map_value_or_null'"),
    ("r2 = 0\nr1 = map[id:HASH]\ncall bpf_map_lookup_elem\nr0 = 0\nexit",
     "R2 type=scalar expected=fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, "
     "trusted_ptr_"),
    ("*(u32 *)(r10 -4) = 0\nr2 = r10\nr2 += -4\nr1 = map[id:ARRAY]\ncall bpf_map_lookup_elem\n"
     "if r0 == 0 goto +2\nr0 = *(u32 *)(r0 +44)\nexit\nr0 = 0\nexit", None),
]


@pytest.mark.parametrize("src,error", MAP_CASES)
def test_map_messages(maps, src, error):
    r = run(src, maps=maps)
    assert r.error == error


def test_invalid_access_to_map_value_is_logged(maps):
    r = run(MAP_CASES[0][0], maps=maps, log_level=1)
    assert "invalid access to map value, value_size=48 off=48 size=4\n" in r.log


@pytest.mark.parametrize("src,error", [
    # what an unprivileged user may not do (Linux's messages)
    ("r0 = *(u64 *)(r10 -16)\nexit", "invalid read from stack R10 off=-16 size=8"),
    ("r1 = 0\n*(u64 *)(r10 -24) = r1\nr0 = *(u64 *)(r10 -16)\nexit",
     "invalid read from stack off -16+0 size 8"),
    ("r0 = 0\nl1:\nr0 += 1\nif r0 < 10 goto l1\nexit", "back-edge from insn 2 to 1"),
    ("r0 = r10\nexit", "R0 leaks addr as return value"),
    ("r0 = 0\nif r10 > r1 goto +0\nexit", "R1 pointer comparison prohibited"),
    ("r1 = r10\nr1 += -8\nr2 = 0\nr1 += r2\nr0 = 0\nexit", None),
])
def test_unprivileged_rules(src, error):
    r = run(src, ProgType.SOCKET_FILTER, unpriv=True)
    assert r.error == error


def test_level1_log_is_linux_format():
    src = ("r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr4 = r2\nr4 += 14\n"
           "if r4 > r3 goto +3\nr0 = *(u8 *)(r2 + 14)\nr0 &= 0xff\n*(u64 *)(r10 - 8) = r0\n"
           "r0 = 2\nexit\n")
    r = run(src, log_level=1)
    assert r.log.splitlines() == [
        "0: R1=ctx() R10=fp0",
        "0: (61) r2 = *(u32 *)(r1 +0)          ; R1=ctx() R2=pkt(r=0)",
        "1: (61) r3 = *(u32 *)(r1 +4)          ; R1=ctx() R3=pkt_end()",
        "2: (bf) r4 = r2                       ; R2=pkt(r=0) R4=pkt(r=0)",
        "3: (07) r4 += 14                      ; R4=pkt(off=14,r=0)",
        "4: (2d) if r4 > r3 goto pc+3          ; R3=pkt_end() R4=pkt(off=14,r=14)",
        "5: (71) r0 = *(u8 *)(r2 +14)",
        "invalid access to packet, off=14 size=1, R2(id=0,off=14,r=14)",
        "R2 offset is outside of the packet",
        "processed 6 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 "
        "mark_read 0",
    ]


def test_level1_keeps_only_the_failing_path():
    src = ("r0 = 0\nr2 = *(u32 *)(r1 + 0)\nr4 = *(u32 *)(r1 + 4)\nif r4 > 5 goto +2\nr0 = 1\n"
           "exit\nr3 = *(u64 *)(r2 + 8)\nexit\n")
    lines = run(src, log_level=1).log.splitlines()
    # Linux rewinds the log to where the branch was pushed: the state of the
    # popped path continues the jump's line
    assert lines[4] == ("3: (25) if r4 > 0x5 goto pc+2 6: R0=0 R1=ctx() R2=pkt(r=0) "
                        "R4=pkt_end() R10=fp0")
    assert lines[-2] == "R2 offset is outside of the packet"


def test_level2_prints_liveness_precision_and_every_path():
    src = ("r6 = r1\ncall bpf_get_prandom_u32\nr1 = 5\nr2 = r0\nr2 &= 7\nif r1 > 3 goto +1\n"
           "r0 = 1\nr3 = r10\nr3 += -8\n*(u64 *)(r10 - 8) = 0\nr3 += r2\nr0 = 0\n"
           "if r2 > 2 goto +1\nr0 = *(u8 *)(r3 + 0)\nr0 = 0\nexit\n")
    log = run(src, log_level=2).log
    assert "Live regs before insn:\n      0: .1........ (bf) r6 = r1\n" in log
    assert "mark_precise: frame0: regs=r2 stack= before 4: (57) r2 &= 7\n" in log
    assert ("\nfrom 12 to 14: R0=0 R1=5 R2=scalar(smin=umin=smin32=umin32=3,smax=umax=smax32="
            "umax32=7,var_off=(0x0; 0x7))") in log
    assert log.endswith("processed 17 insns (limit 1000000) max_states_per_insn 0 "
                        "total_states 1 peak_states 1 mark_read 0\n")


def test_success_at_level1_prints_only_statistics():
    r = run("r0 = 0\nexit", log_level=1)
    assert r.accepted and r.log.startswith("processed 2 insns")


def test_facts_hold_what_was_proved():
    r = run("r0 = *(u32 *)(r1 +16)\nr0 &= 0xff\nr1 = r10\nr1 += -8\n*(u64 *)(r1 +0) = r0\n"
            "r0 = 0\nexit\n")
    f = r.facts[4]
    assert f[1].type == "PTR_TO_STACK" and f[1].off == -8 and f[1].const == 0
    assert f[0].type == "SCALAR_VALUE" and f[0].umax == 0xFF and f[0].umin == 0
    assert r.facts[0][1].type == "PTR_TO_CTX"


def test_structure_limits():
    r = verify(b"", prog_type=ProgType.XDP)
    assert not r.accepted and r.errno == 22
    big = assemble("r0 = 0\n" * 4096 + "exit")
    assert verify(big, prog_type=ProgType.SOCKET_FILTER, unpriv=True).errno == 7   # E2BIG
    assert verify(big, prog_type=ProgType.SOCKET_FILTER).accepted


def test_raw_bytes_with_reserved_fields():
    # mov r0, 0 with a non-zero off field: decodable bytes Linux refuses in do_check
    raw = bytes([0xB7, 0x00, 0x01, 0x00, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])
    r = verify(raw, prog_type=ProgType.XDP)
    assert r.error == "BPF_MOV uses reserved fields"
    raw = bytes([0xFF, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])
    assert verify(raw, prog_type=ProgType.XDP).error == "unknown opcode ff"


def test_programs_and_objects():
    with ebee.load(EXAMPLES / "xdp_firewall.o") as obj:
        r = obj.programs["xdp_firewall"].verify()
        assert r.accepted and r.insns_processed == 51
        assert obj.verify()["xdp_firewall"].accepted
    with ebee.load(BROKEN / "xdp_nonull.o") as obj:
        with pytest.raises(VerifierError) as ei:
            obj.verify()
        assert ei.value.result.error == "R0 invalid mem access 'map_value_or_null'"
        assert "; __sync_fetch_and_add(hits, 1);" in ei.value.result.log or \
            "@ xdp_nonull.c:" in verify(obj.programs["xdp_nonull"], log_level=1).log


def ebee_cli(*args):
    return subprocess.run([sys.executable, "-m", "ebee", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "EBEE_PIN_STORE": ":memory:"})


def test_cli_exit_codes_and_json(tmp_path):
    r = ebee_cli("verify", EXAMPLES / "xdp_firewall.o", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["accepted"] is True and out["error"] is None and out["insns_processed"] == 51
    r = ebee_cli("verify", BROKEN / "xdp_offbyone.o", "--json", "--log-level", "2")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert re.fullmatch(r"R\d offset is outside of the packet", out["error"])
    assert out["log"].startswith("func#0 @0\n")
    r = ebee_cli("verify", EXAMPLES / "tail_calls.o", "--json", "--log-level", "0")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["prog"] for x in lines] == ["handle_tcp", "handle_udp", "handle_icmp", "dispatcher"]
    assert all(x["accepted"] and x["log"] == "" for x in lines)
    src = tmp_path / "p.s"
    src.write_text("r0 = *(u32 *)(r1 +0)\nexit\n")
    r = ebee_cli("verify", src, "--type", "xdp")
    assert r.returncode == 0 and "accepted" in r.stdout
    r = ebee_cli("verify", src, "--type", "cgroup_skb")
    assert r.returncode == 1 and r.stdout.rstrip().endswith(
        "rejected: At program exit the register R0 has smin=0 smax=4294967295 should have been in "
        "[0, 1]")
    bad = tmp_path / "bad.o"
    bad.write_bytes(b"\x7fELF" + b"\0" * 20)
    r = ebee_cli("verify", bad)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = ebee_cli("verify", tmp_path / "missing.o")
    assert r.returncode == 2 and "no such file" in r.stderr
    r = ebee_cli("verify", EXAMPLES / "xdp_firewall.o", "--prog", "nope")
    assert r.returncode == 2 and "no program named 'nope'" in r.stderr
