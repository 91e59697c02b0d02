"""``ebee feature probe``: bpftool's system-configuration section, ``macros`` and
``unprivileged``, compared with bpftool itself."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from ebee.cli import main
from ebee.kernel.prog import bpf_available

BPFTOOL = shutil.which("bpftool")
pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(bpf_available() is not None, reason=str(bpf_available())),
              pytest.mark.skipif(BPFTOOL is None or os.geteuid() != 0,
                                 reason="needs bpftool and root")]


def _ours(capsys, *argv) -> str:
    assert main(["feature", "probe", *argv]) == 0
    return capsys.readouterr().out


def _theirs(*argv) -> str:
    return subprocess.run([BPFTOOL, *argv], capture_output=True, text=True, check=True).stdout


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    i = lines.index(title)
    out = []
    for ln in lines[i + 1:]:
        if not ln:
            break
        out.append(ln)
    return out


@pytest.mark.parametrize("unpriv", [False, True], ids=["root", "unprivileged"])
def test_system_configuration_section_is_bpftools(capsys, unpriv):
    extra = ["unprivileged"] if unpriv else []
    ours = _ours(capsys, *extra, "--no-helpers")
    theirs = _theirs("feature", "probe", *extra)
    assert ours.startswith("Scanning system configuration...\n")
    assert _section(ours, "Scanning system configuration...") == \
        _section(theirs, "Scanning system configuration...")
    ours_j = json.loads(_ours(capsys, *extra, "--no-helpers", "-j"))
    theirs_j = json.loads(_theirs("-j", "feature", "probe", *extra))
    assert ours_j["system_config"] == theirs_j["system_config"]
    assert list(ours_j)[:2] == ["system_config", "syscall_config"] == list(theirs_j)[:2]


def test_unprivileged_probes_match_bpftool(capsys):
    ours = json.loads(_ours(capsys, "unprivileged", "--no-helpers", "-j"))
    theirs = json.loads(_theirs("-j", "feature", "probe", "unprivileged"))
    for sect in ("program_types", "map_types"):
        common = set(ours[sect]) & set(theirs[sect])
        assert len(common) > 20
        assert {k: ours[sect][k] for k in common} == {k: theirs[sect][k] for k in common}
    # with unprivileged_bpf_disabled set the kernel refuses an unprivileged bpf() outright
    with open("/proc/sys/kernel/unprivileged_bpf_disabled") as f:
        if int(f.read()) != 0:
            assert not any(ours["program_types"].values())


def test_macros_layout_is_bpftools(capsys):
    ours = _ours(capsys, "macros", "--no-helpers")
    theirs = _theirs("feature", "probe", "macros")
    heads = [ln for ln in theirs.splitlines() if ln.startswith("/***")]
    assert [ln for ln in ours.splitlines() if ln.startswith("/***")] == \
        [h for h in heads if "helper" not in h]
    assert _section(ours, "/*** Misc kernel config items ***/") == \
        _section(theirs, "/*** Misc kernel config items ***/")
    assert _section(ours, "/*** System call availability ***/") == ["#define HAVE_BPF_SYSCALL"]
    # every program type both know is defined the same way
    ot = set(_section(ours, "/*** eBPF program types ***/"))
    tt = set(_section(theirs, "/*** eBPF program types ***/"))
    name = re.compile(r"#define (?:NO_)?HAVE_(\w+)_PROG_TYPE")
    both = {name.match(x).group(1) for x in ot} & {name.match(x).group(1) for x in tt}
    assert len(both) > 25
    assert {x for x in ot if name.match(x).group(1) in both} == \
        {x for x in tt if name.match(x).group(1) in both}
    pre = _ours(capsys, "macros", "prefix", "BPF_", "--no-helpers")
    assert "#define BPF_HAVE_BPF_SYSCALL" in pre and "#define BPF_CONFIG_HZ " in pre


def test_macros_helper_block(capsys):
    from ebee.cli.kernel_misc import _macros
    from ebee.kernel.probe import Features
    f = Features({"xdp": True}, {"hash": True}, {"xdp": ["bpf_redirect"]}, {"have_x": False})
    text = _macros({"CONFIG_HZ": "250"}, f, "")
    assert "#define BPF__PROG_TYPE_xdp__HELPER_bpf_redirect 1" in text
    assert "#define BPF__PROG_TYPE_xdp__HELPER_bpf_map_lookup_elem 0" in text
    assert "#define HAVE_PROG_TYPE_HELPER(prog_type, helper)\t\\\n" in text
    assert "#define NO_HAVE_X" in text


def test_probe_words_bad_input(capsys):
    assert main(["feature", "probe", "sideways"]) == 2
    assert main(["feature", "probe", "macros", "-j"]) == 2
