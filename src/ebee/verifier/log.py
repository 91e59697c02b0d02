"""The verifier log, byte for byte in Linux's format (kernel/bpf/log.c).

The log is a character buffer with an end position, like the kernel's: at
log level 1 the verifier rewinds it to where a branch was pushed whenever it
abandons a finished path, so only the failing path survives.  Rewinding and
then writing over the tail reproduces the kernel's output exactly, including
its quirks (a state line that continues a jump line after a rewind).
"""
from __future__ import annotations

import functools

from .. import isa
from ..isa import format_kernel
from ..btf import BTF
from ..isa import Instruction, Kind
from .bounds import S32_MAX, S32_MIN, S64_MAX, S64_MIN
from .tnum import U32, U64
from .types import (BPF_ADD_CONST, CONST_PTR_TO_DYNPTR, CONST_PTR_TO_MAP, NON_OWN_REF,
                    PTR_TO_ARENA, PTR_TO_BTF_ID, PTR_TO_MAP_KEY, PTR_TO_MAP_VALUE,
                    PTR_TO_MEM, PTR_TO_STACK, SCALAR_VALUE, STACK_DYNPTR, STACK_ITER,
                    STACK_SPILL, base_type, reg_type_str, type_is_pkt_pointer)

LOG_LEVEL1 = 1
LOG_LEVEL2 = 2
LOG_STATS = 4


DEFAULT_LOG_SIZE = 16 << 20


class Log:
    """An append/rewind character buffer; ``level`` 0 records nothing.

    Like the kernel's rotating log, at most ``size`` bytes are kept: when a
    log outgrows it, its beginning is dropped (``truncated`` is set).
    Positions are absolute byte offsets, as the kernel's ``end_pos``.
    """
    __slots__ = ("level", "buf", "end", "start", "size", "truncated")

    def __init__(self, level: int = 0, size: int = DEFAULT_LOG_SIZE):
        self.level = level
        self.buf = bytearray()
        self.start = 0           # absolute position of buf[0]
        self.end = 0
        self.size = size
        self.truncated = False

    def __call__(self, text: str) -> None:
        if not self.level:
            return
        b = text.encode()
        n = len(b)
        rel = self.end - self.start
        self.buf[rel:rel + n] = b
        self.end += n
        if len(self.buf) > 2 * self.size:
            cut = len(self.buf) - self.size
            del self.buf[:cut]
            self.start += cut
            self.truncated = True

    def reset(self, pos: int) -> None:
        if self.level and pos <= self.end:
            self.end = max(pos, self.start)

    def getvalue(self) -> str:
        data = self.buf[:self.end - self.start]
        if len(data) > self.size:
            data = data[len(data) - self.size:]
            self.truncated = True
        return data.decode(errors="replace")


# ---------------------------------------------------------------------------
# numbers


def unum(v: int) -> str:
    v &= U64
    return str(v) if v <= 0xFFFF else f"{v:#x}"


def snum(v: int) -> str:
    if -0x8000 <= v <= 0x7FFF:
        return str(v)
    return f"{v & U64:#x}"


def tnum_str(t) -> str:
    if not t.mask:
        return unum(t.value)
    return f"({t.value:#x}; {t.mask:#x})"


def scalar_ranges(b) -> list[str]:
    """print_scalar_ranges: the non-default bounds, equal values merged."""
    def s32v(v):
        return v if -0x8000 <= v <= 0x7FFF else v & U32
    items = [
        ["smin", b.smin_value, b.smin_value == S64_MIN],
        ["smax", b.smax_value, b.smax_value == S64_MAX],
        ["umin", b.umin_value, b.umin_value == 0],
        ["umax", b.umax_value, b.umax_value == U64],
        ["smin32", s32v(b.s32_min_value), b.s32_min_value == S32_MIN],
        ["smax32", s32v(b.s32_max_value), b.s32_max_value == S32_MAX],
        ["umin32", b.u32_min_value, b.u32_min_value == 0],
        ["umax32", b.u32_max_value, b.u32_max_value == U32],
    ]
    out = []
    n = len(items)
    for i in range(n):
        name, val, omit = items[i]
        if omit:
            continue
        neg1 = name[0] == "s" and val < 0
        text = name + "="
        for j in range(i + 2, n, 2):
            name2, val2, omit2 = items[j]
            if omit2 or (val2 & U64) != (val & U64):
                continue
            neg2 = name2[0] == "s" and val2 < 0
            if neg2 != neg1:
                continue
            items[j][2] = True
            text += name2 + "="
        text += snum(val) if name[0] == "s" else unum(val)
        out.append(text)
    return out


