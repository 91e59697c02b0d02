"""Shared by the safety tests: one program verified by ebee and by the running kernel.

Programs are kernel-dialect assembly with ``{ARRAY}``/``{RINGBUF}`` standing for
map numbers (a kernel map's fd, an ebee map's id).
"""
from __future__ import annotations

import pytest

from ebee.asm import assemble
from ebee.uapi import MapType
from ebee.verifier import verify

from verifier_kernel import comparable_log, last_error_line

LOOKUP = """*(u32 *)(r10 -4) = 0
r2 = r10
r2 += -4
r1 = map[fd:{ARRAY}]
call bpf_map_lookup_elem
"""
NULL_CHECK = "if r0 == 0 goto out\n"


@pytest.fixture(scope="module")
def kmaps():
    """The maps in the kernel (skips where bpf() cannot create them)."""
    from ebee.kernel import bpf_available
    from ebee.kernel.maps import KernelMap
    why = bpf_available()
    if why:
        pytest.skip(why)
    arr = KernelMap(MapType.ARRAY, 4, 48, 4)
    rb = KernelMap(MapType.RINGBUF, 0, 0, 4096)
    yield {"ARRAY": arr, "RINGBUF": rb}
    arr.close()
    rb.close()


@pytest.fixture(scope="module")
def emaps():
    """ebee's own maps: verdicts that hold without a kernel."""
    import ebee
    arr = ebee.Map(MapType.ARRAY, 4, 48, 4)
    rb = ebee.Map(MapType.RINGBUF, 0, 0, 4096)
    yield {"ARRAY": arr, "RINGBUF": rb}
    arr.close()
    rb.close()


def number(m) -> int:
    """What an lddw carries: a kernel map's fd, an ebee map's id."""
    return m.fd if hasattr(m, "fd") else m.id


def insns_of(text: str, maps: dict):
    for k, m in maps.items():
        text = text.replace("{" + k + "}", str(number(m)))
    return assemble(text)


def kernel_verdict(insns, prog_type, level):
    from ebee.kernel import KernelLoadError, KernelProgram
    try:
        kp = KernelProgram(insns, prog_type, log_level=level)
    except KernelLoadError as e:
        return False, e.log or ""
    log = kp.log or ""
    kp.close()
    return True, log


def ebee_verdict(insns, prog_type, level, maps):
    return verify(insns, prog_type=prog_type, log_level=level,
                  maps={number(m): m for m in maps.values()}, facts=False)


def assert_same(insns, prog_type, maps, level, what, log=True):
    """Same verdict and error line as the kernel (and the same log, unless ``log`` is false)."""
    kacc, klog = kernel_verdict(insns, prog_type, level)
    r = ebee_verdict(insns, prog_type, level, maps)
    assert r.accepted == kacc, f"{what}: kernel {'accepts' if kacc else 'rejects'} " \
                               f"({last_error_line(klog)!r}), ebee: {r.error!r}"
    if not kacc:
        assert r.error == last_error_line(klog), what
    if log:
        assert comparable_log(r.log) == comparable_log(klog), what
    return kacc, klog
