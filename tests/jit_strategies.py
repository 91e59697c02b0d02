"""Hypothesis programs for comparing engines beyond what ``strategies.programs`` covers.

``memory_programs()`` builds programs that touch a memory region through a
pointer (r6 = r1 on entry and never changed), with loads, stores and atomics
at offsets that are sometimes out of bounds (so faults must agree too),
bounded loops, ``may_goto`` loops and bpf-to-bpf calls to a subprogram that
uses its own stack.  Pointer values differ between engines (each run has its
own regions), so no register derived from r6 or r10 is ever folded into r0;
the result, the instruction count, the memory region and the stack bytes are
what must agree.
"""
from __future__ import annotations

from hypothesis import strategies as st

from ebee import isa
from ebee.isa import Kind, make

from strategies import _lddw, _spec, alu, imm32, unary

MEM_SIZE = 64
VALUE_REGS = [0, 2, 3, 4, 5, 7, 8]       # r6 = pointer, r9 = loop counter, r10 = frame
ALU_SPECS = _spec(Kind.ALU)


def _mov(dst, src):
    return make(_spec(Kind.ALU, op="mov", is64=True, use_reg=True)[0], dst=dst, src=src)


def _movi(dst, imm):
    return make(_spec(Kind.ALU, op="mov", is64=True, use_reg=False)[0], dst=dst, imm=imm)


@st.composite
def value_alu(draw):
    """An ALU/unary instruction that reads and writes only value registers."""
    insn = draw(st.one_of(alu(), unary()))
    regs = {"dst": draw(st.sampled_from(VALUE_REGS))}
    if insn.spec.use_reg:
        regs["src"] = draw(st.sampled_from(VALUE_REGS))
    return make(insn.spec, dst=regs["dst"], src=regs.get("src", 0), off=insn.off, imm=insn.imm)


