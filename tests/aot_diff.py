"""Shared by the AOT tests: the shipped XDP examples, their packets and map setup, and
a comparison of one run through ebee's JIT and through an AOT shared library."""
from __future__ import annotations

import struct
from pathlib import Path

import ebee
from ebee.aot import native
from ebee.packet import pcap

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples" / "c"
XDP_EXAMPLES = ["bpf2bpf", "globals", "lpm_filter", "pktlen_hist", "tail_calls", "xdp_firewall",
                "xdp_reflect"]
# examples the AOT runtime refuses (program types it has no run for), with the reason's words
REFUSED = {"tc_classifier": "sched_cls", "socket_bytes": "socket_filter",
           "cgroup_skb_counter": "cgroup_skb", "ringbuf_events": "tracepoint",
           "syscall_counter": "tracepoint", "core_task": "tracing", "lirc_nec": "lirc_mode2",
           "skeleton": "tracepoint", "sockops_bypass": "sock_ops", "trace_events": "tracepoint",
           "tcp_reno_cc": "struct_ops"}
ENTRY = {"tail_calls": "dispatcher"}
NPACKETS = 40


def packets() -> list[bytes]:
    out = [f.data for f in pcap.read(str(ROOT / "examples/pcap/mixed.pcap"))][:NPACKETS]
    eth = bytes.fromhex("ffffffffffff0200000000010800")
    for proto in (1, 6, 17):             # one of each, from a blocked and a free source
        for src in (b"\x0a\x00\x00\x01", b"\xc0\xa8\x00\x07"):
            ip = bytes.fromhex("450000320000000040") + bytes([proto]) + b"\0\0" + src + \
                b"\x0a\x00\x00\x02"
            out.append(eth + ip + bytes(range(30)))
    # UDP echo (reflected: XDP_TX, rewritten), TTL 1 (dropped), the echo behind a VLAN tag
    udp = bytes.fromhex("04d2000700160000") + bytes(14)
    ip = bytes.fromhex("450000320000000040110000") + b"\x0a\x00\x00\x01\x0a\x00\x00\x02"
    out += [eth + ip + udp, eth + ip[:8] + b"\x01" + ip[9:] + udp,
            eth[:12] + bytes.fromhex("8100000a0800") + ip + udp]
    return out


def setup(name: str) -> list[tuple[str, bytes, bytes]]:
    """Map entries put into both sides before the runs."""
    if name == "xdp_firewall":
        return [("blocklist", b"\xc0\xa8\x00\x07", struct.pack("<Q", 0))]
    if name == "lpm_filter":
        return [("prefixes", struct.pack("<I", 24) + b"\x0a\x00\x00\x00", struct.pack("<I", 1)),
                ("prefixes", struct.pack("<I", 32) + b"\x0a\x00\x00\x02", struct.pack("<I", 3))]
    return []


def load(name: str, tmp: Path):
    return ebee.load(str(EX / f"{name}.o"), pin_root=str(tmp / "pins"))


def by_name(obj, name: str):
    return next(mp for mp in obj.maps.values() if mp.name == name)


def ebee_maps(obj, names) -> dict[str, dict[bytes, bytes]]:
    # the runtime knows maps by their own names (globals.bss, not .bss)
    return {n: {k: by_name(obj, n).raw_lookup(k) for k in by_name(obj, n).raw_keys()}
            for n in names}


def compare(name: str, obj, so: Path, maps) -> tuple[list[str], set[int]]:
    """Run every packet through the JIT (ebee object ``obj``) and the library ``so``: the
    differences (empty: identical retval, data_out and map contents after each run) and
    the verdicts seen."""
    names = [m.name for m in maps if m.type not in (3, 27)]     # PROG_ARRAY, RINGBUF
    entry = ENTRY.get(name, name if name in obj.programs else next(iter(obj.programs)))
    prog = obj.programs[entry]
    bad: list[str] = []
    seen: set[int] = set()
    with native.NativeObject(so, name) as n:
        for m, k, v in setup(name):
            by_name(obj, m).update(k, v)
            assert n.map(m).update(k, v) == 0
        for pk, pkt in enumerate(packets()):
            jr = prog.run(pkt, engine="jit")
            ar = n.run_xdp(entry, pkt)
            seen.add(jr.retval)
            if ar.status != 0 or ar.retval != jr.retval or ar.data_out != bytes(jr.data_out):
                bad.append(f"{name} packet {pk}: JIT {jr.retval} / AOT {ar.retval} (status "
                           f"{ar.status}), data_out equal: {ar.data_out == bytes(jr.data_out)}")
            theirs = {m: n.map(m).items() for m in names}
            if theirs != ebee_maps(obj, names):
                bad.append(f"{name} packet {pk}: map contents differ")
                break
    return bad, seen
