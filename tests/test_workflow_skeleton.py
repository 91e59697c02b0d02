"""libbpf's skeleton lifecycle: open (nothing created) -> autoload, map sizes, .rodata ->
load -> load_kernel -> attach() of every program from its SEC(), failures reported."""
from __future__ import annotations

import os

import pytest

import ebee
from ebee import maps
from kernel_helpers import EXAMPLES

OBJ = EXAMPLES / "skeleton.o"


def test_open_creates_nothing_and_changes_reach_load():
    before = len(maps.live_maps())
    o = ebee.open_object(OBJ)
    assert isinstance(o, ebee.OpenObject) and len(maps.live_maps()) == before
    assert {n: p.autoload for n, p in o.programs.items()} == {
        "on_openat": True, "on_sys_enter": True, "on_missing": True, "on_close": False,
        "pass": True}
    o.programs["on_missing"].autoload = False
    o.programs["on_close"].autoload = True
    o.maps["per_tgid"].max_entries = 512
    o.rodata.target_tgid = 4242
    assert o.rodata.target_tgid == 4242 and o.bss.hits == [0, 0, 0, 0]
    with pytest.raises(AttributeError, match="no variable"):
        o.rodata.nope = 1
    with o.load() as obj:
        assert obj.maps["per_tgid"].max_entries == 512
        assert obj.rodata.target_tgid == 4242
        assert not obj.programs["on_missing"].autoload and obj.programs["on_close"].autoload
    with ebee.load(o) as again:     # load() takes the opened object too
        assert again.rodata.target_tgid == 4242


@pytest.mark.kernel
def test_attach_every_program_reports_failures(kernel):
    o = ebee.open_object(OBJ)
    o.rodata.target_tgid = os.getpid()
    with o.load() as obj, obj.load_kernel() as k:
        assert set(k.programs) == {"on_openat", "on_sys_enter", "on_missing", "pass"}
        report = k.attach()
        assert set(report.attached) == {"on_openat", "on_sys_enter"}
        assert list(report.failed) == ["on_missing"] and not report.ok   # no such function
        assert report.skipped == ["pass"]                                # XDP needs an ifname
        assert "failed: on_missing:" in str(report)
        with open("/etc/hostname"):
            pass
        hits = k.maps[".bss"].lookup(0)
        assert int.from_bytes(hits[0:8], "little") >= 1      # this process's openat
        assert int.from_bytes(hits[8:16], "little") >= 1
        assert int.from_bytes(k.maps["per_tgid"][os.getpid()], "little") >= 1
    # detached on close: the counters stop
    with ebee.open_object(OBJ).load() as obj, obj.load_kernel() as k:
        assert k.attach(target=None) is not None
        with pytest.raises(TypeError):
            k.attach(None, "eth0")


@pytest.mark.kernel
def test_autoload_off_is_not_loaded(kernel):
    o = ebee.open_object(OBJ)
    o.programs["on_missing"].autoload = False
    o.programs["pass"].autoload = False
    with o.load() as obj, obj.load_kernel() as k:
        assert set(k.programs) == {"on_openat", "on_sys_enter"}
        assert k.attach().ok
