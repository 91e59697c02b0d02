"""Programs calling helpers: ebee and BPF_PROG_TEST_RUN give the same retval and map contents.

Each program is assembled once against ebee map ids; :func:`maputil.kernelize`
swaps in the kernel maps' fds for the kernel run.  Programs run as XDP (most
helpers are available there) with a fixed packet.
"""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

import ebee
from ebee.kernel import KernelProgram
from ebee.uapi import BPF_F_ZERO_SEED, MapType as T, ProgType
from ebee.engines import Machine
from maputil import MapPair, func_info, kernelize

PACKET = bytes(range(64))
STATS = {"programs": 0}


def run_both(src: str, pairs: list[MapPair], prog_type=ProgType.XDP, repeat: int = 1):
    insns = ebee.assemble(src)
    with Machine() as m:
        pkt = ebee.memory.Region(PACKET, "packet")
        m.memory.add(pkt)
        try:
            for _ in range(repeat):
                ours = m.run(insns, pkt.start).retval & 0xFFFFFFFF
        finally:
            m.memory.remove(pkt)
    kinsns = kernelize(insns, {p.id: p.kernel.fd for p in pairs})
    extra = {}
    if any(i.src == 4 for i in insns if i.kind.name == "LD_IMM64"):
        btf, recs = func_info(insns)
        extra = {"btf": btf, "func_info": recs}
    with KernelProgram(kinsns, prog_type, **extra) as kp:
        for _ in range(repeat):
            theirs = kp.test_run(PACKET).retval
    STATS["programs"] += 1
    return ours, theirs


def stack_str(s: bytes, at: int) -> str:
    """Instructions storing ``s`` (NUL-padded to 8) at r10-at."""
    s = s + bytes(-len(s) % 8)
    out = []
    for k in range(0, len(s), 8):
        out.append(f"r1 = {int.from_bytes(s[k:k + 8], 'little'):#x} ll")
        out.append(f"*(u64 *)(r10 - {at - k}) = r1")
    return "\n".join(out)


@pytest.mark.kernel
@settings(max_examples=40, database=None, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 2), st.integers(0, 3)),
                    min_size=1, max_size=12))
def test_map_helpers_agree(kernel, ops):
    """Random sequences of update/lookup-and-increment/delete from a program."""
    pairs = [MapPair(T.HASH, 4, 8, 6, BPF_F_ZERO_SEED), MapPair(T.LRU_HASH, 4, 8, 6, BPF_F_ZERO_SEED),
             MapPair(T.ARRAY, 4, 8, 8)]
    try:
        body = ["r9 = 0"]
        for n, (key, op, flags) in enumerate(ops):
            for p in pairs:
                body += [f"r1 = {key}", "*(u32 *)(r10 - 4) = r1", f"r1 = {key * 7 + n}",
                         "*(u64 *)(r10 - 16) = r1", f"r1 = map[id:{p.id}] ll", "r2 = r10", "r2 += -4"]
                if op == 0:
                    body += ["r3 = r10", "r3 += -16", f"r4 = {flags}", "call bpf_map_update_elem",
                             "r9 *= 31", "r9 += r0"]
                elif op == 1:   # fold hit/miss, not the (host-specific) address
                    body += ["call bpf_map_lookup_elem", "r9 *= 31", f"if r0 == 0 goto miss{n}_{p.id}",
                             "r1 = *(u64 *)(r0 + 0)", "r1 += 1", "*(u64 *)(r0 + 0) = r1",
                             "r9 += 1", f"miss{n}_{p.id}:"]
                else:
                    body += ["call bpf_map_delete_elem", "r9 *= 31", "r9 += r0"]
        body += ["r0 = r9", "exit"]
        src = "\n".join(body)
        ours, theirs = run_both(src, pairs)
        assert ours == theirs
        for p in pairs:
            a, b = p.contents()
            assert a == b, f"map {p.ebee.type.name}: ebee {a} != kernel {b}"
    finally:
        for p in pairs:
            p.close()


