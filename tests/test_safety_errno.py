"""Helpers with hostile run-time arguments return what Linux returns.

Each scenario is a program the kernel's verifier accepts whose helper
arguments come from the packet (unknown to the verifier): addresses the
program may not read, offsets and lengths past the packet, deltas that
would shrink it to nothing, undefined flag bits, iteration counts above
the limit.  The program returns the helper's r0; ebee (interpreter and JIT)
and BPF_PROG_TEST_RUN must give the same value and the same packet out.
"""
from __future__ import annotations

import struct

import pytest

import ebee
from ebee.asm import assemble
from ebee.kernel import KernelProgram
from ebee.program import Program
from ebee.testrun.common import TestRunError
from ebee.testrun.runner import Runner
from ebee.uapi import MapType as T, ProgType

from maputil import MapPair, func_info, kernelize

pytestmark = pytest.mark.usefixtures("kernel")

INTS = [0, 1, 2, 4, 7, 8, 14, 16, 20, 60, 64, 100, 255, 256, 1000, 0xFFFF, 0x10000,
        0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, -1, -2, -4, -8, -14, -20, -64, -256,
        -1000, -(1 << 31), -(1 << 63)]
FLAGS = [0, 1, 2, 3, 4, 8, 0x10, 0x80, 0x100, 1 << 31, 1 << 32, 0xFFFFFFFF, -1]
# addresses: null, low pages, the top of user space, non-canonical, the vsyscall page
ADDRS = [0, 8, 0x1000, 0x7FFFFFFFF000, 0x7FFFFFFFFFF8, 0x800000000000, 0x8000000000000000,
         0xFFFFFFFFFF600000, 0xFFFF7FFFFFFFFFFF]
PKT = {ProgType.XDP: (0, 4), ProgType.SCHED_CLS: (76, 80)}


ARGS = 42      # the UDP payload of the test frame: two u64 arguments


def _prog(prog_type: ProgType, body: str) -> str:
    """r6 = ctx, r7/r8 = the two u64s of the frame's UDP payload; the body leaves r0."""
    d, e = PKT[prog_type]
    return f"""r6 = r1
r2 = *(u32 *)(r6 +{d})
r3 = *(u32 *)(r6 +{e})
r4 = r2
r4 += {ARGS + 16}
if r4 > r3 goto out
r7 = *(u64 *)(r2 +{ARGS})
r8 = *(u64 *)(r2 +{ARGS + 8})
r1 = 0x333231
*(u64 *)(r10 -16) = r1
*(u64 *)(r10 -24) = r1
*(u64 *)(r10 -32) = r1
*(u64 *)(r10 -40) = r1
{body}
exit
out:
r0 = 999
exit
""" + ("cb:\nr0 = 1\nexit\n" if "subprog[cb]" in body else "")


# r0 = an 8-byte array value (the program ends with 999 if the lookup fails)
VALUE = ("*(u32 *)(r10 -4) = 0\nr1 = map[id:{ARRAY}] ll\nr2 = r10\nr2 += -4\n"
         "call bpf_map_lookup_elem\nif r0 != 0 goto +2\nr0 = 999\nexit\n")
