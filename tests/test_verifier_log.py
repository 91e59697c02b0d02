"""The verifier log's lazy state lines write the same bytes as formatting them at once.

``Log`` keeps state lines as snapshots and formats only those that survive
the rewinds; this checks it against a plain byte buffer with the kernel's
rotation (the log before snapshots), over random sequences of writes, state
lines, rewinds to earlier marks (in stack order, as pop_stack does) and the newline take-back an instruction's
state line does, with small sizes so that the rotation and the switch to a
byte buffer happen too.
"""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ebee.verifier.bounds import Bounds
from ebee.verifier.log import Log, format_state
from ebee.verifier.state import FuncState, StackSlot, VerifierState
from ebee.verifier.tnum import Tnum
from ebee.verifier.types import PTR_TO_CTX, PTR_TO_STACK, SCALAR_VALUE


class ByteLog:
    """The log as a byte buffer that formats every state line at once."""

    def __init__(self, level: int, size: int):
        self.level, self.size = level, size
        self.buf = bytearray()
        self.start = self.end = 0

    def __call__(self, text: str) -> None:
        if not self.level:
            return
        b = text.encode()
        rel = self.end - self.start
        self.buf[rel:rel + len(b)] = b
        self.end += len(b)
        if len(self.buf) > 2 * self.size:
            cut = len(self.buf) - self.size
            del self.buf[:cut]
            self.start += cut

    def state(self, state, frameno, print_all, sr, ss) -> None:
        self(format_state(state, frameno, print_all, sr, ss) + "\n")

    def reset(self, pos: int) -> None:
        if self.level and pos <= self.end:
            self.end = max(pos, self.start)

    def unwrite(self, n: int) -> None:
        self.reset(self.end - n)

    def getvalue(self) -> str:
        data = self.buf[:self.end - self.start]
        if len(data) > self.size:
            data = data[len(data) - self.size:]
        return data.decode(errors="replace")


U64 = (1 << 64) - 1
scalars = st.one_of(
    st.integers(0, U64).map(lambda v: Bounds.const(v)),
    st.tuples(st.integers(0, 1 << 20), st.integers(0, 1 << 20)).map(
        lambda t: Bounds(Tnum(0, (1 << 21) - 1), 0, max(t), 0, max(t), 0, max(t), 0, max(t))))


@st.composite
def states(draw):
    st_ = VerifierState()
    f = FuncState()
    for i, r in enumerate(f.regs):
        kind = draw(st.sampled_from(["none", "scalar", "ctx", "fp"]))
        if kind == "scalar":
            r.type = SCALAR_VALUE
            r.bounds = draw(scalars)
            r.precise = draw(st.booleans())
        elif kind == "ctx":
            r.type = PTR_TO_CTX
            r.mark_known(0)
            r.type = PTR_TO_CTX
        elif kind == "fp":
            r.type = PTR_TO_STACK
            r.mark_known(0)
            r.type = PTR_TO_STACK
            r.off = draw(st.integers(-512, 0))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["misc", "zero", "spill"]))
        if kind == "spill":
            reg = f.regs[0].copy()
            reg.type = SCALAR_VALUE
            reg.bounds = draw(scalars)
            f.stack.append(StackSlot("rrrrrrrr", reg))
        else:
            f.stack.append(StackSlot(("m" if kind == "misc" else "0") * 8, None))
    st_.frames = [f]
    return st_


ops = st.lists(st.one_of(
    st.tuples(st.just("text"), st.text(st.sampled_from("ab;:é\n"), min_size=0, max_size=120)),
    st.tuples(st.just("state"), states(), st.booleans(), st.integers(-1, (1 << 11) - 1),
              st.integers(-1, 15)),
    st.tuples(st.just("mark")),
    st.tuples(st.just("reset")),
    st.tuples(st.just("insn"), st.integers(0, 99))), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops, st.sampled_from([1 << 20, 4096, 600, 64]))
def test_lazy_log_writes_what_a_byte_buffer_writes(ops, size):
    lazy, ref = Log(1, size), ByteLog(1, size)
    marks: list[tuple[int, int]] = []
    for op in ops:
        if op[0] == "text":
            lazy(op[1])
            ref(op[1])
        elif op[0] == "state":
            _, s, print_all, sr, ss = op
            lazy.state(s, 0, print_all, sr, ss)
            ref.state(s, 0, print_all, sr, ss)
        elif op[0] == "mark":
            marks.append((lazy.end, ref.end))
        elif op[0] == "reset" and marks:
            # marks are taken and rewound to as the verifier's branch stack does
            lm, rm = marks.pop()
            lazy.reset(lm)
            ref.reset(rm)
        elif op[0] == "insn":
            # an instruction line, its mark, and the state line that continues it
            line = f"{op[1]}: (b7) r0 = 0\n"
            lazy(line)
            ref(line)
            marks.append((lazy.end, ref.end))
            lazy.unwrite(1)
            ref.unwrite(1)
            lazy("    ;")
            ref("    ;")
        assert lazy.getvalue() == ref.getvalue()
    assert lazy.getvalue() == ref.getvalue()


def test_level_zero_keeps_nothing():
    log = Log(0)
    log("x\n")
    log.state(VerifierState(), 0, True)
    assert log.getvalue() == "" and log.end == 0
