"""The example C programs: committed objects load; rebuilt ones load the same way;
CO-RE relocations agree with what libbpf (through bpftool) gives the kernel."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import ebee
import ebee.fs
from ebee import uapi as U

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples" / "c"
SOURCES = sorted(p.stem for p in EX.glob("*.c"))

# what each example is: program type of each program, and its maps' types
EXPECTED = {
    "xdp_firewall": ({"xdp_firewall": "XDP"}, {"blocklist": "HASH", "stats": "ARRAY"}),
    "lpm_filter": ({"lpm_filter": "XDP"}, {"prefixes": "LPM_TRIE"}),
    "tc_classifier": ({"tc_classify": "SCHED_CLS"}, {}),
    "socket_bytes": ({"socket_bytes": "SOCKET_FILTER"}, {"proto_bytes": "ARRAY"}),
    "syscall_counter": ({"count_syscalls": "TRACEPOINT"}, {"syscalls": "HASH"}),
    "ringbuf_events": ({"on_exec": "TRACEPOINT"}, {"events": "RINGBUF"}),
    "tail_calls": ({"handle_tcp": "XDP", "handle_udp": "XDP", "handle_icmp": "XDP",
                    "dispatcher": "XDP"}, {"dispatch": "PROG_ARRAY", "handled": "ARRAY"}),
    "bpf2bpf": ({"calls": "XDP"}, {"result": "ARRAY"}),
    "globals": ({"globals": "XDP"}, {".rodata": "ARRAY", ".data": "ARRAY", ".bss": "ARRAY"}),
    "core_task": ({"on_fork": "TRACING"}, {"tasks": "HASH", ".kconfig": "ARRAY"}),
    "xdp_reflect": ({"xdp_reflect": "XDP"}, {"actions": "ARRAY"}),
    "cgroup_skb_counter": ({"count_ingress": "CGROUP_SKB"}, {"per_proto": "HASH"}),
    "lirc_nec": ({"nec_decode": "LIRC_MODE2"}, {"nec": "ARRAY"}),
    "tcp_reno_cc": ({f"ebee_reno_{op}": "STRUCT_OPS" for op in
                     ("init", "release", "ssthresh", "cong_avoid", "set_state", "cwnd_event",
                      "pkts_acked", "undo_cwnd")},
                    {"ebee_reno": "STRUCT_OPS", ".bss": "ARRAY"}),
    "sockops_bypass": ({"bypass_sockops": "SOCK_OPS", "bypass_sk_msg": "SK_MSG"},
                       {"sock_ops_map": "SOCKHASH", ".bss": "ARRAY"}),
    "pktlen_hist": ({"count_sizes": "XDP"}, {"by_proto": "HASH", "linear": "ARRAY"}),
    "skeleton": ({"on_openat": "TRACEPOINT", "on_sys_enter": "RAW_TRACEPOINT",
                  "on_missing": "KPROBE", "on_close": "TRACEPOINT", "pass": "XDP"},
                 {"per_tgid": "HASH", ".rodata": "ARRAY", ".bss": "ARRAY"}),
    "trace_events": ({"on_openat": "TRACEPOINT", "on_readline": "KPROBE"},
                     {"events": "RINGBUF", ".rodata": "ARRAY", ".bss": "ARRAY"}),
    "perf_events": ({"on_openat": "TRACEPOINT"},
                    {"events": "PERF_EVENT_ARRAY", "name_len": "ARRAY", ".bss": "ARRAY"}),
}


def shape(obj) -> tuple:
    return ({n: (p.type.name, p.section, sum(i.slots for i in p.insns))
             for n, p in obj.programs.items()},
            {n: (m.type.name, m.key_size, m.value_size, m.max_entries)
             for n, m in obj.maps.items()})


def test_every_example_is_listed():
    assert sorted(EXPECTED) == SOURCES
    assert all((EX / f"{s}.o").exists() for s in SOURCES)


@pytest.mark.parametrize("name", SOURCES)
def test_committed_example_loads(name, tmp_path):
    obj = ebee.load(EX / f"{name}.o", store=ebee.fs.PinStore(tmp_path / "p.db"))
    progs, maps = EXPECTED[name]
    assert {n: p.type.name for n, p in obj.programs.items()} == progs
    assert {n: m.type.name for n, m in obj.maps.items()} == maps
    assert all(p.license == "GPL" and p.line_info and p.func_info for p in obj.programs.values())


def test_rebuilt_examples_load_the_same_way(tmp_path):
    clang = shutil.which("clang-19")
    if clang is None or shutil.which("make") is None:
        pytest.skip("clang-19 (or make) not installed")
    if not Path("/usr/include/bpf/bpf_helpers.h").exists():
        pytest.skip("libbpf headers (libbpf-dev) not installed")
    if not Path("/sys/kernel/btf/vmlinux").exists() or shutil.which("bpftool") is None:
        pytest.skip("core_task needs bpftool and /sys/kernel/btf/vmlinux for vmlinux.h")
    out = tmp_path / "src"
    shutil.copytree(EX, out, ignore=shutil.ignore_patterns("*.o", "build"))
    r = subprocess.run(["make", "-s", "-C", str(out), f"BUILD={tmp_path / 'build'}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for name in SOURCES:
        a = ebee.load(EX / f"{name}.o", store=ebee.fs.PinStore(tmp_path / "a.db"))
        b = ebee.load(out / f"{name}.o", store=ebee.fs.PinStore(tmp_path / "b.db"))
        assert shape(a) == shape(b), name
        for n in a.programs:
            assert [(i.opcode, i.dst, i.src, i.off) for i in a.programs[n].insns] == \
                [(i.opcode, i.dst, i.src, i.off) for i in b.programs[n].insns], f"{name}:{n}"


def _xlated_body(text: str) -> list[str]:
    """Instruction lines of an xlated dump with what differs between loaders normalised:
    map ids, and the helper numbers the kernel rewrites (``call name#-69024``)."""
    out = []
    for line in text.splitlines():
        m = re.match(r"\s*(\d+): \((..)\) (.*)", line)
        if not m:
            continue
        ins = re.sub(r"map\[id:\d+\]", "map[id:N]", m.group(3))
        # the kernel inlines or retargets helpers (bpf_map_update_elem -> htab_map_update_elem)
        ins = re.sub(r"call (\w+)#-?\d+", "call", ins)
        out.append(f"{m.group(1)}: ({m.group(2)}) {ins}")
    return out


def test_core_offsets_match_the_kernel_loader(kernel, tmp_path):
    """core_task.o loaded by bpftool (libbpf) into the kernel and by ebee: same instructions,
    so every CO-RE relocation resolved to the same offset against the host's vmlinux."""
    bpftool = shutil.which("bpftool")
    if bpftool is None or not Path("/sys/kernel/btf/vmlinux").exists():
        pytest.skip("needs bpftool and /sys/kernel/btf/vmlinux")
    if not os.path.ismount("/sys/fs/bpf"):
        r = subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], capture_output=True)
        if r.returncode:
            pytest.skip("bpffs is not mounted and cannot be mounted here")
    pin = Path("/sys/fs/bpf") / f"ebee_core_{os.getpid()}"
    try:
        r = subprocess.run([bpftool, "prog", "loadall", str(EX / "core_task.o"), str(pin)],
                           capture_output=True, text=True, timeout=120)
        if r.returncode:
            pytest.skip(f"the kernel refused core_task.o: {r.stderr.strip()[-200:]}")
        kx = subprocess.run([bpftool, "prog", "dump", "xlated", "pinned", str(pin / "on_fork")],
                            capture_output=True, text=True, timeout=60).stdout
    finally:
        shutil.rmtree(pin, ignore_errors=True)
    obj = ebee.load(EX / "core_task.o", store=ebee.fs.PinStore(tmp_path / "p.db"))
    from ebee.asm.disasm import format_xlated
    mine = _xlated_body("\n".join(format_xlated(obj.programs["on_fork"].insns)))
    theirs = _xlated_body(kx)
    assert len(mine) == len(theirs) > 50
    assert mine == theirs
    n_relos = len(obj.btf_ext.core_relos["tp_btf/sched_process_fork"])
    assert n_relos >= 6


