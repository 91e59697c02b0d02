"""The line-oriented front of a :class:`~.session.Session` (``ebee debug``): gdb's words.

Every stop prints where the program is -- the C line from BTF line_info, the
instruction about to run -- and, for each register that instruction reads, its value
beside what the verifier proved there::

    xdp_firewall.c:47    if ((void *)(eth + 1) > data_end)
    => 5: if r3 > r2 goto pc+34
       r3 = 0x100000e (xdp frame+270)  verifier: pkt(off=14)
"""
from __future__ import annotations

import cmd
import errno
import shlex
from typing import IO, Any

from ..errors import EbeeError
from .session import DebugError, Frame, Session, Stop, format_fact

_UNITS = {"b": 1, "h": 2, "w": 4, "g": 8}
_XDP = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}


class Console(cmd.Cmd):
    intro = None
    prompt = "(ebee) "

    def __init__(self, session: Session, stdin: IO[str] | None = None,
                 stdout: IO[str] | None = None):
        super().__init__(stdin=stdin, stdout=stdout)
        if stdin is not None:
            self.use_rawinput = False
        self.s = session
        self.last = ""

    # -- output -------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def where(self, f: Frame) -> str:
        src = f.view.src
        line = f.line
        fn = f.function
        head = f"{f.view.name}" if fn == f.view.name else f"{f.view.name}:{fn}"
        return f"{head} pc {f.pc}" + (f" at {line.where}" if line is not None else "")

    def show_stop(self, st: Stop) -> None:
        if st.reason == "exited":
            r = st.result
            verdict = getattr(r, "verdict", None)
            self.say(f"[program exited: retval {r.retval}"
                     f"{f' ({verdict})' if verdict else ''}, {r.insns} instructions]")
            return
        if st.reason == "fault":
            e = st.error
            where = f" at pc {e.pc}" if getattr(e, "pc", None) is not None else ""
            self.say(f"[program faulted{where}: {getattr(e, 'reason', e)}]")
            return
        if st.reason == "error":
            e = st.error
            msg = getattr(e, "summary", None) or getattr(e, "reason", None) or str(e)
            if isinstance(e, OSError) and e.errno:
                msg = f"{errno.errorcode.get(e.errno, e.errno)}: {msg}"
            self.say(f"[the run failed: {msg}]")
            return
        if st.reason == "quit":
            self.say("[program killed]")
            return
        f = st.frame
        if st.reason == "breakpoint":
            self.say(f"Breakpoint {st.breakpoint}, {self.where(f)}")
        elif st.reason == "finish":
            self.say(f"Run till exit: back in {self.where(f)}, r0 = {st.regs[0]:#x}")
        self.show_here(st)

    def show_here(self, st: Stop) -> None:
        f = st.frame
        line = f.line
        if line is not None:
            self.say(f"{line.where}\t{line.text.strip()}")
        self.say(f"=> {f.pc}: {self.s.disassemble(f.pc)}")
        facts = f.view.facts_at(f.pc)
        for r in sorted(facts):
            self.say(f"   {self.reg_line(r, st.regs[r], facts[r])}")

    def reg_line(self, n: int, value: int, fact: Any) -> str:
        where = self.s.region_of(value)
        v = f"{value:#x}" + (f" ({where})" if where else "")
        return f"r{n} = {v}  verifier: {format_fact(fact)}" if fact is not None else \
            f"r{n} = {v}"

    # -- the command loop -----------------------------------------------------------------

    def emptyline(self) -> bool:
        # as gdb: an empty line repeats a stepping command
        if self.last in ("step", "next", "stepi", "nexti", "s", "n", "si", "ni"):
            return self.onecmd(self.last)
        return False

    def precmd(self, line: str) -> str:
        if line.strip() and line.strip() != "EOF":
            self.last = line.strip()
        return line

    def onecmd(self, line: str) -> bool:
        try:
            return super().onecmd(line)
        except (DebugError, EbeeError, ValueError) as e:
            self.say(f"error: {e}")
            return False

    def default(self, line: str) -> bool:
        word = line.split()[0]
        if word.startswith("x/") or word == "x":
            return self.do_x(line[1:])
        self.say(f"error: unknown command {word!r} (help lists them)")
        return False

    def _resume(self, fn) -> None:
        self.show_stop(fn())

    def do_step(self, arg: str) -> None:
        """step: run to the next source line, into calls"""
        self._resume(self.s.step)

    def do_next(self, arg: str) -> None:
        """next: run to the next source line, over calls"""
        self._resume(self.s.next)

    def do_stepi(self, arg: str) -> None:
        """stepi: one instruction, into calls"""
        self._resume(self.s.stepi)

    def do_nexti(self, arg: str) -> None:
        """nexti: one instruction, over calls"""
        self._resume(self.s.nexti)

    def do_finish(self, arg: str) -> None:
        """finish: run until the current function returns"""
        self._resume(self.s.finish)

    def do_continue(self, arg: str) -> None:
        """continue: run until a breakpoint or the end"""
        self._resume(self.s.cont)

    def do_run(self, arg: str) -> None:
        """run: start the program again from its first instruction (same input)"""
        self.begin()

    def begin(self) -> None:
        first = self.s.start()
        f = first.frame
        if f is not None:
            self.say(f"Stopped at the first instruction of {self.where(f)}")
            self.show_here(first)
        else:
            self.show_stop(first)

    do_s, do_n, do_si, do_ni, do_c, do_r = do_step, do_next, do_stepi, do_nexti, do_continue, \
        do_run

    def do_break(self, arg: str) -> None:
        """break LINE | FILE:LINE | FUNC | *PC | PROG:*PC: stop there"""
        bp = self.s.add_breakpoint(arg)
        at = self.s.where_breakpoint(bp)
        where = ", ".join(f"{p} pc {pc}" for p, pc in at) if at else \
            "pending (no instruction of the programs run so far)"
        self.say(f"Breakpoint {bp.number} at {where}")

    do_b = do_break

    def do_delete(self, arg: str) -> None:
        """delete [N]: delete breakpoint N (all without N)"""
        self.s.delete_breakpoint(int(arg) if arg.strip() else None)

    def do_info(self, arg: str) -> None:
        """info breakpoints | info registers"""
        what = arg.strip()
        if what.startswith("b"):
            if not self.s.breakpoints:
                self.say("No breakpoints.")
            for bp in self.s.breakpoints:
                self.say(f"{bp.number}\t{bp.spec}\thit {bp.hits} time{'s' if bp.hits != 1 else ''}")
        elif what.startswith("r"):
            self.do_registers("")
        else:
            self.say("info breakpoints | info registers")

    def do_print(self, arg: str) -> None:
        """print rN: a register's value and what the verifier proved of it here"""
        a = arg.strip().lstrip("$")
        if not (a.startswith("r") and a[1:].isdigit()):
            raise DebugError("print: give a register, r0..r10")
        n = int(a[1:])
        value, fact = self.s.register(n)
        line = self.reg_line(n, value, fact)
        if fact is None:
            line += "  verifier: (not read by this instruction)"
        self.say(line)

    do_p = do_print

    def do_registers(self, arg: str) -> None:
        """registers: every register, with the verifier's facts where this instruction reads it"""
        st = self.s.stop
        if not st.running:
            raise DebugError("the program is not being run")
        facts = self.s.facts()
        for n in range(11):
            self.say(self.reg_line(n, st.regs[n], facts.get(n)))

    def do_facts(self, arg: str) -> None:
        """facts: what the verifier proved before this instruction, for each register it reads"""
        facts = self.s.facts()
        st = self.s.stop
        if not facts:
            self.say("no facts here (the instruction reads no register, or it is a step of a "
                     "rewritten context access)")
        for r in sorted(facts):
            self.say(f"r{r}: {format_fact(facts[r])}  (now {st.regs[r]:#x})")

    def do_x(self, arg: str) -> None:
        """x/NFU ADDR: examine memory (N units; F x or d; U b, h, w or g), e.g. x/16xb r10-16"""
        arg = arg.strip()
        fmt = "1xb"
        if arg.startswith("/"):
            fmt, _, arg = arg[1:].partition(" ")
        count = ""
        while fmt and fmt[0].isdigit():
            count, fmt = count + fmt[0], fmt[1:]
        n = int(count or "1")
        unit, base = 1, "x"
        for ch in fmt:
            if ch in _UNITS:
                unit = _UNITS[ch]
            elif ch in "xdu":
                base = ch
            else:
                raise DebugError(f"x: unknown format letter {ch!r}")
        addr = self.address(arg)
        data = self.s.read(addr, n * unit)
        per_row = max(16 // unit, 1)
        for row in range(0, n, per_row):
            a = addr + row * unit
            where = self.s.region_of(a)
            cells = []
            for k in range(row, min(n, row + per_row)):
                v = int.from_bytes(data[k * unit:(k + 1) * unit], "little")
                cells.append(f"{v:#0{2 + 2 * unit}x}" if base == "x" else str(v))
            self.say(f"{a:#x}{' <' + where + '>' if where else ''}:\t" + " ".join(cells))

    def address(self, text: str) -> int:
        """A number, rN, or rN+OFF / rN-OFF."""
        t = text.replace(" ", "").lstrip("$")
        if not t:
            raise DebugError("x: give an address (a number, rN or rN+OFF)")
        base, off = t, 0
        for sign in ("+", "-"):
            if sign in t[1:]:
                k = t.index(sign, 1)
                base, off = t[:k], int(t[k + 1:], 0) * (1 if sign == "+" else -1)
                break
        if base.startswith("r") and base[1:].isdigit():
            return (self.s.register(int(base[1:]))[0] + off) & ((1 << 64) - 1)
        try:
            return int(base, 0) + off
        except ValueError:
            raise DebugError(f"x: cannot read the address {text!r}") from None

    def do_stack(self, arg: str) -> None:
        """stack: the current function's stack frame, 8 bytes a row, as offsets from r10"""
        fp, data = self.s.stack()
        depth = len(data)
        for k in range(0, depth, 8):
            off = k - depth
            row = data[k:k + 8]
            self.say(f"fp{off:<5d} {row.hex(' ')}   {int.from_bytes(row, 'little'):#x}")

    def do_backtrace(self, arg: str) -> None:
        """backtrace: the call stack through bpf-to-bpf calls, callbacks and tail calls"""
        for k, f in enumerate(self.s.backtrace()):
            self.say(f"#{k}  {self.where(f)}")
            for prog, pc in reversed(f.tail_from):
                self.say(f"    tail-called from {prog} pc {pc}"
                         f"{self._line_of(prog, pc)}")

    do_bt = do_where = do_backtrace

    def _line_of(self, prog: str, pc: int) -> str:
        for v in self.s._known_views():
            if v.name == prog:
                line = v.src.line(pc)
                return f" at {line.where}" if line is not None else ""
        return ""

    def do_list(self, arg: str) -> None:
        """list: the instructions around this one, with their source lines"""
        st = self.s.stop
        if not st.running:
            raise DebugError("the program is not being run")
        f = st.frame
        src = f.view.src
        pcs = sorted(src.by_pc)
        k = pcs.index(f.pc)
        for pc in pcs[max(k - 5, 0):k + 6]:
            s = src.stmt.get(pc)
            if s is not None:
                self.say(f"        ; {s.where}\t{s.text.strip()}")
            mark = "=>" if pc == f.pc else "  "
            self.say(f"{mark} {pc:4d}: {self.s.disassemble(pc)}")

    do_l = do_list

    def do_maps(self, arg: str) -> None:
        """maps: the maps of the program's object"""
        for name, m in self.s.maps().items():
            try:
                n = len(m)
            except Exception:
                n = "?"
            self.say(f"{name}: {m.type.name.lower()}  key {m.key_size}B  value "
                     f"{m.value_size}B  max_entries {m.max_entries}  entries {n}")

    def do_lookup(self, arg: str) -> None:
        """lookup MAP KEY: an element (KEY as --map-update takes it: 0x + hex bytes, or JSON)"""
        parts = shlex.split(arg)
        if len(parts) != 2:
            raise DebugError("lookup MAP KEY")
        kb, vb = self.s.lookup(parts[0], parts[1])
        if vb is None:
            self.say(f"key {kb.hex(' ')}: not found")
        else:
            self.say(f"key {kb.hex(' ')}: value {vb.hex(' ')}"
                     + (f" ({int.from_bytes(vb, 'little')})" if len(vb) <= 8 else ""))

    def do_kill(self, arg: str) -> None:
        """kill: end the run"""
        self.s.kill()
        self.say("[program killed]")

    def do_quit(self, arg: str) -> bool:
        """quit: end the session"""
        self.s.kill()
        return True

    do_q = do_quit

    def do_EOF(self, arg: str) -> bool:
        self.say("")
        return self.do_quit(arg)


def interact(session: Session, stdin: IO[str] | None = None,
             stdout: IO[str] | None = None) -> None:
    """Start the run and read commands until quit (or the end of input)."""
    con = Console(session, stdin, stdout)
    con.begin()
    con.cmdloop()
