"""A C program reading its maps as the kernel's structs (``((struct bpf_map *)&m)->max_entries``).

The program is built with clang-19 as users build CO-RE programs: ``struct bpf_map``
and ``struct bpf_array`` declared with only the members it reads, under
``preserve_access_index``, so the loader relocates every offset against the
kernel's BTF.  It copies what it reads from six maps of different types, sizes and
flags into a results array.  It runs in the kernel (BPF_PROG_TEST_RUN) and in ebee's
interpreter and JIT, and every value must agree: the map pointer's memory in ebee
(the map's kernel view, ``ebee.verifier.btfaccess.map_view``) serves these members
at the kernel's offsets.  ``id`` is each system's own map id.

Then every member the view serves (``name`` and ``sha`` too, which C cannot read
without pointer arithmetic on the map pointer) is read by instructions at its BTF
offset from maps of nine types, in a kernel test run and in both engines, and the
bytes compared.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

import ebee
from ebee.uapi import BPF_F_NO_PREALLOC, BPF_F_RDONLY_PROG, MapType as T

SRC = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __ca __attribute__((preserve_access_index))
struct bpf_map {
    enum bpf_map_type map_type;         /* an enum in the kernel: CO-RE wants the same kind */
    __u32 key_size, value_size, max_entries;
    __u64 map_extra;
    __u32 map_flags, id;
    int numa_node;
} __ca;
struct bpf_array { struct bpf_map map; __u32 elem_size, index_mask; } __ca;

struct out {
    __u32 map_type, key_size, value_size, max_entries, map_flags, id;
    __s32 numa_node;
    __u32 elem_size, index_mask, seen;
    __u64 map_extra;
};
struct val12 { __u32 a, b, c; };

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 8);
         __type(key, __u32); __type(value, struct out); } results SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 13); __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, __u64); __type(value, struct val12); } htab SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 3);
         __type(key, __u32); __type(value, __u64); } pcpu SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 5); __uint(map_flags, BPF_F_RDONLY_PROG);
         __type(key, __u32); __type(value, struct val12); } rdonly_arr SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_BLOOM_FILTER); __uint(max_entries, 16); __uint(map_extra, 3);
         __type(value, __u32); } bloom SEC(".maps");

static __always_inline struct out *map_fields(__u32 i, struct bpf_map *m)
{
    struct out *o = bpf_map_lookup_elem(&results, &i);
    if (!o)
        return 0;
    o->map_type = m->map_type;
    o->key_size = m->key_size;
    o->value_size = m->value_size;
    o->max_entries = m->max_entries;
    o->map_flags = m->map_flags;
    o->id = m->id;
    o->numa_node = m->numa_node;
    o->map_extra = m->map_extra;
    o->seen++;
    return o;
}

static __always_inline void array_fields(__u32 i, struct bpf_array *a)
{
    struct out *o = map_fields(i, &a->map);
    if (o) {
        o->elem_size = a->elem_size;
        o->index_mask = a->index_mask;
    }
}

SEC("xdp")
int read_maps(struct xdp_md *ctx)
{
    map_fields(0, (struct bpf_map *)&htab);
    array_fields(1, (struct bpf_array *)&pcpu);
    array_fields(2, (struct bpf_array *)&rdonly_arr);
    map_fields(3, (struct bpf_map *)&rb);
    map_fields(4, (struct bpf_map *)&bloom);
    array_fields(5, (struct bpf_array *)&results);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
"""

#: results index -> (map, type, key_size, value_size, max_entries, map_flags, map_extra,
#: elem_size, index_mask) as declared above (elem_size/index_mask 0: not an array)
MAPS = {
    0: ("htab", T.HASH, 8, 12, 13, BPF_F_NO_PREALLOC, 0, 0, 0),
    1: ("pcpu", T.PERCPU_ARRAY, 4, 8, 3, 0, 0, 8, 3),
    2: ("rdonly_arr", T.ARRAY, 4, 12, 5, BPF_F_RDONLY_PROG, 0, 16, 7),
    3: ("rb", T.RINGBUF, 0, 0, 4096, 0, 0, 0, 0),
    4: ("bloom", T.BLOOM_FILTER, 0, 4, 16, 0, 3, 0, 0),
    5: ("results", T.ARRAY, 4, 48, 8, 0, 0, 48, 7),
}