# ---------------------------------------------------------------------------
# registers and states


def format_reg(reg, frameno: int) -> str:
    """print_reg_state: ``ctx()``, ``fp-8``, ``scalar(id=2,umax=255,var_off=(0x0; 0xff))``."""
    t = reg.type
    b = reg.bounds
    vo = b.var_off
    out = ""
    if t == SCALAR_VALUE and reg.precise:
        out = "P"
    if t == SCALAR_VALUE and not vo.mask:
        return out + snum(_sval(vo.value))
    out += reg_type_str(t)
    bt = base_type(t)
    if bt == PTR_TO_ARENA:
        return out
    if t == PTR_TO_STACK:
        if frameno != reg.frameno:
            out += f"[{reg.frameno}]"
        if not vo.mask:
            return out + snum(_sval(vo.value) + reg.off)
    if bt == PTR_TO_BTF_ID:
        out += reg.btf_name() if hasattr(reg, "btf_name") else _btf_name(reg)
    attrs = []
    if reg.id:
        a = f"id={reg.id & ~BPF_ADD_CONST}"
        if reg.id & BPF_ADD_CONST:
            a += f"{reg.off:+d}"
        attrs.append(a)
    if reg.ref_obj_id:
        attrs.append(f"ref_obj_id={reg.ref_obj_id}")
    if t & NON_OWN_REF:
        attrs.append("non_own_ref")
    if bt in (CONST_PTR_TO_MAP, PTR_TO_MAP_KEY, PTR_TO_MAP_VALUE) and reg.map is not None:
        m = reg.map
        name = m.name or ""
        if name:
            attrs.append(f"map={name}")
        attrs.append(f"ks={m.key_size},vs={m.value_size}")
    if t != SCALAR_VALUE and reg.off:
        attrs.append(f"off={snum(reg.off)}")
    if type_is_pkt_pointer(t):
        attrs.append(f"r={unum(reg.range)}")
    if bt == PTR_TO_MEM:
        attrs.append(f"sz={unum(reg.mem_size)}")
    if t == CONST_PTR_TO_DYNPTR and reg.dynptr:
        attrs.append(f"type={reg.dynptr[0]}")
    if not vo.mask:
        if vo.value:
            attrs.append(f"imm={snum(_sval(vo.value))}")
    else:
        attrs.extend(scalar_ranges(b))
        if vo.mask != U64:
            attrs.append(f"var_off={tnum_str(vo)}")
    return out + "(" + ",".join(attrs) + ")"


def _sval(v: int) -> int:
    v &= U64
    return v - (1 << 64) if v >> 63 else v


def _btf_name(reg) -> str:
    btf = reg.btf
    if btf is None:
        return ""
    try:
        return btf[reg.btf_id].name or ""
    except Exception:
        return ""


