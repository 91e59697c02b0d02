"""Running one parity case under bpftrace 0.17 and under ``ebee trace``."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from cases import Case

HERE = Path(__file__).parent
BPFTRACE = shutil.which("bpftrace")


def bpftrace_version() -> str | None:
    if BPFTRACE is None:
        return None
    try:
        out = subprocess.run([BPFTRACE, "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip()


def build_workload(tmpdir: Path) -> Path | None:
    """data/ebwl.c compiled with gcc (None when there is no gcc)."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return None
    out = tmpdir / "ebwl"
    subprocess.run([gcc, "-O1", "-fno-omit-frame-pointer", "-o", str(out),
                    str(HERE / "data" / "ebwl.c")], check=True)
    return out


def script_text(case: Case, binary: Path | None) -> tuple[list[str], str]:
    """The command-line arguments that give the script, and its text."""
    if case.script.startswith("@file:"):
        path = case.script[6:]
        return [path], Path(path).read_text()
    text = case.script.replace("BIN", str(binary)) if binary else case.script
    return ["-e", text], text


def argv(case: Case, binary: Path | None) -> list[str]:
    args, _ = script_text(case, binary)
    out = list(case.flags)
    if case.cmd:
        # OUT: a scratch file beside the workload
        cmd = case.cmd.replace("OUT", str(binary.parent / "scratch.out")) if binary else case.cmd
        out += ["-c", cmd.replace("BIN", str(binary))]
    return out + args + list(case.params)


def run_bpftrace(case: Case, binary: Path | None, timeout: float = 30):
    return _run([BPFTRACE] + argv(case, binary), timeout)


def run_ebee(case: Case, binary: Path | None, timeout: float = 60, extra=()):
    return _run([sys.executable, "-m", "ebee", "trace", *extra] + argv(case, binary), timeout)


def _run(cmd: list[str], timeout: float):
    env = dict(os.environ)
    env.pop("__BPFTRACE_NOTIFY_PROBES_ATTACHED", None)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                       stdin=subprocess.DEVNULL)
    err = "\n".join(ln for ln in p.stderr.splitlines() if "RLIMIT_MEMLOCK" not in ln)
    return p.returncode, p.stdout, err


# -- comparing ---------------------------------------------------------------------------

_MAP_LINE = re.compile(r"^(@\w*)(\[.*\])?: (.*)$")


def untie(text: str) -> str:
    """Map elements with equal values in a canonical order (bpftrace's std::sort leaves
    their order unspecified): runs of consecutive ``@m[k]: v`` lines of one map and one
    value are sorted."""
    lines = [_json_untie(ln) if ln.startswith('{"type": "map"') else ln
             for ln in text.split("\n")]
    out: list[str] = []
    run: list[str] = []
    run_key = None
    for ln in lines + [None]:
        m = _MAP_LINE.match(ln) if ln is not None else None
        key = (m.group(1), m.group(3)) if m and m.group(2) else None
        if key is not None and key == run_key:
            run.append(ln)
            continue
        out += sorted(run)
        run, run_key = ([ln], key) if key is not None else ([], None)
        if key is None and ln is not None:
            out.append(ln)
    return "\n".join(out)


def _json_untie(line: str) -> str:
    """A JSON map line with its elements ordered by (value, key): ties canonical."""
    try:
        obj = json.loads(line, object_pairs_hook=list)
    except ValueError:
        return line
    if not (isinstance(obj, list) and dict(obj).get("type") == "map"):
        return line
    data = dict(obj)["data"]
    out = []
    for name, elems in data:
        if isinstance(elems, list) and elems and all(isinstance(e, (list, tuple)) and
                                                     len(e) == 2 for e in elems):
            elems = sorted(elems, key=lambda kv: (json.dumps(kv[1]), kv[0]))
        out.append((name, elems))
    return json.dumps(out)


def normalize(kind: str, text: str) -> str:
    """Structural view of an output: what the workload fixes, with system noise masked."""
    if kind == "numbers":
        return untie(re.sub(r"\d+", "N", re.sub(r"0x[0-9a-f]+", "ADDR", text)))
    if kind == "keys":
        # which maps print, in order; element values and keys vary with the system
        return "\n".join(sorted({m.group(1) for m in map(_MAP_LINE.match, text.split("\n"))
                                 if m})) + "|" + text.split("\n")[0]
    if kind == "sum":
        # one line per key with the values added up (bpftrace may split a key in several
        # elements that print alike)
        sums: dict[str, int] = {}
        for m in map(_MAP_LINE.match, text.split("\n")):
            if m and m.group(3).lstrip("-").isdigit():
                k = m.group(1) + (m.group(2) or "")
                sums[k] = sums.get(k, 0) + int(m.group(3))
        return "\n".join(f"{k}: {v}" for k, v in sorted(sums.items()))
    if kind == "hist":
        # the histograms printed and that their lines are buckets; @start may keep
        # requests that were still in flight when the tracer stopped
        bucket = re.compile(r"^[\[(].*\s+\d+ \|@*\s*\|$")
        heads = [ln for ln in text.split("\n") if ln.startswith("@") and ln.endswith(": ")]
        odd = [ln for ln in text.split("\n") if ln and not ln.startswith("@") and
               not bucket.match(ln) and not ln.startswith("Attaching")]
        return "\n".join(heads + odd)
    if kind == "openat":
        # the workload's own opens, in order, are fixed; everyone else's vary
        return "\n".join([text.split("\n")[0]] + [ln for ln in text.split("\n")
                                                  if ln.startswith("ebwl opened ")])
    if kind == "execsnoop":
        lines = text.split("\n")
        keep = [lines[0], lines[1] if len(lines) > 1 else ""]
        keep += [re.sub(r"^\d+\s+\d+\s+", "T P ", ln) for ln in lines[2:] if "ebwl" in ln]
        return "\n".join(keep)
    return text
