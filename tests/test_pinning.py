"""The pin store: bpffs semantics, persistence across processes, crash consistency."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import ebee
import ebee.fs
from ebee import uapi as U
from ebee.fs import PinError, PinStore
from ebee.maps.base import Map

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples" / "c"


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "pins.sqlite3"


def run_py(code: str, db: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, EBEE_PIN_STORE=str(db))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                          capture_output=True, timeout=timeout, cwd=ROOT)


def test_pin_get_unpin(db):
    st = PinStore(db)
    m = Map(U.MapType.HASH, 4, 8, 16, name="counts")
    st.pin_map("/sys/fs/bpf/counts", m)
    assert st.get("/sys/fs/bpf/counts") is m                # same process: the same map
    with pytest.raises(PinError) as e:
        st.pin_map("/sys/fs/bpf/counts", m)
    assert e.value.errno == 17
    assert [p for p, k, _ in st.list("/sys/fs/bpf")] == ["/sys/fs/bpf/counts"]
    st.unpin("/sys/fs/bpf/counts")
    with pytest.raises(PinError) as e:
        st.get("/sys/fs/bpf/counts")
    assert e.value.errno == 2
    with pytest.raises(PinError):
        st.unpin("/sys/fs/bpf/counts")


def test_default_location_is_configurable(monkeypatch, tmp_path):
    monkeypatch.setenv("EBEE_PIN_STORE", str(tmp_path / "x.db"))
    assert ebee.fs.default_location() == tmp_path / "x.db"
    monkeypatch.delenv("EBEE_PIN_STORE")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert ebee.fs.default_location() == tmp_path / "state" / "ebee" / "bpffs.sqlite3"


def test_pinned_map_outlives_its_process(db):
    r = run_py("""
        import ebee, ebee.fs
        from ebee import uapi as U
        from ebee.maps.base import Map
        import ebee.maps.hashtab
        m = Map(U.MapType.HASH, 4, 8, 64, name="persist")
        ebee.pin("/sys/fs/bpf/persist", m)
        for k in range(10):
            m.update(k, k * k)          # written through to the store
        m.delete(3)
        """, db)
    assert r.returncode == 0, r.stderr
    m = ebee.get_pinned("/sys/fs/bpf/persist", store=PinStore(db))
    assert (m.type, m.key_size, m.value_size, m.max_entries, m.name) == \
        (U.MapType.HASH, 4, 8, 64, "persist")
    got = {int.from_bytes(k, "little"): int.from_bytes(m.lookup(k), "little") for k in m.keys()}
    assert got == {k: k * k for k in range(10) if k != 3}


def test_sync_flushes_writes_that_bypass_the_api(db):
    """Program-side writes to a copied (not shared) pinned map reach the store at sync
    points (Program.run, sync(), exit); a shared one (an array, a hash) has them at once."""
    st = PinStore(db)
    m = Map(U.MapType.LRU_HASH, 4, 8, 4)
    st.pin_map("/sys/fs/bpf/h", m)
    m._sys_update((1).to_bytes(4, "little"), (77).to_bytes(8, "little"), 0)   # as a helper would
    with pytest.raises(KeyError):
        PinStore(db).get("/sys/fs/bpf/h").lookup(1)                          # not yet
    ebee.fs.sync(store=st)
    assert PinStore(db).get("/sys/fs/bpf/h").lookup(1) == (77).to_bytes(8, "little")
    a = Map(U.MapType.ARRAY, 4, 8, 4)
    st.pin_map("/sys/fs/bpf/arr", a)
    a.prog_update((1).to_bytes(4, "little"), (77).to_bytes(8, "little"), 0, 0)
    assert PinStore(db).get("/sys/fs/bpf/arr").lookup(1) == (77).to_bytes(8, "little")
    h = Map(U.MapType.HASH, 4, 8, 4)
    st.pin_map("/sys/fs/bpf/hs", h)
    h.prog_update((1).to_bytes(4, "little"), (77).to_bytes(8, "little"), 0, 0)
    assert PinStore(db).get("/sys/fs/bpf/hs").lookup(1) == (77).to_bytes(8, "little")


WRITER = """
    import sys, ebee, ebee.fs
    from ebee import uapi as U
    from ebee.maps.base import Map
    import ebee.maps.hashtab
    N = 300
    m = Map(U.MapType[sys.argv[1]], 4, 8, N)
    ebee.pin("/sys/fs/bpf/gen", m)
    keys = list(range(N))
    gen = 0
    while True:
        gen += 1
        m.update_batch(keys, [gen] * N)     # one transaction per generation
        print(gen, flush=True)