class Out(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in
                ("map_type", "key_size", "value_size", "max_entries", "map_flags", "id")] + \
               [("numa_node", ctypes.c_int32)] + \
               [(n, ctypes.c_uint32) for n in ("elem_size", "index_mask", "seen")] + \
               [("map_extra", ctypes.c_uint64)]


def _rows(lookup) -> dict[int, dict]:
    rows = {}
    for i in MAPS:
        o = Out.from_buffer_copy(lookup(i.to_bytes(4, "little")))
        rows[i] = {n: getattr(o, n) for n, _ in Out._fields_}
    return rows


@pytest.fixture(scope="module")
def obj_path(tmp_path_factory):
    clang = shutil.which("clang-19")
    if clang is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        pytest.skip("needs clang-19 and libbpf headers")
    try:
        ebee.btf.BTF.load_vmlinux()
    except OSError as e:
        pytest.skip(f"no kernel BTF for CO-RE: {e}")
    d = tmp_path_factory.mktemp("map_ptr")
    (d / "m.c").write_text(SRC)
    r = subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-Wall", "-Werror",
                        "-I/usr/include/x86_64-linux-gnu", "-c", str(d / "m.c"), "-o",
                        str(d / "m.o")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return d / "m.o"


PACKET = bytes(64)


def _expected(rows: dict[int, dict], ids: dict[str, int]) -> None:
    """What the declarations say (the kernel's own rules for flags and numa_node)."""
    assert set(rows) == set(MAPS)
    for i, (name, mt, ks, vs, n, flags, extra, es, mask) in MAPS.items():
        assert rows[i] == {"map_type": int(mt), "key_size": ks, "value_size": vs,
                           "max_entries": n, "map_flags": flags, "id": ids[name],
                           "numa_node": -1, "elem_size": es, "index_mask": mask, "seen": 1,
                           "map_extra": extra}, name


def _ebee_rows(obj, engine: str) -> dict[int, dict]:
    zero = bytes(ctypes.sizeof(Out))
    for i in MAPS:
        obj.maps["results"].update(i.to_bytes(4, "little"), zero)
    res = obj.programs["read_maps"].run(PACKET, engine=engine)
    assert res.retval == 2            # XDP_PASS
    return _rows(obj.maps["results"].lookup)


@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_map_fields_as_declared(obj_path, engine):
    obj = ebee.load(obj_path)
    rows = _ebee_rows(obj, engine)
    _expected(rows, {name: obj.maps[name].id for name, *_ in MAPS.values()})


@pytest.mark.kernel
def test_map_fields_match_the_kernels_test_run(kernel, obj_path):
    from ebee.kernel.info import map_info
    obj = ebee.load(obj_path)
    with obj.load_kernel() as k:
        res = k.programs["read_maps"].run(PACKET)
        assert res.retval == 2
        theirs = _rows(k.maps["results"].lookup)
        kids = {name: map_info(k.maps[name].fd).id for name, *_ in MAPS.values()}
    _expected(theirs, kids)
    ours = {name: obj.maps[name].id for name, *_ in MAPS.values()}
    for engine in ("interp", "jit"):
        mine = _ebee_rows(obj, engine)
        for i, (name, *_) in MAPS.items():
            # the same but for the id: each system's own id of the map
            assert mine[i]["id"] == ours[name] and theirs[i]["id"] == kids[name]
            assert {**mine[i], "id": 0} == {**theirs[i], "id": 0}, (engine, name)


# -- every served member of every map type, read by instructions at the BTF offsets ------

