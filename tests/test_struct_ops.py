"""``.struct_ops`` / ``.struct_ops.link`` sections load as libbpf loads them.

The map's value is the kernel's ``struct bpf_struct_ops_X`` (size and type id from
the kernel's BTF), scalar members are copied into it by name, and every program a
function pointer names is attached to the kernel's struct at that member's index.
The kernel backend creates the same maps and loads the same programs in Linux.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import ebee
from ebee.btf import BTF, Kind
from ebee.errors import LoadError
from ebee.uapi import BPF_F_LINK, MapType, ProgType

SRC = r"""
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

struct sock;
struct bpf_dummy_ops_state;

/* the members this object sets, in its own order: libbpf matches them by name */
struct tcp_congestion_ops {
    char name[16];
    __u32 (*undo_cwnd)(struct sock *sk);
    void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
    __u32 (*ssthresh)(struct sock *sk);
    __u32 flags;
};

struct bpf_dummy_ops {
    int (*test_1)(struct bpf_dummy_ops_state *cb);
    int (*test_sleepable)(struct bpf_dummy_ops_state *cb);
};

SEC("struct_ops/ebee_ssthresh") __u32 ebee_ssthresh(unsigned long long *ctx) { return 2; }
SEC("struct_ops/ebee_undo") __u32 ebee_undo(unsigned long long *ctx) { return 3; }
SEC("struct_ops/ebee_avoid") void ebee_avoid(unsigned long long *ctx) { }
SEC("struct_ops/dummy_test_1") int dummy_test_1(unsigned long long *ctx) { return 0; }

SEC(".struct_ops.link")
struct tcp_congestion_ops ebee_cc = {
    .name = "ebee_cc",
    .undo_cwnd = (void *)ebee_undo,
    .cong_avoid = (void *)ebee_avoid,
    .ssthresh = (void *)ebee_ssthresh,
};

SEC(".struct_ops")
struct bpf_dummy_ops dummy = { .test_1 = (void *)dummy_test_1 };

SEC("?.struct_ops")
struct bpf_dummy_ops not_created = { .test_1 = (void *)dummy_test_1 };

char LICENSE[] SEC("license") = "GPL";
"""


def _vmlinux() -> BTF:
    try:
        return BTF.load_vmlinux()
    except OSError as e:
        pytest.skip(f"no kernel BTF: {e}")


def _build(tmp_path, src: str) -> Path:
    clang = shutil.which("clang-19")
    if clang is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        pytest.skip("needs clang-19 and libbpf headers")
    (tmp_path / "so.c").write_text(src)
    r = subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
                        "-c", str(tmp_path / "so.c"), "-o", str(tmp_path / "so.o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return tmp_path / "so.o"


@pytest.fixture
def so_obj(tmp_path):
    return _build(tmp_path, SRC)


def test_struct_ops_maps_and_programs(so_obj):
    vm = _vmlinux()
    obj = ebee.load(so_obj)
    cc, dummy = obj.maps["ebee_cc"], obj.maps["dummy"]
    assert "not_created" not in obj.maps               # SEC("?.struct_ops")
    vt = vm.find("bpf_struct_ops_tcp_congestion_ops", Kind.STRUCT)
    assert (cc.type, cc.key_size, cc.max_entries) == (MapType.STRUCT_OPS, 4, 1)
    assert cc.value_size == vt.size and cc.btf_vmlinux_value_type_id == vt.id
    assert cc.flags == BPF_F_LINK and dummy.flags == 0
    kt = vm.find("tcp_congestion_ops", Kind.STRUCT)
    members = [m.name for m in kt.members]
    for prog, member in (("ebee_ssthresh", "ssthresh"), ("ebee_undo", "undo_cwnd"),
                         ("ebee_avoid", "cong_avoid")):
        p = obj.programs[prog]
        assert p.type is ProgType.STRUCT_OPS and p.attach_target == "tcp_congestion_ops"
        assert int(p.expected_attach_type) == members.index(member)
    assert int(obj.programs["dummy_test_1"].expected_attach_type) == 0
    # the scalar members, copied by name into the kernel's value
    st = obj.spec.maps["ebee_cc"].struct_ops
    data_off = next(m for m in vt.members if m.name == "data").bits_offset // 8
    name_off = next(m for m in kt.members if m.name == "name").bits_offset // 8
    assert st.kern_vdata[data_off + name_off:data_off + name_off + 8] == b"ebee_cc\0"
    ss = next(m for m in kt.members if m.name == "ssthresh").bits_offset // 8
    assert st.kern_func_off[data_off + ss] == "ebee_ssthresh"


def test_member_the_kernel_lacks(tmp_path):
    _vmlinux()
    src = SRC.replace("    __u32 flags;\n", "    __u32 flags;\n    int no_such_member;\n")
    ebee.load(_build(tmp_path, src))          # zero: skipped, as libbpf skips it
    bad = src.replace('.name = "ebee_cc",', '.name = "ebee_cc", .no_such_member = 1,')
    (tmp_path / "b").mkdir()
    with pytest.raises(LoadError, match="struct_ops init_kern ebee_cc: Cannot find member "
                                        "no_such_member in kernel BTF"):
        ebee.load(_build(tmp_path / "b", bad))


@pytest.mark.kernel
def test_struct_ops_in_the_kernel(kernel, so_obj):
    from ebee.kernel.info import map_info, prog_info
    vm = _vmlinux()
    obj = ebee.load(so_obj)
    with obj.load_kernel() as k:
        info = map_info(k.maps["ebee_cc"].fd)
        assert info.type == MapType.STRUCT_OPS
        assert info.btf_vmlinux_value_type_id == obj.maps["ebee_cc"].btf_vmlinux_value_type_id
        assert info.value_size == obj.maps["ebee_cc"].value_size
        pi = prog_info(k.programs["ebee_ssthresh"].fd)
        assert pi.type == ProgType.STRUCT_OPS
        assert pi.attach_btf_id == vm.find("tcp_congestion_ops", Kind.STRUCT).id
