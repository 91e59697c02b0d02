"""Pinned ARRAY / PERCPU_ARRAY maps are one map in every process that opens the pin, as
on bpffs: program atomics (both engines) and user-space updates meet in the same bytes."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ebee import uapi as U
from ebee.fs import PinStore
from ebee.maps.base import Map
from ebee.maps.shared import ATOMICS, PAGE, SharedValues

ROOT = Path(__file__).resolve().parents[1]
N = int(os.environ.get("EBEE_SHARED_RUNS", "3000"))


def spawn(code: str, db: Path) -> subprocess.Popen:
    env = dict(os.environ, EBEE_PIN_STORE=str(db))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


COUNTER = """
    import sys, struct
    from ebee import assemble
    from ebee.engines import Machine
    from ebee.fs import default_store
    m = default_store().get("/sys/fs/bpf/cnt")
    prog = assemble(f'''
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r2 = r10
        r2 += -4
        r1 = map[id:{m.id}] ll
        call bpf_map_lookup_elem
        if r0 == 0 goto +14
        r6 = r0
        r1 = 1
        lock *(u64 *)(r6 + 0) += r1
        r1 = 1
        r1 = atomic_fetch_add((u32 *)(r6 + 8), r1)
        r1 = *(u64 *)(r6 + 24)
        r0 = r1
        r3 = r1
        r3 += 1
        r0 = cmpxchg_64(r6 + 24, r0, r3)
        if r0 != r1 goto -6
        r2 = 1
        r2 = xchg_64(r6 + 16, r2)
        lock *(u64 *)(r6 + 32) += r2
        r0 = 0
        exit
    ''', "kernel")
    b = Machine().bind(prog, engine=sys.argv[1] if len(sys.argv) > 1 else "{engine}")
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range({n}):
        b.run()
    print("done", flush=True)
"""


def _counter_prog(engine: str, n: int) -> str:
    return COUNTER.replace("{engine}", engine).replace("{n}", str(n))


def _pin_counter(db: Path) -> Map:
    st = PinStore(db)
    m = Map(U.MapType.ARRAY, 4, 40, 1, name="cnt")
    st.pin_map("/sys/fs/bpf/cnt", m)
    return m


@pytest.mark.skipif(ATOMICS is None, reason="no libatomic: interpreter atomics are per-process")
@pytest.mark.parametrize("engines", [("interp", "interp"), ("jit", "jit"), ("interp", "jit")])
def test_two_processes_count_one_pinned_counter_exactly(tmp_path, engines):
    db = tmp_path / "pins.sqlite3"
    m = _pin_counter(db)
    procs = [spawn(_counter_prog(e, N), db) for e in engines]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:           # both start together, so their runs overlap
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            assert p.stdout.readline().strip() == "done", p.stderr.read()
            assert p.wait(60) == 0
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    add, fetch_add32, _pad, xchg_slot, cmpxchg, taken = struct.unpack("<QIIQQQ", m.lookup(0))
    total = 2 * N
    assert (add, fetch_add32, cmpxchg) == (total, total, total)
    # every xchg put 1 in and took the old value out: nothing lost, nothing doubled
    assert taken + xchg_slot == total


READER = """
    import sys
    from ebee.fs import default_store
    m = default_store().get("/sys/fs/bpf/cnt")
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "get":
            print(int.from_bytes(m.lookup(int(cmd[1]))[:8], "little"), flush=True)
        elif cmd[0] == "set":
            m.update(int(cmd[1]), int(cmd[2]).to_bytes(8, "little") + bytes(32))
            print("ok", flush=True)
"""


def test_an_update_in_one_process_is_seen_by_another_without_reopening(tmp_path):
    db = tmp_path / "pins.sqlite3"
    st = PinStore(db)
    m = Map(U.MapType.ARRAY, 4, 40, 4, name="cnt")
    st.pin_map("/sys/fs/bpf/cnt", m)
    p = spawn(READER, db)

    def ask(line: str) -> str:
        p.stdin.write(line + "\n")
        p.stdin.flush()
        out = p.stdout.readline().strip()
        assert out, p.stderr.read()
        return out
    try:
        assert ask("get 2") == "0"
        m.update(2, (1234).to_bytes(8, "little") + bytes(32))
        assert ask("get 2") == "1234"                   # B sees A's update, same open map
        assert ask("set 3 99") == "ok"
        assert m.lookup(3)[:8] == (99).to_bytes(8, "little")   # and A sees B's
    finally:
        p.stdin.close()
        p.wait(30)


def test_percpu_array_pin_is_shared_and_keeps_its_cpu_count(tmp_path):
    db = tmp_path / "pins.sqlite3"
    from ebee.maps import cpus
    old = cpus.num_cpus()
    cpus.set_num_cpus(3)
    try:
        m = Map(U.MapType.PERCPU_ARRAY, 4, 8, 2, name="pc")
    finally:
        cpus.set_num_cpus(old)
    PinStore(db).pin_map("/sys/fs/bpf/pc", m)
    m.update(1, [7, 8, 9])
    r = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        from ebee.fs import default_store
        from ebee.maps import cpus
        cpus.set_num_cpus(5)
        m = default_store().get("/sys/fs/bpf/pc")
        print(m.ncpus, [int.from_bytes(v, "little") for v in m.lookup(1)])
        m.update(0, [1, 2, 3])
        """)], env=dict(os.environ, EBEE_PIN_STORE=str(db)), capture_output=True, text=True,
        timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split(None, 1) == ["3", "[7, 8, 9]\n"]
    assert [int.from_bytes(v, "little") for v in m.lookup(0)] == [1, 2, 3]


