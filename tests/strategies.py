"""Hypothesis strategies for instructions and whole programs.

``programs()`` builds programs the kernel's verifier accepts by construction
(initialised registers and stack, forward jumps only, aligned stack access,
no division by a zero immediate, in-range shift immediates) and that end by
folding every register and stack slot into r0, so one 32-bit return value
witnesses the whole machine state.
"""
from __future__ import annotations

from hypothesis import strategies as st

from ebee import isa
from ebee.isa import Kind, make

REGS = list(range(10))                       # r10 is never a destination or operand
SLOTS = [-16 - 8 * k for k in range(8)]      # initialised stack slots [fp-80, fp-16)
imm32 = st.one_of(st.integers(-(1 << 31), (1 << 31) - 1),
                  st.sampled_from([0, 1, -1, 2, 31, 32, 63, 64, 0x7FFFFFFF, -(1 << 31), 0xFF, 0xFFFF]))
imm64 = st.one_of(st.integers(0, (1 << 64) - 1),
                  st.sampled_from([0, 1, (1 << 64) - 1, 1 << 63, (1 << 63) - 1, 0xFFFFFFFF, 1 << 32]))


def _spec(kind: Kind, **attrs):
    return [s for s in isa.TABLE if s.kind is kind and all(getattr(s, k) == v for k, v in attrs.items())]


ALU = _spec(Kind.ALU)
JCC = _spec(Kind.JCC)


def _lddw(dst: int, v: int):
    lo, hi = v & 0xFFFFFFFF, v >> 32
    return make(_spec(Kind.LD_IMM64, op="imm64")[0], dst=dst, imm=lo, imm_hi=hi)


@st.composite
def alu(draw):
    spec = draw(st.sampled_from(ALU))
    dst = draw(st.sampled_from(REGS))
    if spec.use_reg:
        return make(spec, dst=dst, src=draw(st.sampled_from(REGS)))
    bits = 64 if spec.is64 else 32
    if spec.op in ("lsh", "rsh", "arsh"):
        imm = draw(st.integers(0, bits - 1))
    elif spec.op in ("div", "mod", "sdiv", "smod"):
        imm = draw(imm32.filter(lambda v: v != 0))
    else:
        imm = draw(imm32)
    return make(spec, dst=dst, imm=imm)


@st.composite
def unary(draw):
    kind = draw(st.sampled_from([Kind.NEG, Kind.MOVSX, Kind.END]))
    spec = draw(st.sampled_from(_spec(kind)))
    return make(spec, dst=draw(st.sampled_from(REGS)), src=draw(st.sampled_from(REGS)) if spec.use_reg else 0)


