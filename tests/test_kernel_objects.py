"""``Object.load_kernel()``: the same objects in ebee's runtime and in the kernel.

Every example object is loaded by both backends.  Programs the kernel can
test-run (XDP, tc, socket filters) run the same packets in both, and must give
the same return values, output packets, returned contexts and map contents.
The tracing examples (tracepoint, tp_btf) have no test run in Linux; they are
run in the kernel through real events in test_kernel_attach.py and
test_kernel_readers.py.  Tests written once run per backend with one parameter.
"""
from __future__ import annotations

import errno
import socket
import struct
from pathlib import Path

import pytest

import ebee
from ebee.kernel.prog import KernelLoadError
from ebee.uapi import MapType, ProgType
from kernel_helpers import EXAMPLES, bpffs_dir, udp_frame

pytestmark = pytest.mark.kernel

# packets for the packet programs: protocols, ports and sources the examples tell apart
PACKETS = [udp_frame(), udp_frame(proto=socket.IPPROTO_TCP, dport=22),
           udp_frame(proto=socket.IPPROTO_TCP, dport=443), udp_frame(dport=53),
           udp_frame(src="192.168.7.9", proto=socket.IPPROTO_ICMP),
           udp_frame(src="10.9.0.66"), udp_frame(dst="172.16.5.4"),
           udp_frame(payload=b"y" * 200), b"\x02" * 14, bytes(60)]
SETUP = {   # map contents both backends get before running (bytes keys and values)
    "xdp_firewall": {"blocklist": {socket.inet_aton("10.9.0.66"): bytes(8)}},
    "lpm_filter": {"prefixes": {struct.pack("I4s", 8, socket.inet_aton("192.0.0.0")):
                                struct.pack("I", 1),
                                struct.pack("I4s", 24, socket.inet_aton("172.16.5.0")):
                                struct.pack("I", 3)}},
}
RUNNABLE = {ProgType.XDP, ProgType.SCHED_CLS, ProgType.SOCKET_FILTER, ProgType.CGROUP_SKB}
FD_VALUED = {MapType.PROG_ARRAY, MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS}
EXAMPLE_OBJECTS = sorted(p.name for p in EXAMPLES.glob("*.o"))


def _open(path: Path, tmp_path, pins):
    from ebee.fs import PinStore
    return ebee.load(path, store=PinStore(tmp_path / "pins.sqlite3"), pin_root=str(pins))


def _contents(m) -> dict:
    out = {}
    for k, v in m.items():
        if isinstance(v, list):
            v = tuple(bytes(x) for x in v)
        out[bytes(k)] = None if m.type in FD_VALUED else bytes(v) if isinstance(v, bytes) else v
    return out


@pytest.mark.parametrize("name", EXAMPLE_OBJECTS)
def test_example_objects_agree_across_backends(kernel, tmp_path, name):
    if name == "lirc_nec.o":
        from ebee.kernel.probe import prog_type_available
        if not prog_type_available(ProgType.LIRC_MODE2):   # tests/test_lirc.py checks that
            pytest.skip("this kernel has no CONFIG_BPF_LIRC_MODE2")
    with bpffs_dir() as pins, _open(EXAMPLES / name, tmp_path, pins) as obj, \
            obj.load_kernel(pin_root=str(pins)) as k:
        # the kernel backend loads what libbpf loads: SEC("?...") programs stay out
        assert list(k.programs) == [p for p, prog in obj.programs.items() if prog.autoload]
        assert list(k.maps) == list(obj.maps)
        stem = name[:-2]
        for mname, entries in SETUP.get(stem, {}).items():
            for key, value in entries.items():
                obj.maps[mname][key] = value
                k.maps[mname][key] = value
        ran = 0
        for pname, uprog in obj.programs.items():
            if pname not in k.programs:
                continue
            kprog = k.programs[pname]
            assert kprog.type == uprog.type
            if uprog.type not in RUNNABLE:
                continue
            for pkt in PACKETS:
                want_ctx = uprog.type == ProgType.SCHED_CLS
                u = uprog.run(pkt, ctx_out=want_ctx)
                kr = kprog.run(pkt, ctx_out=want_ctx)
                where = f"{stem}:{pname} on {pkt[:40].hex()}"
                assert (u.retval, u.data_out) == (kr.retval, kr.data_out), where
                if want_ctx:
                    # mark and priority, which tc_classifier sets, and the rest of __sk_buff
                    assert u.ctx_out == kr.ctx_out, where
                ran += 1
        for mname in obj.maps:
            if obj.maps[mname].type in (MapType.RINGBUF, MapType.PERF_EVENT_ARRAY):
                continue      # rings: nothing to look up
            assert _contents(obj.maps[mname]) == _contents(k.maps[mname]), f"{stem}: map {mname}"
        if any(p.type in RUNNABLE for p in obj.programs.values()):
            assert ran


