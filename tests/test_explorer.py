"""The verifier explorer (ebee verify OBJ --html): the page's structure, parsed; and in
headless Chromium, the failing instruction highlighted, an instruction's states shown,
a screenshot at a fixed size (EBEE_UPDATE_SCREENSHOTS=1 keeps it in docs/img/)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOOD = ROOT / "examples" / "c" / "xdp_firewall.o"
BAD = ROOT / "tests" / "data" / "verifier" / "xdp_offbyone.o"
SHOT = ROOT / "docs" / "img" / "verifier-explorer-rejected.png"


class Rows(HTMLParser):
    """Each instruction row: its classes, its text, its embedded states."""

    def __init__(self):
        super().__init__()
        self.rows: dict[int, dict] = {}
        self.cur = None
        self.in_state = False
        self.tags: set[str] = set()
        self.svg_blocks = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "tr" and "insn" in a.get("class", "").split():
            self.cur = self.rows[int(a["data-pc"])] = {
                "class": a["class"].split(), "text": "", "states": [], "msg": []}
        elif tag == "div" and self.cur is not None and a.get("class") in ("state", "msg"):
            self.in_state = a["class"]
            self.cur["states" if a["class"] == "state" else "msg"].append("")
        elif tag == "g" and "blk" in a.get("class", ""):
            self.svg_blocks += 1

    def handle_endtag(self, tag):
        if tag == "div":
            self.in_state = False
        if tag == "tr":
            self.cur = None

    def handle_data(self, data):
        if self.cur is None:
            return
        self.cur["text"] += data
        if self.in_state == "state":
            self.cur["states"][-1] += data
        elif self.in_state == "msg":
            self.cur["msg"][-1] += data


def _page(obj: Path, tmp_path: Path) -> tuple[int, Path, Rows]:
    out = tmp_path / f"{obj.stem}.html"
    p = subprocess.run([sys.executable, "-m", "ebee", "verify", str(obj), "--html", str(out)],
                       capture_output=True, text=True)
    rows = Rows()
    rows.feed(out.read_text())
    return p.returncode, out, rows


def test_rejected_program_highlights_the_failing_insn(tmp_path):
    from ebee.verifier import verify
    import ebee
    with ebee.load(str(BAD)) as obj:
        (prog,) = obj.programs.values()
        r = verify(prog, log_level=2)
        n = len(list(prog.insns))
    rc, out, rows = _page(BAD, tmp_path)
    assert rc == 1 and not r.accepted
    assert len(rows.rows) == n
    (fail,) = [pc for pc, row in rows.rows.items() if "fail" in row["class"]]
    # Linux's message beside the insn and in its states
    assert rows.rows[fail]["msg"] == [r.error] * 2
    assert r.error == "R1 offset is outside of the packet"
    assert "(r1 +30)" in rows.rows[fail]["text"]            # the load one byte past the bound
    page = out.read_text()
    assert "src=" not in page and "href='http" not in page and "<link" not in page
    assert rows.svg_blocks >= 4 and "svg" in rows.tags


def test_every_reached_insn_has_its_states(tmp_path):
    rc, _, rows = _page(GOOD, tmp_path)
    assert rc == 0
    assert not [pc for pc, row in rows.rows.items() if "fail" in row["class"]]
    reached = [row for row in rows.rows.values() if row["states"]]
    assert len(reached) == len(rows.rows)                  # every insn of the firewall ran
    # pc 5's state after the bounds check: the packet range proven
    assert any("r=14" in s for s in rows.rows[5]["states"])
    # the paths the verifier pushed appear as entry states where they start
    assert any("entry" in s for row in rows.rows.values() for s in row["states"])


def test_html_refuses_raw_input(tmp_path):
    asm = tmp_path / "p.s"
    asm.write_text("r0 = 0\nexit\n")
    p = subprocess.run([sys.executable, "-m", "ebee", "verify", str(asm), "--html",
                        str(tmp_path / "o.html")], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                    "(Debian: apt-get install chromium)")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args], capture_output=True, text=True,
                          timeout=120)


@needs_chromium
def test_in_chromium_the_failing_insn_and_clicked_states_show(tmp_path):
    _, out, rows = _page(BAD, tmp_path)
    (fail,) = [pc for pc, row in rows.rows.items() if "fail" in row["class"]]
    dom = _chromium("--dump-dom", out.as_uri()).stdout
    panel = dom.split('<div id="panel">', 1)[1].split("</div></div>", 1)[0]
    assert f"<h3>pc {fail}</h3>" in panel and "outside of the packet" in panel
    # selecting pc 5 (what a click does: the same show(), reached through the URL) shows
    # its states
    dom = _chromium("--dump-dom", out.as_uri() + "#pc5").stdout
    panel = dom.split('<div id="panel">', 1)[1]
    assert panel.startswith("<h3>pc 5</h3>") and "pkt(off=14,r=14)" in panel[:400]


@needs_chromium
def test_screenshot_at_a_fixed_size(tmp_path):
    _, out, _ = _page(BAD, tmp_path)
    png = tmp_path / "shot.png"
    _chromium("--window-size=1200,800", f"--screenshot={png}", out.as_uri())
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (1200, 800)
    if os.environ.get("EBEE_UPDATE_SCREENSHOTS") == "1":
        SHOT.write_bytes(data)