@st.composite
def stack_op(draw):
    kind = draw(st.sampled_from([Kind.LDX, Kind.ST, Kind.STX, Kind.ATOMIC]))
    spec = draw(st.sampled_from(_spec(kind)))
    size = spec.size
    slot = draw(st.sampled_from(SLOTS))
    off = slot + draw(st.integers(0, 8 // size - 1)) * size   # aligned within the slot
    if kind is Kind.LDX:
        return make(spec, dst=draw(st.sampled_from(REGS)), src=10, off=off)
    if kind is Kind.ST:
        return make(spec, dst=10, off=off, imm=draw(imm32))
    return make(spec, dst=10, src=draw(st.sampled_from(REGS)), off=off)


def _fold(insns: list) -> None:
    """r0 = mix(r0..r9, stack slots), then fold 64 -> 32 bits."""
    mul = _spec(Kind.ALU, op="mul", is64=True, use_reg=False)[0]
    xor = _spec(Kind.ALU, op="xor", is64=True, use_reg=True)[0]
    ldx = _spec(Kind.LDX, size=8, signed=False)[0]
    for r in range(1, 10):
        insns.append(make(mul, dst=0, imm=0x2545F491))
        insns.append(make(xor, dst=0, src=r))
    for slot in SLOTS:
        insns.append(make(ldx, dst=1, src=10, off=slot))
        insns.append(make(mul, dst=0, imm=0x2545F491))
        insns.append(make(xor, dst=0, src=1))
    mov = _spec(Kind.ALU, op="mov", is64=True, use_reg=True)[0]
    rsh = _spec(Kind.ALU, op="rsh", is64=True, use_reg=False)[0]
    insns += [make(mov, dst=1, src=0), make(rsh, dst=1, imm=32), make(xor, dst=0, src=1),
              make("exit")]


@st.composite
def programs(draw, max_body: int = 40):
    """(instructions, description) of a verifier-friendly random program."""
    insns = []
    for r in REGS:
        insns.append(_lddw(r, draw(imm64)))
    stdw = _spec(Kind.ST, size=8)[0]
    stxdw = _spec(Kind.STX, size=8)[0]
    for k, slot in enumerate(SLOTS):
        if draw(st.booleans()):
            insns.append(make(stdw, dst=10, off=slot, imm=draw(imm32)))
        else:
            insns.append(make(stxdw, dst=10, off=slot, src=REGS[k]))
    n = draw(st.integers(1, max_body))
    # Items are instructions or ("jcc"/"ja", proto, target item index); targets are
    # resolved to slot offsets once the layout is known.  Unconditional jumps
    # only appear as the else-edge of an if/else diamond, so that no
    # instruction is unreachable (Linux rejects unreachable code).
    items: list = []

    def simple():
        kind = draw(st.sampled_from(["alu", "alu", "unary", "stack", "lddw"]))
        if kind == "alu":
            return draw(alu())
        if kind == "unary":
            return draw(unary())
        if kind == "stack":
            return draw(stack_op())
        return _lddw(draw(st.sampled_from(REGS)), draw(imm64))

    def jcc_proto():
        spec = draw(st.sampled_from(JCC))
        return dict(spec=spec, dst=draw(st.sampled_from(REGS)),
                    src=draw(st.sampled_from(REGS)) if spec.use_reg else 0,
                    imm=0 if spec.use_reg else draw(imm32))

    while len(items) < n:
        choice = draw(st.sampled_from(["simple"] * 6 + ["jcc", "diamond"]))
        if choice == "simple":
            items.append(simple())
        elif choice == "jcc":
            # forward to any later item, or to the fold (the end)
            items.append(["jcc", jcc_proto(), draw(st.integers(len(items) + 1, n + 1))])
        else:
            then = [simple() for _ in range(draw(st.integers(1, 3)))]
            other = [simple() for _ in range(draw(st.integers(1, 3)))]
            base = len(items)
            ja = draw(st.sampled_from(_spec(Kind.JA)))
            items.append(["jcc", jcc_proto(), base + 1 + len(then) + 1])
            items.extend(then)
            items.append(["ja", dict(spec=ja), base + 1 + len(then) + 1 + len(other)])
            items.extend(other)
    n = len(items)
    starts, pc = [], 0
    for it in items:
        starts.append(pc)
        pc += 2 if (not isinstance(it, list) and it.spec.wide) else 1
    end = pc
    for idx, it in enumerate(items):
        if not isinstance(it, list):
            insns.append(it)
            continue
        _, proto, tgt = it
        target = starts[tgt] if tgt < n else end
        rel = target - starts[idx] - 1
        spec = proto.pop("spec")
        if spec.kind is Kind.JA and not spec.is64:
            insns.append(make(spec, imm=rel))
        else:
            insns.append(make(spec, off=rel, **proto))
    _fold(insns)
    return isa.renumber(insns)


@st.composite
def any_instruction(draw):
    """Any single valid instruction of the table, with random operand fields."""
    spec = draw(st.sampled_from(isa.TABLE))
    fixed = dict(spec.fixed)
    vals = {}
    for f in ("dst", "src"):
        vals[f] = fixed.get(f, draw(st.integers(0, 10)) if f in spec.operands else 0)
    vals["off"] = fixed.get("off", draw(st.integers(-(1 << 15), (1 << 15) - 1)) if "off" in spec.operands else 0)
    if spec.imm_values:
        vals["imm"] = draw(st.sampled_from(spec.imm_values))
    else:
        vals["imm"] = fixed.get("imm", draw(imm32) if "imm" in spec.operands else 0)
    hi = draw(imm32) if spec.wide and (spec.op == "imm64" or "value" in spec.op or spec.op == "btf_id") else 0
    return make(spec, imm_hi=hi, **vals)
