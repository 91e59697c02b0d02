"""bpftool's grammar without ``--kernel``: ``prog show|dump`` and ``map show|dump|lookup|
update|delete`` take ``id N | pinned PATH | name NAME | tag TAG``; ``-j``/``-p`` go before
or after the subcommand; JSON field names are bpftool's (checked against bpftool itself
where the kernel is available)."""
from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ebee.cli import main

EX = Path(__file__).resolve().parent.parent / "examples" / "c"
FIREWALL = EX / "xdp_firewall.o"


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def loaded(capsys, tmp_path, ebee_pin_store):
    d = "/sys/fs/bpf/grammar"
    code, _, err = _cli(capsys, "prog", "loadall", str(FIREWALL), d)
    assert code == 0, err
    return d


def test_prog_show_selectors(capsys, loaded):
    code, out, _ = _cli(capsys, "prog", "show", "-j")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 1
    row = rows[0]
    pid, tag = row["id"], row["tag"]
    for sel in (["id", str(pid)], [str(pid)], ["pinned", f"{loaded}/xdp_firewall"],
                ["name", "xdp_firewall"], ["tag", tag]):
        for argv in (["prog", "show", *sel, "-j"], ["-j", "prog", "show", *sel],
                     ["prog", "-j", "show", *sel]):
            code, out, err = _cli(capsys, *argv)
            assert code == 0, (argv, err)
            assert json.loads(out) == row      # one object for one program, as bpftool
    code, out, _ = _cli(capsys, "prog", "show", "name", "xdp_firewall")
    assert out.startswith(f"{pid}: xdp  name xdp_firewall  tag {tag}")
    code, out, _ = _cli(capsys, "-p", "prog", "show", "id", str(pid))
    assert out.startswith("{\n    \"id\": ") and json.loads(out) == row
    code, _, err = _cli(capsys, "prog", "show", "name", "nope")
    assert code == 2 and err.startswith("error: no prog with name")
    code, _, err = _cli(capsys, "prog", "show", "id", "999999")
    assert code == 2 and "no prog with id 999999" in err


def test_prog_dump_selectors_agree(capsys, loaded):
    outs = set()
    for sel in (["pinned", f"{loaded}/xdp_firewall"], ["name", "xdp_firewall"],
                [f"{loaded}/xdp_firewall"], [str(FIREWALL)]):
        code, out, err = _cli(capsys, "prog", "dump", "xlated", *sel)
        assert code == 0, err
        outs.add(re.sub(r"map\[id:\d+\]", "map[id:N]", out))    # ids count up per load
    assert len(outs) == 1
    code, out, _ = _cli(capsys, "prog", "dump", "xlated", "name", "xdp_firewall", "opcodes")
    assert code == 0 and len(out.splitlines()) > len(outs.pop().splitlines())


def test_map_selectors(capsys, loaded):
    code, out, _ = _cli(capsys, "map", "show", "-j")
    maps = {m["name"]: m for m in json.loads(out)}
    bl = maps["blocklist"]
    for sel in (["id", str(bl["id"])], ["name", "blocklist"], ["pinned", bl["pinned"][0]]):
        code, out, err = _cli(capsys, "map", "show", *sel, "--json")
        assert code == 0, err
        assert json.loads(out) == bl
    code, _, err = _cli(capsys, "map", "update", "name", "blocklist", "key", "hex", "0a000001",
                        "value", "hex", "0000000000000000")
    assert code == 0, err
    code, out, _ = _cli(capsys, "-j", "map", "lookup", "id", str(bl["id"]), "key", "hex",
                        "0a000001")
    assert json.loads(out)["key"] == ["0x0a", "0x00", "0x00", "0x01"]
    code, out, _ = _cli(capsys, "map", "dump", "name", "blocklist", "-j")
    assert len(json.loads(out)) == 1
    code, _, err = _cli(capsys, "map", "delete", "pinned", bl["pinned"][0], "key", "hex",
                        "0a000001")
    assert code == 0, err
    code, _, err = _cli(capsys, "map", "dump", "tag", "00")
    assert code == 2 and "cannot be selected by tag" in err


def test_trace_keeps_its_own_p():
    from ebee.cli.common import split_output_flags
    assert split_output_flags(["trace", "-p", "1", "x.bt"]) == (["trace", "-p", "1", "x.bt"],
                                                               set())
    assert split_output_flags(["-p", "prog", "show", "-j"]) == (["prog", "show"],
                                                               {"pretty", "json"})
    assert split_output_flags(["run", "--", "-j"]) == (["run", "--", "-j"], set())
    assert split_output_flags(["verify", "--kernel", "x.o", "-j"]) == \
        (["--kernel", "verify", "x.o"], {"json"})


BPFTOOL = shutil.which("bpftool")


@pytest.mark.kernel
@pytest.mark.skipif(BPFTOOL is None or os.geteuid() != 0, reason="needs bpftool and root")
def test_json_field_names_are_bpftools(capsys, loaded, tmp_path):
    """Every field ebee's ``prog show -j`` / ``map show -j`` prints that bpftool also has
    is named as bpftool names it; ebee's extra fields are only where a pin came from."""
    pins = Path("/sys/fs/bpf") / f"ebee-grammar-{os.getpid()}"
    by_name = Path("/sys/fs/bpf/blocklist")     # the example's LIBBPF_PIN_BY_NAME map
    had = by_name.exists()
    r = subprocess.run([BPFTOOL, "prog", "loadall", str(FIREWALL), str(pins)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"the kernel refuses the example: {r.stderr.strip()[-200:]}")
    try:
        theirs_p = json.loads(subprocess.run(
            [BPFTOOL, "-f", "-j", "prog", "show", "pinned", str(pins / "xdp_firewall")],
            capture_output=True, text=True, check=True).stdout)
        theirs_m = json.loads(subprocess.run(
            [BPFTOOL, "-f", "-j", "map", "show", "pinned", str(by_name)],
            capture_output=True, text=True, check=True).stdout)
    finally:
        subprocess.run(["rm", "-rf", str(pins)])
        if not had:
            by_name.unlink(missing_ok=True)
    _, out, _ = _cli(capsys, "prog", "show", "name", "xdp_firewall", "-j")
    ours_p = json.loads(out)
    _, out, _ = _cli(capsys, "map", "show", "name", "blocklist", "-j")
    ours_m = json.loads(out)
    assert set(ours_p) - set(theirs_p) <= {"section", "object"}
    assert {k: type(v) for k, v in ours_p.items() if k in theirs_p} == \
        {k: type(theirs_p[k]) for k in ours_p if k in theirs_p}
    assert set(ours_m) - set(theirs_m) == set()
    for k in ("type", "name", "flags", "bytes_key", "bytes_value", "max_entries", "frozen"):
        assert ours_m[k] == theirs_m[k], k
    for k in ("type", "name", "tag", "gpl_compatible", "bytes_xlated"):
        assert k in ours_p and k in theirs_p
    assert ours_p["type"] == theirs_p["type"] and len(ours_p["tag"]) == len(theirs_p["tag"])
