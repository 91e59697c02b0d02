"""Every python and sh block of README.md runs as written, from a checkout's top directory.

A block may be preceded by ``<!-- readme-test: ... -->``: "needs the kernel" (runs
where bpf() works), "interrupted (Ctrl-C) after N s" (a block that runs until Ctrl-C
gets a real SIGINT and must then end cleanly), "each line" (each line its own command),
or "not run (reason)" -- which only the `make` block may say.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# commands whose documented outcome is not exit 0
EXPECTED_EXIT = {"ebee verify tests/data/verifier/xdp_nonull.o --json": 1}
NOT_RUN_ALLOWED = {"make demo"}      # blocks that may be "not run", by their first line
# blocks of many commands (10-20 s each here): run with EBEE_SLOW=1, like the other long runs
SLOW = {"ebee disasm examples/c/core_task.o --linum", "ebee feature probe",
        "ebee trace -e 'tracepoint:raw_syscalls:sys_enter { @[comm] = count(); }'",
        "ebee run examples/c/xdp_firewall.o --pcap examples/pcap/mixed.pcap --threads 2"}


@dataclass
class Block:
    lang: str
    code: str
    line: int
    note: str

    @property
    def id(self) -> str:
        return f"{self.lang}@{self.line}"

    @property
    def first(self) -> str:
        return self.code.strip().splitlines()[0].split("#")[0].strip()

    def interrupt_after(self) -> float | None:
        m = re.search(r"interrupted \(Ctrl-C\) after (\d+) s", self.note)
        return float(m.group(1)) if m else None


def blocks() -> list[Block]:
    out = []
    lines = README.read_text().splitlines()
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
        note = lines[k] if k >= 0 and lines[k].startswith("<!-- readme-test:") else ""
        out.append(Block(m.group(1), "\n".join(lines[i + 1:j]) + "\n", i + 1, note))
        i = j + 1
    return out


RUNNABLE = [b for b in blocks() if b.lang in ("python", "sh")]
PARAMS = [pytest.param(b, id=b.id, marks=[pytest.mark.slow] if b.first in SLOW else [])
          for b in RUNNABLE]


def test_readme_blocks_are_all_labelled():
    kinds = {b.lang for b in blocks()}
    assert kinds <= {"python", "sh", "text", "console", ""}, kinds
    assert not [b.id for b in blocks() if b.lang == ""], "give every block a language"
    not_run = [b.first for b in RUNNABLE if "not run" in b.note]
    assert set(not_run) <= NOT_RUN_ALLOWED, not_run
    assert SLOW <= {b.first for b in RUNNABLE}, "SLOW names a block the README no longer has"


def test_readme_counts_are_right():
    text = README.read_text()
    words = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
             "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20}
    m = re.search(r"`examples/c/` holds (\w+) C programs", text)
    assert m and words[m.group(1)] == len(list((ROOT / "examples" / "c").glob("*.c")))


@pytest.fixture
def checkout(tmp_path) -> Path:
    """The repository's shipped files seen from a scratch top directory (what the blocks
    write, fib.bin or out.pcapng, lands there), with ../shared beside it when it exists."""
    top = tmp_path / "ebee"
    top.mkdir()
    for name in ("examples", "tests", "docs", "bench", "src", "pyproject.toml", "Makefile"):
        (top / name).symlink_to(ROOT / name)
    if (ROOT.parent / "shared").is_dir():
        (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    return top


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _interrupted(argv, cwd, after: float) -> subprocess.CompletedProcess:
    p = subprocess.Popen(argv, cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=after)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGINT)          # Ctrl-C reaches the whole foreground group
        out, err = p.communicate(timeout=60)
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def _sh_script(code: str) -> str:
    """Each command checked against its documented exit status, variables kept."""
    out = ["set -u"]
    for n, line in enumerate(code.splitlines(), 1):
        cmd = line.strip()
        if not cmd or cmd.startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=\S+$", cmd):
            out.append(cmd)
            continue
        bare = cmd.split(" #")[0].strip()
        want = EXPECTED_EXIT.get(bare, 0)
        out.append(f"{line}\nrc=$?; if [ $rc -ne {want} ]; then "
                   f"echo 'block line {n} exited '$rc' (expected {want}): {bare!r}' >&2; exit 1; fi")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("block", PARAMS)
def test_readme_block_runs(block: Block, checkout, request):
    if "not run" in block.note:
        pytest.skip(block.note)
    if "needs the kernel" in block.note:
        request.getfixturevalue("kernel")
        if not os.path.ismount("/sys/fs/bpf"):
            pytest.skip("bpffs is not mounted")
    if "../shared/" in block.code and not (checkout.parent / "shared").is_dir():
        pytest.skip("the conformance corpus (../shared) is not beside this checkout")
    after = block.interrupt_after()
    if block.lang == "python":
        argv = [sys.executable, "-c", block.code]
        runs = [_interrupted(argv, checkout, after) if after else
                subprocess.run(argv, cwd=checkout, env=_env(), capture_output=True, text=True,
                               timeout=300)]
    elif "each line" in block.note:
        # `ebee trace -c CMD` and `-d` end by themselves: only the others wait for Ctrl-C
        runs = [_interrupted(["bash", "-c", line], checkout,
                             300 if re.search(r" -[cd] ", line) else after or 300)
                for line in block.code.splitlines() if line.strip()]
    else:
        runs = [subprocess.run(["bash", "-c", _sh_script(block.code)], cwd=checkout,
                               env=_env(), capture_output=True, text=True, timeout=300)]
    for r in runs:
        assert r.returncode == 0, f"{r.args[-1][:200]}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        assert "Traceback" not in r.stderr, r.stderr[-3000:]


# ------------------------------------------------------------------- the rest of the docs

NUMBERED_ISSUE = re.compile(r"\bissues?[ _-]?#?\d+", re.IGNORECASE)


def test_no_numbered_issue_references():
    """Docs and code say what and why, not which tracker entry asked for it."""
    found = []
    for top in ("src", "tests", "docs", "bench", "examples", "tools"):
        for path in (ROOT / top).rglob("*"):
            if path.suffix not in (".py", ".md", ".c", ".h", ".s", ".toml", ".txt") or \
                    ".venv" in path.parts or path.name == "test_workflow_readme.py":
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if NUMBERED_ISSUE.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    for name in ("README.md", "Makefile", "pyproject.toml"):
        for n, line in enumerate((ROOT / name).read_text().splitlines(), 1):
            if NUMBERED_ISSUE.search(line):
                found.append(f"{name}:{n}: {line.strip()}")
    assert not found, "\n".join(found)


def test_wheel_has_spdx_license_and_py_typed(tmp_path):
    """The package builds without setuptools' license deprecation warnings, declares its
    license as an SPDX expression and ships py.typed."""
    import tomllib
    import zipfile
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert conf["project"]["license"] == "MIT"
    import shutil
    tree = tmp_path / "tree"             # setuptools builds in the tree: keep ROOT clean
    shutil.copytree(ROOT / "src", tree / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps", "-w",
                        str(tmp_path), "-v"], capture_output=True, text=True, timeout=300)
    if r.returncode and "No matching distribution" in r.stdout + r.stderr:
        pytest.skip("setuptools>=77 cannot be installed for the build here")
    assert r.returncode == 0, r.stderr[-2000:]
    log = r.stdout + r.stderr
    assert "SetuptoolsDeprecationWarning" not in log and "License classifiers" not in log
    (whl,) = tmp_path.glob("ebee-*.whl")
    with zipfile.ZipFile(whl) as z:
        assert "ebee/py.typed" in z.namelist()
        meta = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
    assert "License-Expression: MIT" in meta.splitlines()
