"""The workflow guides' code blocks run as written, from a checkout's top directory,
against the shipped examples.

A block may be preceded by ``<!-- docs-test: ... -->``: "pytest" (the block is a test
module: it is written to a file and run with pytest, which must pass), "needs the kernel"
(runs where bpf() works), or "skip (reason)".  Python and sh blocks run; sh blocks
command by command, each to exit 0.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["testing-xdp-tc.md", "testing-tracing.md", "captures.md",
         "skeleton-and-histograms.md"]
NOTE = "<!-- docs-test:"


@dataclass
class Block:
    page: str
    lang: str
    code: str
    line: int
    note: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.lang}@{self.line}"


def blocks(page: str) -> list[Block]:
    out = []
    lines = (ROOT / "docs" / page).read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while not lines[j].startswith("```"):
            j += 1
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        note = lines[k] if k >= 0 and lines[k].startswith(NOTE) else ""
        out.append(Block(page, m.group(1), "\n".join(lines[i + 1:j]) + "\n", i + 1, note))
        i = j + 1
    return out


RUNNABLE = [b for p in PAGES for b in blocks(p) if b.lang in ("python", "sh")]


def test_every_guide_has_runnable_blocks_and_is_linked():
    readme = (ROOT / "README.md").read_text()
    for page in PAGES:
        assert any(b.page == page for b in RUNNABLE), f"{page} has no python/sh block"
        assert f"docs/{page}" in readme, f"README.md does not link docs/{page}"
    for b in RUNNABLE:
        if "skip" in b.note:
            assert re.search(r"skip \(.+\)", b.note), f"{b.id}: a skip needs its reason"


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


@pytest.fixture
def checkout(tmp_path) -> Path:
    """The shipped files seen from a scratch top directory (what blocks write lands there)."""
    top = tmp_path / "ebee"
    top.mkdir()
    for name in ("examples", "tests", "docs", "bench", "src", "pyproject.toml"):
        (top / name).symlink_to(ROOT / name)
    return top


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_guide_block_runs(block: Block, checkout, request):
    if "skip" in block.note:
        pytest.skip(block.note)
    if "needs the kernel" in block.note:
        request.getfixturevalue("kernel")
    if "pytest" in block.note:
        (checkout / "test_guide_block.py").write_text(block.code)
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "test_guide_block.py"]
    elif block.lang == "python":
        argv = [sys.executable, "-c", block.code]
    else:
        argv = ["bash", "-ec", block.code]
    r = subprocess.run(argv, cwd=checkout, env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"{block.id}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
