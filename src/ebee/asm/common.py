"""What both assembler dialects share: numbers, pending instructions, labels."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import AsmError
from ..isa import Instruction, Kind, OpSpec, make

UNUM_RE = r"(?:0[xX][0-9a-fA-F]+|\d+)"
NUM_RE = r"[-+]?" + UNUM_RE
LABEL_RE = r"[A-Za-z_.$][\w.$]*"


def parse_int(text: str) -> int:
    t = text.strip().replace(" ", "")
    neg = t.startswith("-")
    t = t.lstrip("+-")
    if t.lower().startswith("0x"):
        v = int(t, 16)
    elif t.isdigit():
        v = int(t, 10)
    else:
        raise ValueError(f"not a number: {text!r}")
    return -v if neg else v


def is_hex(text: str) -> bool:
    return "0x" in text.lower()


@dataclass
class Pending:
    """An instruction whose jump/call target may still be a label."""
    spec: OpSpec
    line: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    imm_hi: int = 0
    label: str | None = None        # symbolic target
    target_field: str = "off"       # which field gets the pc-relative target
    fields: dict = field(default_factory=dict)


class Program:
    """Collects pending instructions and labels, then links them."""

    def __init__(self, file: str | None):
        self.file = file
        self.items: list[Pending] = []
        self.labels: dict[str, int] = {}      # label -> index into items
        self.label_lines: dict[str, int] = {}

    def error(self, line: int, msg: str) -> AsmError:
        return AsmError(msg, file=self.file, line=line)

    def add_label(self, name: str, line: int) -> None:
        if name in self.labels:
            raise self.error(line, f"duplicate label '{name}' (first defined on line "
                                   f"{self.label_lines[name]})")
        self.labels[name] = len(self.items)
        self.label_lines[name] = line

    def add(self, p: Pending) -> None:
        self.items.append(p)

    def link(self, default_labels: dict[str, int] | None = None) -> list[Instruction]:
        pcs = []
        pc = 0
        for p in self.items:
            pcs.append(pc)
            pc += p.spec.slots
        end = pc

        def label_pc(name: str, line: int) -> int:
            idx = self.labels.get(name)
            if idx is None and default_labels:
                idx = default_labels.get(name)
            if idx is None:
                raise self.error(line, f"undefined label '{name}'")
            return pcs[idx] if idx < len(pcs) else end

        out = []
        for p, pc in zip(self.items, pcs):
            vals = dict(dst=p.dst, src=p.src, off=p.off, imm=p.imm, imm_hi=p.imm_hi)
            if p.label is not None:
                vals[p.target_field] = label_pc(p.label, p.line) - pc - 1
            try:
                insn = make(p.spec, pc=pc, **vals)
            except ValueError as e:
                raise self.error(p.line, str(e)) from None
            if p.label is not None:
                object.__setattr__(insn, "label", p.label)
            out.append(insn)
        if not out:
            raise AsmError("no instructions", file=self.file)
        return out


def check_range(prog: Program, line: int, value: int, bits: int, what: str, *,
                hex_spelling: bool = False) -> int:
    """Immediates/offsets accept the signed range, and for hex also the unsigned one."""
    lo = -(1 << (bits - 1))
    hi = (1 << bits) - 1 if hex_spelling else (1 << (bits - 1)) - 1
    if not lo <= value <= hi:
        raise prog.error(line, f"{what} {value} out of range for {bits} bits")
    return value


JUMP_KINDS = (Kind.JA, Kind.JCC, Kind.JCOND)
_WS = re.compile(r"\s+")


def squeeze(text: str) -> str:
    return _WS.sub(" ", text).strip()
