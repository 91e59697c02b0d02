"""BPF_PROG_TEST_RUN of struct_ops programs: bpf_dummy_ops members, as
bpf_struct_ops_test_run() runs them.

ctx_in holds the member's u64 arguments (exactly as many as it takes); args[0]
points at a ``struct bpf_dummy_ops_state`` in the caller's memory, copied in and
back out, or is 0 where the argument is ``__nullable`` (test_1).  Other struct_ops
programs cannot be test-run (EOPNOTSUPP).  The kernel test runs the same cases.
"""
from __future__ import annotations

import ctypes
import errno
import struct
from pathlib import Path

import pytest

import ebee
from ebee.btf import BTF

VARIANTS = Path(__file__).resolve().parent / "data" / "struct_ops" / "variants.o"
PROGS = ["dummy_ok", "dummy_test_2_ok", "dummy_sleepable_ok", "ok_read_walk"]


@pytest.fixture(scope="module", autouse=True)
def _vmlinux():
    try:
        BTF.load_vmlinux()
    except OSError as e:
        pytest.skip(f"no kernel BTF: {e}")


def cases(run) -> list[tuple]:
    st = ctypes.c_int(5)
    p = ctypes.addressof(st)
    out = []
    for name, args in [("dummy_ok", [p]), ("dummy_ok", [0]), ("dummy_ok", []),
                       ("dummy_ok", [0, 0]), ("dummy_ok", [8]),
                       ("dummy_test_2_ok", [p, 3, 4, 5, 6]), ("dummy_test_2_ok", [0, 3, 4, 5, 6]),
                       ("dummy_sleepable_ok", [0]), ("dummy_sleepable_ok", [p]),
                       ("ok_read_walk", [0])]:
        st.value = 5
        try:
            r = run(name, struct.pack(f"<{len(args)}Q", *args))
            out.append((name, r.retval, st.value))
        except OSError as e:
            out.append((name, errno.errorcode[e.errno], st.value))
    return out


EXPECTED = [("dummy_ok", 7, 7),                      # st->val = 7, written back
            ("dummy_ok", 0, 5),                      # test_1's state is __nullable
            ("dummy_ok", "EINVAL", 5), ("dummy_ok", "EINVAL", 5),   # 1 argument, not 0 or 2
            ("dummy_ok", "EFAULT", 5),               # nothing mapped there
            ("dummy_test_2_ok", 6, 18),              # 2 * a1; val = 3 + 4 + 5 + 6
            ("dummy_test_2_ok", "EINVAL", 5),        # test_2's state may not be NULL
            ("dummy_sleepable_ok", "EINVAL", 5), ("dummy_sleepable_ok", 0, 5),
            ("ok_read_walk", errno.errorcode[errno.EOPNOTSUPP], 5)]       # a tcp_congestion_ops member


def test_dummy_ops_runs():
    obj = ebee.load(VARIANTS)
    assert cases(lambda n, c: obj.programs[n].run(ctx=c)) == EXPECTED


@pytest.mark.kernel
def test_dummy_ops_runs_as_in_the_kernel(kernel):
    obj = ebee.load(VARIANTS)
    with obj.load_kernel(programs=PROGS) as k:
        assert cases(lambda n, c: k.programs[n].run(ctx=c)) == EXPECTED
