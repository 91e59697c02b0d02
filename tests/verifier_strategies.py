"""Hypothesis programs that exercise the verifier: both safe and deliberately broken.

Unlike ``strategies.programs()`` (which builds programs the verifier accepts
by construction), these programs hold *unknown* values -- random numbers,
packet bytes, context fields, map values -- and do what real programs do
with them: bound them with conditional jumps, index the stack, the packet
and map values with them, spill and fill them, call helpers, null-check map
lookups.  Each snippet may be generated in a broken form (a bound off by
one, a missing null check, an uninitialised stack read, a clobbered
argument register, a leaked pointer, a missing return value), so about half
of the programs are rejected and the rest accepted -- both verdicts, and the
kernel's error lines, are what the differential tests compare.

Programs are produced as assembly text (kernel dialect) with symbolic labels;
map file descriptors are filled in by the test (``{ARRAY}``, ``{HASH}``).
"""
from __future__ import annotations

from hypothesis import strategies as st

from ebee.uapi import ProgType

LONG = ["r6", "r7", "r8", "r9"]     # survive helper calls
TMP = ["r1", "r2", "r3", "r4", "r5"]
ALU_OPS = ["+=", "-=", "*=", "/=", "%=", "|=", "&=", "^=", "<<=", ">>=", "s>>=", "="]
JMP_OPS = ["==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<=", "&"]
SIZES = ["u8", "u16", "u32", "u64"]
SIZE_BYTES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8}
PROG_TYPES = [ProgType.XDP, ProgType.SCHED_CLS, ProgType.SOCKET_FILTER, ProgType.CGROUP_SKB]
# (data, data_end) offsets in the program type's context
PKT = {ProgType.XDP: (0, 4), ProgType.SCHED_CLS: (76, 80), ProgType.CGROUP_SKB: (76, 80)}
SMALL = st.sampled_from([0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 255, 256, 0xFFFF, 0x7FFFFFFF,
                         -1, -2, -8, -16, -256, -(1 << 31)])
IMM = st.one_of(SMALL, st.integers(-(1 << 31), (1 << 31) - 1))


class Gen:
    """Collects the lines of one program while snippets draw from hypothesis."""

    def __init__(self, draw, prog_type: ProgType):
        self.draw = draw
        self.pt = prog_type
        self.lines: list[str] = []
        self.nlabel = 0
        self.pending: list[tuple[int, str]] = []   # (snippet index to place at, label)
        self.snippet = 0

    def label(self) -> str:
        self.nlabel += 1
        return f"l{self.nlabel}"

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    def forward(self, skip: int | None = None) -> str:
        """A label placed `skip` snippets ahead (forward jumps only)."""
        lbl = self.label()
        n = skip if skip is not None else self.draw(st.integers(1, 4))
        self.pending.append((self.snippet + n, lbl))
        return lbl

    def place_labels(self) -> None:
        for at, lbl in [p for p in self.pending if p[0] <= self.snippet]:
            self.lines.append(f"{lbl}:")
        self.pending = [p for p in self.pending if p[0] > self.snippet]

    def reg(self, pool=None) -> str:
        return self.draw(st.sampled_from(pool or LONG))

    def broken(self) -> bool:
        return self.draw(st.integers(0, 9)) == 0


# -- snippets ------------------------------------------------------------------------------


def s_rand(g: Gen) -> None:
    """An unknown 32-bit value from a helper; r1-r5 are clobbered by the call."""
    r = g.reg()
    g.emit("call bpf_get_prandom_u32", f"{r} = r0")


def s_alu(g: Gen) -> None:
    d = g.reg(LONG + TMP[:2])
    op = g.draw(st.sampled_from(ALU_OPS))
    w = g.draw(st.sampled_from(["r", "r", "w"]))
    dn = w + d[1:]
    if g.draw(st.booleans()):
        if op in ("<<=", ">>=", "s>>="):
            imm = g.draw(st.integers(0, 31 if w == "w" else 63))
            if g.broken():
                imm = g.draw(st.sampled_from([64, -1, 32]))
        elif op in ("/=", "%="):
            imm = g.draw(IMM.filter(lambda v: v != 0)) if not g.broken() else 0
        else:
            imm = g.draw(IMM)
        g.emit(f"{dn} {op} {imm}")
    else:
        s = g.reg(LONG + TMP[:2])
        g.emit(f"{dn} {op} {w}{s[1:]}")


