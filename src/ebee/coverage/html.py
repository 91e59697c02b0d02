"""A self-contained HTML coverage report: one page, inline CSS, no script, no network.

Per source file its lines, coloured (green: ran, red: never ran, plain: no
instruction), with counts and branch outcomes; per program its instructions with
counts.  The source text is the file on disk when it is found (its recorded path, or
its base name beside ``search``), else the line texts BTF carries.
"""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Iterable

from .data import CoverageData, FileData

_CSS = """
body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}
td,th{padding:0 .5em;font-family:monospace;white-space:pre;text-align:left}
tr.hit td.src{background:#d4f7d4}tr.miss td.src{background:#f7d4d4}
tr.part td.src{background:#f7efc4}td.n{text-align:right;color:#555}
h2{font-size:1.1em;margin-top:2em}.sum td{font-family:sans-serif}
"""


def _source_lines(path: str, fd: FileData, search: Iterable[str]) -> list[str]:
    for cand in (path, *(os.path.join(d, os.path.basename(path)) for d in search)):
        try:
            return Path(cand).read_text(errors="replace").splitlines()
        except OSError:
            continue
    top = max(fd.lines, default=0)
    return [fd.text.get(k, "") for k in range(1, top + 1)]


def _pct(hit: int, total: int) -> str:
    return f"{100.0 * hit / total:.1f}%" if total else "-"


def html_text(data: CoverageData, search: Iterable[str] = ()) -> str:
    search = list(search)
    e = html.escape
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>ebee coverage</title>"
           f"<style>{_CSS}</style></head><body><h1>ebee coverage</h1>",
           "<table class='sum'><tr><th>file</th><th>lines</th><th>branches</th>"
           "<th>functions</th></tr>"]
    for k, path in enumerate(sorted(data.files)):
        fd = data.files[path]
        lh = sum(1 for n in fd.lines.values() if n)
        bh = sum(1 for n in fd.branches.values() if n)
        fh = sum(1 for _, n in fd.functions.values() if n)
        out.append(f"<tr><td><a href='#f{k}'>{e(path)}</a></td>"
                   f"<td>{lh}/{len(fd.lines)} ({_pct(lh, len(fd.lines))})</td>"
                   f"<td>{bh}/{len(fd.branches)} ({_pct(bh, len(fd.branches))})</td>"
                   f"<td>{fh}/{len(fd.functions)}</td></tr>")
    out.append("</table>")
    for k, path in enumerate(sorted(data.files)):
        fd = data.files[path]
        br: dict[int, list[str]] = {}
        for (ln, _block, b), n in sorted(fd.branches.items()):
            br.setdefault(ln, []).append("-" if n is None else str(n))
        out.append(f"<h2 id='f{k}'>{e(path)}</h2><table class='file'>"
                   "<tr><th>line</th><th>count</th><th>branches</th><th>source</th></tr>")
        for ln, text in enumerate(_source_lines(path, fd, search), 1):
            n = fd.lines.get(ln)
            cls = "" if n is None else ("miss" if n == 0 else
                                        "part" if any(x in ("0", "-") for x in br.get(ln, ()))
                                        else "hit")
            out.append(f"<tr class='{cls}' id='f{k}l{ln}'><td class='n'>{ln}</td>"
                       f"<td class='n'>{'' if n is None else n}</td>"
                       f"<td class='n'>{' '.join(br.get(ln, ()))}</td>"
                       f"<td class='src'>{e(text)}</td></tr>")
        out.append("</table>")
    for key in sorted(data.programs):
        pd = data.programs[key]
        out.append(f"<h2>program {e(pd.name)} <small>({e(key)})</small></h2><table class='prog'>"
                   "<tr><th>pc</th><th>count</th><th>taken</th><th>insn</th><th>line</th></tr>")
        for pc, text, hits, taken, file, line in pd.insns:
            cls = "hit" if hits else "miss"
            where = f"{os.path.basename(file)}:{line}" if file else ""
            out.append(f"<tr class='{cls}'><td class='n'>{pc}</td><td class='n'>{hits}</td>"
                       f"<td class='n'>{'' if taken is None else taken}</td>"
                       f"<td class='src'>{e(text)}</td><td>{e(where)}</td></tr>")
        out.append("</table>")
    out.append("</body></html>\n")
    return "\n".join(out)


def write_html(data: CoverageData, path: str | os.PathLike, search: Iterable[str] = ()) -> None:
    Path(path).write_text(html_text(data, search))
