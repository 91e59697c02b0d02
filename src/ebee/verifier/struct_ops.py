"""struct_ops programs: each is one member of a kernel function table
(check_struct_ops_btf_id in kernel/bpf/verifier.c, the subsystems'
``bpf_verifier_ops``).

A struct_ops program names the kernel struct it fills (attach_btf_id: ``struct
tcp_congestion_ops``) and the member it implements (expected_attach_type: the
member's index).  The member's function pointer type is the program's
prototype: its arguments are the u64 context array, read through
``btf_ctx_access`` (trusted pointers: the caller is the kernel), and its return
type says whether R0 matters at exit (a ``void`` member ignores it).

What the subsystems add, for the two this kernel registers:

* ``tcp_congestion_ops`` (net/ipv4/bpf_tcp_ca.c): ``struct sock *`` arguments
  are promoted to ``struct tcp_sock``; writes through it are allowed to the
  congestion-control fields only (``bpf_tcp_ca_btf_struct_access``); members
  without a CFI stub (``get_info``) cannot be implemented.
* ``bpf_dummy_ops`` (net/bpf/bpf_dummy_struct_ops.c): writes are allowed to
  ``struct bpf_dummy_ops_state`` only; only ``test_sleepable`` may be sleepable.

Other kernel structs registered as struct_ops (a ``struct bpf_struct_ops_X``
in vmlinux BTF) are checked with the generic rules and read-only pointers:
stricter than Linux may be, never looser.
"""
from __future__ import annotations

from dataclasses import dataclass
from errno import EINVAL

from .. import uapi as U
from ..btf import BTF, Kind
from .env import Env
from .errors import VerifierReject

VALUE_PREFIX = "bpf_struct_ops_"


@dataclass(frozen=True)
class Subsystem:
    """What a struct_ops subsystem's verifier_ops and check_member add to the generic rules."""
    unsupported: frozenset[str] = frozenset()     # members without a CFI stub
    sleepable_ok: frozenset[str] | None = None    # None: any member may be sleepable
    promote: tuple[str, str] | None = None        # ctx pointer type -> the type programs see
    # btf_struct_access: the one struct writable, and its writable ranges (None: all of it)
    write_struct: str | None = None
    write_fields: tuple[str, ...] | None = None


# paths in struct tcp_sock; the offsets come from the running kernel's BTF
_SK, _ICSK = "inet_conn.icsk_inet.sk.", "inet_conn."
_TCP_CA_WRITABLE = (_SK + "sk_pacing_rate", _SK + "sk_pacing_status", _ICSK + "icsk_ca_priv",
                    _ICSK + "icsk_ack.pending", "snd_cwnd", "snd_cwnd_cnt", "snd_cwnd_stamp",
                    "snd_ssthresh", "ecn_flags", "app_limited")
_CTX_RANGE = _ICSK + "icsk_ca_priv"     # a bpf_ctx_range: a write may start anywhere in it

SUBSYSTEMS: dict[str, Subsystem] = {
    "tcp_congestion_ops": Subsystem(unsupported=frozenset({"get_info"}),
                                    promote=("sock", "tcp_sock"), write_struct="tcp_sock",
                                    write_fields=_TCP_CA_WRITABLE),
    "bpf_dummy_ops": Subsystem(sleepable_ok=frozenset({"test_sleepable"}),
                               write_struct="bpf_dummy_ops_state"),
}


@dataclass(frozen=True)
class Member:
    """The member a struct_ops program implements."""
    btf: BTF
    st_name: str
    name: str
    idx: int
    proto: object                   # its FUNC_PROTO
    nullable: frozenset[int]        # arguments the kernel may pass as NULL (``__nullable``)
    sub: Subsystem


def _vmlinux() -> BTF | None:
    try:
        return BTF.load_vmlinux()
    except Exception:
        return None


def _find(btf: BTF, name: str, kind: str):
    try:
        return btf.find(name, kind)
    except KeyError:
        return None


