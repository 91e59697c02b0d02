"""struct_ops programs are verified against the kernel member they implement.

Each program's context is its member's function prototype in the kernel's BTF
(``tcp_congestion_ops.cong_avoid``: sk, ack, acked), its return type says
whether R0 matters, and the subsystem's rules apply (tcp_congestion_ops: writes
to the congestion-control fields of ``struct tcp_sock`` only, no ``get_info``;
bpf_dummy_ops: ``test_1``'s state may be NULL, only ``test_sleepable`` may
sleep).  The verdicts, errnos and messages below are the kernel's: the kernel
test loads the same programs and compares.
"""
from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

import ebee
from ebee.btf import BTF
from ebee.uapi import ENOTSUPP

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ROOT / "tests" / "data" / "struct_ops" / "variants.o"
EXAMPLE = ROOT / "examples" / "c" / "tcp_reno_cc.o"
FIXED = ROOT / "tests" / "data" / "struct_ops" / "fixed_window.o"

OK = (True, 0, None)
#: program -> (accepted, errno, the log's last line) as Linux 6.18 answers
EXPECTED = {
    "ok_writes": OK,
    "bad_write_field": (False, errno.EACCES, "no write support to tcp_sock at off {rcv_nxt}"),
    "bad_write_wide": (False, errno.EACCES, "no write support to tcp_sock at off {snd_cwnd_end}"),
    "bad_write_beyond": (False, errno.EACCES, "write access at off {ecn_flags} with size 4 "
                                              "beyond the member of tcp_sock ended at "
                                              "{ecn_flags_end}"),
    "ack_pending_write": OK,
    "bad_write_nested": (False, errno.EACCES, "only read is supported"),
    "bad_ctx_write": (False, errno.EACCES, "invalid bpf_context access off=0 size=8"),
    "bad_ctx_arg": (False, errno.EACCES, "invalid bpf_context access off=24 size=8"),
    "ok_ret_ptr": OK,
    "bad_ret_uninit": (False, errno.EACCES, "R0 !read_ok"),
    "ok_void_uninit": OK,
    "bad_get_info": (False, ENOTSUPP, "attach to unsupported member get_info of struct "
                                      "tcp_congestion_ops"),
    "ok_read_walk": OK,
    "dummy_null_deref": (False, errno.EACCES, "R1 invalid mem access 'trusted_ptr_or_null_'"),
    "dummy_ok": OK,
    "dummy_test_2_ok": OK,
    "dummy_bad_write": (False, errno.EACCES, "write access at off 0 with size 8"),
    "dummy_sleepable_ok": OK,
    "dummy_sleepable_bad": (False, errno.EINVAL, "attach to unsupported member test_1 of struct "
                                                "bpf_dummy_ops"),
}


@pytest.fixture(scope="module")
def vmlinux() -> BTF:
    try:
        return BTF.load_vmlinux()
    except OSError as e:
        pytest.skip(f"no kernel BTF: {e}")


def _offsets(vm: BTF) -> dict[str, int]:
    t = vm.find("tcp_sock", "STRUCT")

    def off(name):
        m = next(m for m in t.members if m.name == name)
        return m.bits_offset // 8
    return {"rcv_nxt": off("rcv_nxt"), "snd_cwnd_end": off("snd_cwnd") + 4,
            "ecn_flags": off("ecn_flags"), "ecn_flags_end": off("ecn_flags") + 1}


def _expected(vm: BTF, name: str):
    ok, err, msg = EXPECTED[name]
    return ok, err, msg.format(**_offsets(vm)) if msg else None


def test_variants_as_linux_judges_them(vmlinux):
    obj = ebee.load(VARIANTS)
    assert set(obj.programs) == set(EXPECTED)
    for name, p in obj.programs.items():
        r = p.verify()
        assert (r.accepted, r.errno, r.error) == _expected(vmlinux, name), name


def test_example_members(vmlinux):
    obj = ebee.load(EXAMPLE)
    for name, p in obj.programs.items():
        assert p.verify().accepted, name


def test_member_prototypes_type_the_context(vmlinux):
    """cong_avoid's sk is a trusted tcp_sock, ack and acked scalars; a bpf_dummy_ops
    test_1 state may be NULL (its CFI stub's ``cb__nullable``)."""
    obj = ebee.load(VARIANTS)
    log = obj.programs["ok_writes"].verify(log_level=2).log
    assert "func 'cong_avoid' arg0 has btf_id" in log and "type STRUCT 'sock'" in log
    assert re.search(r"R\d=trusted_ptr_tcp_sock\(\)", log)
    log = obj.programs["dummy_ok"].verify(log_level=2).log
    assert "trusted_ptr_or_null_bpf_dummy_ops_state" in log


def _kernel_verdict(obj, name: str):
    from ebee.kernel.prog import KernelLoadError
    try:
        with obj.load_kernel(programs=[name], log_level=1) as k:
            m = re.search(r"processed (\d+) insns", k.programs[name].log)
            return (True, 0, None), int(m.group(1))
    except KernelLoadError as e:
        last = next((ln for ln in reversed(e.log.splitlines()) if ln.strip() and not
                     ln.startswith(("processed ", "verification time", "stack depth"))), "")
        return (False, e.errno, last), None


@pytest.mark.kernel
@pytest.mark.parametrize("path", [VARIANTS, EXAMPLE, FIXED],
                         ids=["variants", "example", "cong_control"])
def test_verdicts_match_the_kernel(kernel, vmlinux, path):
    obj = ebee.load(path)
    for name, p in obj.programs.items():
        r = p.verify()
        kv, kinsns = _kernel_verdict(obj, name)
        assert (r.accepted, r.errno, r.error) == kv, name
        if kinsns is not None:
            assert r.insns_processed == kinsns, name


def _log_lines(log: str) -> list[str]:
    # map addresses (and the padding after them) are the kernel's and ebee's own; the
    # timing line is the machine's
    return [re.sub(r"\s+", " ", re.sub(r"0x[0-9a-f]{8,}", "ADDR", ln)) for ln in log.splitlines()
            if ln.strip() and not ln.startswith("verification time")]


@pytest.mark.kernel
@pytest.mark.parametrize("path", [VARIANTS, EXAMPLE, FIXED],
                         ids=["variants", "example", "cong_control"])
def test_logs_match_the_kernel(kernel, vmlinux, path):
    """log_level 2, line by line: the member's argument types, the promotion of sock to
    tcp_sock, the subsystem's write checks and the void-return exits print as Linux's."""
    from ebee.kernel.prog import KernelLoadError
    obj = ebee.load(path)
    for name, p in obj.programs.items():
        mine = p.verify(log_level=2).log
        try:
            with obj.load_kernel(programs=[name], log_level=2) as k:
                theirs = k.programs[name].log
        except KernelLoadError as e:
            theirs = e.log
        assert _log_lines(mine) == _log_lines(theirs), name
