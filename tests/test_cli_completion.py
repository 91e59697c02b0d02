"""``ebee completion bash``: generated from the parser, it completes every subcommand."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import pytest

from ebee.cli.completion import _subparsers
from ebee.cli.main import build_parser


def _paths(p: argparse.ArgumentParser, path: str = "") -> list[tuple[str, list[str]]]:
    subs = _subparsers(p)
    out = [(path, list(subs))] if subs else []
    for name, sp in subs.items():
        out += _paths(sp, f"{path} {name}".strip())
    return out


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    f = tmp_path_factory.mktemp("compl") / "ebee.bash"
    r = subprocess.run([sys.executable, "-m", "ebee", "completion", "bash"],
                       capture_output=True, text=True, check=True)
    f.write_text(r.stdout)
    return f


def _complete(script, words: list[str]) -> set[str]:
    arr = " ".join(f"'{w}'" for w in ["ebee", *words])
    cmd = (f"source {script}; COMP_WORDS=({arr}); COMP_CWORD={len(words)}; _ebee; "
           f"printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True)
    return set(r.stdout.split())


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("kernel", [False, True], ids=["ebee", "kernel"])
def test_every_subcommand_completes(script, kernel):
    """Every subcommand of every command group, in both backends, is offered by bash
    after its parent's words."""
    missing = []
    for path, subs in _paths(build_parser(kernel=kernel)):
        words = ([] if not kernel else ["--kernel"]) + (path.split() if path else [])
        got = _complete(script, words + [""])
        missing += [f"{path} {s}".strip() for s in subs if s not in got]
    assert not missing


def test_options_and_choices(script):
    assert {"xlated", "jited", "id", "pinned", "name", "tag", "--linum"} <= \
        _complete(script, ["prog", "dump", ""])
    assert {"--pcap", "--pcap-out", "--map-update"} & _complete(script, ["run", "--pc"]) >= \
        {"--pcap", "--pcap-out"}
    assert _complete(script, ["ma"]) == {"map"}