def format_state(state, frameno: int, print_all: bool, scratched_regs: int = -1,
                 scratched_stack: int = -1) -> str:
    """print_verifier_state (without the trailing newline)."""
    f = state.frames[frameno]
    out = []
    if f.frameno:
        out.append(f" frame{f.frameno}:")
    for i, reg in enumerate(f.regs):
        if reg.type == 0:
            continue
        if not print_all and not (scratched_regs >> i) & 1:
            continue
        out.append(f" R{i}={format_reg(reg, f.frameno)}")
    i = 0
    n = len(f.stack)
    while i < n:
        slot = f.stack[i]
        if not print_all and not (scratched_stack >> i) & 1:
            i += 1
            continue
        types = slot.slot_type
        if types == "????????":
            i += 1
            continue
        last = types[7]
        if last == STACK_SPILL:
            j = types.index(STACK_SPILL)
            out.append(f" fp{(-i - 1) * 8}={types[:j]}{format_reg(slot.reg(), f.frameno)}")
        elif last == STACK_DYNPTR:
            i += 1
            slot = f.stack[i] if i < n else slot
            reg = slot.reg()
            attrs = []
            if reg.id:
                attrs.append(f"id={reg.id}")
            if reg.ref_obj_id:
                attrs.append(f"ref_id={reg.ref_obj_id}")
            dt = reg.dynptr[0] if reg.dynptr else "<invalid>"
            out.append(f" fp{(-i - 1) * 8}=dynptr_{dt}(" + ",".join(attrs) + ")")
        elif last == STACK_ITER:
            reg = slot.reg()
            if reg.ref_obj_id:
                name, st, depth = reg.iter or ("<invalid>", "<invalid>", 0)
                out.append(f" fp{(-i - 1) * 8}=iter_{name}(ref_id={reg.ref_obj_id},"
                           f"state={st},depth={depth})")
        else:
            out.append(f" fp{(-i - 1) * 8}={types}")
        i += 1
    refs = [r.id for r in state.refs if r.id]
    if refs and state.refs[0].id:
        out.append(" refs=" + ",".join(str(r) for r in refs))
    if f.in_callback_fn:
        out.append(" cb")
    if f.in_async_callback_fn:
        out.append(" async_cb")
    return "".join(out)


def vlog_alignment(pos: int) -> int:
    """Spaces that put the ``;`` of a state line after an instruction in column 40."""
    v = max(pos + 4, 40)
    return ((v + 7) // 8) * 8 - pos - 1


def format_insn(env, insn) -> str:
    """print_bpf_insn: ``(61) r2 = *(u32 *)(r1 +0)`` (pc prefix added by the caller)."""
    text = insn.text
    if text is None:
        text = _insn_text(env, insn)
        insn.text = text
    return text


@functools.lru_cache(maxsize=256)
def kernel_btf_id(name: str) -> int | None:
    """The id of kernel function ``name`` in the host's vmlinux BTF (what Linux's log
    prints after a kfunc's name), or None without one."""
    try:
        return BTF.load_vmlinux().find(name, "FUNC").id
    except Exception:
        return None


def _insn_text(env, insn) -> str:
    spec = insn.spec
    if spec is None:
        cands = isa.BY_OPCODE.get(insn.code, ())
        spec = cands[0] if cands else None
    if spec is None:
        return f"({insn.code:02x}) unknown"
    i = Instruction(spec, insn.dst, insn.src, insn.off, insn.imm, insn.imm_hi, insn.idx)
    if i.kind is Kind.CALL_KFUNC and not insn.off:
        # Linux prints a kfunc's id in vmlinux BTF; ebee's registry ids stand in for
        # it only where there is no vmlinux BTF to look the name up in
        ks = getattr(env, "kfuncs", None)
        name = ks.name(insn.imm) if ks is not None and hasattr(ks, "name") else None
        kid = kernel_btf_id(name) if name else None
        if kid is not None:
            i = Instruction(spec, insn.dst, insn.src, insn.off, kid, insn.imm_hi, insn.idx)

    def imm(ins):
        if ins.src in (1, 2):      # map fd / map value: the kernel prints the map's address
            if not env.allow_ptr_leaks:
                return "0x0"       # ... to those allowed to see kernel pointers only
            m = env.aux[insn.idx].map_ptr if insn.idx < len(env.aux) else None
            addr = m.addr if m is not None else None
            if isinstance(addr, int):
                return f"{addr + (ins.imm_hi & 0xFFFFFFFF if ins.src == 2 else 0):#x}"
            return None
        return f"{ins.imm64:#x}"

    def call(ins):
        if ins.kind is Kind.CALL_KFUNC:
            ks = getattr(env, "kfuncs", None)
            return ks.name(insn.imm, insn.off) if ks is not None and hasattr(ks, "name") \
                else None
        return None
    return f"({insn.code:02x}) " + format_kernel(i, imm=imm, call=call)