"""


@pytest.mark.parametrize("map_type", ["LRU_HASH", "HASH"])
def test_killed_writer_leaves_a_consistent_map(db, map_type):
    """A copied map (LRU_HASH) reaches the store a batch at a time; a shared one (HASH) is
    written element by element, as a kernel map's batch update is: never a torn value, every
    key present, at most the generation being written and the one before it."""
    env = dict(os.environ, EBEE_PIN_STORE=str(db))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), map_type], env=env,
                            cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = 0
        deadline = time.monotonic() + 60
        while seen < 5 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen = int(line)
        assert seen >= 5, proc.stderr.read()
        time.sleep(0.013 * (seen % 7))          # land somewhere inside a later update
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    r = run_py("""
        import ebee, json
        import ebee.maps.hashtab
        from ebee.fs import default_store
        m = ebee.get_pinned("/sys/fs/bpf/gen")
        vals = [int.from_bytes(m.lookup(k), "little") for k in m.keys()]
        ok = default_store().db.execute("PRAGMA integrity_check").fetchone()[0]
        print(json.dumps({"n": len(vals), "gens": sorted(set(vals)), "integrity": ok}))
        """, db)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["integrity"] == "ok"
    if map_type == "LRU_HASH":
        assert out["n"] == 300 and len(out["gens"]) == 1    # one whole generation, never a mix
    else:
        assert out["n"] == 300 and len(out["gens"]) <= 2
        assert out["gens"] == list(range(out["gens"][0], out["gens"][-1] + 1))
    assert out["gens"][0] >= seen


def test_pin_by_name_is_shared_across_processes(db):
    r = run_py(f"""
        import ebee
        obj = ebee.load({str(EX / "xdp_firewall.o")!r})
        obj.maps["blocklist"].update(bytes([10, 0, 0, 9]), (1).to_bytes(8, "little"))
        """, db)
    assert r.returncode == 0, r.stderr
    obj = ebee.load(EX / "xdp_firewall.o", store=PinStore(db))
    assert obj.pinned["blocklist"] == "/sys/fs/bpf/blocklist"
    assert obj.maps["blocklist"].lookup(bytes([10, 0, 0, 9])) == (1).to_bytes(8, "little")


def test_pinned_program_dumps_in_a_new_process(db):
    env = dict(os.environ, EBEE_PIN_STORE=str(db))
    ebee_cli = [sys.executable, "-m", "ebee"]
    r = subprocess.run(ebee_cli + ["prog", "load", str(EX / "bpf2bpf.o"), "/sys/fs/bpf/calls"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    pinned = subprocess.run(ebee_cli + ["prog", "dump", "xlated", "/sys/fs/bpf/calls"], env=env,
                            capture_output=True, text=True, timeout=60)
    direct = subprocess.run(ebee_cli + ["prog", "dump", "xlated", str(EX / "bpf2bpf.o")],
                            env=env, capture_output=True, text=True, timeout=60)
    assert pinned.returncode == 0, pinned.stderr

    def norm(s: str) -> str:    # map ids differ between processes
        import re
        return re.sub(r"map\[id:\d+\]", "map[id:N]", s)
    assert norm(pinned.stdout) == norm(direct.stdout) and "call pc+" in pinned.stdout
    show = subprocess.run(ebee_cli + ["prog", "show", "--json"], env=env, capture_output=True,
                          text=True, timeout=60)
    info = json.loads(show.stdout)
    assert info[0]["name"] == "calls" and info[0]["pinned"] == ["/sys/fs/bpf/calls"]
    assert info[0]["type"] == "xdp" and len(info[0]["tag"]) == 16


def test_map_cli_round_trip(db):
    env = dict(os.environ, EBEE_PIN_STORE=str(db))
    cli = [sys.executable, "-m", "ebee", "map"]

    def run(*a):
        return subprocess.run(cli + list(a), env=env, capture_output=True, text=True, timeout=60)
    assert run("pin", str(EX / "socket_bytes.o"), "proto_bytes", "/sys/fs/bpf/pb").returncode == 0
    assert run("update", "/sys/fs/bpf/pb", "key", "6", "0", "0", "0", "value", "hex",
               "0a00000000000000").returncode == 0
    r = run("lookup", "/sys/fs/bpf/pb", "key", "6", "0", "0", "0")
    assert r.stdout == '{\n    "key": 6,\n    "value": 10\n}\n'      # BTF-formatted
    r = run("dump", "/sys/fs/bpf/pb", "--json")
    assert len(json.loads(r.stdout)) == 256          # arrays have every element
    r = run("show", "--json")
    assert json.loads(r.stdout)[0]["type"] == "array"
    r = run("update", "/sys/fs/bpf/pb", "key", "1", "2", "value", "0")
    assert r.returncode == 2 and r.stderr.startswith("error: update failed")
    r = run("delete", "/sys/fs/bpf/nope", "key", "0")
    assert r.returncode == 2 and "No such file" in r.stderr


def test_loadall_pinmaps_refuses_a_second_pin_path(db):
    env = dict(os.environ, EBEE_PIN_STORE=str(db))
    r = subprocess.run([sys.executable, "-m", "ebee", "prog", "loadall", str(EX / "xdp_firewall.o"),
                        "/sys/fs/bpf/fw", "--pinmaps", "/sys/fs/bpf/fw/maps"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr == ("error: map 'blocklist' already has pin path '/sys/fs/bpf/blocklist' "
                        "different from '/sys/fs/bpf/fw/maps/blocklist'\n")


def test_map_dump_matches_bpftool(kernel, db, tmp_path):
    """The same map, the same update, in the kernel (bpftool) and in ebee: same dump text."""
    import shutil
    bpftool = shutil.which("bpftool")
    if bpftool is None or not os.path.ismount("/sys/fs/bpf"):
        pytest.skip("needs bpftool and a mounted bpffs")
    pin = Path("/sys/fs/bpf") / f"ebee_dump_{os.getpid()}"
    env = dict(os.environ, EBEE_PIN_STORE=str(db))
    try:
        r = subprocess.run([bpftool, "prog", "loadall", str(EX / "socket_bytes.o"), str(pin),
                            "pinmaps", str(pin / "maps")], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"kernel refused socket_bytes.o: {r.stderr[-200:]}")
        upd = ["key", "6", "0", "0", "0", "value", "0x2a", "0", "0", "0", "0", "0", "0", "0"]
        subprocess.run([bpftool, "map", "update", "pinned", str(pin / "maps" / "proto_bytes")] +
                       upd, check=True)
        theirs = subprocess.run([bpftool, "map", "lookup", "pinned",
                                 str(pin / "maps" / "proto_bytes"), "key", "6", "0", "0", "0"],
                                capture_output=True, text=True).stdout
    finally:
        shutil.rmtree(pin, ignore_errors=True)
    cli = [sys.executable, "-m", "ebee", "map"]
    subprocess.run(cli + ["pin", str(EX / "socket_bytes.o"), "proto_bytes", "/sys/fs/bpf/pb"],
                   env=env, check=True)
    subprocess.run(cli + ["update", "/sys/fs/bpf/pb"] + upd, env=env, check=True)
    mine = subprocess.run(cli + ["lookup", "/sys/fs/bpf/pb", "key", "6", "0", "0", "0"], env=env,
                          capture_output=True, text=True).stdout
    assert mine == theirs and '"value": 42' in mine