def s_unary(g: Gen) -> None:
    d = g.reg(LONG)
    kind = g.draw(st.sampled_from(["neg", "neg32", "be16", "be32", "be64", "le16", "le32",
                                   "bswap16", "bswap64", "sx8", "sx16", "sx32", "wsx8", "wsx16"]))
    if kind == "neg":
        g.emit(f"{d} = -{d}")
    elif kind == "neg32":
        g.emit(f"w{d[1:]} = -w{d[1:]}")
    elif kind.startswith(("be", "le", "bswap")):
        g.emit(f"{d} = {kind} {d}")
    elif kind.startswith("wsx"):
        s = g.reg(LONG)
        g.emit(f"w{d[1:]} = (s{kind[3:]})w{s[1:]}")
    else:
        s = g.reg(LONG)
        g.emit(f"{d} = (s{kind[2:]}){s}")


def s_mask(g: Gen) -> None:
    """Bound a value the way compilers do: an and, a shift pair, or a range check."""
    r = g.reg()
    k = g.draw(st.sampled_from(["and", "shift", "jmp"]))
    if k == "and":
        g.emit(f"{r} &= {g.draw(st.sampled_from([0xff, 0x7, 0x3f, 0xffff, 0x1ff]))}")
    elif k == "shift":
        n = g.draw(st.sampled_from([32, 48, 56]))
        g.emit(f"{r} <<= {n}", f"{r} {g.draw(st.sampled_from(['>>=', 's>>=']))} {n}")
    else:
        lbl = g.forward()
        g.emit(f"if {r} {g.draw(st.sampled_from(['>', '>=', 's>', 's<']))} "
               f"{g.draw(SMALL)} goto {lbl}")


def s_select(g: Gen) -> None:
    """LLVM's branchless select, ``(x < 0) ? K : 0``: a sign mask and-ed or or-ed with a
    constant (the verifier explores both signs, maybe_fork_scalars)."""
    r = g.reg()
    w = g.draw(st.sampled_from(["r", "w"]))
    n = 63 if w == "r" else 31
    rn = w + r[1:]
    if g.draw(st.booleans()):
        g.emit(f"{rn} <<= {n}")
    g.emit(f"{rn} s>>= {n}", f"{rn} {g.draw(st.sampled_from(['&=', '|=']))} {g.draw(SMALL)}")


def s_linked(g: Gen) -> None:
    """Copies of one unknown value (registers and a spill), bounded through one of them."""
    r, c = g.reg(), g.reg()
    if r == c:
        return
    g.emit(f"{c} = {r}")
    if g.draw(st.booleans()):
        g.emit(f"*(u64 *)(r10 -{8 * g.draw(st.integers(1, 8))}) = {r}")
    lbl = g.forward()
    g.emit(f"if {r} {g.draw(st.sampled_from(['>', '<', 's>', '!=']))} {g.draw(SMALL)} goto {lbl}")


def s_cond(g: Gen) -> None:
    r = g.reg()
    op = g.draw(st.sampled_from(JMP_OPS))
    w = g.draw(st.sampled_from(["r", "r", "w"]))
    lbl = g.forward()
    if g.draw(st.booleans()):
        g.emit(f"if {w}{r[1:]} {op} {g.draw(IMM)} goto {lbl}")
    else:
        g.emit(f"if {w}{r[1:]} {op} {w}{g.reg()[1:]} goto {lbl}")