READ = "r1 = r10\nr1 += -16\nr2 = 8\nr3 = r7\ncall {h}"
SCENARIOS = {
    # name: (program type, body, values for r7, values for r8)
    "probe_read_kernel": (ProgType.XDP, READ.format(h="bpf_probe_read_kernel"), ADDRS, [0]),
    "probe_read_kernel_str": (ProgType.XDP, READ.format(h="bpf_probe_read_kernel_str"),
                              ADDRS, [0]),
    "probe_read_user": (ProgType.XDP, READ.format(h="bpf_probe_read_user"), ADDRS, [0]),
    "probe_read_user_str": (ProgType.XDP, READ.format(h="bpf_probe_read_user_str"), ADDRS,
                            [0]),
    "probe_read_kernel size 0": (ProgType.XDP, "r1 = r10\nr1 += -16\nr2 = 0\nr3 = r7\n"
                                 "call bpf_probe_read_kernel", ADDRS, [0]),
    "xdp_adjust_head": (ProgType.XDP, "r1 = r6\nr2 = r7\ncall bpf_xdp_adjust_head", INTS, [0]),
    "xdp_adjust_tail": (ProgType.XDP, "r1 = r6\nr2 = r7\ncall bpf_xdp_adjust_tail", INTS, [0]),
    "xdp_adjust_meta": (ProgType.XDP, "r1 = r6\nr2 = r7\ncall bpf_xdp_adjust_meta", INTS, [0]),
    "xdp_load_bytes": (ProgType.XDP, "r1 = r6\nr2 = r7\nr3 = r10\nr3 += -16\nr4 = 8\n"
                       "call bpf_xdp_load_bytes", INTS, [0]),
    "xdp_store_bytes": (ProgType.XDP, "r1 = r6\nr2 = r7\nr3 = r10\nr3 += -16\nr4 = 8\n"
                        "call bpf_xdp_store_bytes", INTS, [0]),
    "map_update_elem flags": (ProgType.XDP, "*(u32 *)(r10 -4) = 1\nr1 = map[id:{ARRAY}] ll\n"
                              "r2 = r10\nr2 += -4\nr3 = r10\nr3 += -16\nr4 = r7\n"
                              "call bpf_map_update_elem", FLAGS, [0]),
    "map_update_elem hash flags": (ProgType.XDP, "*(u32 *)(r10 -4) = 1\n"
                                   "r1 = map[id:{HASH}] ll\nr2 = r10\nr2 += -4\nr3 = r10\n"
                                   "r3 += -16\nr4 = r7\ncall bpf_map_update_elem", FLAGS, [0]),
    "map_lookup_percpu_elem cpu": (ProgType.XDP, "*(u32 *)(r10 -4) = 0\n"
                                   "r1 = map[id:{PERCPU}] ll\nr2 = r10\nr2 += -4\nr3 = r7\n"
                                   "call bpf_map_lookup_percpu_elem\nif r0 == 0 goto +1\n"
                                   "r0 = 1", INTS, [0]),
    "ringbuf_output flags": (ProgType.XDP, "r1 = map[id:{RINGBUF}] ll\nr2 = r10\nr2 += -16\n"
                             "r3 = 8\nr4 = r7\ncall bpf_ringbuf_output", FLAGS, [0]),
    "ringbuf_query flags": (ProgType.XDP, "r1 = map[id:{RINGBUF}] ll\nr2 = r7\n"
                            "call bpf_ringbuf_query", [1, 4, 5, 8, -1, 1 << 32], [0]),
    "loop": (ProgType.XDP, "r1 = r7\nr2 = subprog[cb] ll\nr3 = 0\nr4 = r8\ncall bpf_loop",
             [0, 1, 5, 1 << 23, (1 << 23) + 1, 0xFFFFFFFF, 1 << 32, -1], [0, 1, -1]),
    "strtol flags": (ProgType.XDP, "r1 = r10\nr1 += -16\nr2 = 4\nr3 = r7\nr4 = r10\n"
                     "r4 += -48\ncall bpf_strtol", FLAGS + [10, 16, 9, 0x20], [0]),
    "dynptr_from_mem flags": (ProgType.XDP, VALUE + "r1 = r0\nr2 = 8\nr3 = r7\nr4 = r10\n"
                              "r4 += -32\ncall bpf_dynptr_from_mem", FLAGS, [0]),
    "dynptr_read offset": (ProgType.XDP, VALUE + "r1 = r0\nr2 = 8\nr3 = 0\nr4 = r10\n"
                           "r4 += -32\ncall bpf_dynptr_from_mem\nr1 = r10\nr1 += -48\nr2 = 4\n"
                           "r3 = r10\nr3 += -32\nr4 = r7\nr5 = r8\ncall bpf_dynptr_read",
                           INTS, [0, 1, -1]),
    "perf_event_output flags": (ProgType.XDP, "r1 = r6\nr2 = map[id:{PERF}] ll\nr3 = r7\n"
                                "r4 = r10\nr4 += -16\nr5 = 8\ncall bpf_perf_event_output",
                                FLAGS + [0xFFFFFFFF, (1 << 32) | 0xFFFFFFFF, 1 << 33], [0]),
    "skb_load_bytes": (ProgType.SCHED_CLS, "r1 = r6\nr2 = r7\nr3 = r10\nr3 += -16\nr4 = 8\n"
                       "call bpf_skb_load_bytes", INTS, [0]),
    "skb_store_bytes": (ProgType.SCHED_CLS, "r1 = r6\nr2 = r7\nr3 = r10\nr3 += -16\nr4 = 8\n"
                        "r5 = r8\ncall bpf_skb_store_bytes", [0, 14, 60, 100, -1, 0xFFFF],
                        FLAGS),
    "skb_pull_data": (ProgType.SCHED_CLS, "r1 = r6\nr2 = r7\ncall bpf_skb_pull_data", INTS,
                      [0]),
    "skb_change_tail": (ProgType.SCHED_CLS, "r1 = r6\nr2 = r7\nr3 = r8\n"
                        "call bpf_skb_change_tail", INTS, [0, 1]),
    "skb_change_head": (ProgType.SCHED_CLS, "r1 = r6\nr2 = r7\nr3 = r8\n"
                        "call bpf_skb_change_head", INTS, [0, 1]),
    "l3_csum_replace": (ProgType.SCHED_CLS, "r1 = r6\nr2 = r7\nr3 = 0\nr4 = 0x1234\nr5 = r8\n"
                        "call bpf_l3_csum_replace", [0, 14, 24, 63, 100, -1],
                        [0, 1, 2, 4, 8, 0x10, 0x20]),
    "l4_csum_replace": (ProgType.SCHED_CLS, "r1 = r6\nr2 = r7\nr3 = 0\nr4 = 0x1234\nr5 = r8\n"
                        "call bpf_l4_csum_replace", [0, 14, 40, 63, 100, -1],
                        [0, 2, 4, 0x10, 0x12, 0x14, 0x20, 0x40, 0x80]),
    "skb_vlan_push": (ProgType.SCHED_CLS, "r1 = r6\nr2 = r7\nr3 = r8\ncall bpf_skb_vlan_push",
                      [0x0081, 0xA888, 0x0008, 0, -1], [0, 5, 0xFFFF]),
    "skb_change_proto": (ProgType.SCHED_CLS, "r1 = r6\nr2 = r7\nr3 = r8\n"
                         "call bpf_skb_change_proto", [0x0008, 0xDD86, 0x0081, 0], [0, 1]),
    "skb_change_type": (ProgType.SCHED_CLS, "r1 = r6\nr2 = r7\ncall bpf_skb_change_type",
                        [0, 1, 2, 3, 4, 7, -1], [0]),
    "skb_adjust_room": (ProgType.SCHED_CLS, "r1 = r6\nr2 = r7\nr3 = r8\nr4 = 0\n"
                        "call bpf_skb_adjust_room", [0, 4, -4, 20, -20, 1000, -1000],
                        [0, 1, 2]),
}


