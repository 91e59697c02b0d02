"""lcov tracefiles (``geninfo``'s format, read by ``genhtml`` and CI coverage services)."""
from __future__ import annotations

import os
from pathlib import Path

from .data import CoverageData, FileData


def lcov_text(data: CoverageData, test_name: str = "ebee") -> str:
    out = []
    for path in sorted(data.files):
        fd = data.files[path]
        out += [f"TN:{test_name}", f"SF:{path}"]
        for name, (ln, _) in sorted(fd.functions.items(), key=lambda kv: kv[1][0]):
            out.append(f"FN:{ln},{name}")
        for name, (_, n) in sorted(fd.functions.items(), key=lambda kv: kv[1][0]):
            out.append(f"FNDA:{n},{name}")
        out += [f"FNF:{len(fd.functions)}",
                f"FNH:{sum(1 for _, n in fd.functions.values() if n)}"]
        for (ln, block, br), n in sorted(fd.branches.items()):
            out.append(f"BRDA:{ln},{block},{br},{'-' if n is None else n}")
        out += [f"BRF:{len(fd.branches)}", f"BRH:{sum(1 for n in fd.branches.values() if n)}"]
        for ln in sorted(fd.lines):
            out.append(f"DA:{ln},{fd.lines[ln]}")
        out += [f"LF:{len(fd.lines)}", f"LH:{sum(1 for n in fd.lines.values() if n)}",
                "end_of_record"]
    return "\n".join(out) + "\n"


def write_lcov(data: CoverageData, path: str | os.PathLike) -> None:
    Path(path).write_text(lcov_text(data))


def parse_lcov(text: str) -> CoverageData:
    """Read a tracefile back (ValueError naming the line on anything malformed)."""
    data = CoverageData()
    fd: FileData | None = None
    fn_lines: dict[str, int] = {}
    for k, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        tag, _, rest = line.partition(":")
        try:
            if tag == "TN":
                continue
            if tag == "SF":
                fd = data.files.setdefault(rest, FileData())
                fn_lines = {}
            elif tag == "end_of_record":
                fd = None
            elif fd is None:
                raise ValueError("record outside SF ... end_of_record")
            elif tag == "FN":
                ln, name = rest.split(",", 1)
                fn_lines[name] = int(ln)
            elif tag == "FNDA":
                n, name = rest.split(",", 1)
                fd.functions[name] = [fn_lines[name], int(n)]
            elif tag == "BRDA":
                ln, block, br, n = rest.split(",")
                fd.branches[(int(ln), int(block), int(br))] = None if n == "-" else int(n)
            elif tag == "DA":
                ln, n = rest.split(",")[:2]
                fd.lines[int(ln)] = int(n)
            elif tag in ("FNF", "FNH", "BRF", "BRH", "LF", "LH"):
                int(rest)
            else:
                raise ValueError(f"unknown record {tag!r}")
        except (ValueError, KeyError) as e:
            raise ValueError(f"line {k}: {raw!r}: {e}") from None
    return data