#: map type -> (key_size, value_size, max_entries, map_flags, extra Map/KernelMap keywords)
SERVED_MAPS = {
    T.ARRAY: (4, 12, 5, 0, {}), T.PERCPU_ARRAY: (4, 8, 3, 0, {}),
    T.HASH: (8, 16, 7, BPF_F_NO_PREALLOC, {"name": "a_hash"}),
    T.LRU_HASH: (4, 8, 16, 0, {}), T.RINGBUF: (0, 0, 4096, 0, {"name": "events"}),
    T.QUEUE: (0, 8, 4, 0, {}), T.BLOOM_FILTER: (0, 8, 4, 0, {"map_extra": 5}),
    T.PROG_ARRAY: (4, 4, 4, 0, {}), T.STACK_TRACE: (4, 8 * 127, 4, 0, {}),
}


def served_reads(fd_or_id: int, res: int, view) -> tuple[str, dict[str, tuple[int, int]]]:
    """Instructions that copy every served member of the map's view, in 8-byte (or the
    member's own) loads, into the results map's value; where each member goes there."""
    body, out, where = [], 0, {}
    for name, (off, size) in view.members.items():
        where[name] = (out, size)
        step = min(size, 8)
        for part in range(0, size, step):
            ty = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}[step]
            body += [f"r2 = *({ty} *)(r1 {off + part:+d})", f"*({ty} *)(r6 {out:+d}) = r2"]
            out += step
    src = "\n".join([
        "r1 = 0", "*(u32 *)(r10 - 4) = r1", f"r1 = map[{{k}}:{res}] ll", "r2 = r10",
        "r2 += -4", "call 1", "if r0 == 0 goto out", "r6 = r0",
        f"r1 = map[{{k}}:{fd_or_id}] ll", *body, "out:", "r0 = 2", "exit", ""])
    return src, where


@pytest.mark.kernel
@pytest.mark.parametrize("map_type", list(SERVED_MAPS), ids=lambda t: t.name)
def test_served_members_match_the_kernel(kernel, map_type):
    """The bytes of every member the view serves, as a test run reads them in the kernel
    and in both of ebee's engines (the id excepted: each system's own)."""
    from maputil import MapPair, kernelize
    from ebee import Program
    from ebee.kernel import KernelProgram
    from ebee.kernel.info import map_info
    from ebee.uapi import ProgType
    from ebee.verifier.btfaccess import map_view

    view = map_view(map_type)
    if view is None:
        pytest.skip("no kernel BTF")
    ks, vs, n, flags, kw = SERVED_MAPS[map_type]
    m = MapPair(map_type, ks, vs, n, flags, **kw)
    res = MapPair(T.ARRAY, 4, 512, 1)
    try:
        src, where = served_reads(m.id, res.id, view)
        size = sum(s for _, s in where.values())
        insns = ebee.assemble(src.replace("{k}", "id"))
        kp = KernelProgram(kernelize(insns, {m.id: m.kernel.fd, res.id: res.kernel.fd}),
                           ProgType.XDP)
        try:
            assert kp.run(PACKET).retval == 2
        finally:
            kp.close()
        theirs = res.kernel.lookup(bytes(4))[:size]
        kid = map_info(m.kernel.fd).id
        ioff = where["id"][0]
        for engine in ("interp", "jit"):
            res.ebee.update(bytes(4), bytes(512))
            p = Program.from_insns(insns, ProgType.XDP, verify=True)
            assert p.run(PACKET, engine=engine).retval == 2
            mine = bytes(res.ebee.lookup(bytes(4)))[:size]
            assert int.from_bytes(mine[ioff:ioff + 4], "little") == m.ebee.id
            assert int.from_bytes(theirs[ioff:ioff + 4], "little") == kid
            blank = slice(ioff, ioff + 4)
            a, b = bytearray(mine), bytearray(theirs)
            a[blank] = b[blank] = bytes(4)
            assert a == b, (engine, {name: (bytes(a[o:o + s]), bytes(b[o:o + s]))
                                     for name, (o, s) in where.items()})
    finally:
        m.close()
        res.close()
