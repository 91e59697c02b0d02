"""CGROUP_STORAGE and PERCPU_CGROUP_STORAGE at run time: ``bpf_get_local_storage``
answers the running program's storage -- in a test run its own, zeroed, kept for the
run's repetitions and in no map (bpf_test_run); attached to a cgroup, the element of
(cgroup, attach type), which user space then sees in the map.  Both compared with the
kernel: BPF_PROG_TEST_RUN of cgroup_skb programs, and the same programs attached to a
cgroup v2 directory the test creates, counting a process's UDP datagrams over loopback.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import ebee
from ebee.uapi import AttachType

OBJ = Path(__file__).resolve().parent / "data" / "runtime_maps" / "cgroup_storage.o"
PKT = bytes(14) + bytes(50)           # ethernet header (stripped) and a 50-byte packet


def last(maps) -> list[int]:
    return [struct.unpack("<Q", maps["last"].lookup(struct.pack("<I", i)))[0] for i in range(3)]


def runs(run, maps) -> list:
    out = []
    for prog, repeat in [("count_egress", 5), ("count_egress", 1), ("count_ingress", 3),
                         ("count_egress", 2)]:
        r = run(prog, repeat)
        out.append((prog, repeat, r.retval, last(maps)))
    return out


# each test run starts from zeroed storage and keeps it across its repetitions
EXPECTED = [("count_egress", 5, 1, [5, 250, 5]), ("count_egress", 1, 1, [1, 50, 1]),
            ("count_ingress", 3, 1, [3, 150, 3]), ("count_egress", 2, 1, [2, 100, 2])]


def test_test_runs_have_their_own_storage():
    obj = ebee.load(OBJ)
    assert runs(lambda p, n: obj.programs[p].run(PKT, repeat=n), obj.maps) == EXPECTED
    assert list(obj.maps["cg"].keys()) == []            # never in the map


@pytest.mark.kernel
def test_test_runs_match_the_kernel(kernel):
    with ebee.load(OBJ).load_kernel() as k:
        assert runs(lambda p, n: k.programs[p].run(PKT, repeat=n), k.maps) == EXPECTED


def storage(maps) -> dict:
    """(cgroup id, attach type) -> (packets, bytes, per-CPU packets summed)."""
    out = {}
    for key in maps["cg"].keys():
        key = bytes(key)
        cg, at = struct.unpack_from("<QI", key)
        packets, nbytes = struct.unpack("<QQ", bytes(maps["cg"].lookup(key)))
        per_cpu = maps["pcg"].lookup(key)          # one value per CPU
        if isinstance(per_cpu, (bytes, bytearray)):
            per_cpu = [per_cpu[i:i + 8] for i in range(0, len(per_cpu), 8)]
        out[(cg, at)] = (packets, nbytes, sum(struct.unpack("<Q", bytes(v))[0] for v in per_cpu))
    return out


def shared(maps) -> dict:
    """The 8-byte-keyed map: cgroup id -> (packets, bytes), both attach types together."""
    return {struct.unpack("<Q", bytes(k))[0]: struct.unpack("<QQ", bytes(maps["shared"].lookup(k)))
            for k in maps["shared"].keys()}


def test_attached_runs_count_per_cgroup_and_attach_type():
    obj = ebee.load(OBJ)
    ip_udp = PKT[:14] + bytes(28 + 7)
    for cg, n in ((1000, 4), (1001, 2)):
        for _ in range(n):
            obj.programs["count_egress"].run(ip_udp, cgroup=cg)
        obj.programs["count_ingress"].run(ip_udp, cgroup=cg)
    obj.programs["count_egress"].run(ip_udp, cgroup=(1001, AttachType.CGROUP_INET_INGRESS))
    E, I = int(AttachType.CGROUP_INET_EGRESS), int(AttachType.CGROUP_INET_INGRESS)
    assert storage(obj.maps) == {(1000, E): (4, 140, 4), (1000, I): (1, 35, 1),
                                 (1001, E): (2, 70, 2), (1001, I): (2, 70, 2)}
    assert last(obj.maps) == [2, 70, 2]


SENDER = ("import socket\n"
          "r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('127.0.0.1', 0))\n"
          "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
          "for i in range({n}): s.sendto(bytes({size}), r.getsockname()); r.recv(100)\n")


@pytest.mark.kernel
def test_attached_storage_matches_the_kernel(kernel, tmp_path):
    from ebee.kernel.attach import cgroup as attach_cgroup
    from ebee.kernel.attach.cgroup import cgroup2_root
    root = cgroup2_root()
    if root is None:
        pytest.skip("no cgroup v2 hierarchy mounted")
    cg = os.path.join(root, f"ebee-storage-{os.getpid()}")
    os.makedirs(cg, exist_ok=True)
    n, size = 6, 40
    try:
        with ebee.load(OBJ).load_kernel() as k:
            with attach_cgroup(k.programs["count_egress"], cg), \
                    attach_cgroup(k.programs["count_ingress"], cg), \
                    attach_cgroup(k.programs["shared_egress"], cg), \
                    attach_cgroup(k.programs["shared_ingress"], cg):
                subprocess.run(["sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec "
                                            f"{sys.executable} -c \"{SENDER.format(n=n, size=size)}\""],
                               check=True)
                got = storage(k.maps), shared(k.maps)
        cg_id = os.stat(cg).st_ino
    finally:
        os.rmdir(cg)
    obj = ebee.load(OBJ)
    pkt = PKT[:14] + bytes(28 + size)                 # IPv4 + UDP + payload
    for _ in range(n):
        for p in ("count_egress", "count_ingress", "shared_egress", "shared_ingress"):
            obj.programs[p].run(pkt, cgroup=cg_id)
    want = storage(obj.maps), shared(obj.maps)
    assert got == want == ({(cg_id, int(AttachType.CGROUP_INET_EGRESS)): (n, n * 68, n),
                            (cg_id, int(AttachType.CGROUP_INET_INGRESS)): (n, n * 68, n)},
                           {cg_id: (2 * n, 2 * n * 68)})
