"""Contexts of tracing programs, and synthetic events to run them on.

- kprobe/uprobe: ``struct pt_regs`` (x86_64) built from argument values with the
  SysV calling convention (:func:`pt_regs`).
- tracepoint: the event's record, laid out from its format description, read
  from tracefs (``/sys/kernel/tracing/events/*/*/format``) when present and from
  the formats bundled with ebee otherwise (:class:`TracepointFormat`).
- raw tracepoint / tp_btf / fentry / fexit / lsm: an array of u64 arguments.
- perf_event: ``bpf_perf_event_data`` (regs, sample_period, addr).
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..uapi import MAX_BPF_FUNC_ARGS
from .ctx import Access, CtxRules, CtxStruct, Field, RegType
from ..btf import BTF

# struct pt_regs on x86_64, in order
PT_REGS_X86_64 = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx",
                  "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss")
PT_REGS_SIZE = 8 * len(PT_REGS_X86_64)
ARG_REGS = ("di", "si", "dx", "cx", "r8", "r9")      # PT_REGS_PARM1..6
SYSCALL_ARG_REGS = ("di", "si", "dx", "r10", "r8", "r9")
PERF_MAX_TRACE_SIZE = 8192
TRACEFS = (Path("/sys/kernel/tracing/events"), Path("/sys/kernel/debug/tracing/events"))

PT_REGS = CtxStruct("pt_regs", PT_REGS_SIZE, tuple(
    Field(n, 8 * k, 8, any_size=True) for k, n in enumerate(PT_REGS_X86_64)))


class _ReadOnlyAnySize(CtxRules):
    """kprobe / tracepoint / raw_tp rules: aligned reads anywhere in [lo, hi)."""

    def __init__(self, struct_: CtxStruct, lo: int, hi: int, max_size: int = 8):
        super().__init__(struct_)
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)
        object.__setattr__(self, "_max", max_size)

    def access(self, off: int, size: int, write: bool, *, bpf_capable: bool = True):
        if write or off < self._lo or off + size > self._hi or size not in (1, 2, 4, 8) \
                or size > self._max or off % size:
            return None
        f = self.struct.field_at(off) or Field("data", self._lo, self._hi - self._lo, any_size=True)
        return Access(f, off, size, False, RegType.SCALAR_VALUE, size)


PT_REGS_RULES = _ReadOnlyAnySize(PT_REGS, 0, PT_REGS_SIZE)
TP_RECORD = CtxStruct("trace_event_raw", PERF_MAX_TRACE_SIZE,
                      (Field("record", 0, PERF_MAX_TRACE_SIZE, any_size=True),))
# tp_prog_is_valid_access(): the common header (first 8 bytes) is off limits
TRACEPOINT_RULES = _ReadOnlyAnySize(TP_RECORD, 8, PERF_MAX_TRACE_SIZE)
RAW_TP_ARGS = CtxStruct("bpf_raw_tracepoint_args", 8 * MAX_BPF_FUNC_ARGS, tuple(
    Field(f"args{k}", 8 * k, 8, any_size=True) for k in range(MAX_BPF_FUNC_ARGS)))
RAW_TP_RULES = _ReadOnlyAnySize(RAW_TP_ARGS, 0, 8 * MAX_BPF_FUNC_ARGS)


class _RawTpWritable(_ReadOnlyAnySize):
    """raw_tp_writable_prog_is_valid_access: args[0] is the tracepoint's writable
    buffer (PTR_TO_TP_BUFFER), read whole."""

    def access(self, off: int, size: int, write: bool, *, bpf_capable: bool = True):
        acc = super().access(off, size, write)
        if off != 0 or acc is None:
            return acc
        if size != 8:
            return None
        return Access(acc.field, off, size, False, RegType.PTR_TO_TP_BUFFER, size)


RAW_TP_WRITABLE_RULES = _RawTpWritable(RAW_TP_ARGS, 0, 8 * MAX_BPF_FUNC_ARGS)


def pt_regs(*args: int, syscall: bool = False, **regs: int) -> bytes:
    """A ``struct pt_regs`` with function (or syscall) arguments in their registers.

    ``pt_regs(3, 0x1000)`` puts 3 in di and 0x1000 in si, as PT_REGS_PARM1/2 read them;
    keyword arguments set registers by name (``ip=..., ax=...`` -- ax is PT_REGS_RC).
    """
    names = SYSCALL_ARG_REGS if syscall else ARG_REGS
    if len(args) > len(names):
        raise ValueError(f"at most {len(names)} register arguments")
    values = dict.fromkeys(PT_REGS_X86_64, 0)
    for name, v in zip(names, args):
        values[name] = v
    for name, v in regs.items():
        if name not in values:
            raise ValueError(f"pt_regs has no register {name!r}")
        values[name] = v
    return b"".join(struct.pack("<Q", values[n] & 0xFFFFFFFFFFFFFFFF) for n in PT_REGS_X86_64)


def u64_args(*args: int) -> bytes:
    """The u64 argument array of raw tracepoints, tp_btf, fentry/fexit and lsm programs."""
    if len(args) > MAX_BPF_FUNC_ARGS:
        raise ValueError(f"at most {MAX_BPF_FUNC_ARGS} arguments")
    return b"".join(struct.pack("<Q", a & 0xFFFFFFFFFFFFFFFF) for a in args)


# -- tracepoint formats ------------------------------------------------------------------

@dataclass(frozen=True)
class TpField:
    ctype: str
    name: str
    offset: int
    size: int
    signed: bool

    @property
    def array_len(self) -> int | None:
        m = re.search(r"\[(\d+)\]$", self.name)
        return int(m.group(1)) if m else None

    @property
    def base_name(self) -> str:
        return self.name.split("[", 1)[0]


@dataclass(frozen=True)
class TracepointFormat:
    """A tracepoint's record layout (the ``format`` file of tracefs)."""
    category: str
    name: str
    id: int
    fields: tuple[TpField, ...]
    source: str

    @property
    def size(self) -> int:
        return max((f.offset + f.size for f in self.fields), default=8)

    def field(self, name: str) -> TpField:
        for f in self.fields:
            if f.base_name == name:
                return f
        raise KeyError(f"{self.category}:{self.name} has no field {name!r} "
                       f"(fields: {', '.join(f.base_name for f in self.fields)})")

    def record(self, values: dict[str, int | bytes | str] | None = None, *, pid: int = 0) -> bytes:
        """A record with the given field values (others zero), as the tracepoint emits it."""
        buf = bytearray(self.size)
        struct.pack_into("<H", buf, 0, self.id & 0xFFFF)
        struct.pack_into("<i", buf, 4, pid)
        for key, v in (values or {}).items():
            f = self.field(key)
            if isinstance(v, str):
                v = v.encode()
            if isinstance(v, (bytes, bytearray)):
                if len(v) > f.size:
                    raise ValueError(f"{key}: {len(v)} bytes do not fit {f.size}")
                buf[f.offset:f.offset + len(v)] = v
            else:
                lo = -(1 << (8 * f.size - 1)) if f.signed else 0
                if f.size not in (1, 2, 4, 8):
                    raise ValueError(f"{key} is a {f.size}-byte field; give bytes")
                v &= (1 << (8 * f.size)) - 1
                del lo
                buf[f.offset:f.offset + f.size] = v.to_bytes(f.size, "little")
        return bytes(buf)


