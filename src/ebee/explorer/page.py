"""Build the explorer page from a level-2 verifier log (the states Linux prints).

The log is the source of truth for states: ``N: (op) insn ; R..`` gives the state
after instruction N, ``N: R..`` the state entering it, ``from A to B: R..`` starts a
new path (the branch the verifier pushed), ``N: safe`` a path pruned at N.  The
control-flow graph is laid out here (layers by breadth-first depth from pc 0) and
drawn as inline SVG; the page has inline CSS and script and loads nothing.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from ..isa import Instruction, Kind, format_kernel

_INSN = re.compile(r"^(\d+): \([0-9a-f]{2}\) (.*?)(?:\s+; (.*))?$")
_ENTRY = re.compile(r"^(\d+): (R\d.*|fp.*)$")
_FROM = re.compile(r"^from (\d+) to (\d+): (.*)$")
_SAFE = re.compile(r"^(\d+): safe$")
_SRC = re.compile(r"^; (.*) @ (\S+):(\d+)$")


@dataclass
class Explored:
    name: str
    insns: list[Instruction]
    accepted: bool
    error: str | None
    #: pc -> [(path number, "in"|"out", state text)]
    states: dict[int, list[tuple[int, str, str]]] = field(default_factory=dict)
    pruned: dict[int, list[int]] = field(default_factory=dict)     # pc -> paths pruned there
    paths: list[tuple[int | None, int]] = field(default_factory=list)  # (from pc, to pc)
    source: dict[int, str] = field(default_factory=dict)         # pc -> "file:line  text"
    fail_pc: int | None = None


def explore(prog: Any) -> Explored:
    """Verify ``prog`` at log level 2 and gather what the log says per instruction."""
    r = prog.verify(log_level=2)
    insns = list(prog.insns)
    ex = Explored(getattr(prog, "name", "") or "program", insns, r.accepted, r.error)
    path, last = 0, None
    ex.paths.append((None, 0))
    for line in r.log.splitlines():
        if m := _FROM.match(line):
            path += 1
            ex.paths.append((int(m[1]), int(m[2])))
            ex.states.setdefault(int(m[2]), []).append((path, "in", m[3]))
        elif m := _SAFE.match(line):
            ex.pruned.setdefault(int(m[1]), []).append(path)
        elif m := _INSN.match(line):
            last = int(m[1])
            ex.states.setdefault(last, []).append((path, "out", m[3] or ""))
        elif m := _ENTRY.match(line):
            ex.states.setdefault(int(m[1]), []).append((path, "in", m[2]))
    for li in getattr(prog, "line_info", None) or ():
        ex.source.setdefault(li.insn_off // 8, f"{li.file_name.rsplit('/', 1)[-1]}:{li.line}  "
                                               f"{li.line_text.strip()}")
    if not r.accepted:
        ex.fail_pc = last
    return ex


def _blocks(insns: list[Instruction]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Basic blocks (first pc, last pc) and edges between their first pcs."""
    pcs = [i.pc for i in insns]
    leaders = {0}
    for i in insns:
        t = i.jump_target() if i.kind in (Kind.JA, Kind.JCC) else None
        if t is not None:
            leaders.add(t)
        if i.kind in (Kind.JA, Kind.JCC, Kind.EXIT):
            leaders.add(i.pc + i.slots)
    leaders &= set(pcs)
    blocks, start = [], None
    for k, i in enumerate(insns):
        if i.pc in leaders:
            start = i.pc
        if k + 1 == len(insns) or insns[k + 1].pc in leaders:
            blocks.append((start, i.pc))
    by_last = {last: i for i in insns for (_, last) in blocks if i.pc == last}
    edges = []
    for first, last in blocks:
        i = by_last[last]
        nxt = i.pc + i.slots
        if i.kind in (Kind.JA, Kind.JCC) and i.jump_target() in leaders:
            edges.append((first, i.jump_target()))
        if i.kind not in (Kind.JA, Kind.EXIT) and nxt in leaders:
            edges.append((first, nxt))
    return blocks, edges