@pytest.fixture(params=["user", "kernel"])
def backend(request, tmp_path):
    """One object, loaded by the backend under test: tests are written once."""
    def load(name: str, **kw):
        from ebee.fs import PinStore
        obj = ebee.load(EXAMPLES / name, store=PinStore(tmp_path / "pins.sqlite3"), **kw)
        request.addfinalizer(obj.close)
        if request.param == "user":
            return obj
        if not request.getfixturevalue("kernel"):
            pytest.skip("no bpf()")
        k = obj.load_kernel(pin_root=kw.get("pin_root"))
        request.addfinalizer(k.close)
        return k
    return load


def test_tail_calls_dispatch(backend):
    obj = backend("tail_calls.o")
    prog = obj.programs["dispatcher"]
    for proto, verdict in ((socket.IPPROTO_TCP, 2), (socket.IPPROTO_UDP, 2),
                           (socket.IPPROTO_ICMP, 1), (47, 2)):
        assert prog.run(udp_frame(proto=proto)).retval == verdict
    handled = obj.maps["handled"]
    assert [int.from_bytes(handled[p], "little") for p in (6, 17, 1, 47)] == [1, 1, 1, 0]


def test_rodata_set_before_load(backend):
    """globals.o: .rodata configured between load and first use; frozen afterwards."""
    obj = backend("globals.o")
    src = getattr(obj, "source", obj)      # a kernel object keeps the ebee object it came from
    if src is obj:
        src.rodata.drop_port_min = 60
        src.rodata.drop_port_max = 70
    prog = obj.programs["globals"]
    verdicts = [prog.run(bytes(n)).retval for n in (50, 64, 80)]
    if src is obj:
        assert verdicts == [2, 1, 2]
    rodata = obj.maps[".rodata"]
    assert rodata.frozen
    with pytest.raises(OSError) as ei:
        rodata[0] = bytes(rodata.value_size)
    assert ei.value.errno == errno.EPERM


def test_rodata_values_reach_the_kernel(kernel, tmp_path):
    with ebee.load(EXAMPLES / "globals.o") as obj:
        obj.rodata.drop_port_min = 60
        obj.rodata.drop_port_max = 70
        with obj.load_kernel() as k:
            assert k.maps[".rodata"].info().frozen
            prog = k.programs["globals"]
            assert [prog.run(bytes(n)).retval for n in (50, 64, 80)] == [2, 1, 2]
            assert k.maps[".rodata"][0] == obj.maps[".rodata"][0]


def test_pinned_maps_are_reused(kernel, tmp_path):
    with bpffs_dir() as pins:
        with ebee.load(EXAMPLES / "xdp_firewall.o") as obj:
            with obj.load_kernel(pin_root=str(pins)) as k1:
                k1.maps["blocklist"][socket.inet_aton("1.2.3.4")] = bytes(8)
                first = k1.maps["blocklist"].id
            assert (pins / "blocklist").exists()          # pins outlive the object
            with obj.load_kernel(pin_root=str(pins)) as k2:
                assert k2.maps["blocklist"].id == first
                assert socket.inet_aton("1.2.3.4") in k2.maps["blocklist"]