def test_a_write_cut_by_a_kill_is_finished_by_the_next_opener(tmp_path):
    """The journal: data and its place written, the valid word set, then killed before
    the copy -- the next process to open the pin sees the new value whole."""
    db = tmp_path / "pins.sqlite3"
    m = _pin_counter(db)
    m.update(0, b"\x11" * 40)
    sv = SharedValues.open(m.shared.path)
    new = b"\x22" * 40
    sv.head[PAGE:PAGE + 40] = new
    struct.pack_into("<QQ", sv.head, 16, 0, 40)
    struct.pack_into("<I", sv.head, 12, 1)
    sv.close()
    r = subprocess.run([sys.executable, "-c", "from ebee.fs import default_store; "
                        "print(default_store().get('/sys/fs/bpf/cnt').lookup(0).hex())"],
                       env=dict(os.environ, EBEE_PIN_STORE=str(db)), capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert bytes.fromhex(r.stdout.strip()) == new
    assert m.lookup(0) == new


WRITER = """
    import sys
    from ebee.fs import default_store
    m = default_store().get("/sys/fs/bpf/big")
    gen = 0
    while True:
        gen += 1
        m.update(gen % 16, gen.to_bytes(8, "little") * 512)    # 4 KiB values
        print(gen, flush=True)
"""


@pytest.mark.parametrize("kill_after", [3, 50, 400])
def test_killed_writer_leaves_whole_values_and_every_acknowledged_update(tmp_path, kill_after):
    db = tmp_path / "pins.sqlite3"
    st = PinStore(db)
    m = Map(U.MapType.ARRAY, 4, 4096, 16, name="big")
    st.pin_map("/sys/fs/bpf/big", m)
    p = spawn(WRITER, db)
    try:
        seen = 0
        while seen < kill_after:
            line = p.stdout.readline()
            assert line, p.stderr.read()
            seen = int(line)
        p.send_signal(signal.SIGKILL)
    finally:
        p.kill()
        p.wait(10)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import json
        from ebee.fs import default_store
        m = default_store().get("/sys/fs/bpf/big")
        out = []
        for k in range(16):
            v = m.lookup(k)
            words = {v[i:i + 8] for i in range(0, 4096, 8)}
            out.append(int.from_bytes(v[:8], "little") if len(words) == 1 else -1)
        print(json.dumps(out))
        """)], env=dict(os.environ, EBEE_PIN_STORE=str(db)), capture_output=True, text=True,
        timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    vals = json.loads(r.stdout)
    assert -1 not in vals                                   # no torn value
    for g in range(max(1, seen - 15), seen + 1):            # every acknowledged update
        assert vals[g % 16] >= g
    assert m.lookup(seen % 16)[:8] == vals[seen % 16].to_bytes(8, "little")


COUNTER_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} hits SEC(".maps");

SEC("xdp")
int count(struct xdp_md *ctx)
{
    __u32 k = 0;
    __u64 *v = bpf_map_lookup_elem(&hits, &k);
    if (v)
        __sync_fetch_and_add(v, 1);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
"""

LOADER = """
    import sys, ebee
    obj = ebee.load(sys.argv[1])
    prog = obj.programs["count"]
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(int(sys.argv[3])):
        prog.run(bytes(64), engine=sys.argv[2])
    print("done", flush=True)
"""


@pytest.mark.parametrize("engines", [("interp", "jit"), ("jit", "jit")])
def test_two_ebee_load_processes_share_a_pinned_by_name_counter(tmp_path, engines):
    """The issue's case: a clang-built program, its map pinned by name, run through
    ``Program.run`` (which syncs pinned maps) in two processes at once."""
    import shutil
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        pytest.skip("clang or libbpf's headers are not installed")
    src, obj = tmp_path / "count.c", tmp_path / "count.o"
    src.write_text(COUNTER_C)
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
                    "-c", str(src), "-o", str(obj)], check=True, capture_output=True)
    db = tmp_path / "pins.sqlite3"
    n = N // 3
    env = dict(os.environ, EBEE_PIN_STORE=str(db))
    procs = []
    try:
        # one after the other up to "ready": the first creates and pins, the second opens
        # (two loaders racing to pin one name: one gets EEXIST, as with libbpf)
        for e in engines:
            p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(LOADER), str(obj), e,
                                  str(n)], env=env, cwd=ROOT, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append(p)
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            assert p.stdout.readline().strip() == "done", p.stderr.read()
            assert p.wait(60) == 0
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    m = PinStore(db).get("/sys/fs/bpf/hits")
    assert int.from_bytes(m.lookup(0), "little") == 2 * n