def cfg_svg(insns: list[Instruction], fail_pc: int | None) -> str:
    blocks, edges = _blocks(insns)
    succ: dict[int, list[int]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
    layer = {blocks[0][0]: 0}
    todo = [blocks[0][0]]
    while todo:                      # breadth-first layers from the entry
        a = todo.pop(0)
        for b in succ.get(a, ()):
            if b not in layer:
                layer[b] = layer[a] + 1
                todo.append(b)
    for first, _ in blocks:          # unreachable blocks go below everything
        layer.setdefault(first, max(layer.values()) + 1)
    rows: dict[int, list[int]] = {}
    for first, _ in blocks:
        rows.setdefault(layer[first], []).append(first)
    W, H, GX, GY = 90, 26, 20, 30
    pos = {}
    for y, firsts in rows.items():
        for x, f in enumerate(firsts):
            pos[f] = (10 + x * (W + GX), 10 + y * (H + GY))
    width = 20 + max(len(v) for v in rows.values()) * (W + GX)
    height = 20 + len(rows) * (H + GY)
    out = [f"<svg id='cfg' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'>"]
    for a, b in edges:
        (x1, y1), (x2, y2) = pos[a], pos[b]
        out.append(f"<line x1='{x1 + W / 2}' y1='{y1 + H}' x2='{x2 + W / 2}' y2='{y2}' "
                   f"class='edge{' back' if y2 <= y1 else ''}'/>")
    for first, last in blocks:
        x, y = pos[first]
        bad = fail_pc is not None and first <= fail_pc <= last
        out.append(f"<g class='blk{' fail' if bad else ''}' data-pc='{first}'>"
                   f"<rect x='{x}' y='{y}' width='{W}' height='{H}' rx='4'/>"
                   f"<text x='{x + 6}' y='{y + 17}'>{first}..{last}</text></g>")
    out.append("</svg>")
    return "".join(out)


_CSS = """body{font-family:sans-serif;margin:0;display:flex;height:100vh}
#left{overflow:auto;flex:3;padding:8px}#right{overflow:auto;flex:2;padding:8px;border-left:1px solid #ccc}
table{border-collapse:collapse}td{font-family:monospace;font-size:12px;padding:0 6px;white-space:pre}
tr.insn{cursor:pointer}tr.insn:hover{background:#eef}tr.sel{background:#cde}
tr.src td{color:#070;font-style:italic}tr.fail{background:#fbb}.msg{color:#b00;font-weight:bold}
tr.pruned td.pc::after{content:' \\2702';color:#a60}.states{display:none}
rect{fill:#eef;stroke:#446}.fail rect{fill:#fbb;stroke:#b00}text{font:11px monospace}
line.edge{stroke:#446}line.back{stroke:#a60;stroke-dasharray:3}
#panel div{font-family:monospace;font-size:12px;margin:2px 0;white-space:pre-wrap}"""

_JS = """function show(pc){document.querySelectorAll('tr.sel').forEach(e=>e.classList.remove('sel'));
var r=document.getElementById('pc'+pc);if(!r)return;r.classList.add('sel');
var s=r.querySelector('.states');document.getElementById('panel').innerHTML=
'<h3>pc '+pc+'</h3>'+(s?s.innerHTML:'no state: never reached')}
document.querySelectorAll('tr.insn').forEach(r=>r.onclick=()=>show(r.dataset.pc));
document.querySelectorAll('g.blk').forEach(g=>g.onclick=()=>{show(g.dataset.pc);
document.getElementById('pc'+g.dataset.pc).scrollIntoView()});
var h=location.hash.match(/^#pc(\\d+)$/),f=document.querySelector('tr.fail');
if(h)show(h[1]);else if(f)show(f.dataset.pc);"""


def render(ex: Explored) -> str:
    e = html.escape
    verdict = "accepted" if ex.accepted else f"rejected: {ex.error}"
    rows = []
    for i in ex.insns:
        if i.pc in ex.source:
            rows.append(f"<tr class='src'><td></td><td>; {e(ex.source[i.pc])}</td></tr>")
        cls = ["insn"]
        if i.pc == ex.fail_pc:
            cls.append("fail")
        if i.pc in ex.pruned:
            cls.append("pruned")
        st = "".join(f"<div class='state' data-path='{p}'>path {p} {'entry' if k == 'in' else 'after'}: "
                     f"{e(s)}</div>" for p, k, s in ex.states.get(i.pc, ()))
        st += "".join(f"<div class='prune'>path {p} pruned here: a state already proven safe "
                      f"covers it</div>" for p in ex.pruned.get(i.pc, ()))
        msg = f"<div class='msg'>{e(ex.error or '')}</div>" if i.pc == ex.fail_pc else ""
        if msg:
            st += msg
        rows.append(f"<tr class='{' '.join(cls)}' id='pc{i.pc}' data-pc='{i.pc}'>"
                    f"<td class='pc'>{i.pc}</td><td>{e(format_kernel(i))}{msg}"
                    f"<div class='states'>{st}</div></td></tr>")
    paths = "".join(f"<li>path {k}: {'entry' if a is None else f'from {a}'} to {b}</li>"
                    for k, (a, b) in enumerate(ex.paths))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>ebee verifier: "
            f"{e(ex.name)}</title><style>{_CSS}</style></head><body>"
            f"<div id='left'><h2>{e(ex.name)}: <span class='verdict'>{e(verdict)}</span></h2>"
            f"<table id='insns'>{''.join(rows)}</table></div>"
            f"<div id='right'>{cfg_svg(ex.insns, ex.fail_pc)}<div id='panel'></div>"
            f"<h3>explored paths</h3><ol start='0'>{paths}</ol></div>"
            f"<script>{_JS}</script></body></html>\n")
