"""Test runs of SK_LOOKUP programs (bpf_prog_test_run_sk_lookup): the lookup's
addresses and ports from ctx_in, the selected socket's cookie back in ctx_out."""
from __future__ import annotations

import errno
import struct

from ..memory import SHARED, Region
from ..layouts.kernel import BPF_SK_LOOKUP_KERN
from ..progtypes.contexts import BPF_SK_LOOKUP
from ..runtime import RunContext
from ..uapi import AF_INET, AF_INET6, ProgType as P
from .common import (U16_MAX, U32_MAX, RunResult, TestRun, TestRunError, ctx_init, finish_ctx,
                     range_zero, timed, u32)

SK_LOOKUP_SIZEOF = BPF_SK_LOOKUP.size


def run_sk_lookup(t: TestRun) -> RunResult:
    """bpf_prog_test_run_sk_lookup()."""
    p, machine, bound, data, ctx_in, repeat, flags, cpu, batch_size, data_size_out, \
        ctx_size_out, want_ctx_out, net = t.unpack()
    if flags or cpu or batch_size:
        raise TestRunError(errno.EINVAL, "flags, cpu and batch_size must be 0 for this "
                                         "program type")
    if data or data_size_out:
        raise TestRunError(errno.EINVAL, "SK_LOOKUP programs take no data_in/data_out")
    uctx = ctx_init(ctx_in, want_ctx_out, SK_LOOKUP_SIZEOF)
    if uctx is None:
        raise TestRunError(errno.EINVAL, "SK_LOOKUP test runs need ctx_in (struct bpf_sk_lookup)")
    if struct.unpack_from("<Q", uctx, 0)[0]:
        raise TestRunError(errno.EINVAL, "ctx_in: sk must be 0")
    if not range_zero(uctx, 64, SK_LOOKUP_SIZEOF):
        raise TestRunError(errno.EINVAL, "ctx_in: bytes after local_port must be zero")
    local_port = u32(uctx, 60)
    if local_port > U16_MAX:
        raise TestRunError(errno.ERANGE, f"ctx_in: local_port {local_port} > 65535")
    family, proto = u32(uctx, 8) & 0xFFFF, u32(uctx, 12) & 0xFFFF
    if family not in (AF_INET, AF_INET6):
        raise TestRunError(errno.EAFNOSUPPORT, f"ctx_in: family {family} is not AF_INET/AF_INET6")
    L = BPF_SK_LOOKUP_KERN
    kern = SHARED.add(Region(L.size, "bpf_sk_lookup_kern"))
    ip6 = SHARED.add(Region(32, "sk_lookup addresses", writable=False))
    b = kern.buf
    struct.pack_into("<H", b, L.off("family"), family)
    struct.pack_into("<H", b, L.off("protocol"), proto)
    struct.pack_into("<H", b, L.off("dport"), local_port)
    # remote_port is __be16 in the uapi struct's first two bytes
    b[L.off("sport"):L.off("sport") + 2] = uctx[36:38]
    if family == AF_INET:
        b[L.off("v4_daddr"):L.off("v4_daddr") + 4] = uctx[40:44]
        b[L.off("v4_saddr"):L.off("v4_saddr") + 4] = uctx[16:20]
    else:
        ip6.buf[0:16] = uctx[20:36]
        ip6.buf[16:32] = uctx[44:60]
        struct.pack_into("<Q", b, L.off("v6_saddr"), ip6.start)
        struct.pack_into("<Q", b, L.off("v6_daddr"), ip6.start + 16)
    rc = RunContext(net, P.SK_LOOKUP, kern)
    machine.progctx = rc

    def once():
        struct.pack_into("<Q", b, L.off("selected_sk"), 0)
        return bound.run(kern.start)
    try:
        ex, duration = timed(once, repeat)
        selected = struct.unpack_from("<Q", b, L.off("selected_sk"))[0]
        struct.pack_into("<Q", uctx, 0, 0)
        cookie = 0
        if selected:
            sock = next((s for s in net.sockets if s.addr == selected), None)
            if sock is not None:
                if sock.reuseport and not b[L.off("no_reuseport")]:
                    raise TestRunError(errno.EOPNOTSUPP, "the selected socket is in a reuseport "
                                                         "group")
                cookie = sock.cookie
        struct.pack_into("<Q", uctx, 0, cookie)   # user_ctx->cookie overlays sk
        res = RunResult(ex.retval & U32_MAX, b"", None, duration, None, rc.trace, 0, ex.insns,
                        P.SK_LOOKUP)
        res.ctx_out, err = finish_ctx(uctx, ctx_size_out)
        if err:
            raise TestRunError(err, "ctx_out is smaller than the context")
        return res
    finally:
        machine.progctx = None
        SHARED.remove(kern)
        SHARED.remove(ip6)