def check_struct_ops_btf_id(env: Env) -> Member | None:
    """check_struct_ops_btf_id(): the member the program implements, or a rejection as
    Linux words it.  None for other program types (or without kernel BTF to tell)."""
    if env.prog_type != U.ProgType.STRUCT_OPS:
        return None
    if not env.gpl:
        raise env.reject("struct ops programs must have a GPL compatible license", EINVAL)
    if not env.attach_target:
        raise VerifierReject("struct_ops programs need attach_btf_id (the kernel struct they "
                             "implement)", U.ENOTSUPP)
    btf = _vmlinux()
    if btf is None:
        return None
    t = _find(btf, env.attach_target, "STRUCT")
    if t is None or _find(btf, VALUE_PREFIX + env.attach_target, "STRUCT") is None:
        tid = t.id if t is not None else 0
        raise env.reject(f"attach_btf_id {tid} is not a supported struct", U.ENOTSUPP)
    idx = int(env.expected_attach_type or 0)
    if idx >= len(t.members):
        raise env.reject(f"attach to invalid member idx {idx} of struct {t.name}", EINVAL)
    m = t.members[idx]
    mt = btf.resolve(m.type_id)
    proto = btf.resolve(mt.type_id) if mt.kind is Kind.PTR else None
    if proto is None or proto.kind is not Kind.FUNC_PROTO:
        raise env.reject(f"attach to invalid member {m.name}(@idx {idx}) of struct {t.name}",
                         EINVAL)
    sub = SUBSYSTEMS.get(t.name, Subsystem())
    if m.name in sub.unsupported:
        raise env.reject(f"attach to unsupported member {m.name} of struct {t.name}",
                         U.ENOTSUPP)
    if env.sleepable and sub.sleepable_ok is not None and m.name not in sub.sleepable_ok:
        raise env.reject(f"attach to unsupported member {m.name} of struct {t.name}", EINVAL)
    return Member(btf, t.name, m.name, idx, proto, _nullable_args(btf, t.name, m.name), sub)


def _nullable_args(btf: BTF, st_name: str, member: str) -> frozenset[int]:
    """prepare_arg_info(): the CFI stub ``<struct>__<member>`` names arguments the kernel
    may pass as NULL with a ``__nullable`` suffix."""
    f = _find(btf, f"{st_name}__{member}", "FUNC")
    if f is None:
        return frozenset()
    proto = btf[f.type_id]
    return frozenset(i for i, p in enumerate(proto.params) if p.name.endswith("__nullable"))


def member_of(env: Env) -> Member | None:
    """The member checked at the start of verification (see :func:`check_struct_ops_btf_id`)."""
    return getattr(env, "struct_ops_member", None)


def promote(env: Env, btf: BTF, btf_id: int) -> int:
    """bpf_tcp_ca_is_valid_access: a ``struct sock *`` argument is a ``struct tcp_sock *``."""
    m = member_of(env)
    if m is None or m.sub.promote is None:
        return btf_id
    frm, to = m.sub.promote
    t = btf[btf_id]
    if t.kind is Kind.STRUCT and t.name == frm:
        tt = _find(btf, to, "STRUCT")
        if tt is not None:
            return tt.id
    return btf_id


def _field_range(btf: BTF, struct, path: str) -> tuple[int, int] | None:
    """(offset, end) of a (nested, possibly anonymous-member) field of ``struct``."""
    off, t = 0, struct
    for part in path.split("."):
        found = _member(btf, t, part)
        if found is None:
            return None
        moff, tid = found
        off += moff
        t = btf.resolve(tid)
    return off, off + btf.sizeof(t)


def _member(btf: BTF, t, name: str):
    for m in getattr(t, "members", ()):
        if m.name == name:
            return m.bits_offset // 8, m.type_id
        if not m.name:
            inner = _member(btf, btf.resolve(m.type_id), name)
            if inner is not None:
                return m.bits_offset // 8 + inner[0], inner[1]
    return None


def btf_struct_write(env: Env, btf: BTF, struct, off: int, size: int) -> None:
    """The subsystem's btf_struct_access for a write through a PTR_TO_BTF_ID; rejects as
    Linux does (``only read is supported`` where the subsystem has none)."""
    m = member_of(env)
    if m is None or m.sub.write_struct is None:
        raise env.reject("only read is supported")
    sub = m.sub
    if struct.name != sub.write_struct:
        if sub.write_struct == "tcp_sock":
            raise env.reject("only read is supported")
        raise env.reject(f"only access to {sub.write_struct} is supported")
    if sub.write_fields is None:
        if off + size > struct.size:
            raise env.reject(f"write access at off {off} with size {size}")
        return
    for f in sub.write_fields:
        r = _field_range(btf, struct, f)
        if r is None:
            continue
        start, end = r
        if off == start or (f == _CTX_RANGE and start <= off < end):
            if off + size > end:
                raise env.reject(f"write access at off {off} with size {size} beyond the "
                                 f"member of tcp_sock ended at {end}")
            return
    raise env.reject(f"no write support to tcp_sock at off {off}")


def void_return(env: Env) -> bool:
    """A member returning void: R0 is not looked at when the program exits."""
    m = member_of(env)
    return m is not None and not m.proto.return_type_id


__all__ = ["SUBSYSTEMS", "Subsystem", "Member", "check_struct_ops_btf_id", "member_of",
           "promote", "btf_struct_write", "void_return"]