def test_core_against_a_custom_btf(tmp_path):
    """btf_custom_path: relocate against a BTF file instead of the host's."""
    if not Path("/sys/kernel/btf/vmlinux").exists():
        pytest.skip("no /sys/kernel/btf/vmlinux to copy")
    btf = tmp_path / "vmlinux.btf"
    btf.write_bytes(Path("/sys/kernel/btf/vmlinux").read_bytes())
    a = ebee.load(EX / "core_task.o", btf_custom_path=str(btf),
                  store=ebee.fs.PinStore(tmp_path / "a.db"))
    b = ebee.load(EX / "core_task.o", store=ebee.fs.PinStore(tmp_path / "b.db"))
    assert [i.off for i in a.programs["on_fork"].insns] == \
        [i.off for i in b.programs["on_fork"].insns]
    with pytest.raises(ebee.LoadError, match="CO-RE target BTF"):
        ebee.load(EX / "core_task.o", btf_custom_path=str(tmp_path / "missing.btf"),
                  store=ebee.fs.PinStore(tmp_path / "c.db"))


def _tiny_btf() -> bytes:
    """A target BTF whose task_struct has only ``int pid`` (at offset 8)."""
    import struct
    strings = b"\0int\0task_struct\0pid\0"
    types = struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", (1 << 24) | 32)     # [1] int
    types += struct.pack("<III", 5, (4 << 24) | 1, 16)                                 # [2] struct
    types += struct.pack("<III", 17, 1, 64)                                            # .pid @ 8
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def test_core_poisons_what_the_target_lacks(tmp_path):
    """Relocations against a target without the fields fail as libbpf's do: the instruction
    becomes a call to helper 0xbad2310 and the object still loads."""
    target = tmp_path / "tiny.btf"
    target.write_bytes(_tiny_btf())
    obj = ebee.load(EX / "core_task.o", btf_custom_path=str(target),
                    store=ebee.fs.PinStore(tmp_path / "p.db"))
    insns = obj.programs["on_fork"].insns
    poisoned = [i for i in insns if i.kind.name == "CALL" and i.imm == 0xBAD2310]
    assert poisoned                                   # tgid, real_parent, ... are missing
    # pid exists in the target, at offset 8: BPF_CORE_READ(child, pid) adds 8
    assert any(i.kind.name == "ALU" and i.imm == 8 for i in insns[:12])
    from ebee.btf.core import poisoned_reason
    from ebee.isa import encode
    reason = poisoned_reason(encode(insns), poisoned[0].pc)
    assert "CO-RE relocation" in reason