@st.composite
def mem_op(draw, base: int = 6):
    kind = draw(st.sampled_from([Kind.LDX, Kind.ST, Kind.STX, Kind.ATOMIC, Kind.LOAD_ACQ,
                                 Kind.STORE_REL]))
    spec = draw(st.sampled_from(_spec(kind)))
    size = spec.size
    inside = draw(st.integers(0, 19)) != 0          # 1 in 20 accesses out of bounds
    if inside:
        aligned = kind in (Kind.ATOMIC, Kind.LOAD_ACQ, Kind.STORE_REL) or draw(st.booleans())
        off = draw(st.integers(0, MEM_SIZE // size - 1)) * size if aligned else \
            draw(st.integers(0, MEM_SIZE - size))
    else:
        off = draw(st.sampled_from([-size, -1, MEM_SIZE - size + 1, MEM_SIZE, 4096, -4096]))
    if kind in (Kind.LDX, Kind.LOAD_ACQ):
        return make(spec, dst=draw(st.sampled_from(VALUE_REGS)), src=base, off=off)
    if kind is Kind.ST:
        return make(spec, dst=base, off=off, imm=draw(imm32))
    src = draw(st.sampled_from([r for r in VALUE_REGS if r != 0] if spec.op == "cmpxchg"
                               else VALUE_REGS))
    return make(spec, dst=base, src=src, off=off)


@st.composite
def _body(draw, n: int, allow_jumps: bool = True):
    """Straight-line items with forward conditional jumps (as item lists)."""
    items: list = []
    for _ in range(n):
        choice = draw(st.sampled_from(["alu", "alu", "mem", "mem", "jcc"] if allow_jumps
                                      else ["alu", "alu", "mem", "mem"]))
        if choice == "alu":
            items.append(draw(value_alu()))
        elif choice == "mem":
            items.append(draw(mem_op()))
        else:
            spec = draw(st.sampled_from(_spec(Kind.JCC)))
            items.append(["jcc", dict(spec=spec, dst=draw(st.sampled_from(VALUE_REGS)),
                                      src=draw(st.sampled_from(VALUE_REGS)) if spec.use_reg else 0,
                                      imm=0 if spec.use_reg else draw(imm32)),
                          draw(st.integers(1, 4))])      # skip 1..4 items forward
    return items


def _lay_out(items: list) -> list:
    """Resolve ["jcc", proto, skip] items to instructions (targets clamp to the end)."""
    starts, pc = [], 0
    for it in items:
        starts.append(pc)
        pc += 2 if (not isinstance(it, list) and it.spec.wide) else 1
    end = pc
    out = []
    for idx, it in enumerate(items):
        if not isinstance(it, list):
            out.append(it)
            continue
        _, proto, skip = it
        tgt = idx + 1 + skip
        target = starts[tgt] if tgt < len(items) else end
        proto = dict(proto)
        spec = proto.pop("spec")
        out.append(make(spec, off=target - starts[idx] - 1, **proto))
    return out


@st.composite
def memory_programs(draw):
    """(instructions) of a program taking r1 = a MEM_SIZE-byte region."""
    main: list = [_mov(6, 1)]
    for r in VALUE_REGS + [9]:
        main.append(_lddw(r, draw(st.integers(0, (1 << 64) - 1))))
    main += _lay_out(draw(_body(draw(st.integers(1, 12)))))
    if draw(st.booleans()):          # a bounded loop, counted down in r9
        count = draw(st.integers(1, 20))
        body = _lay_out(draw(_body(draw(st.integers(1, 6)), allow_jumps=False)))
        main.append(_movi(9, count))
        main += body
        main.append(make(_spec(Kind.ALU, op="sub", is64=True, use_reg=False)[0], dst=9, imm=1))
        jne = _spec(Kind.JCC, op="jne", is64=True, use_reg=False)[0]
        main.append(make(jne, dst=9, imm=0, off=-(len(body) + 2 + sum(i.slots - 1 for i in body))))
    if draw(st.booleans()):          # a loop under may_goto
        main.append(_movi(9, draw(st.integers(1, 20))))
        main.append(make(_spec(Kind.JCOND)[0], off=3))
        main.append(make(_spec(Kind.ALU, op="sub", is64=True, use_reg=False)[0], dst=9, imm=1))
        main.append(make(_spec(Kind.JCC, op="jeq", is64=True, use_reg=False)[0], dst=9, imm=0, off=1))
        main.append(make(_spec(Kind.JA, is64=True)[0], off=-4))
    sub: list = []
    if draw(st.booleans()):          # a subprogram with its own frame
        main += [_mov(1, 2), _mov(2, 3), _mov(3, 6)]
        main.append(("call", None))
        main.append(_movi(3, 0))     # r3 held the pointer; it must not reach r0
        stx = _spec(Kind.STX, size=8)[0]
        ldx = _spec(Kind.LDX, size=8, signed=False)[0]
        sub = [make(stx, dst=10, src=1, off=-8), make(stx, dst=10, src=2, off=-16)]
        sub += [_mov(6, 3), _movi(3, 0)]
        sub += _lay_out(draw(_body(draw(st.integers(1, 6)))))
        sub += [make(ldx, dst=0, src=10, off=-8),
                make(_spec(Kind.ALU, op="add", is64=True, use_reg=True)[0], dst=0, src=2),
                make("exit")]
    # fold the value registers into r0
    xor = _spec(Kind.ALU, op="xor", is64=True, use_reg=True)[0]
    mul = _spec(Kind.ALU, op="mul", is64=True, use_reg=False)[0]
    for r in VALUE_REGS[1:] + [9]:
        main.append(make(mul, dst=0, imm=0x2545F491))
        main.append(make(xor, dst=0, src=r))
    main.append(make("exit"))
    # place the subprogram after main and resolve the call
    size = sum(1 if isinstance(i, tuple) else i.slots for i in main)
    out, pc = [], 0
    for it in main:
        if isinstance(it, tuple):
            out.append(make(_spec(Kind.CALL_LOCAL)[0], imm=size - pc - 1))
            pc += 1
        else:
            out.append(it)
            pc += it.slots
    return isa.renumber(out + sub)