def test_load_errors_name_the_program_and_release_everything(kernel):
    from ebee.kernel.info import Kind, ids
    bad = ebee.assemble("exit")
    before_maps = set(ids(Kind.MAP))
    with bpffs_dir() as pins, ebee.load(EXAMPLES / "xdp_firewall.o") as obj:
        p = obj.programs["xdp_firewall"]
        p.insns, p.func_info, p.line_info = bad, [], []
        with pytest.raises(KernelLoadError) as ei:
            obj.load_kernel(pin_root=str(pins))
        assert not (pins / "blocklist").exists()         # unpinned again, as libbpf does
    assert "prog 'xdp_firewall'" in str(ei.value) and "R0 !read_ok" in ei.value.log
    assert not (set(ids(Kind.MAP)) - before_maps)


def test_kernel_program_handles(kernel):
    with bpffs_dir() as pins, ebee.load(EXAMPLES / "xdp_firewall.o") as obj, \
            obj.load_kernel(pin_root=str(pins)) as k:
        prog = k.programs["xdp_firewall"]
        info = prog.info()
        assert info.name == "xdp_firewall" and info.type == ProgType.XDP
        assert sorted(info.map_ids) == sorted(m.id for m in k.maps.values())
        assert info.btf_id == k.btf.id and info.nr_func_info == 1 and info.nr_line_info > 0
        assert prog.section == "xdp" and prog.object is obj
        r = prog.run(udp_frame(), repeat=100)
        assert r.retval == 2 and r.prog_type == ProgType.XDP and r.verdict == "XDP_PASS"
        with pytest.raises(ValueError):
            prog.run(udp_frame(), engine="jit")


MIM_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct inner { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
               __type(key, __u32); __type(value, __u32); } inner_a SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = { .values = { [1] = &inner_a } };

struct foo { int a; int b; };
extern void *bpf_obj_new_impl(__u64 local_type_id, void *meta) __ksym;
extern void bpf_obj_drop_impl(void *kptr, void *meta) __ksym;

SEC("xdp")
int mim(struct xdp_md *ctx)
{
	__u32 k = 1, z = 0, *v;
	void *m = bpf_map_lookup_elem(&outer, &k);
	struct foo *f;
	int r;

	if (!m)
		return 10;
	v = bpf_map_lookup_elem(m, &z);
	if (!v)
		return 11;
	f = bpf_obj_new_impl(bpf_core_type_id_local(struct foo), NULL);
	if (!f)
		return 12;
	f->a = *v;
	r = f->a + 100;
	bpf_obj_drop_impl(f, NULL);
	return r;
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_map_in_map_values_and_kfuncs(kernel, tmp_path):
    """An outer map whose slot 1 holds inner_a (libbpf's `values`), and kfunc calls
    (bpf_obj_new/drop) resolved against vmlinux BTF, with a CO-RE local type id."""
    import shutil as _sh
    import subprocess as _sp
    clang = _sh.which("clang-19") or _sh.which("clang")
    if clang is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        pytest.skip("clang or libbpf's headers (libbpf-dev) are not installed")
    src, obj_path = tmp_path / "mim.c", tmp_path / "mim.o"
    src.write_text(MIM_C)
    multiarch = _sp.run(["gcc", "-print-multiarch"], capture_output=True, text=True).stdout.strip() \
        if _sh.which("gcc") else "x86_64-linux-gnu"
    _sp.run([clang, "-O2", "-g", "-target", "bpf", f"-I/usr/include/{multiarch or 'x86_64-linux-gnu'}",
             "-c", str(src), "-o", str(obj_path)], check=True)
    with ebee.load(obj_path) as obj:        # the user-space runtime agrees
        obj.maps["inner_a"][0] = 7
        assert obj.programs["mim"].run(bytes(64)).retval == 107
    with ebee.load(obj_path) as obj, obj.load_kernel() as k:
        assert k.maps["outer"].type == MapType.ARRAY_OF_MAPS
        inner_id = k.maps["inner_a"].id
        assert int.from_bytes(k.maps["outer"][1], "little") == inner_id   # kernel returns ids
        k.maps["inner_a"][0] = 7
        assert k.programs["mim"].run(bytes(64)).retval == 107