@pytest.mark.kernel
@pytest.mark.parametrize("fmt, args", [
    (b"hello %d\n", [42]), (b"%u %x %X", [0xFFFFFFFF, 255, 255]), (b"%lld|%llu", [-5, 7]),
    (b"%5d|%-5d|%05d", [3, 4, 5]), (b"%c%c", [0x41, 0x42]), (b"100%%", []),
    (b"%q", [1]), (b"%d %d %d %d", [1, 2, 3, 4]), (b"%.3d", [1]), (b"%#x", [1]),
    (b"%pI4", None), (b"%s!", "str"),
])
def test_trace_printk_retval_matches(kernel, fmt, args):
    lines = [stack_str(fmt + b"\0", 64), stack_str(b"abc\0", 80), "r1 = 0x04030201", "*(u32 *)(r10 - 88) = r1"]
    regs = []
    if args is None:        # %pI4: a pointer to 4 bytes
        regs = ["r3 = r10", "r3 += -88"]
    elif args == "str":
        regs = ["r3 = r10", "r3 += -80"]
    else:
        for k, v in enumerate(args[:3]):
            regs.append(f"r{3 + k} = {v & 0xFFFFFFFFFFFFFFFF:#x} ll")
    src = "\n".join(lines + regs + ["r1 = r10", "r1 += -64", f"r2 = {len(fmt) + 1}",
                                    "call bpf_trace_printk", "exit"])
    ours, theirs = run_both(src, [])
    assert ours == theirs


@pytest.mark.kernel
@pytest.mark.parametrize("text, flags", [
    (b"123", 10), (b"  -42xyz", 0), (b"0x1f", 0), (b"0x1f", 16), (b"017", 0), (b"-", 10),
    (b"99999999999999999999999", 10), (b"-9223372036854775808", 10), (b"9223372036854775808", 10),
    (b"abc", 10), (b"12", 7), (b"12", 0x20 | 10),
])
def test_strtol_strtoul_match(kernel, text, flags):
    for helper in ("bpf_strtol", "bpf_strtoul"):
        src = "\n".join([stack_str(text, 48), "r1 = 0", "*(u64 *)(r10 - 8) = r1",
                         "r1 = r10", "r1 += -48", f"r2 = {len(text)}", f"r3 = {flags}",
                         "r4 = r10", "r4 += -8", f"call {helper}", "r6 = r0",
                         "r0 = *(u64 *)(r10 - 8)", "r0 *= 65599", "r0 += r6", "exit"])
        ours, theirs = run_both(src, [])
        assert ours == theirs, helper


