"""What the code generator's parts share: register conventions, struct pt_regs offsets,
operator tables, and how values are laid out."""
from __future__ import annotations

from . import types as T
from .types import Type

MAX_STACK = 512
EXPR_REGS = (7, 8, 9)           # r7-r9: callee-saved, they survive helper calls
# struct pt_regs on x86_64: byte offsets of the registers probes read
PT_REGS = {"di": 112, "si": 104, "dx": 96, "cx": 88, "r8": 72, "r9": 64, "ax": 80, "ip": 128,
           "sp": 152, "bp": 32, "bx": 40, "r10": 56, "r11": 48, "r12": 24, "r13": 16,
           "r14": 8, "r15": 0, "orig_ax": 120, "cs": 136, "flags": 144, "ss": 160}
ARG_REGS = ("di", "si", "dx", "cx", "r8", "r9")
REG_KINDS = ("int", "ptr", "ksym", "kstack", "probe", "timestamp", "username", "none")
CMP_OPS = {"==": ("jeq", "jeq"), "!=": ("jne", "jne"), "<": ("jlt", "jslt"),
           ">": ("jgt", "jsgt"), "<=": ("jle", "jsle"), ">=": ("jge", "jsge")}
NEGATE = {"jeq": "jne", "jne": "jeq", "jlt": "jge", "jge": "jlt", "jgt": "jle", "jle": "jgt",
          "jslt": "jsge", "jsge": "jslt", "jsgt": "jsle", "jsle": "jsgt"}
ARITH_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "%": "mod", "&": "and", "|": "or",
             "^": "xor", "<<": "lsh", ">>": "rsh"}


def is_reg(t: Type) -> bool:
    """Whether values of ``t`` are held in a register (else in a stack buffer)."""
    return t.kind in REG_KINDS


def access_step(left: int, *offsets: int) -> int:
    """The widest access (8, 4, 2, 1) that fits ``left`` bytes and is aligned at every
    offset (the verifier holds stack accesses to their alignment)."""
    for step in (8, 4, 2):
        if left >= step and all(o % step == 0 for o in offsets):
            return step
    return 1


def slot_type(t: Type) -> Type:
    """A tuple element as stored: integers (and other register values) as 8 bytes."""
    if is_reg(t):
        return T.int_t(8, t.signed)
    return t


def pointee_scale(t: Type) -> int:
    """What pointer arithmetic on ``t`` multiplies an integer by (C's rule)."""
    if t.kind == "ptr" and t.elem is not None and t.elem.size:
        return t.elem.size
    return 1
