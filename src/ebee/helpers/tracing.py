"""What a tracing program knows of the call it traces: bpf_get_func_arg, bpf_get_func_ret,
bpf_get_func_arg_cnt, bpf_get_func_ip and bpf_get_attach_cookie.

Linux's trampoline saves the traced function's arguments as u64s -- the context an
fentry/fexit/fmod_ret/lsm program gets (``ebee.progtypes.btf_args``) -- followed, for
fexit and fmod_ret, by the return value, and keeps the argument count and the
function's address just below the context (``ctx[-1]``, ``ctx[-2]``).  The verifier
inlines the helpers as reads of those slots.  In ebee the call is a :class:`FuncEvent`
the runner sets on the CPU (``machine.func_event``); the context is the u64 array
itself::

    ev = FuncEvent.of("tcp_v4_connect", ip=addr, ret=0, cookie=7)
    machine.func_event = ev
    machine.run(prog, ctx_region_holding(ev.ctx))
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from ..btf import BTF
from ..btf.types import kind_of
from ..layouts.kernel import BPF_PERF_EVENT_DATA_KERN
from ..progtypes import btf_args
from ..progtypes.tracing import PT_REGS_X86_64
from ..uapi import FuncId
from .registry import implements
from .task import layouts

M64 = (1 << 64) - 1


@dataclass
class FuncEvent:
    """One traced call: the function's address, its argument count, whether the program
    runs after it returned (fexit, fmod_ret: the return value follows the arguments) and
    the attach cookie (``bpf_link_create``'s ``tracing.cookie`` / ``perf_event.bpf_cookie``)."""
    ip: int = 0
    nr_args: int = 0
    has_ret: bool = False
    cookie: int = 0
    ctx: bytes = b""
    # bpf_override_return: the value the probed function returned instead of running
    override: int | None = None

    @classmethod
    def of(cls, func: str, *args: int, ret: int | None = None, ip: int = 0, cookie: int = 0,
           btf: BTF | None = None, **named: int) -> "FuncEvent":
        """The call of kernel function ``func`` (its parameters from BTF) with these
        arguments; ``ret`` given: as fexit sees it."""
        ctx = btf_args(func, *args, ret=ret, btf=btf, **named)
        n = len(ctx) // 8 - (ret is not None)
        return cls(ip=ip, nr_args=n, has_ret=ret is not None, cookie=cookie, ctx=ctx)


def _event(m) -> FuncEvent:
    ev = m.func_event
    return ev if ev is not None else FuncEvent(ip=m.func_ip)


def _u64(m, addr: int) -> int:
    return struct.unpack("<Q", m.read(addr, 8))[0]


@implements(FuncId.get_func_arg)
def get_func_arg(m, ctx, n, value, *_):
    # the verifier's inlined sequence: a 32-bit compare of n with nr_args, -EINVAL and
    # *value untouched past the last argument
    ev = _event(m)
    n &= 0xFFFFFFFF
    if n >= ev.nr_args:
        return -errno.EINVAL & M64
    m.write(value, struct.pack("<Q", _u64(m, (ctx + 8 * n) & M64)))
    return 0


@implements(FuncId.get_func_ret)
def get_func_ret(m, ctx, value, *_):
    ev = _event(m)
    if not ev.has_ret:          # fentry: inlined as r0 = -EOPNOTSUPP
        return -errno.EOPNOTSUPP & M64
    m.write(value, struct.pack("<Q", _u64(m, (ctx + 8 * ev.nr_args) & M64)))
    return 0


@implements(FuncId.get_func_arg_cnt)
def get_func_arg_cnt(m, *_):
    return _event(m).nr_args


@implements(FuncId.get_func_ip)
def get_func_ip(m, *_):
    return _event(m).ip & M64


@implements(FuncId.get_attach_cookie)
def get_attach_cookie(m, *_):
    return _event(m).cookie & M64


@implements(FuncId.get_branch_snapshot)
def get_branch_snapshot(m, buf, size, flags, *_):
    # the last branch records (LBR) perf keeps: ebee's machine has none, as a host
    # without the hardware (or with perf not recording them): no entries, -ENOENT
    if flags:
        return -errno.EINVAL & M64
    return -errno.ENOENT & M64


_PT_REGS_AX = 8 * PT_REGS_X86_64.index("ax")


@implements(FuncId.override_return)
def override_return(m, regs, rc, *_):
    """regs_set_return_value() and override_function_with_return(): the probed function
    returns ``rc`` without running.  ebee sets pt_regs->ax and records the outcome on the
    traced call (``machine.func_event.override``)."""
    m.write(regs + _PT_REGS_AX, struct.pack("<Q", rc & M64))
    if m.func_event is None:
        m.func_event = FuncEvent(ip=m.func_ip)
    m.func_event.override = rc & M64
    return 0


# ------------------------------------------------------------------------------ kernel symbols

_ksyms: dict[str, int] = {}


def _kallsyms() -> dict[str, int]:
    """/proc/kallsyms as kallsyms_lookup_name() searches it: the kernel's own symbols
    first (the first of a name, in address order), then the modules'; {} when the values
    are hidden from us (kptr_restrict)."""
    if not _ksyms:
        core: dict[str, int] = {}
        mods: dict[str, int] = {}
        try:
            with open("/proc/kallsyms") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) < 3:
                        continue
                    addr, name = int(parts[0], 16), parts[2]
                    name = name.split(".llvm.")[0]          # cleanup_symbol_name()
                    (mods if len(parts) > 3 else core).setdefault(name, addr)
        except OSError:
            pass
        if any(core.values()):
            _ksyms.update(mods)
            _ksyms.update(core)
    return _ksyms


