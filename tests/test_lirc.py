"""lirc_mode2 programs on streams of infrared samples: the example NEC decoder
(examples/c/lirc_nec.c) decodes known key codes into bpf_rc_keydown/bpf_rc_repeat
events; the verifier holds the type to lirc_mode2_func_proto's helpers and its
read-only u32 context.  This kernel is built without CONFIG_BPF_LIRC_MODE2: it refuses
the type at load (EINVAL), which the kernel test checks; where a kernel has it, the
same test checks that the kernel accepts the decoder.
"""
from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import ebee
from ebee.testrun.lirc import (RC_PROTO_NEC, RC_PROTO_NEC32, RC_PROTO_NECX, LircReceiver, RcEvent,
                               decode, nec_frame, nec_repeat, parse_samples, pulse, space, timeout)
from ebee.uapi import ProgType
from ebee.verifier import VerifierError

NEC_O = Path(__file__).resolve().parent.parent / "examples" / "c" / "lirc_nec.o"


@pytest.fixture
def nec():
    return ebee.load(NEC_O)


def state(obj) -> tuple:
    raw = bytes(obj.maps["nec"].lookup(bytes(4)))
    keys, repeats, errors = (int.from_bytes(raw[i:i + 4], "little") for i in (12, 16, 20))
    return keys, repeats, errors


def test_decodes_a_known_nec_key(nec):
    # address 0x04, command 0x08: an LG remote's key; the kernel's NEC scancode is 0x0408
    events = decode(nec.programs["nec_decode"], nec_frame(0x04, 0x08) + nec_repeat() * 2)
    assert events == [RcEvent(66, "keydown", RC_PROTO_NEC, 0x0408), RcEvent(69, "repeat"),
                      RcEvent(72, "repeat")]
    assert state(nec) == (1, 2, 0)


def test_extended_and_32_bit_nec(nec):
    with LircReceiver(nec.programs["nec_decode"]) as rx:
        assert [(e.protocol, e.scancode) for e in
                rx.feed(nec_frame(0x12, 0x34, not_address=0x56))] == [(RC_PROTO_NECX, 0x125634)]
        assert [(e.protocol, e.scancode) for e in
                rx.feed(nec_frame(0x12, 0x34, not_address=0x56, not_command=0x78))] == \
            [(RC_PROTO_NEC32, 0x12563478)]
        assert rx.samples == 2 * 67 and len(rx.events) == 2


def test_noise_and_timeouts_abandon_a_frame(nec):
    frame = nec_frame(0x04, 0x08)
    broken = frame[:20] + [space(3000)] + frame        # a bad space, then a whole frame
    cut = frame[:30] + [timeout(12000)] + frame
    for samples in (broken, cut):
        nec.maps["nec"].update(bytes(4), bytes(24))
        ev = decode(nec.programs["nec_decode"], samples)
        assert [(e.kind, e.scancode, e.sample) for e in ev] == \
            [("keydown", 0x0408, len(samples) - 1)]
    assert state(nec)[2] == 0           # a timeout resets without counting an error
    nec.maps["nec"].update(bytes(4), bytes(24))
    decode(nec.programs["nec_decode"], broken)
    assert state(nec) == (1, 0, 1)


@pytest.fixture(scope="module")
def receiver():
    obj = ebee.load(NEC_O)
    with LircReceiver(obj.programs["nec_decode"]) as rx:      # one compiled decoder
        yield obj, rx


@settings(max_examples=40, deadline=None)
@given(address=st.integers(0, 255), command=st.integers(0, 255),
       jitter=st.lists(st.integers(-20, 20), min_size=67, max_size=67))
def test_any_key_decodes_within_the_timing_tolerance(receiver, address, command, jitter):
    obj, rx = receiver
    obj.maps["nec"].update(bytes(4), bytes(24))
    samples = [(s & 0xFF000000) | ((s & 0xFFFFFF) * (100 + j) // 100)
               for s, j in zip(nec_frame(address, command), jitter)]
    # address and its complement always differ in every bit: plain NEC
    assert [(e.protocol, e.scancode) for e in rx.feed(samples)] == \
        [(RC_PROTO_NEC, address << 8 | command)]


POINTER = """
    r6 = r1
    r7 = *(u32 *)(r1 + 0)
    r2 = r7
    r2 &= 0xff
    r3 = r7
    r3 >>= 8
    r3 &= 0xff
    r3 -= 128
    r1 = r6
    call bpf_rc_pointer_rel
    r0 = 0
    exit
"""


def test_pointer_motion_is_recorded():
    p = ebee.Program.from_insns(ebee.assemble(POINTER), ProgType.LIRC_MODE2, verify=True,
                                name="mouse", license="GPL")
    ev = decode(p, [pulse(0x7F05), pulse(0x8303)])
    assert [(e.kind, e.rel_x, e.rel_y, e.sample) for e in ev] == \
        [("pointer_rel", 5, -1, 0), ("pointer_rel", 3, 3, 1)]


@pytest.mark.parametrize("body, why", [
    ("call bpf_get_current_pid_tgid\nr0 = 0\nexit", "cannot use helper"),
    ("r2 = 1\n*(u32 *)(r1 + 0) = r2\nr0 = 0\nexit", "invalid bpf_context access"),
    ("r0 = *(u16 *)(r1 + 0)\nexit", "invalid bpf_context access"),
])
def test_the_verifier_holds_lirc_programs_to_their_rules(body, why):
    p = ebee.Program.from_insns(ebee.assemble(body), ProgType.LIRC_MODE2, verify=True,
                                name="bad", license="GPL")
    with pytest.raises(VerifierError, match=why):
        decode(p, [pulse(1)])


def test_parse_samples():
    assert parse_samples("pulse 9000\nspace 4500 # leader\n+562 -1687\ntimeout 100") == \
        [pulse(9000), space(4500), pulse(562), space(1687), timeout(100)]
    with pytest.raises(ValueError, match="line 2"):
        parse_samples("pulse 1\nwobble 3")


def test_cli_decodes_a_sample_file(tmp_path):
    f = tmp_path / "nec.txt"
    f.write_text("\n".join(("pulse " if s >> 24 else "space ") + str(s & 0xFFFFFF)
                           for s in nec_frame(0x04, 0x08) + nec_repeat()))
    r = subprocess.run([sys.executable, "-m", "ebee", "run", str(NEC_O), "--lirc", str(f),
                        "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["samples"] == 70 and [(e["kind"], e["scancode"]) for e in out["events"]] == \
        [("keydown", 0x0408), ("repeat", 0)]
    f.write_text("pulse x")
    r = subprocess.run([sys.executable, "-m", "ebee", "run", str(NEC_O), "--lirc", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "line 1" in r.stderr


@pytest.mark.kernel
def test_the_kernel_verdict(kernel):
    from ebee.kernel.probe import prog_type_available
    obj = ebee.load(NEC_O)
    if prog_type_available(ProgType.LIRC_MODE2):
        with obj.load_kernel() as k:        # the decoder verifies in the kernel
            assert k.programs["nec_decode"].id
    else:
        # CONFIG_BPF_LIRC_MODE2 is off: BPF_PROG_LOAD refuses the type before verifying
        with pytest.raises(OSError) as ei:
            obj.load_kernel()
        assert ei.value.errno == errno.EINVAL
        assert obj.programs["nec_decode"].verify().accepted