@pytest.mark.kernel
@given(frm=st.binary(max_size=16).map(lambda b: b[:len(b) // 4 * 4]),
       to=st.binary(max_size=16).map(lambda b: b[:len(b) // 4 * 4]),
       seed=st.integers(0, 2 ** 32 - 1))
@settings(max_examples=40, database=None, deadline=None)
def test_csum_diff_matches(kernel, frm, to, seed):
    src = "\n".join([stack_str(frm or b"\0", 64), stack_str(to or b"\0", 32),
                     "r1 = r10", "r1 += -64", f"r2 = {len(frm)}", "r3 = r10", "r3 += -32",
                     f"r4 = {len(to)}", f"r5 = {seed}", "call bpf_csum_diff", "exit"])
    ours, theirs = run_both(src, [])
    assert ours == theirs


@pytest.mark.kernel
@pytest.mark.parametrize("a, b", [(b"abc", b"abc"), (b"abc", b"abd"), (b"abd", b"abc"), (b"ab", b"abc"),
                                  (b"xyz", b"")])
def test_strncmp_matches(kernel, a, b):
    # s2 must be a read-only string in the kernel: put it in a frozen array map
    pair = MapPair(T.ARRAY, 4, 8, 1, 0x80)   # BPF_F_RDONLY_PROG
    try:
        val = (b + b"\0").ljust(8, b"\0")
        pair.ebee[0] = val
        pair.kernel.update(b"\0\0\0\0", val)
        pair.ebee.freeze()
        pair.kernel.freeze()
        src = "\n".join([stack_str(a, 48), "r1 = r10", "r1 += -48", f"r2 = {len(a)}",
                         f"r3 = map[id:{pair.id}][0]+0 ll", "call bpf_strncmp", "exit"])
        ours, theirs = run_both(src, [pair])
        assert ours == theirs
    finally:
        pair.close()


@pytest.mark.kernel
@pytest.mark.parametrize("n, stop", [(0, 100), (5, 100), (10, 3), (1 << 24, 0)])
def test_bpf_loop_matches(kernel, n, stop):
    src = f"""
        r6 = 0
        *(u64 *)(r10 - 8) = r6
        r1 = {n}
        r2 = subprog[cb] ll
        r3 = r10
        r3 += -8
        r4 = 0
        call bpf_loop
        r1 = *(u64 *)(r10 - 8)
        r1 <<= 32
        r0 += r1
        exit
    cb:
        r3 = *(u64 *)(r2 + 0)
        r3 += r1
        *(u64 *)(r2 + 0) = r3
        r0 = 0
        if r1 != {stop} goto keep
        r0 = 1
    keep:
        exit
    """
    ours, theirs = run_both(src, [])
    assert ours == theirs


@pytest.mark.kernel
def test_for_each_map_elem_matches(kernel):
    pair = MapPair(T.ARRAY, 4, 8, 5)
    try:
        for i in range(5):
            v = struct.pack("<Q", i * 10 + 1)
            pair.ebee[i] = v
            pair.kernel.update(struct.pack("<I", i), v)
        src = f"""
            r6 = 0
            *(u64 *)(r10 - 8) = r6
            r1 = map[id:{pair.id}] ll
            r2 = subprog[cb] ll
            r3 = r10
            r3 += -8
            r4 = 0
            call bpf_for_each_map_elem
            r1 = *(u64 *)(r10 - 8)
            r0 *= 1000
            r0 += r1
            exit
        cb:
            r5 = *(u64 *)(r3 + 0)
            r6 = *(u64 *)(r4 + 0)
            r5 += r6
            *(u64 *)(r4 + 0) = r5
            r0 = 0
            r6 = *(u32 *)(r2 + 0)
            if r6 != 3 goto go
            r0 = 1
        go:
            exit
        """
        ours, theirs = run_both(src, [pair])
        assert ours == theirs
    finally:
        pair.close()


@pytest.mark.kernel
def test_queue_helpers_match(kernel):
    pairs = [MapPair(T.QUEUE, 0, 4, 3), MapPair(T.STACK, 0, 4, 3)]
    try:
        body = ["r9 = 0"]
        for p in pairs:
            for v, flags in ((1, 0), (2, 0), (3, 0), (4, 0), (5, 2)):
                body += [f"r1 = {v}", "*(u32 *)(r10 - 4) = r1", f"r1 = map[id:{p.id}] ll",
                         "r2 = r10", "r2 += -4", f"r3 = {flags}", "call bpf_map_push_elem",
                         "r9 *= 7", "r9 += r0"]
            for helper in ("bpf_map_peek_elem", "bpf_map_pop_elem", "bpf_map_pop_elem"):
                body += [f"r1 = map[id:{p.id}] ll", "r2 = r10", "r2 += -8", f"call {helper}",
                         "r9 *= 7", "r9 += r0", "r1 = *(u32 *)(r10 - 8)", "r9 += r1"]
        body += ["r0 = r9", "exit"]
        ours, theirs = run_both("\n".join(body), pairs)
        assert ours == theirs
    finally:
        for p in pairs:
            p.close()


@pytest.mark.kernel
def test_current_task_helpers_match(kernel):
    src = """
        call bpf_get_current_pid_tgid
        r6 = r0
        call bpf_get_current_uid_gid
        r6 ^= r0
        r1 = r10
        r1 += -16
        r2 = 16
        call bpf_get_current_comm
        r1 = *(u64 *)(r10 - 16)
        r6 ^= r1
        r1 = *(u64 *)(r10 - 8)
        r6 ^= r1
        r0 = r6
        r1 = r6
        r1 >>= 32
        r0 ^= r1
        exit
    """
    insns = ebee.assemble(src)
    import threading
    assert threading.get_native_id()     # the kernel runs the program on this thread
    ours = ebee.run(insns).retval & 0xFFFFFFFF
    with KernelProgram(insns, ProgType.KPROBE) as kp:
        pass   # loadable as a tracing program too
    with KernelProgram(insns, ProgType.SOCKET_FILTER) as kp:
        theirs = kp.test_run(PACKET).retval
    assert ours == theirs


@pytest.mark.kernel
@pytest.mark.parametrize("empty_slot", [False, True])
def test_tail_call_limit_matches(kernel, empty_slot):
    """A program that tail-calls itself counts in a map: Linux stops after 33 tail calls
    (34 runs); an attempt on an empty slot falls through without using up the limit."""
    counter = MapPair(T.ARRAY, 4, 8, 1)
    pa = MapPair(T.PROG_ARRAY, 4, 4, 2)
    try:
        extra = ""
        if empty_slot:
            extra = f"""
            r1 = r6
            r2 = map[id:{pa.id}] ll
            r3 = 1
            call bpf_tail_call
            """
        src = f"""
            r6 = r1
            r1 = 0
            *(u32 *)(r10 - 4) = r1
            r1 = map[id:{counter.id}] ll
            r2 = r10
            r2 += -4
            call bpf_map_lookup_elem
            if r0 == 0 goto out
            r1 = *(u64 *)(r0 + 0)
            r1 += 1
            *(u64 *)(r0 + 0) = r1
            {extra}
            r1 = r6
            r2 = map[id:{pa.id}] ll
            r3 = 0
            call bpf_tail_call
            r0 = 7
        out:
            exit
        """
        insns = ebee.assemble(src)
        pa.ebee[0] = insns
        with Machine() as m:
            pkt = ebee.memory.Region(PACKET, "packet")
            m.memory.add(pkt)
            ours = m.run(insns, pkt.start).retval
            m.memory.remove(pkt)
        kinsns = kernelize(insns, {counter.id: counter.kernel.fd, pa.id: pa.kernel.fd})
        with KernelProgram(kinsns, ProgType.XDP) as kp:
            pa.kernel.update(b"\0\0\0\0", struct.pack("<I", kp.fd))
            theirs = kp.test_run(PACKET).retval
            pa.kernel.delete(b"\0\0\0\0")
        assert ours == theirs == 7
        a, b = counter.contents()
        assert a == b
        assert struct.unpack("<Q", a[b"\0\0\0\0"])[0] == 34
    finally:
        counter.close()
        pa.close()


@pytest.mark.kernel
def test_ringbuf_output_and_query_match(kernel):
    pair = MapPair(T.RINGBUF, 0, 0, 4096)
    try:
        src = f"""
            r9 = 0
            r1 = 0x1122334455667788 ll
            *(u64 *)(r10 - 8) = r1
            r1 = map[id:{pair.id}] ll
            r2 = r10
            r2 += -8
            r3 = 8
            r4 = 0
            call bpf_ringbuf_output
            r9 += r0
            r1 = map[id:{pair.id}] ll
            r2 = r10
            r2 += -8
            r3 = 8
            r4 = 3
            call bpf_ringbuf_output
            r9 += r0
            r1 = map[id:{pair.id}] ll
            r2 = 5000
            r3 = 0
            call bpf_ringbuf_reserve
            if r0 == 0 goto small
            r1 = r0
            r2 = 0
            call bpf_ringbuf_discard
            goto bad
        small:
            r1 = map[id:{pair.id}] ll
            r2 = 100
            r3 = 0
            call bpf_ringbuf_reserve
            if r0 == 0 goto bad
            r1 = r0
            r2 = 0
            call bpf_ringbuf_discard
            r1 = map[id:{pair.id}] ll
            r2 = 0
            call bpf_ringbuf_query
            r9 <<= 16
            r9 += r0
            r1 = map[id:{pair.id}] ll
            r2 = 3
            call bpf_ringbuf_query
            r9 <<= 12
            r9 += r0
            r0 = r9
            exit
        bad:
            r0 = 1
            exit
        """
        ours, theirs = run_both(src, [pair], repeat=3)
        assert ours == theirs
    finally:
        pair.close()


@pytest.mark.kernel
def test_helper_differential_ran(kernel):
    if STATS["programs"] == 0:
        pytest.skip("nothing ran")
    print(f"\nhelper differential: {STATS['programs']} programs compared")