@implements(FuncId.kallsyms_lookup_name)
def kallsyms_lookup_name(m, name, name_sz, flags, res, _):
    m.write(res, bytes(8))
    if flags & 0xFFFFFFFF:
        return -errno.EINVAL & M64
    name_sz &= 0xFFFFFFFF
    if name_sz >> 31:
        name_sz -= 1 << 32
    if name_sz <= 1 or m.read(name + name_sz - 1, 1) != b"\0":
        return -errno.EINVAL & M64
    syms = _kallsyms()
    if not syms:                                   # bpf_dump_raw_ok(): values hidden
        return -errno.EPERM & M64
    text = m.read(name, name_sz).split(b"\0")[0].decode(errors="replace")
    addr = syms.get(text, 0)
    m.write(res, struct.pack("<Q", addr))
    return 0 if addr else -errno.ENOENT & M64


# ------------------------------------------------------------------------------ perf samples

BPF_F_GET_BRANCH_RECORDS_SIZE = 1
PERF_SAMPLE_BRANCH_STACK = 1 << 11


@implements(FuncId.read_branch_records)
def read_branch_records(m, ctx, buf, size, flags, _):
    """The branch stack of the perf sample behind a perf_event program's context
    (perf_sample_data.br_stack, present when sample_flags has PERF_SAMPLE_BRANCH_STACK)."""
    if flags & ~BPF_F_GET_BRANCH_RECORDS_SIZE:
        return -errno.EINVAL & M64
    lay = layouts()
    sf, br = lay.at("perf_sample_data", "sample_flags"), lay.at("perf_sample_data", "br_stack")
    ent = lay.at("perf_branch_stack", "entries")
    esize = lay.size("perf_branch_entry", 24)
    data = _u64(m, ctx + BPF_PERF_EVENT_DATA_KERN.off("data"))
    if sf is None or br is None or ent is None or not data:
        return -errno.ENOENT & M64
    if not _u64(m, data + sf[0]) & PERF_SAMPLE_BRANCH_STACK:
        return -errno.ENOENT & M64
    stack = _u64(m, data + br[0])
    if not stack:
        return -errno.ENOENT & M64
    nr = _u64(m, stack)
    if flags & BPF_F_GET_BRANCH_RECORDS_SIZE:
        return (nr * esize) & M64
    size &= 0xFFFFFFFF
    if not buf or size % esize:
        return -errno.EINVAL & M64
    n = min(nr * esize, size)
    m.write(buf, m.read(stack + ent[0], n))
    return n


# ------------------------------------------------------------------------------ BTF lookups

_vmlinux: list[BTF | None] = []


def _vmlinux_btf() -> BTF | None:
    if not _vmlinux:
        try:
            _vmlinux.append(BTF.load_vmlinux())
        except Exception:               # no kernel BTF here: nothing to find
            _vmlinux.append(None)
    return _vmlinux[0]


@implements(FuncId.btf_find_by_name_kind)
def btf_find_by_name_kind(m, name, name_sz, kind, flags, _):
    """The vmlinux BTF id of the first type of ``kind`` named ``name`` (module BTFs, which
    would add an object fd in the upper 32 bits, are not searched)."""
    if flags & 0xFFFFFFFF:
        return -errno.EINVAL & M64
    name_sz &= 0xFFFFFFFF
    if name_sz >> 31:
        name_sz -= 1 << 32
    if name_sz <= 1 or m.read(name + name_sz - 1, 1) != b"\0":
        return -errno.EINVAL & M64
    btf = _vmlinux_btf()
    text = m.read(name, name_sz).split(b"\0")[0].decode(errors="replace")
    kind &= 0xFFFFFFFF
    if btf is None or not text:
        return -errno.ENOENT & M64
    try:
        return btf.find(text, kind_of(kind)).id
    except (KeyError, ValueError):
        return -errno.ENOENT & M64
