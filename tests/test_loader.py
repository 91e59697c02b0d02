"""The ELF loader: libbpf's SEC() table, programs and subprograms, relocations, maps,
global data, externs -- on the example objects and hand-picked corpus objects."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

import ebee
import ebee.fs
from ebee import uapi as U
from ebee.isa import Kind
from ebee.loader.mapdefs import Pinning
from ebee.progtypes.sections import SECTION_DEFS, SecFlag, parse_section

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples" / "c"
CORPUS = ROOT.parent / "shared" / "corpus" / "ebpf-samples"

P, A = U.ProgType, U.AttachType


@pytest.fixture
def store(tmp_path):
    return ebee.fs.PinStore(tmp_path / "pins.sqlite3")


def load(name: str, store, **kw):
    return ebee.load(EX / name, store=store, **kw)


def corpus(rel: str) -> Path:
    p = CORPUS / rel
    if not p.exists():
        pytest.skip(f"corpus object {p} not present")
    return p


# ---------------------------------------------------------------------------------- SEC() names

@pytest.mark.parametrize("name, ptype, attach, target", [
    ("xdp", P.XDP, A.XDP, None),
    ("xdp.frags", P.XDP, A.XDP, None),
    ("xdp/devmap", P.XDP, A.XDP_DEVMAP, None),
    ("tc", P.SCHED_CLS, None, None),
    ("tc/ingress", P.SCHED_CLS, A.TCX_INGRESS, None),
    ("tcx/egress", P.SCHED_CLS, A.TCX_EGRESS, None),
    ("classifier", P.SCHED_CLS, None, None),
    ("action", P.SCHED_ACT, None, None),
    ("socket", P.SOCKET_FILTER, None, None),
    ("kprobe/do_unlinkat", P.KPROBE, None, "do_unlinkat"),
    ("kretprobe/do_unlinkat", P.KPROBE, None, "do_unlinkat"),
    ("uprobe//bin/bash:readline", P.KPROBE, None, "/bin/bash:readline"),
    ("tracepoint/syscalls/sys_enter_openat", P.TRACEPOINT, None, "syscalls/sys_enter_openat"),
    ("tp/sched/sched_switch", P.TRACEPOINT, None, "sched/sched_switch"),
    ("raw_tp/sched_switch", P.RAW_TRACEPOINT, None, "sched_switch"),
    ("raw_tracepoint.w/bpf_test_finish", P.RAW_TRACEPOINT_WRITABLE, None, "bpf_test_finish"),
    ("tp_btf/sched_process_fork", P.TRACING, A.TRACE_RAW_TP, "sched_process_fork"),
    ("fentry/tcp_connect", P.TRACING, A.TRACE_FENTRY, "tcp_connect"),
    ("fexit/tcp_connect", P.TRACING, A.TRACE_FEXIT, "tcp_connect"),
    ("fmod_ret/security_x", P.TRACING, A.MODIFY_RETURN, "security_x"),
    ("freplace/handler", P.EXT, None, "handler"),
    ("lsm/file_open", P.LSM, A.LSM_MAC, "file_open"),
    ("iter/task", P.TRACING, A.TRACE_ITER, "task"),
    ("struct_ops/tcp_init", P.STRUCT_OPS, None, "tcp_init"),
    ("perf_event", P.PERF_EVENT, None, None),
    ("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS, None),
    ("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, None),
    ("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, None),
    ("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, None),
    ("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS, None),
    ("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT, None),
    ("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT, None),
    ("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP, None),
    ("sk_reuseport", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT, None),
    ("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, None),
    ("lwt_seg6local", P.LWT_SEG6LOCAL, None, None),
    ("lirc_mode2", P.LIRC_MODE2, A.LIRC_MODE2, None),
    ("syscall", P.SYSCALL, None, None),
    ("netfilter", P.NETFILTER, A.NETFILTER, None),
])
def test_section_table(name, ptype, attach, target):
    sd = parse_section(name)
    assert (sd.prog_type, sd.expected_attach_type, sd.attach_target) == (ptype, attach, target)
    assert sd.known and not sd.legacy


def test_section_flags_and_matching_rules():
    assert parse_section("fentry.s/x").sleepable and parse_section("syscall").sleepable
    assert parse_section("xdp.frags").xdp_frags
    assert parse_section("xdp.frags").prog_flags == U.BPF_F_XDP_HAS_FRAGS
    assert parse_section("usdt/lib:prov:name").flags & SecFlag.USDT
    assert parse_section("kretprobe/f").is_retprobe and not parse_section("kprobe/f").is_retprobe
    # "type+" needs '/' after the prefix; exact rows match exactly
    assert parse_section("kprobex").prog_type is P.UNSPEC
    assert parse_section("sockopsx").legacy        # libbpf 0.x sloppy prefix only
    assert parse_section("socket1") .prog_type is P.SOCKET_FILTER and parse_section("socket1").legacy
    assert parse_section("from-netdev").prog_type is P.UNSPEC and not parse_section("x").known
    # every strict row matches its own name
    for d in SECTION_DEFS:
        probe = d.sec.rstrip("+/") + ("/x" if d.sec.endswith("/") else "")
        assert parse_section(probe).sec_def is not None


# ---------------------------------------------------------------------------------- examples

def test_example_programs_and_maps(store):
    obj = load("tail_calls.o", store)
    assert list(obj.programs) == ["handle_tcp", "handle_udp", "handle_icmp", "dispatcher"]
    d = obj.programs["dispatcher"]
    assert (d.type, d.expected_attach_type, d.section, d.license) == (P.XDP, A.XDP, "xdp", "GPL")
    assert set(obj.maps) == {"dispatch", "handled"}
    assert obj.maps["dispatch"].type is U.MapType.PROG_ARRAY
    # the object fills the prog array from `values`
    assert sorted(k for k in range(256) if _slot_used(obj.maps["dispatch"], k)) == [1, 6, 17]
    # lddw of a map carries the live map's id
    ids = {i.imm for i in d.insns if i.spec.wide and i.src == U.BPF_PSEUDO_MAP_FD}
    assert ids == {obj.maps["dispatch"].id}
    obj.close()


def _slot_used(m, k) -> bool:
    try:
        m.lookup(k)
        return True
    except (OSError, KeyError):
        return False


def test_subprograms_are_appended_and_calls_fixed(store):
    obj = load("bpf2bpf.o", store)
    p = obj.programs["calls"]
    names = [n for n, _ in p.functions]
    assert names[0] == "calls" and set(names[1:]) == {"square", "sum_squares", "add_step"}
    n = sum(i.slots for i in p.insns)
    starts = {off for _, off in p.functions}
    for i in p.insns:
        if i.kind is Kind.CALL_LOCAL or (i.spec.wide and i.src == U.BPF_PSEUDO_FUNC):
            assert i.jump_target() in starts and 0 <= i.jump_target() < n
    # func_info is rebased to the linked program: one record per function, at its start
    assert sorted(fi.insn for fi in p.func_info) == sorted(starts)
    assert all(0 <= li.insn < n for li in p.line_info)


def test_global_data_maps_and_skeleton_access(store):
    obj = load("globals.o", store)
    assert set(obj.maps) == {".rodata", ".data", ".bss"}
    ro = obj.maps[".rodata"]
    assert ro.flags & U.BPF_F_RDONLY_PROG and ro.name == "globals.rodata"
    assert obj.rodata.greeting == b"hello"
    assert obj.data.verdict_pass == 2          # XDP_PASS
    obj.rodata.drop_port_max = 1500
    assert obj.rodata.drop_port_max == 1500
    raw = bytes(ro.lookup(0))
    assert struct.unpack_from("<I", raw, 4)[0] == 1500
    # global data references become map-value pointers with the variable's offset
    p = obj.programs["globals"]
    refs = {(i.imm, i.imm_hi) for i in p.insns if i.spec.wide and i.src == U.BPF_PSEUDO_MAP_VALUE}
    assert (obj.maps[".bss"].id, 0) in refs and (obj.maps[".bss"].id, 8) in refs
    assert (obj.maps[".rodata"].id, 4) in refs
    with pytest.raises(AttributeError):
        obj.rodata.no_such_var
    obj.first_use()                       # what a run/verify does: .rodata is frozen
    assert ro.frozen
    with pytest.raises(PermissionError):
        obj.rodata.drop_port_min = 1


def test_kconfig_externs(store):
    obj = load("core_task.o", store, kconfig="CONFIG_BPF_JIT=n\n")
    assert obj.kconfig.CONFIG_BPF_JIT is False
    assert obj.kconfig.LINUX_KERNEL_VERSION >> 16 >= 3
    obj2 = load("core_task.o", store, kconfig={"CONFIG_BPF_JIT": True})
    assert obj2.kconfig.CONFIG_BPF_JIT is True
    kmap = obj2.maps[".kconfig"]
    assert kmap.flags & U.BPF_F_RDONLY_PROG
    refs = [i for i in obj2.programs["on_fork"].insns
            if i.spec.wide and i.src == U.BPF_PSEUDO_MAP_VALUE and i.imm == kmap.id]
    assert len(refs) == 2


def test_pin_by_name_reuses_and_refuses(store):
    a = load("xdp_firewall.o", store)
    assert a.spec.maps["blocklist"].pinning is Pinning.BY_NAME
    assert store.exists("/sys/fs/bpf/blocklist")
    a.maps["blocklist"].update(b"\x0a\0\0\x01", (5).to_bytes(8, "little"))
    b = load("xdp_firewall.o", store)
    assert b.maps["blocklist"] is a.maps["blocklist"]          # same map, as in the kernel
    assert b.maps["stats"] is not a.maps["stats"]
    ebee.fs.unpin("/sys/fs/bpf/blocklist", store=store)
    from ebee.maps.base import Map
    other = Map(U.MapType.HASH, 4, 8, 99)
    store.pin_map("/sys/fs/bpf/blocklist", other)
    with pytest.raises(ebee.LoadError, match=r"couldn't reuse pinned map at "
                                             r"'/sys/fs/bpf/blocklist': parameter mismatch"):
        load("xdp_firewall.o", store)


def test_pin_root(store):
    load("xdp_firewall.o", store, pin_root="/sys/fs/bpf/ns1")
    assert store.exists("/sys/fs/bpf/ns1/blocklist")


# ---------------------------------------------------------------------------------- legacy objects

def test_legacy_bpf_map_def(store):
    obj = ebee.load(corpus("linux/sockex3_kern.o"), store=store)
    jt = obj.maps["jmp_table"]
    assert (jt.type, jt.key_size, jt.value_size, jt.max_entries) == (U.MapType.PROG_ARRAY, 4, 4, 8)
    assert obj.programs and all(p.type is P.SOCKET_FILTER for p in obj.programs.values())


def test_iproute2_bpf_elf_map_pins_in_tc_globals(store):
    obj = ebee.load(corpus("linux/tc_l2_redirect_kern.o"), store=store)
    assert obj.spec.maps["tun_iface"].pinning is Pinning.GLOBAL_NS
    assert obj.pinned["tun_iface"] == "/sys/fs/bpf/tc/globals/tun_iface"


def test_legacy_map_in_map(store):
    obj = ebee.load(corpus("linux/test_map_in_map_kern.o"), store=store)
    spec = obj.spec.maps
    assert spec["a_of_port_a"].inner is not None
    assert spec["a_of_port_a"].inner.type is U.MapType.ARRAY
    assert spec["h_of_port_h"].inner.type is U.MapType.HASH


def test_unknown_sections_take_prog_type(store):
    path = corpus("cilium/bpf_lb.o")
    obj = ebee.load(path, store=store)
    assert any(p.type is P.UNSPEC for p in obj.programs.values())
    obj2 = ebee.load(path, store=ebee.fs.PinStore(store.location.with_suffix(".b")),
                     prog_type=P.SCHED_CLS)
    assert all(p.type is not P.UNSPEC for p in obj2.programs.values())


# ---------------------------------------------------------------------------------- errors

def test_load_error_is_a_value_error_naming_the_file(tmp_path):
    bad = tmp_path / "trunc.o"
    bad.write_bytes((EX / "xdp_firewall.o").read_bytes()[:300])
    with pytest.raises(ValueError) as ei:
        ebee.load(bad)
    assert isinstance(ei.value, ebee.LoadError) and str(ei.value).startswith(str(bad) + ": ")
    with pytest.raises(ebee.LoadError, match="no such file"):
        ebee.load(tmp_path / "missing.o")
    with pytest.raises(ebee.LoadError, match="not an ELF file"):
        ebee.load(b"hello world, not an object")


def test_map_definition_errors_use_libbpf_words(tmp_path):
    orig = (EX / "socket_bytes.o").read_bytes()
    # the section name (last in the file): the map relocation then points nowhere known
    data = bytearray(orig)
    i = data.rfind(b".maps\0")
    data[i:i + 6] = b".mapz\0"
    with pytest.raises(ebee.LoadError, match="bad map relo against 'proto_bytes' in section "
                                             "'.mapz'"):
        ebee.load(bytes(data))
    # the DATASEC name in BTF (first in the file)
    data = bytearray(orig)
    i = data.find(b".maps\0")
    data[i:i + 6] = b".mapz\0"
    with pytest.raises(ebee.LoadError, match="DATASEC '.maps' not found"):
        ebee.load(bytes(data))


KFUNC_SRC = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
extern void *bpf_obj_new_impl(__u64 local_type_id, void *meta) __ksym;
extern void bpf_obj_drop_impl(void *kptr, void *meta) __ksym;
extern int bpf_no_such_kfunc(int x) __ksym __weak;
extern const void bpf_prog_active __ksym __weak;
struct node { __u64 v; };
SEC("tc")
int kf(struct __sk_buff *skb)
{
	struct node *n = bpf_obj_new_impl(bpf_core_type_id_local(struct node), 0);
	if (n)
		bpf_obj_drop_impl(n, 0);
	if (bpf_no_such_kfunc)
		return bpf_no_such_kfunc(1);
	return &bpf_prog_active != 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_kfunc_and_ksym_externs(tmp_path, store):
    import shutil
    import subprocess
    clang = shutil.which("clang-19")
    if clang is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        pytest.skip("needs clang-19 and libbpf headers")
    src = tmp_path / "kf.c"
    src.write_text(KFUNC_SRC.replace("bpf_core_type_id_local(struct node)",
                                     "__builtin_btf_type_id(*(struct node *)0, 0)"))
    r = subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
                        "-c", str(src), "-o", str(tmp_path / "kf.o")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    obj = ebee.load(tmp_path / "kf.o", store=store)
    from ebee.protos.kfuncs import kfunc_id
    calls = [i for i in obj.programs["kf"].insns if i.kind is Kind.CALL_KFUNC]
    assert {i.imm for i in calls} == {kfunc_id("bpf_obj_new_impl"), kfunc_id("bpf_obj_drop_impl")}
    # the unknown __weak kfunc is poisoned as libbpf does
    assert any(i.kind is Kind.CALL and i.imm == 2002000000 for i in obj.programs["kf"].insns)
    assert obj.spec.externs["bpf_no_such_kfunc"].resolved is False
