"""The verifier log, byte for byte in Linux's format (kernel/bpf/log.c).

The log is a character buffer with an end position, like the kernel's: at
log level 1 the verifier rewinds it to where a branch was pushed whenever it
abandons a finished path, so only the failing path survives.  Rewinding and
then writing over the tail reproduces the kernel's output exactly, including
its quirks (a state line that continues a jump line after a rewind).
"""
from __future__ import annotations

import bisect
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

    State lines are most of a log and, at level 1, most of them are rewound
    away when their path ends, so they are kept as snapshots and formatted
    only if they survive (:meth:`state`).  While lazy, the log is a list of
    pieces and a position (``end``, a mark for :meth:`reset`) counts a text
    piece by its bytes and a snapshot by an upper bound of its length: a
    negative number, so it is never mistaken for a byte offset.  Once the
    bound says the log could outgrow twice ``size`` -- where the rotation
    needs exact byte positions -- the pending snapshots are formatted; when
    the exact length does outgrow it, the log becomes the kernel's byte
    buffer for good (positions are byte offsets again, and a lazy mark is
    translated through the pieces' boundaries).
    """
    __slots__ = ("level", "buf", "_end", "start", "size", "truncated", "lazy", "pieces",
                 "lcum", "rcum", "fp", "conv")

    def __init__(self, level: int = 0, size: int = DEFAULT_LOG_SIZE):
        self.level = level
        self.buf = bytearray()
        self.start = 0           # absolute position of buf[0]
        self._end = 0
        self.size = size
        self.truncated = False
        self.lazy = True
        self.pieces: list = []   # str, or a _Snapshot not yet formatted
        self.lcum: list[int] = []    # each piece's end in lazy positions
        self.rcum: list[int] = []    # each formatted piece's end in bytes (pieces[:fp])
        self.fp = 0              # pieces[:fp] are all formatted
        self.conv = None         # (lcum, rcum) when the log stopped being lazy

    @property
    def end(self) -> int:
        if self.lazy:
            return -self.lcum[-1] if self.lcum else 0
        return self._end

    def __call__(self, text: str) -> None:
        if not self.level or not text:
            return
        if self.lazy:
            lcum = self.lcum
            le = (lcum[-1] if lcum else 0) + (len(text) if text.isascii() else
                                              len(text.encode()))
            self.pieces.append(text)
            lcum.append(le)
            if (le if not self.fp else self._bound(le)) > 2 * self.size:
                self._flush()
            return
        self._write(text)

    def _write(self, text: str) -> None:
        b = text.encode()
        n = len(b)
        rel = self._end - self.start
        self.buf[rel:rel + n] = b
        self._end += n
        if len(self.buf) > 2 * self.size:
            cut = len(self.buf) - self.size
            del self.buf[:cut]
            self.start += cut
            self.truncated = True

    def state(self, state, frameno: int, print_all: bool, scratched_regs: int = -1,
              scratched_stack: int = -1) -> None:
        """print_verifier_state: the state line (and its newline), formatted lazily."""
        if not self.level:
            return
        snap = _Snapshot(state, frameno, print_all, scratched_regs, scratched_stack)
        if not self.lazy:
            self._write(snap.render())
            return
        lcum = self.lcum
        le = (lcum[-1] if lcum else 0) + snap.bound
        self.pieces.append(snap)
        lcum.append(le)
        if self._bound(le) > 2 * self.size:
            self._flush()

    def _bound(self, le: int) -> int:
        """An upper bound of the log's length in bytes, were it formatted now."""
        fp = self.fp
        if not fp:
            return le
        return self.rcum[fp - 1] + le - self.lcum[fp - 1]

    def _flush(self) -> None:
        pieces, rcum = self.pieces, self.rcum
        r = rcum[self.fp - 1] if self.fp else 0
        del rcum[self.fp:]
        for k in range(self.fp, len(pieces)):
            p = pieces[k]
            if type(p) is not str:
                p = pieces[k] = p.render()
            r += len(p) if p.isascii() else len(p.encode())
            rcum.append(r)
        self.fp = len(pieces)
        if r > 2 * self.size:
            # the exact length outgrew the rotation threshold with this write: from
            # here on, the kernel's byte buffer
            self.buf = bytearray("".join(pieces).encode())
            self._end = len(self.buf)
            self.conv = (self.lcum, rcum)
            self.lazy = False
            self.pieces = []
            self.lcum = []
            self.rcum = []
            self.fp = 0
            if len(self.buf) > 2 * self.size:
                cut = len(self.buf) - self.size
                del self.buf[:cut]
                self.start += cut
                self.truncated = True

    def _real(self, pos: int) -> int:
        """A lazy mark as a byte offset, after the log stopped being lazy."""
        m = -pos
        lcum, rcum = self.conv
        k = bisect.bisect_left(lcum, m)
        if k >= len(lcum):
            return rcum[-1] + m - lcum[-1] if lcum else m
        lo_l = lcum[k - 1] if k else 0
        lo_r = rcum[k - 1] if k else 0
        return min(lo_r + (m - lo_l), rcum[k])

    def reset(self, pos: int) -> None:
        if not self.level:
            return
        if not self.lazy:
            if pos < 0:
                pos = self._real(pos)
            if pos <= self._end:
                self._end = max(pos, self.start)
            return
        m = -pos
        lcum, pieces = self.lcum, self.pieces
        if not lcum or m > lcum[-1]:
            return
        while len(lcum) > 1 and lcum[-2] >= m:
            lcum.pop()
            pieces.pop()
        if len(lcum) == 1 and m <= 0:
            lcum.pop()
            pieces.pop()
        if lcum and lcum[-1] > m:
            # a cut inside the last piece (the newline of an instruction line)
            k = len(pieces) - 1
            p = pieces[k]
            if type(p) is not str:
                p = p.render()
            keep = m - (lcum[k - 1] if k else 0)
            if p.isascii():
                p = p[:keep]
            else:
                p = p.encode()[:keep].decode(errors="replace")
            pieces[k] = p
            lcum[k] = (lcum[k - 1] if k else 0) + (len(p) if p.isascii() else len(p.encode()))
            if self.fp > k:
                self.fp = k
        if self.fp > len(pieces):
            self.fp = len(pieces)
        del self.rcum[self.fp:]

    def unwrite(self, n: int) -> None:
        """Take back the last ``n`` bytes written (the newline an instruction's state
        line continues)."""
        if self.lazy:
            pieces = self.pieces
            p = pieces[-1] if pieces else None
            if type(p) is str and len(p) > n and p.isascii():
                pieces[-1] = p[:-n]
                self.lcum[-1] -= n
                if self.fp == len(pieces):
                    self.rcum[-1] -= n
                return
            self.reset(self.end + n)      # lazy marks count down
        else:
            self.reset(self._end - n)

    def getvalue(self) -> str:
        if self.lazy:
            text = "".join(p if type(p) is str else p.render() for p in self.pieces)
            if text.isascii():
                if len(text) > self.size:
                    self.truncated = True
                    return text[len(text) - self.size:]
                return text
            data = text.encode()
        else:
            data = self.buf[:self._end - self.start]
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


def _s32v(v: int) -> int:
    return v if -0x8000 <= v <= 0x7FFF else v & U32


def scalar_ranges(b) -> list[str]:
    """print_scalar_ranges: the non-default bounds, equal values merged."""
    vals = (b.smin_value, b.smax_value, b.umin_value, b.umax_value,
            _s32v(b.s32_min_value), _s32v(b.s32_max_value), b.u32_min_value, b.u32_max_value)
    omit = [b.smin_value == S64_MIN, b.smax_value == S64_MAX, b.umin_value == 0,
            b.umax_value == U64, b.s32_min_value == S32_MIN, b.s32_max_value == S32_MAX,
            b.u32_min_value == 0, b.u32_max_value == U32]
    out = []
    for i in range(8):
        if omit[i]:
            continue
        val = vals[i]
        signed = _SIGNED[i]
        neg1 = signed and val < 0
        text = _RANGE_NAMES[i]
        for j in range(i + 2, 8, 2):
            if omit[j]:
                continue
            val2 = vals[j]
            if (val2 & U64) != (val & U64) or (_SIGNED[j] and val2 < 0) != neg1:
                continue
            omit[j] = True
            text += _RANGE_NAMES[j]
        out.append(text + (snum(val) if signed else unum(val)))
    return out


_RANGE_NAMES = ("smin=", "smax=", "umin=", "umax=", "smin32=", "smax32=", "umin32=", "umax32=")
_SIGNED = (True, True, False, False, True, True, False, False)


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
    if t == SCALAR_VALUE:
        if not vo.mask:
            return out + snum(_sval(vo.value))
        return _format_scalar(reg.precise, b, reg.id, reg.ref_obj_id, reg.off)
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


def _format_scalar(precise: bool, b, rid: int, ref_obj_id: int, off: int) -> str:
    """format_reg of a scalar that is not a constant."""
    attrs = []
    if rid:
        a = f"id={rid & ~BPF_ADD_CONST}"
        if rid & BPF_ADD_CONST:
            a += f"{off:+d}"
        attrs.append(a)
    if ref_obj_id:
        attrs.append(f"ref_obj_id={ref_obj_id}")
    attrs.extend(scalar_ranges(b))
    vo = b.var_off
    if vo.mask != U64:
        attrs.append(f"var_off={tnum_str(vo)}")
    return ("Pscalar(" if precise else "scalar(") + ",".join(attrs) + ")"


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
    return _Snapshot(state, frameno, print_all, scratched_regs, scratched_stack).render()[:-1]


_REG_PREFIX = tuple(f" R{i}=" for i in range(16))
# format_reg's output is at most this long, a map's name aside (see _Snapshot.bound)
_REG_BOUND = 1024


class _Snapshot:
    """What print_verifier_state prints of a state, taken when it is printed and
    formatted (:meth:`render`) only if the log keeps it: the printed registers are
    copied (the state goes on changing), the rest is text already.  ``bound`` is an
    upper bound of the rendered length in bytes."""
    __slots__ = ("items", "frameno", "bound")

    def __init__(self, state, frameno: int, print_all: bool, scratched_regs: int,
                 scratched_stack: int):
        f = state.frames[frameno]
        fno = f.frameno
        self.frameno = fno
        items: list = []
        bound = 1
        if fno:
            items.append(f" frame{fno}:")
            bound += 16
        regs = f.regs
        # only the scratched registers and slots are printed: walk their bits
        mask = (1 << len(regs)) - 1
        if not print_all:
            mask &= scratched_regs
        while mask:
            low = mask & -mask
            mask ^= low
            i = low.bit_length() - 1
            reg = regs[i]
            if not reg.type:
                continue
            t = reg.type
            if (t == SCALAR_VALUE and not reg.bounds.var_off.mask) or \
                    base_type(t) == PTR_TO_BTF_ID:
                # a constant is as quick to format as to copy; a BTF type name has no
                # length limit here: formatted now
                t = _REG_PREFIX[i] + format_reg(reg, fno)
                items.append(t)
                bound += len(t.encode())
                continue
            if t == SCALAR_VALUE:
                # what format_reg reads of a scalar (Bounds are immutable)
                items.append((_REG_PREFIX[i], reg.precise, reg.bounds, reg.id,
                              reg.ref_obj_id, reg.off))
                bound += 5 + _REG_BOUND
                continue
            items.append((_REG_PREFIX[i], reg.copy()))
            bound += 5 + _REG_BOUND
            m = reg.map
            if m is not None and m.name:
                bound += len(m.name.encode())
        stack = f.stack
        n = len(stack)
        mask = (1 << n) - 1
        if not print_all:
            mask &= scratched_stack
        nxt = 0              # a dynptr's second slot is printed with its first
        while mask:
            low = mask & -mask
            mask ^= low
            i = low.bit_length() - 1
            if i < nxt:
                continue
            slot = stack[i]
            types = slot.slot_type
            if types == "????????":
                continue
            last = types[7]
            if last == STACK_SPILL:
                j = types.index(STACK_SPILL)
                reg = slot.reg()
                prefix = f" fp{(-i - 1) * 8}={types[:j]}"
                if base_type(reg.type) == PTR_TO_BTF_ID:
                    t = prefix + format_reg(reg, fno)
                    items.append(t)
                    bound += len(t.encode())
                else:
                    items.append((prefix, reg.copy()))
                    bound += len(prefix) + _REG_BOUND
                    m = reg.map
                    if m is not None and m.name:
                        bound += len(m.name.encode())
            elif last == STACK_DYNPTR:
                i += 1
                nxt = i + 1
                slot = stack[i] if i < n else slot
                reg = slot.reg()
                attrs = []
                if reg.id:
                    attrs.append(f"id={reg.id}")
                if reg.ref_obj_id:
                    attrs.append(f"ref_id={reg.ref_obj_id}")
                dt = reg.dynptr[0] if reg.dynptr else "<invalid>"
                t = f" fp{(-i - 1) * 8}=dynptr_{dt}(" + ",".join(attrs) + ")"
                items.append(t)
                bound += len(t.encode())
            elif last == STACK_ITER:
                reg = slot.reg()
                if reg.ref_obj_id:
                    name, st, depth = reg.iter or ("<invalid>", "<invalid>", 0)
                    t = (f" fp{(-i - 1) * 8}=iter_{name}(ref_id={reg.ref_obj_id},"
                         f"state={st},depth={depth})")
                    items.append(t)
                    bound += len(t.encode())
            else:
                t = f" fp{(-i - 1) * 8}={types}"
                items.append(t)
                bound += len(t)
        refs = state.refs
        if refs and refs[0].id:
            t = " refs=" + ",".join(str(r.id) for r in refs if r.id)
            items.append(t)
            bound += len(t)
        if f.in_callback_fn:
            items.append(" cb")
            bound += 3
        if f.in_async_callback_fn:
            items.append(" async_cb")
            bound += 9
        self.items = items
        self.bound = bound

    def render(self) -> str:
        fno = self.frameno
        return "".join([it if type(it) is str else
                        it[0] + format_reg(it[1], fno) if len(it) == 2 else
                        it[0] + _format_scalar(it[1], it[2], it[3], it[4], it[5])
                        for it in self.items]) + "\n"


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