def _packet(a: int, b: int) -> bytes:
    """Ethernet + IPv4 + UDP, the two arguments as its payload."""
    eth = bytes.fromhex("020000000001020000000002" "0800")
    ip = bytes.fromhex("4500003a00004000401100007f0000017f000001")
    udp = bytes.fromhex("1234abcd00260000")
    return eth + ip + udp + struct.pack("<QQ", a & (1 << 64) - 1, b & (1 << 64) - 1) + \
        bytes(range(14))


@pytest.fixture(scope="module")
def pairs():
    made = {"ARRAY": MapPair(T.ARRAY, 4, 8, 4), "HASH": MapPair(T.HASH, 4, 8, 4),
            "PERCPU": MapPair(T.PERCPU_ARRAY, 4, 8, 2),
            "RINGBUF": MapPair(T.RINGBUF, 0, 0, 4096),
            "PERF": MapPair(T.PERF_EVENT_ARRAY, 4, 4, 2)}
    yield made
    for p in made.values():
        p.close()


def _ebee(prog, engine, data):
    try:
        with Runner(prog, engine=engine) as r:
            res = r.run(data, data_size_out=len(data) + 256)     # as KernelProgram.test_run
        return res.retval & 0xFFFFFFFF, res.data_out
    except TestRunError as e:
        return f"errno {e.errno}", b""


def _kernel(kp, data):
    try:
        res = kp.test_run(data)
        return res.retval & 0xFFFFFFFF, res.data_out
    except OSError as e:
        return f"errno {e.errno}", b""


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_helper_errno_matches_kernel(pairs, name):
    prog_type, body, r7s, r8s = SCENARIOS[name]
    src = _prog(prog_type, body)
    for k, p in pairs.items():
        src = src.replace("{" + k + "}", str(p.id))
    insns = assemble(src)
    extra = {}
    if "subprog[cb]" in body:
        btf, recs = func_info(insns)
        extra = {"btf": btf, "func_info": recs}
    kinsns = kernelize(insns, {p.id: p.kernel.fd for p in pairs.values()})
    prog = Program.from_insns(insns, prog_type)
    rows = []
    with KernelProgram(kinsns, prog_type, **extra) as kp:
        for a in r7s:
            for b in r8s:
                data = _packet(a, b)
                want = _kernel(kp, data)
                for engine in ("interp", "jit"):
                    got = _ebee(prog, engine, data)
                    if got != want:
                        rows.append(f"r7={a:#x} r8={b:#x} {engine}: ebee {got[0]!r}, "
                                    f"kernel {want[0]!r}"
                                    f"{'' if got[0] != want[0] else ' (packet differs)'}")
    assert not rows, f"{name}:\n" + "\n".join(rows[:30])