def _packet(src: str, dst: str, proto: int = 6) -> bytes:
    import socket
    eth = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x00"
    ip = bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, proto, 0, 0]) + socket.inet_aton(src) + \
        socket.inet_aton(dst)
    return eth + ip + bytes(20)


def test_examples_run_end_to_end(tmp_path):
    """Loaded objects run through ebee.progtypes: maps, globals and tail calls take effect."""
    import socket
    pkt = _packet("10.0.0.1", "10.0.0.2")
    fw = ebee.load(EX / "xdp_firewall.o", store=ebee.fs.PinStore(tmp_path / "a.db"))
    prog = fw.programs["xdp_firewall"]
    assert prog.run(pkt).retval == 2                                  # XDP_PASS
    fw.maps["blocklist"].update(socket.inet_aton("10.0.0.1"), 0)
    assert prog.run(pkt).retval == 1                                  # XDP_DROP
    assert fw.maps["blocklist"].lookup(socket.inet_aton("10.0.0.1")) == (1).to_bytes(8, "little")

    g = ebee.load(EX / "globals.o", store=ebee.fs.PinStore(tmp_path / "b.db"))
    g.rodata.drop_port_min, g.rodata.drop_port_max = 30, 100
    assert g.programs["globals"].run(pkt).retval == 1                 # len 54 is in range
    assert (g.bss.packets_seen, g.bss.last_len) == (1, len(pkt))
    assert g.maps[".rodata"].frozen

    t = ebee.load(EX / "tail_calls.o", store=ebee.fs.PinStore(tmp_path / "c.db"))
    assert t.programs["dispatcher"].run(_packet("1.1.1.1", "2.2.2.2", 1)).retval == 1  # icmp
    assert t.maps["handled"].lookup(1) == (1).to_bytes(8, "little")
