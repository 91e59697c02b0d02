"""``ebee debug`` end to end through a pseudo-terminal, and ``ebee.debug.Session`` directly.

The transcripts in docs/debugger.md are these sessions (EBEE_DOCS_TRANSCRIPTS=DIR writes
them there as the tests run).
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

import ebee
from ebee.debug import DebugError, Session, format_fact
from ebee.packet import pcap

pexpect = pytest.importorskip("pexpect")

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples" / "c"
MIXED = ROOT / "examples" / "pcap" / "mixed.pcap"
# Ethernet + IPv4 (UDP, 10.0.0.1 -> 10.0.0.2) + 8 bytes
UDP = ("ffffffffffff000000000000" "0800" "4500001c00000000" "4011" "0000" "0a000001"
       "0a000002" + "00" * 8)
PROMPT = r"\(ebee\) "


class Tty:
    """``ebee debug ARGS`` on a pseudo-terminal; ``cmd`` sends a line and returns what
    it printed up to the next prompt."""

    def __init__(self, tmp_path: Path, *args: str):
        env = dict(os.environ, EBEE_PIN_STORE=str(tmp_path / "pins.db"), PYTHONUNBUFFERED="1",
                   TERM="dumb", COLUMNS="200")
        self.log: list[str] = [f"$ ebee debug {' '.join(args)}"]
        self.p = pexpect.spawn(sys.executable, ["-m", "ebee", "debug", *args], env=env,
                               encoding="utf-8", timeout=30, dimensions=(50, 200), echo=False)
        self.p.expect(PROMPT)
        self.log.append(self._clean(self.p.before).rstrip("\n"))

    @staticmethod
    def _clean(text: str) -> str:
        return text.replace("\r\n", "\n")

    def cmd(self, line: str) -> str:
        self.p.sendline(line)
        self.p.expect(PROMPT)
        out = self._clean(self.p.before)
        self.log.append(f"(ebee) {line}\n{out}".rstrip("\n"))
        return out

    def quit(self) -> str:
        self.p.sendline("quit")
        self.p.expect(pexpect.EOF)
        self.log.append("(ebee) quit")
        self.p.close()
        assert self.p.exitstatus == 0
        return "\n".join(self.log) + "\n"


def _keep(name: str, text: str) -> None:
    out = os.environ.get("EBEE_DOCS_TRANSCRIPTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.txt").write_text(text)


def test_firewall_step_print_examine_and_maps(tmp_path):
    t = Tty(tmp_path, str(EX / "xdp_firewall.o"), "--pcap", str(MIXED), "--index", "0")
    start = t.log[-1]
    assert "Stopped at the first instruction of xdp_firewall pc 0 at xdp_firewall.c:38" in start
    assert "=> 0: r6 = 2" in start
    out = t.cmd("step")
    # the C line from line_info beside the instruction, the operand beside the fact
    assert "xdp_firewall.c:41\tvoid *data_end = (void *)(long)ctx->data_end;" in out
    assert re.search(r"=> 1: r2 = \*\(u64 \*\)\(r1 \+8\)\n   r1 = 0x[0-9a-f]+ \(xdp_buff\+0\)"
                     r"  verifier: ctx\(\)", out), out
    out = t.cmd("next")
    assert "xdp_firewall.c:40" in out and "=> 2:" in out
    out = t.cmd("next")
    assert "xdp_firewall.c:47" in out and "=> 3: r3 = r1" in out
    assert re.search(r"r1 = 0x[0-9a-f]+ \(xdp frame\+256\)  verifier: pkt\(\)", out), out
    out = t.cmd("stepi")
    out = t.cmd("stepi")
    assert "=> 5: if r3 > r2 goto pc+" in out
    assert "verifier: pkt(off=14)" in out and "verifier: pkt_end()" in out
    out = t.cmd("print r3")
    assert re.match(r"r3 = 0x[0-9a-f]+ \(xdp frame\+270\)  verifier: pkt\(off=14\)", out), out
    out = t.cmd("print r6")
    assert out.startswith("r6 = 0x2  verifier: (not read by this instruction)")
    out = t.cmd("facts")
    assert "r2: pkt_end()" in out and "r3: pkt(off=14)" in out
    # the packet itself: the first packet of mixed.pcap
    out = t.cmd("x/16xb r1")
    first = next(iter(pcap.read(str(MIXED)))).data
    cells = " ".join(f"{b:#04x}" for b in first[:16])
    assert cells in out and "<xdp frame+256>" in out
    out = t.cmd("x/2xg r1")
    assert f"{int.from_bytes(first[:8], 'little'):#018x}" in out
    out = t.cmd("break 56")
    assert out.startswith("Breakpoint 1 at xdp_firewall pc 21")
    out = t.cmd("continue")
    assert "Breakpoint 1, xdp_firewall pc 21 at xdp_firewall.c:56" in out
    assert "verifier: map_value_or_null()" in out
    out = t.cmd("stack")
    assert re.search(r"fp-8 +([0-9a-f]{2} ){8}", out), out
    # saddr (r10-12) holds the packet's source address, as the program stored it
    out = t.cmd("x/4xb r10-12")
    assert " ".join(f"{b:#04x}" for b in first[26:30]) in out
    out = t.cmd("backtrace")
    assert out.strip() == "#0  xdp_firewall pc 21 at xdp_firewall.c:56"
    out = t.cmd("maps")
    assert "blocklist: hash  key 4B  value 8B  max_entries 1024  entries 0" in out
    assert "stats: array  key 4B  value 8B  max_entries 2" in out
    assert "value 00 00 00 00 00 00 00 00 (0)" in t.cmd("lookup stats 0")
    out = t.cmd("continue")
    assert "[program exited: retval 2 (XDP_PASS)" in out
    # the run's map writes stay for lookups after it ended
    assert "value 01 00 00 00 00 00 00 00 (1)" in t.cmd("lookup stats 0")
    assert "not found" in t.cmd("lookup blocklist 0x0a000001")
    assert "error: the program is not being run" in t.cmd("step")
    assert "error: no map 'nope'" in t.cmd("lookup nope 0")
    _keep("firewall", t.quit())


def test_bpf_to_bpf_backtrace_finish_and_callbacks(tmp_path):
    t = Tty(tmp_path, str(EX / "bpf2bpf.o"), "--data-hex", UDP)
    out = t.cmd("break square")
    assert out.startswith("Breakpoint 1 at calls pc 33")
    out = t.cmd("continue")
    assert "Breakpoint 1, calls:square pc 33 at bpf2bpf.c:14" in out
    # square called from the bpf_loop callback, called from the helper in calls()
    out = t.cmd("backtrace")
    assert out.splitlines() == ["#0  calls:square pc 33 at bpf2bpf.c:14",
                                "#1  calls:add_step pc 27 at bpf2bpf.c:36",
                                "#2  calls pc 9 at bpf2bpf.c:47"]
    assert t.cmd("print r1").startswith("r1 = 0x0  verifier: scalar()")
    out = t.cmd("finish")
    assert "Run till exit: back in calls:add_step pc 28 at bpf2bpf.c:36, r0 = 0x0" in out
    assert re.search(r"r6 = 0x[0-9a-f]+ \(fp-8 of calls\)  verifier: fp-8", out), out
    # the second iteration: i = 1
    out = t.cmd("continue")
    assert "Breakpoint 1, calls:square" in out
    assert t.cmd("print r1").startswith("r1 = 0x1")
    t.cmd("delete 1")
    out = t.cmd("break sum_squares")
    assert out.startswith("Breakpoint 2 at calls pc 36")
    out = t.cmd("continue")
    assert "Breakpoint 2, calls:sum_squares pc 36 at bpf2bpf.c:19" in out
    assert "r1 = 0x4  verifier: scalar()" in out
    out = t.cmd("next")
    assert "bpf2bpf.c:23\tfor (int i = 1; i <= n && i < 64; i++)" in out
    out = t.cmd("next")
    assert "bpf2bpf.c:24\ts += square(i);" in out and "call pc-" in out
    assert "r1 = 0x1  verifier: scalar(umin=1,umax=63)" in out
    # next steps over square(); step enters it
    out = t.cmd("next")
    assert "bpf2bpf.c:23" in out
    t.cmd("next")
    out = t.cmd("step")
    assert "bpf2bpf.c:14" in out and "=> 33:" in out
    out = t.cmd("bt")
    assert out.splitlines() == ["#0  calls:square pc 33 at bpf2bpf.c:14",
                                "#1  calls:sum_squares pc 47 at bpf2bpf.c:24",
                                "#2  calls pc 19 at bpf2bpf.c:50"]
    out = t.cmd("continue")
    assert "[program exited: retval 2 (XDP_PASS), 75 instructions]" in out
    # 1..10 squared by the loop (0..9: 285) plus sum_squares(4) = 30
    assert "(315)" in t.cmd("lookup result 0")
    _keep("bpf2bpf", t.quit())


def test_tail_call_backtrace(tmp_path):
    t = Tty(tmp_path, str(EX / "tail_calls.o"), "--prog", "dispatcher", "--data-hex", UDP)
    out = t.cmd("break handle_udp")
    assert out.startswith("Breakpoint 1 at pending")
    out = t.cmd("continue")
    assert "Breakpoint 1, handle_udp pc 0 at tail_calls.c:34" in out
    out = t.cmd("backtrace")
    assert out.splitlines() == ["#0  handle_udp pc 0 at tail_calls.c:34",
                                "    tail-called from dispatcher pc 13 at tail_calls.c:68"]
    t.cmd("step")
    out = t.cmd("step")
    assert "tail_calls.c:22\tif (n)" in out
    assert re.search(r"r0 = 0x[0-9a-f]+ \(array values\+136\)  verifier: map_value_or_null\(\)",
                     out), out
    assert "value 00 00 00 00 00 00 00 00 (0)" in t.cmd("lookup handled 17")
    out = t.cmd("continue")
    assert "[program exited: retval 2 (XDP_PASS), 24 instructions]" in out
    assert "value 01 00 00 00 00 00 00 00 (1)" in t.cmd("lookup handled 17")
    # run again: the breakpoint is known now, the count goes on
    out = t.cmd("run")
    assert "dispatcher pc 0" in out
    assert "Breakpoint 1, handle_udp" in t.cmd("c")
    assert "1\thandle_udp\thit 2 times" in t.cmd("info breakpoints")
    _keep("tail_calls", t.quit())


def test_bad_input_is_one_line_exit_2(tmp_path):
    env = dict(os.environ, EBEE_PIN_STORE=str(tmp_path / "pins.db"))
    out, code = pexpect.run(f"{sys.executable} -m ebee debug {EX / 'xdp_firewall.o'} --pcap "
                            f"{MIXED} --index 99999", env=env, withexitstatus=True,
                            encoding="utf-8", timeout=30)
    assert code == 2 and out.strip().endswith("error: no packet at --index 99999")
    assert len(out.strip().splitlines()) == 1
    out, code = pexpect.run(f"{sys.executable} -m ebee debug {EX / 'tail_calls.o'}", env=env,
                            withexitstatus=True, encoding="utf-8", timeout=30)
    assert code == 2 and "choose one with --prog" in out and "Traceback" not in out


def test_session_api(ebee_pin_store):
    obj = ebee.load(EX / "xdp_firewall.o", store=ebee_pin_store)
    prog = obj.programs["xdp_firewall"]
    pkt = bytes.fromhex(UDP)
    obj.maps["blocklist"].update(bytes.fromhex("0a000001"), 0)
    with Session(prog, pkt) as s:
        st = s.start()
        assert st.reason == "step" and st.pc == 0
        n = 1
        while True:
            st = s.stepi()
            if not st.running:
                break
            n += 1
            # every register the verifier described holds a value of the proved kind
            for r, f in s.facts().items():
                if f.type == "SCALAR_VALUE" and f.const is None:
                    assert f.umin <= st.regs[r] <= f.umax, (st.pc, r, format_fact(f))
                elif f.type == "SCALAR_VALUE":
                    assert st.regs[r] == f.const, (st.pc, r)
        assert st.reason == "exited" and st.result.retval == 1          # XDP_DROP
        # the interpreter counts the instructions executed; the stepper saw each one
        assert n == st.result.insns
        with pytest.raises(DebugError):
            s.register(0)
    assert obj.maps["blocklist"][bytes.fromhex("0a000001")] == (1).to_bytes(8, "little")
    s = Session(prog, pkt)
    s.start()
    s.add_breakpoint("*21")
    st = s.cont()
    assert st.reason == "breakpoint" and st.pc == 21
    assert s.register(0)[1].type == "PTR_TO_MAP_VALUE_OR_NULL"
    s.kill()
    assert not s.stop.running
    with pytest.raises(DebugError):
        s.add_breakpoint("1+1")
