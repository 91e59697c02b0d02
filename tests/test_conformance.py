"""The conformance suite: every test passes, every negative input is rejected."""
from __future__ import annotations

import pytest

from ebee.conformance import parse, run_case, run_paths


def test_all_conformance_tests_pass(conformance_dir):
    outcomes = list(run_paths([conformance_dir]))
    failed = [f"{o.name}: {o.detail}" for o in outcomes if not o.passed]
    assert len(outcomes) == 313
    assert failed == []


def test_every_negative_input_is_rejected(negative_dir):
    outcomes = list(run_paths([negative_dir]))
    assert len(outcomes) == len(list(negative_dir.glob("*.data")))
    for o in outcomes:
        assert not o.passed, o.name
        assert o.detail and "\n" not in o.detail and "Traceback" not in o.detail


@pytest.mark.parametrize("name,reason", [
    ("invalid_register.data", "invalid register '%r50'"),
    ("invalid_lock.data", "invalid number of operands for lock or"),
    ("invalid_lock2.data", "Invalid number of operands for lock"),
    ("invalid_label.data", "undefined label 'NOT_A_LABEL'"),
    ("invalid_imm32_dec_range.data", "out of range for 32 bits"),
    ("unused-call-dst.data", "reserved field dst is 1"),
    ("unused-mov64_reg-offset.data", "invalid imm 0 for addr_space_cast"),
    ("incorrect_return_value_high_bits.data", "returned 0x8877665544332211, expected 0x8977665544332211"),
    ("error.data", "expected error 'Invalid'"),
])
def test_negative_reasons(negative_dir, name, reason):
    path = negative_dir / name
    try:
        tc = parse(path)
    except ValueError as e:
        assert reason in str(e)
        return
    out = run_case(tc)
    assert not out.passed and reason in out.detail


def test_parse_sections(tmp_path):
    p = tmp_path / "t.data"
    p.write_text("-- asm\nmov %r0, %r2\nexit\n-- mem\n01 02\n03\n-- result\n0x3\n")
    tc = parse(p)
    assert tc.mem == b"\x01\x02\x03" and tc.result == 3
    assert run_case(tc).passed
