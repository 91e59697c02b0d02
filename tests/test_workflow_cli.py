"""The command line's everyday edges: where pins go, `ebee fs ls`, bad input."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ebee.cli import main
from ebee.fs import PinStore

ROOT = Path(__file__).resolve().parents[1]
FIREWALL = str(ROOT / "examples" / "c" / "xdp_firewall.o")


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------- where pins go

def test_prog_load_says_it_pinned_in_the_store(capsys, ebee_pin_store):
    rc, out, err = cli(capsys, "prog", "load", FIREWALL, "/sys/fs/bpf/fw")
    assert rc == 0 and out == ""                      # stdout stays bpftool's (silent)
    store = str(ebee_pin_store.location)
    assert err.splitlines() == [
        f"pinned program xdp_firewall at /sys/fs/bpf/fw (ebee's pin store {store}, "
        f"not bpffs: see `ebee fs ls`)",
        f"pinned map blocklist at /sys/fs/bpf/blocklist (by name, ebee's pin store {store}, "
        f"not bpffs: see `ebee fs ls`)"]
    assert not os.path.exists("/sys/fs/bpf/fw")        # and nothing reached bpffs
    rc, _, err = cli(capsys, "prog", "load", FIREWALL, "/sys/fs/bpf/fw2")
    assert "pinned map blocklist at /sys/fs/bpf/blocklist (reused by name" in err


def test_map_pin_and_loadall_say_where(capsys, tmp_path):
    db = str(tmp_path / "s.sqlite3")
    rc, _, err = cli(capsys, "map", "pin", FIREWALL, "stats", "/sys/fs/bpf/st", "--store", db)
    assert rc == 0
    assert err == (f"pinned map stats at /sys/fs/bpf/st (ebee's pin store {db}, not bpffs: "
                   f"see `ebee fs ls`)\n")
    rc, _, err = cli(capsys, "prog", "loadall", FIREWALL, "/sys/fs/bpf/all", "--pinmaps",
                     "/sys/fs/bpf/all/maps", "--store", db)
    assert rc == 2 and err.startswith("error: map 'blocklist' already has pin path")
    rc, _, err = cli(capsys, "prog", "loadall", FIREWALL, "/sys/fs/bpf/all", "--pinmaps",
                     "/sys/fs/bpf", "--store", db)
    assert rc == 0
    assert [line.split(" (")[0] for line in err.splitlines()] == [
        "pinned program xdp_firewall at /sys/fs/bpf/all/xdp_firewall",
        "pinned map blocklist at /sys/fs/bpf/blocklist",
        "pinned map stats at /sys/fs/bpf/stats"]


def test_fs_ls_lists_the_store(capsys, ebee_pin_store):
    assert cli(capsys, "prog", "load", FIREWALL, "/sys/fs/bpf/fw")[0] == 0
    rc, out, _ = cli(capsys, "fs", "ls")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == f"# ebee's pin store {ebee_pin_store.location}"
    assert [line.split()[:3] for line in lines[1:]] == [
        ["/sys/fs/bpf/blocklist", "map", "hash"], ["/sys/fs/bpf/fw", "prog", "xdp"]]
    assert "key 4B  value 8B  max_entries 1024" in lines[1]
    rc, out, _ = cli(capsys, "fs", "ls", "/sys/fs/bpf/fw", "-j")
    rows = json.loads(out)
    assert [(r["path"], r["kind"], r["name"]) for r in rows] == \
        [("/sys/fs/bpf/fw", "prog", "xdp_firewall")]
    rc, out, err = cli(capsys, "fs", "ls", "/sys/fs/bpf/nothing")
    assert rc == 2 and out == "" and len(err.splitlines()) == 1
    assert "nothing pinned there" in err


def test_fs_ls_of_an_empty_store(capsys, tmp_path):
    db = tmp_path / "empty.sqlite3"
    rc, out, _ = cli(capsys, "fs", "ls", "--store", str(db))
    assert rc == 0 and out == f"# ebee's pin store {db}\n"


def test_kernel_pins_go_to_bpffs_and_fs_ls_shows_them(capsys, kernel, tmp_path):
    if not os.path.ismount("/sys/fs/bpf"):
        pytest.skip("bpffs is not mounted")
    d = f"/sys/fs/bpf/ebee_wf_{os.getpid()}"
    os.makedirs(d)
    try:
        rc, out, err = cli(capsys, "--kernel", "prog", "load", FIREWALL, f"{d}/fw",
                           "--pin-root", d)
        assert rc == 0, err
        assert err.splitlines() == [f"pinned program xdp_firewall at {d}/fw (bpffs)",
                                    f"pinned map blocklist at {d}/blocklist (by name, bpffs)"]
        rc, out, _ = cli(capsys, "--kernel", "fs", "ls", d)
        assert rc == 0
        lines = out.splitlines()
        assert lines[0] == f"# bpffs {d}"
        assert [line.split()[:5] for line in lines[1:]] == [
            [f"{d}/blocklist", "map", "hash", "name", "blocklist"],
            [f"{d}/fw", "prog", "xdp", "name", "xdp_firewall"]]
        assert PinStore(tmp_path / "x.sqlite3").list() == []
        rc, _, err = cli(capsys, "--kernel", "fs", "ls", str(tmp_path))
        assert rc == 2 and "not on a mounted bpffs" in err
    finally:
        shutil.rmtree(d, ignore_errors=True)       # unlinking bpffs files unpins them


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("command", ["verify", "run", "disasm"])
def test_text_that_is_no_program(capsys, tmp_path, command):
    notes = tmp_path / "notes.txt"
    notes.write_text("Shopping list\n- eggs\n")
    rc, out, err = cli(capsys, command, str(notes))
    assert rc == 2 and out == ""
    assert err.startswith(f"{notes}: error: not an ELF object, raw eBPF instructions or eBPF "
                          f"assembly (line 1: ")
    assert "Shopping" in err and err.count("\n") == 1


def test_assembly_errors_stay_assembly_errors(capsys, tmp_path):
    src = tmp_path / "prog.s"
    src.write_text("frobnicate r0\n")
    rc, _, err = cli(capsys, "verify", str(src))
    assert rc == 2 and err.startswith(f"{src}:1: error: ")
    notes = tmp_path / "notes.txt"
    notes.write_text("r0 = 0\nexit\nnot an insn\n")    # a program, wrong on line 3
    rc, _, err = cli(capsys, "verify", str(notes))
    assert rc == 2 and err.startswith(f"{notes}:3: error: ")
    rc, _, err = cli(capsys, "asm", str(tmp_path / "notes.txt"))
    assert rc == 2 and err.startswith(f"{notes}:3: error: ")


def test_conformance_of_a_missing_directory_is_a_usage_error(capsys, tmp_path):
    rc, out, err = cli(capsys, "conformance", str(tmp_path / "missing-dir"))
    assert (rc, out) == (2, "")
    assert err == f"{tmp_path / 'missing-dir'}: error: no such file or directory\n"
    rc, out, err = cli(capsys, "conformance", str(tmp_path))
    assert (rc, out) == (2, "") and err == f"error: no .data files in {tmp_path}\n"