def s_stack_store(g: Gen) -> None:
    sz = g.draw(st.sampled_from(SIZES))
    n = SIZE_BYTES[sz]
    off = -g.draw(st.integers(1, 64 // n)) * n
    if g.broken():
        off = g.draw(st.sampled_from([off + 1, 0, -520, 8]))
    if g.draw(st.booleans()):
        g.emit(f"*({sz} *)(r10 {off:+d}) = {g.reg(LONG + ['r10'])}")
    else:
        g.emit(f"*({sz} *)(r10 {off:+d}) = {g.draw(IMM)}")


def s_stack_load(g: Gen) -> None:
    sz = g.draw(st.sampled_from(SIZES))
    n = SIZE_BYTES[sz]
    off = -g.draw(st.integers(1, 64 // n)) * n
    if g.broken():
        off = g.draw(st.sampled_from([off + 2, -520, 0]))
    g.emit(f"{g.reg()} = *({sz} *)(r10 {off:+d})")


def s_var_stack(g: Gen) -> None:
    """Index the stack with a bounded register (variable-offset stack access)."""
    r = g.reg()
    t = g.draw(st.sampled_from(TMP))
    mask = g.draw(st.sampled_from([0x7, 0xf, 0x1f, 0x3f])) if not g.broken() else 0x3ff
    base = -g.draw(st.sampled_from([64, 72, 128]))
    sz = g.draw(st.sampled_from(SIZES))
    g.emit(f"{r} &= {mask}", f"{t} = r10", f"{t} += {base}", f"{t} += {r}")
    if g.draw(st.booleans()):
        g.emit(f"*({sz} *)({t} +0) = {g.draw(IMM)}")
    else:
        g.emit(f"{g.reg()} = *({sz} *)({t} +0)")


def s_spill(g: Gen) -> None:
    """Spill a register (scalar or pointer) and fill it back, maybe partially."""
    r = g.reg(LONG + ["r10"])
    off = -8 * g.draw(st.integers(1, 8))
    g.emit(f"*(u64 *)(r10 {off:+d}) = {r}")
    if g.draw(st.booleans()):
        g.emit(f"*(u32 *)(r10 {off + 4:+d}) = {g.draw(IMM)}")
    sz = g.draw(st.sampled_from(["u64", "u64", "u32"]))
    g.emit(f"{g.reg()} = *({sz} *)(r10 {off:+d})")


def s_packet(g: Gen) -> None:
    """Bounds-check the packet (data + N > data_end) then read inside -- or just past."""
    if g.pt not in PKT:
        if g.draw(st.booleans()):
            g.emit(f"r0 = *(u8 *)skb[{g.draw(st.integers(0, 64))}]")
        return
    t = g.draw(st.sampled_from(["r2", "r3"]))
    n = g.draw(st.integers(1, 64))
    lbl = g.forward()
    form = g.draw(st.sampled_from([">", ">=", "<", "<="]))
    g.emit("r4 = *(u32 *)(r6 +{})".format(PKT[g.pt][0]), "r5 = *(u32 *)(r6 +{})".format(PKT[g.pt][1]),
           f"{t} = r4", f"{t} += {n}")
    if form == ">":
        g.emit(f"if {t} > r5 goto {lbl}")
    elif form == ">=":
        g.emit(f"if {t} >= r5 goto {lbl}")
    elif form == "<":
        inb = g.label()
        g.emit(f"if {t} < r5 goto {inb}", f"goto {lbl}", f"{inb}:")
    else:
        g.emit(f"if r5 < {t} goto {lbl}")
    sz = g.draw(st.sampled_from(SIZES))
    off = g.draw(st.integers(0, max(0, n - SIZE_BYTES[sz])))
    if g.broken():
        off = n - SIZE_BYTES[sz] + 1
    g.emit(f"{g.reg()} = *({sz} *)(r4 {off:+d})")


def s_packet_var(g: Gen) -> None:
    """A packet pointer advanced by a bounded unknown, then checked and read."""
    if g.pt not in PKT:
        return
    r = g.reg()
    lbl = g.forward()
    g.emit(f"{r} &= {g.draw(st.sampled_from([0xff, 0x3f, 0x7]))}",
           "r4 = *(u32 *)(r6 +{})".format(PKT[g.pt][0]), "r5 = *(u32 *)(r6 +{})".format(PKT[g.pt][1]),
           f"r4 += {r}", "r3 = r4", "r3 += 4", f"if r3 > r5 goto {lbl}")
    off = 0 if not g.broken() else 1
    g.emit(f"{g.reg()} = *(u32 *)(r4 {off:+d})")


def s_ctx(g: Gen) -> None:
    off = {ProgType.XDP: [12, 16, 0, 4, 8], ProgType.SCHED_CLS: [0, 4, 8, 16, 76, 80],
           ProgType.SOCKET_FILTER: [0, 4, 8, 16], ProgType.CGROUP_SKB: [0, 4, 16, 76]}[g.pt]
    o = g.draw(st.sampled_from(off))
    sz = "u32"
    if g.broken():
        o, sz = g.draw(st.sampled_from([(o + 1, "u8"), (200, "u32"), (o, "u64"), (o + 2, "u16")]))
    g.emit(f"{g.reg()} = *({sz} *)(r6 {o:+d})")


def s_map(g: Gen) -> None:
    """Look up a map value and use it -- with or without the null check."""
    which = g.draw(st.sampled_from(["ARRAY", "HASH"]))
    key = g.draw(st.sampled_from([0, 1, 3, 100]))
    lbl = g.forward()
    g.emit(f"*(u32 *)(r10 -4) = {key}", "r2 = r10", "r2 += -4", f"r1 = map[fd:{{{which}}}]",
           "call bpf_map_lookup_elem")
    if not g.broken():
        g.emit(f"if r0 == 0 goto {lbl}")
    sz = g.draw(st.sampled_from(SIZES))
    off = g.draw(st.integers(0, 48 - SIZE_BYTES[sz]))
    if g.broken():
        off = 48 - SIZE_BYTES[sz] + g.draw(st.integers(1, 8))
    if g.draw(st.booleans()):
        g.emit(f"{g.reg()} = *({sz} *)(r0 {off:+d})")
    else:
        g.emit(f"*({sz} *)(r0 {off:+d}) = {g.reg()}")
    if g.draw(st.booleans()):
        r = g.reg()
        g.emit(f"{r} &= {g.draw(st.sampled_from([0x7, 0x1f, 0x3f]))}", f"r0 += {r}",
               f"{g.reg()} = *(u8 *)(r0 +0)")


def s_helper_mem(g: Gen) -> None:
    """Pass stack memory and a size to a helper (memory + size argument pair)."""
    off = -8 * g.draw(st.integers(1, 8))
    size = g.draw(st.sampled_from([4, 8, 16]))
    if g.broken():
        size = g.draw(st.sampled_from([0, -off + 8]))
    g.emit("r1 = r10", f"r1 += {off}", f"r2 = {size}", "r3 = 0", "call bpf_probe_read_kernel"
           if g.pt not in (ProgType.XDP, ProgType.SOCKET_FILTER, ProgType.SCHED_CLS,
                           ProgType.CGROUP_SKB) else "call bpf_get_current_comm")


def s_loop(g: Gen) -> None:
    """A bounded loop (or, broken, an unbounded one)."""
    r = g.reg()
    top = g.label()
    n = g.draw(st.integers(1, 12))
    g.emit(f"{r} = 0", f"{top}:", f"{r} += 1")
    if g.broken():
        g.emit(f"if {r} != 0 goto {top}")
    else:
        g.emit(f"if {r} < {n} goto {top}")


SNIPPETS = [s_rand, s_rand, s_alu, s_alu, s_alu, s_unary, s_mask, s_mask, s_cond, s_cond,
            s_stack_store, s_stack_load, s_var_stack, s_spill, s_packet, s_packet,
            s_packet_var, s_ctx, s_map, s_map, s_loop, s_select, s_linked]


@st.composite
def verifier_programs(draw, max_snippets: int = 12, prog_types=tuple(PROG_TYPES)):
    """(assembly text, program type) of a program exercising the verifier."""
    pt = draw(st.sampled_from(list(prog_types)))
    g = Gen(draw, pt)
    g.emit("r6 = r1")
    for r in LONG[1:]:
        if draw(st.integers(0, 5)):
            g.emit(f"{r} = {draw(SMALL)}")
    n = draw(st.integers(1, max_snippets))
    for i in range(n):
        g.snippet = i
        g.place_labels()
        draw(st.sampled_from(SNIPPETS))(g)
    g.snippet = n + 10
    g.place_labels()
    end = draw(st.sampled_from(["const", "reg", "none", "ptr"]))
    if end == "const" or (end == "none" and not g.broken()):
        ret = draw(st.sampled_from([0, 1, 2, 3]))
        g.emit(f"r0 = {ret}")
    elif end == "reg":
        r = g.reg()
        g.emit(f"r0 = {r}")
        if pt == ProgType.CGROUP_SKB and not g.broken():
            g.emit("r0 &= 1")
    elif end == "ptr":
        g.emit("r0 = r10" if g.broken() else "r0 = 1")
    g.emit("exit")
    return "\n".join(g.lines) + "\n", pt