_FIELD = re.compile(r"field:(?P<decl>.+?);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
                    r"\s*signed:(?P<signed>\d+);")


def parse_format(text: str, source: str = "<format>") -> TracepointFormat:
    """Parse the text of a tracefs ``format`` file."""
    name = re.search(r"^name:\s*(\S+)", text, re.M)
    tid = re.search(r"^ID:\s*(\d+)", text, re.M)
    if not name or not tid:
        raise ValueError(f"{source}: not a tracepoint format (no name/ID line)")
    fields = []
    for m in _FIELD.finditer(text):
        decl = m.group("decl").strip()
        mm = re.match(r"(.*?)([A-Za-z_]\w*(\[\d*\])?)$", decl)
        ctype, fname = (mm.group(1).strip(), mm.group(2)) if mm else ("", decl)
        fields.append(TpField(ctype, fname, int(m.group("off")), int(m.group("size")),
                              m.group("signed") == "1"))
    category = source.split("/")[-3] if source.count("/") >= 2 else ""
    return TracepointFormat(category, name.group(1), int(tid.group(1)), tuple(fields), source)


def _bundled() -> dict[str, str]:
    text = resources.files(__package__).joinpath("data/tracepoints.format").read_text()
    out = {}
    for chunk in text.split("### ")[1:]:
        head, _, body = chunk.partition("\n")
        out[head.strip()] = body
    return out


def tracepoint_format(category: str, name: str) -> TracepointFormat:
    """The format of ``category:name``: from tracefs if readable, else ebee's bundled copy."""
    for root in TRACEFS:
        p = root / category / name / "format"
        try:
            text = p.read_text()
        except OSError:
            continue
        fmt = parse_format(text, str(p))
        return TracepointFormat(category, fmt.name, fmt.id, fmt.fields, str(p))
    bundled = _bundled().get(f"{category}/{name}")
    if bundled is None:
        raise KeyError(f"tracepoint {category}:{name} not found in tracefs or ebee's bundled "
                       f"formats")
    fmt = parse_format(bundled, f"bundled:{category}/{name}")
    return TracepointFormat(category, fmt.name, fmt.id, fmt.fields, fmt.source)


def bundled_tracepoints() -> list[str]:
    return sorted(_bundled())


def btf_args(func: str, *args: int, ret: int | None = None, btf=None, **named: int) -> bytes:
    """The u64 argument array an fentry/fexit/fmod_ret/lsm program sees for ``func``.

    Arguments are given positionally or by their BTF parameter names and are laid
    out as the BPF trampoline saves them: one u64 per parameter (integers narrower
    than 64 bits sign- or zero-extended by their BTF type), then -- for fexit --
    the return value.  ``btf`` defaults to the running kernel's vmlinux BTF.
    """
    b = btf if btf is not None else BTF.load_vmlinux()
    try:
        f = b.find(func, "func")
    except (KeyError, LookupError):
        raise KeyError(f"no function {func!r} in the BTF") from None
    proto = b[f.type_id]
    params = [p for p in proto.params if p.type_id or p.name]
    if len(args) > len(params):
        raise ValueError(f"{func} takes {len(params)} arguments, {len(args)} given")
    values: list[int] = list(args) + [0] * (len(params) - len(args))
    for name, v in named.items():
        idx = next((k for k, p in enumerate(params) if p.name == name), None)
        if idx is None:
            raise ValueError(f"{func} has no parameter {name!r} "
                             f"({', '.join(p.name for p in params)})")
        values[idx] = v
    out = []
    for p, v in zip(params, values):
        t = b.resolve(p.type_id)
        bits = min(b.sizeof(t), 8) * 8
        v &= (1 << bits) - 1
        if getattr(t, "signed", False) and v >> (bits - 1):
            v -= 1 << bits
        out.append(v)
    if ret is not None:
        out.append(ret)
    return u64_args(*out)
