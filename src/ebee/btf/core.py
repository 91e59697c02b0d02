"""CO-RE: compile once, run everywhere -- relocating field offsets and type facts.

Clang records, for every instruction whose constant depends on a kernel type
(``__builtin_preserve_access_index``, ``__builtin_preserve_field_info``,
``__builtin_btf_type_id``, ``__builtin_preserve_type_info``,
``__builtin_preserve_enum_value``), a ``bpf_core_relo`` in ``.BTF.ext``: the
instruction, a local (program BTF) root type, an access string such as
``0:1:3`` and a relocation kind.  This module re-does libbpf's
``relo_core.c`` against a target BTF (the running kernel's, or a file):

1. the access string becomes a *spec*: a chain of accessors (array index,
   named member) with the bit offset it reaches in the local type;
2. *candidates* are the target types of a compatible kind whose name matches
   the local root name once ``___flavor`` suffixes are stripped;
3. each candidate is matched accessor by accessor -- members by name, looking
   through anonymous structs/unions, arrays within bounds, field types
   compatible -- giving a target spec;
4. the relocated value (offset, size, existence, signedness, bitfield shifts,
   type id/size/existence/match, enumerator existence/value) is computed for
   the local and target specs, all matching candidates must agree, and the
   instruction is patched after checking it still holds the local value.

A relocation with no matching target that cannot be expressed as a value
(field offset of a missing field, value of a missing enumerator) *poisons*
its instruction as libbpf does: it becomes ``call 0xbad2310``, which the
kernel verifier rejects only if reached and ebee's interpreter reports, if
executed, as the failed relocation it is.  Everything else that is wrong
(malformed access string, ambiguous candidates, an instruction that does not
hold the expected value) raises :class:`CoreError`, failing the load.
"""
from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .. import uapi as U
from ..isa import OP_CALL, OP_LDDW, Instruction, decode, encode, pack_slots, unpack_slots
from ..uapi import CoreReloKind as RK
from .errors import BTFError
from .types import Kind, MODIFIERS
from .btf import BTF, essential_name, essential_name_len  # noqa: F401  (re-exported)
from .ext import BTFExt, CoreRelo


#: the helper id libbpf gives a poisoned instruction ("bad relo")
POISON_HELPER_ID = 0xBAD2310            # 195896080
SPEC_MAX_LEN = 64                       # BPF_CORE_SPEC_MAX_LEN
_MAX_DEPTH = 32

_FIELD_KINDS = frozenset({RK.FIELD_BYTE_OFFSET, RK.FIELD_BYTE_SIZE, RK.FIELD_EXISTS,
                          RK.FIELD_SIGNED, RK.FIELD_LSHIFT_U64, RK.FIELD_RSHIFT_U64})
_TYPE_KINDS = frozenset({RK.TYPE_ID_LOCAL, RK.TYPE_ID_TARGET, RK.TYPE_EXISTS, RK.TYPE_MATCHES,
                         RK.TYPE_SIZE})
_ENUMVAL_KINDS = frozenset({RK.ENUMVAL_EXISTS, RK.ENUMVAL_VALUE})

#: libbpf's short names of relocation kinds (used in its messages)
KIND_NAMES = {
    RK.FIELD_BYTE_OFFSET: "byte_off", RK.FIELD_BYTE_SIZE: "byte_sz",
    RK.FIELD_EXISTS: "field_exists", RK.FIELD_SIGNED: "signed",
    RK.FIELD_LSHIFT_U64: "lshift_u64", RK.FIELD_RSHIFT_U64: "rshift_u64",
    RK.TYPE_ID_LOCAL: "local_type_id", RK.TYPE_ID_TARGET: "target_type_id",
    RK.TYPE_EXISTS: "type_exists", RK.TYPE_MATCHES: "type_matches", RK.TYPE_SIZE: "type_size",
    RK.ENUMVAL_EXISTS: "enumval_exists", RK.ENUMVAL_VALUE: "enumval_value",
}

_SPEC_RE = re.compile(r"[0-9]+(?::[0-9]+)*")


class CoreError(BTFError):
    """A CO-RE relocation that cannot be applied (the whole load fails)."""


class _Poison(Exception):
    """Internal: the relocation has no target; poison the instruction."""


# ---------------------------------------------------------------------------------- names


# essential_name, essential_name_len: defined with the BTF's own name indexes (btf.py)


# ---------------------------------------------------------------------------------- specs


@dataclass(frozen=True, slots=True)
class Accessor:
    type_id: int            # the struct/union (named member) or element type (array index)
    idx: int
    name: str | None        # member or enumerator name; None for array indexing


@dataclass
class Spec:
    """A parsed access chain (libbpf's ``struct bpf_core_spec``)."""
    btf: "BTF"
    root_type_id: int
    kind: RK
    raw: list[int] = field(default_factory=list)
    accessors: list[Accessor] = field(default_factory=list)
    bit_offset: int = 0

    def format(self) -> str:
        """libbpf's ``bpf_core_format_spec``: ``<byte_off> [5] struct s.a[1] (0:1:1 @ offset 12)``."""
        btf = self.btf
        t = btf[self.root_type_id]
        kname = t.kind.name.lower() if t.id else "void"
        out = f"<{KIND_NAMES[self.kind]}> [{self.root_type_id}] {kname} {t.name or '<anon>'}"
        if self.kind in _TYPE_KINDS:
            return out
        if self.kind in _ENUMVAL_KINDS:
            e = btf.resolve(self.root_type_id)
            v = e.values[self.raw[0]]
            return out + f"::{v.name} = {v.value}"
        for i, a in enumerate(self.accessors):
            if a.name:
                out += f".{a.name}"
            elif i > 0 or a.idx > 0:
                out += f"[{a.idx}]"
        out += " (" + ":".join(str(x) for x in self.raw)
        if self.bit_offset % 8:
            out += f" @ offset {self.bit_offset // 8}.{self.bit_offset % 8})"
        else:
            out += f" @ offset {self.bit_offset // 8})"
        return out


def _skip(btf: "BTF", tid: int) -> tuple[int, object]:
    """skip_mods_and_typedefs: (resolved id, type)."""
    t = btf[tid]
    for _ in range(_MAX_DEPTH):
        if t.kind is Kind.TYPEDEF or t.kind in MODIFIERS:
            tid = t.type_id
            t = btf[tid]
        else:
            return tid, t
    raise CoreError(f"type [{tid}]: typedef/modifier chain too long")


def _size(btf: "BTF", tid: int) -> int:
    try:
        return btf.sizeof(tid)
    except BTFError as e:
        raise CoreError(str(e)) from None


def _is_flex_arr(btf: "BTF", acc: Accessor | None, arr) -> bool:
    """A zero-length array that is the last member of its struct."""
    if acc is None or not acc.name or arr.nelems > 0:
        return False
    return acc.idx == len(btf[acc.type_id].members) - 1


def parse_spec(btf: "BTF", relo: "CoreRelo") -> Spec:
    """Turn a relocation's access string into a local spec (``bpf_core_parse_spec``)."""
    spec = Spec(btf, relo.type_id, relo.kind)
    s = relo.access_str
    if relo.kind in _TYPE_KINDS:
        if s != "0":
            raise CoreError(f"access string {s!r} of a type-based relocation must be \"0\"")
        return spec
    if not _SPEC_RE.fullmatch(s):
        raise CoreError(f"malformed access string {s!r}")
    spec.raw = [int(x) for x in s.split(":")]
    if len(spec.raw) > SPEC_MAX_LEN:
        raise CoreError(f"access string {s!r} is deeper than {SPEC_MAX_LEN}")
    tid, t = _skip(btf, relo.type_id)
    idx = spec.raw[0]
    if relo.kind in _ENUMVAL_KINDS:
        if t.kind not in (Kind.ENUM, Kind.ENUM64) or len(spec.raw) > 1 or idx >= len(t.values):
            raise CoreError(f"access string {s!r} does not name an enumerator of "
                            f"[{relo.type_id}]")
        spec.accessors.append(Accessor(tid, idx, t.values[idx].name))
        return spec
    if relo.kind not in _FIELD_KINDS:      # pragma: no cover - CoreReloKind is closed
        raise CoreError(f"unknown relocation kind {relo.kind}")
    spec.accessors.append(Accessor(tid, idx, None))
    spec.bit_offset = idx * _size(btf, tid) * 8
    for i in range(1, len(spec.raw)):
        tid, t = _skip(btf, tid)
        idx = spec.raw[i]
        if t.kind in (Kind.STRUCT, Kind.UNION):
            if idx >= len(t.members):
                raise CoreError(f"access string {s!r}: member {idx} of [{tid}] does not exist")
            m = t.members[idx]
            spec.bit_offset += m.bits_offset
            if m.name:
                spec.accessors.append(Accessor(tid, idx, m.name))
            tid = m.type_id
        elif t.kind is Kind.ARRAY:
            prev = spec.accessors[-1]
            arr = t
            tid, _ = _skip(btf, arr.type_id)
            if not _is_flex_arr(btf, prev, arr) and idx >= arr.nelems:
                raise CoreError(f"access string {s!r}: index {idx} is out of bounds of "
                                f"[{t.id}] ({arr.nelems} elements)")
            spec.accessors.append(Accessor(tid, idx, None))
            spec.bit_offset += idx * _size(btf, tid) * 8
        else:
            raise CoreError(f"relo for [{relo.type_id}] {s} (at idx {i}) captures type "
                            f"[{tid}] of unexpected kind {t.kind.name}")
    return spec


# ---------------------------------------------------------------------------------- matching


def _kind_compat(a, b) -> bool:
    """btf_kind_core_compat: same kind, or enum vs enum64."""
    return a.kind is b.kind or (a.kind in (Kind.ENUM, Kind.ENUM64)
                                and b.kind in (Kind.ENUM, Kind.ENUM64))


def types_are_compat(lbtf: "BTF", lid: int, tbtf: "BTF", tid: int, level: int = 32) -> bool:
    """``bpf_core_types_are_compat`` (TYPE_EXISTS/TYPE_SIZE/TYPE_ID_TARGET matching)."""
    if not _kind_compat(lbtf[lid], tbtf[tid]):
        return False
    for _ in range(_MAX_DEPTH):
        lid, lt = _skip(lbtf, lid)
        tid, tt = _skip(tbtf, tid)
        if not _kind_compat(lt, tt):
            return False
        k = lt.kind
        if k in (Kind.UNKN, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FWD, Kind.ENUM64):
            return True
        if k is Kind.INT:
            return lt.bits_offset == 0 and tt.bits_offset == 0
        if k is Kind.PTR:
            lid, tid = lt.type_id, tt.type_id
        elif k is Kind.ARRAY:
            lid, tid = lt.type_id, tt.type_id
        elif k is Kind.FUNC_PROTO:
            if len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params):
                if level <= 0:
                    raise CoreError("type compatibility check nests too deeply")
                if not types_are_compat(lbtf, _skip(lbtf, lp.type_id)[0], tbtf,
                                        _skip(tbtf, tp.type_id)[0], level - 1):
                    return False
            lid, tid = _skip(lbtf, lt.return_type_id)[0], _skip(tbtf, tt.return_type_id)[0]
        else:
            return False
    raise CoreError("type compatibility check nests too deeply")


def _fields_are_compat(lbtf: "BTF", lid: int, tbtf: "BTF", tid: int) -> bool:
    for _ in range(_MAX_DEPTH):
        lid, lt = _skip(lbtf, lid)
        tid, tt = _skip(tbtf, tid)
        if lt.kind in (Kind.STRUCT, Kind.UNION) and tt.kind in (Kind.STRUCT, Kind.UNION):
            return True
        if not _kind_compat(lt, tt):
            return False
        k = lt.kind
        if k in (Kind.PTR, Kind.FLOAT):
            return True
        if k in (Kind.FWD, Kind.ENUM, Kind.ENUM64):
            ln, tn = lt.name, tt.name
            ll, tl = essential_name_len(ln), essential_name_len(tn)
            return ll == 0 or tl == 0 or (ll == tl and ln[:ll] == tn[:tl])
        if k is Kind.INT:
            return lt.bits_offset == 0 and tt.bits_offset == 0
        if k is Kind.ARRAY:
            lid, tid = lt.type_id, tt.type_id
            continue
        return False
    raise CoreError("field compatibility check nests too deeply")


def _match_member(lbtf: "BTF", lacc: Accessor, tbtf: "BTF", tid: int, spec: Spec,
                  depth: int = 0) -> tuple[int, int]:
    """Find the local named member in target type ``tid`` (recursing into anonymous
    members).  Returns (1, next type id) when found and compatible, (0, 0) if not."""
    if depth > SPEC_MAX_LEN:
        raise CoreError("struct nesting too deep while matching a member")
    tid, tt = _skip(tbtf, tid)
    if tt.kind not in (Kind.STRUCT, Kind.UNION):
        return 0, 0
    lm = lbtf[lacc.type_id].members[lacc.idx]
    for i, m in enumerate(tt.members):
        if len(spec.raw) == SPEC_MAX_LEN:
            raise CoreError(f"target spec is deeper than {SPEC_MAX_LEN}")
        spec.bit_offset += m.bits_offset
        spec.raw.append(i)
        if not m.name:
            found, nxt = _match_member(lbtf, lacc, tbtf, m.type_id, spec, depth + 1)
            if found:
                return found, nxt
        elif m.name == lm.name:
            spec.accessors.append(Accessor(tid, i, m.name))
            if _fields_are_compat(lbtf, lm.type_id, tbtf, m.type_id):
                return 1, m.type_id
            spec.accessors.pop()
            return 0, 0
        spec.bit_offset -= m.bits_offset
        spec.raw.pop()
    return 0, 0


def spec_match(local: Spec, tbtf: "BTF", targ_id: int) -> Spec | None:
    """Match ``local`` against candidate ``targ_id``; the target spec, or None."""
    ts = Spec(tbtf, targ_id, local.kind)
    if local.kind in _TYPE_KINDS:
        if local.kind is RK.TYPE_MATCHES:
            ok = types_match(local.btf, local.root_type_id, tbtf, targ_id)
        else:
            ok = types_are_compat(local.btf, local.root_type_id, tbtf, targ_id)
        return ts if ok else None
    lacc0 = local.accessors[0]
    if local.kind in _ENUMVAL_KINDS:
        tid, tt = _skip(tbtf, targ_id)
        if tt.kind not in (Kind.ENUM, Kind.ENUM64):
            return None
        want = essential_name(lacc0.name)
        for i, v in enumerate(tt.values):
            if essential_name(v.name) == want:
                ts.accessors.append(Accessor(tid, i, v.name))
                ts.raw.append(i)
                return ts
        return None
    tid = targ_id
    for i, lacc in enumerate(local.accessors):
        tid, tt = _skip(tbtf, tid)
        if lacc.name:
            found, tid = _match_member(local.btf, lacc, tbtf, tid, ts)
            if not found:
                return None
        else:
            if i > 0:
                if tt.kind is not Kind.ARRAY:
                    return None
                prev = ts.accessors[-1] if ts.accessors else None
                if not _is_flex_arr(tbtf, prev, tt) and lacc.idx >= tt.nelems:
                    return None
                tid, _ = _skip(tbtf, tt.type_id)
            if len(ts.raw) == SPEC_MAX_LEN:
                raise CoreError(f"target spec is deeper than {SPEC_MAX_LEN}")
            ts.accessors.append(Accessor(tid, lacc.idx, None))
            ts.raw.append(lacc.idx)
            ts.bit_offset += lacc.idx * _size(tbtf, tid) * 8
    return ts


def _names_match(ln: str, tn: str) -> bool:
    if not tn:
        return not ln
    tl, ll = essential_name_len(tn), essential_name_len(ln)
    return tl == ll and ln[:ll] == tn[:tl]


def types_match(lbtf: "BTF", lid: int, tbtf: "BTF", tid: int, behind_ptr: bool = False,
                level: int = 32) -> bool:
    """``bpf_core_types_match``: the stricter ``bpf_core_type_matches()`` relation."""
    if level <= 0:
        raise CoreError("type match check nests too deeply")
    for _ in range(_MAX_DEPTH):
        lid, lt = _skip(lbtf, lid)
        tid, tt = _skip(tbtf, tid)
        if not _names_match(lt.name, tt.name):
            return False
        lk, tk = lt.kind, tt.kind
        if lk is Kind.UNKN:
            return lk is tk
        if lk is Kind.FWD:
            if behind_ptr:
                if lk is tk:
                    return lt.is_union == tt.is_union
                return (tk is Kind.STRUCT and not lt.is_union) or \
                    (tk is Kind.UNION and lt.is_union)
            return lk is tk and lt.is_union == tt.is_union
        if lk in (Kind.ENUM, Kind.ENUM64):
            if tk not in (Kind.ENUM, Kind.ENUM64) or lt.size != tt.size:
                return False
            if len(lt.values) > len(tt.values):
                return False
            return all(any(_names_match(lv.name, tv.name) for tv in tt.values)
                       for lv in lt.values)
        if lk in (Kind.STRUCT, Kind.UNION):
            if behind_ptr:
                if lk is tk:
                    return True
                if tk is not Kind.FWD:
                    return False
                return (lk is Kind.UNION) == tt.is_union
            if lk is not tk or len(lt.members) > len(tt.members):
                return False
            for lm in lt.members:
                if not any(_names_match(lm.name, tm.name) and
                           types_match(lbtf, lm.type_id, tbtf, tm.type_id, behind_ptr,
                                       level - 1)
                           for tm in tt.members):
                    return False
            return True
        if lk is Kind.INT:
            return lk is tk and lt.size == tt.size and lt.signed == tt.signed
        if lk is Kind.PTR:
            if lk is not tk:
                return False
            behind_ptr = True
            lid, tid = lt.type_id, tt.type_id
        elif lk is Kind.ARRAY:
            if lk is not tk or lt.nelems != tt.nelems:
                return False
            lid, tid = lt.type_id, tt.type_id
        elif lk is Kind.FUNC_PROTO:
            if lk is not tk or len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params):
                if not types_match(lbtf, lp.type_id, tbtf, tp.type_id, behind_ptr, level - 1):
                    return False
            lid, tid = lt.return_type_id, tt.return_type_id
        else:
            return False
    raise CoreError("type match check nests too deeply")


# ---------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class CoreResult:
    """What one relocation resolved to (libbpf's ``bpf_core_relo_res`` plus context)."""
    relo: "CoreRelo"
    index: int                   # relocation number within its section (libbpf's relo #)
    local_spec: str
    target_spec: str | None      # None when no candidate matched
    orig_val: int = 0
    new_val: int = 0
    poison: bool = False
    validate: bool = True
    fail_memsz_adjust: bool = False
    orig_sz: int = 0
    new_sz: int = 0
    orig_type_id: int = 0
    new_type_id: int = 0

    @property
    def kind(self) -> RK:
        return self.relo.kind

    def failure(self) -> str:
        """Why this relocation poisons its instruction, in libbpf's words."""
        if self.fail_memsz_adjust:
            return (f"{self.local_spec}: accesses the field with a size it cannot be adjusted "
                    f"to (make sure you are accessing pointers, unsigned integers, or fields "
                    f"of matching type and size)")
        return f"failed to resolve CO-RE relocation {self.local_spec}"


def _calc_field(kind: RK, spec: Spec | None, out: dict, local: bool) -> None:
    if kind is RK.FIELD_EXISTS:
        out["val"] = 1 if spec else 0
        return
    if spec is None:
        raise _Poison
    btf = spec.btf
    acc = spec.accessors[-1]
    if not acc.name:
        if kind is RK.FIELD_BYTE_OFFSET:
            out["val"] = spec.bit_offset // 8
            out["sz"] = _size(btf, acc.type_id)
            out["type_id"] = acc.type_id
        elif kind is RK.FIELD_BYTE_SIZE:
            out["val"] = _size(btf, acc.type_id)
        else:
            raise CoreError(f"relocation {KIND_NAMES[kind]} can't be applied to array access")
        if local:
            out["validate"] = True
        return
    t = btf[acc.type_id]
    m = t.members[acc.idx]
    ftid, mt = _skip(btf, m.type_id)
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = mt.size
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise CoreError(f"relocation {KIND_NAMES[kind]} can't be satisfied for "
                                f"bitfield {m.name}")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = _size(btf, ftid)
        byte_off = spec.bit_offset // 8
        bit_sz = byte_sz * 8
    if local:
        # bitfield layout may legitimately differ from the compiler's: only
        # signedness and the right shift are unambiguous
        out["validate"] = not bitfield
    if kind is RK.FIELD_BYTE_OFFSET:
        out["val"] = byte_off
        if not bitfield:
            out["sz"] = byte_sz
            out["type_id"] = ftid
    elif kind is RK.FIELD_BYTE_SIZE:
        out["val"] = byte_sz
    elif kind is RK.FIELD_SIGNED:
        out["val"] = int((mt.kind in (Kind.ENUM, Kind.ENUM64) and mt.signed) or
                         (mt.kind is Kind.INT and mt.signed))
        if local:
            out["validate"] = True
    elif kind is RK.FIELD_LSHIFT_U64:
        if btf.byteorder == "little":
            out["val"] = 64 - (bit_off + bit_sz - byte_off * 8)
        else:
            out["val"] = (8 - byte_sz) * 8 + (bit_off - byte_off * 8)
    elif kind is RK.FIELD_RSHIFT_U64:
        out["val"] = 64 - bit_sz
        if local:
            out["validate"] = True


def _calc_type(kind: RK, spec: Spec | None, out: dict, local: bool) -> None:
    if local:
        out["validate"] = True
    if spec is None:
        out["val"] = 0
        return
    if kind is RK.TYPE_ID_TARGET:
        out["val"] = spec.root_type_id
        if local:
            out["validate"] = False     # ids shift when objects are linked
    elif kind in (RK.TYPE_EXISTS, RK.TYPE_MATCHES):
        out["val"] = 1
    elif kind is RK.TYPE_SIZE:
        out["val"] = _size(spec.btf, spec.root_type_id)


def _calc_enumval(kind: RK, spec: Spec | None, out: dict) -> None:
    if kind is RK.ENUMVAL_EXISTS:
        out["val"] = 1 if spec else 0
        return
    if spec is None:
        raise _Poison
    acc = spec.accessors[0]
    v = spec.btf[acc.type_id].values[acc.idx].value
    out["val"] = v & 0xFFFFFFFFFFFFFFFF


def _calc(relo: "CoreRelo", idx: int, local: Spec, targ: Spec | None) -> CoreResult:
    kind = relo.kind
    lo: dict = {"val": 0, "sz": 0, "type_id": 0, "validate": True}
    to: dict = {"val": 0, "sz": 0, "type_id": 0}
    poison = fail_memsz = False
    try:
        if kind in _FIELD_KINDS:
            _calc_field(kind, local, lo, True)
            _calc_field(kind, targ, to, False)
            if lo["sz"] != to["sz"]:
                ot, nt = local.btf[lo["type_id"]], targ.btf[to["type_id"]]
                safe = (ot.kind is Kind.PTR and nt.kind is Kind.PTR) or \
                    (ot.kind is Kind.INT and nt.kind is Kind.INT and
                     ot.encoding != U.BTF_INT_SIGNED and nt.encoding != U.BTF_INT_SIGNED)
                fail_memsz = not safe
        elif kind in _TYPE_KINDS:
            _calc_type(kind, local, lo, True)
            _calc_type(kind, targ, to, False)
        else:
            _calc_enumval(kind, local, lo)
            _calc_enumval(kind, targ, to)
    except _Poison:
        poison = True
    return CoreResult(relo, idx, local.format(), targ.format() if targ else None,
                      lo["val"], to["val"], poison, lo["validate"], fail_memsz,
                      lo["sz"], to["sz"], lo["type_id"], to["type_id"])


# ---------------------------------------------------------------------------------- driver


class CoreRelocator:
    """Resolves one object's relocations against one target BTF (caching candidates)."""

    def __init__(self, local_btf: "BTF", target_btf: "BTF | None"):
        self.local_btf = local_btf
        self.target_btf = target_btf
        self._cands: dict[int, list[int]] = {}

    def _target_index(self, ess: str) -> list[int]:
        """Target type ids of essential name ``ess``, base types first, in id order."""
        return [tid for b in _chain(self.target_btf) for tid in b.core_index().get(ess)]

    def candidates(self, local_id: int) -> list[int]:
        """Target types that may correspond to local type ``local_id``: same essential
        name, same kind (ENUM and ENUM64 as one)."""
        c = self._cands.get(local_id)
        if c is None:
            lt = self.local_btf[local_id]
            if not lt.name:
                raise CoreError(f"relocation against anonymous type [{local_id}] "
                                f"{lt.kind.name} is not supported")
            tb = self.target_btf
            want = _kind_group(int(lt.kind))
            c = [tid for tid in self._target_index(essential_name(lt.name))
                 if _kind_group(int(tb.kind(tid))) == want]
            self._cands[local_id] = c
        return c

    def resolve(self, relo: "CoreRelo", index: int = 0) -> CoreResult:
        """Compute the relocation (``bpf_core_calc_relo_insn``); CoreError if impossible."""
        lb = self.local_btf
        if relo.type_id not in lb:
            raise CoreError(f"relo #{index}: type [{relo.type_id}] does not exist")
        local = parse_spec(lb, relo)
        if relo.kind is RK.TYPE_ID_LOCAL:
            return CoreResult(relo, index, local.format(), local.format(), relo.type_id,
                              relo.type_id, validate=False)
        if self.target_btf is None:
            raise CoreError(f"relo #{index}: {local.format()}: no target BTF (the kernel's "
                            f"/sys/kernel/btf/vmlinux is missing; pass btf_custom_path)")
        cands = self.candidates(relo.type_id)
        best: CoreResult | None = None
        best_spec: Spec | None = None
        kept: list[int] = []
        for cid in cands:
            ts = spec_match(local, self.target_btf, cid)
            if ts is None:
                continue
            res = _calc(relo, index, local, ts)
            if best is None:
                best, best_spec = res, ts
            elif ts.bit_offset != best_spec.bit_offset:
                raise CoreError(f"relo #{index}: {local.format()}: field offset ambiguity: "
                                f"{ts.bit_offset} != {best_spec.bit_offset}")
            elif res.poison != best.poison or res.new_val != best.new_val:
                raise CoreError(f"relo #{index}: {local.format()}: relocation decision "
                                f"ambiguity: {'failure' if res.poison else 'success'} "
                                f"{res.new_val} != {'failure' if best.poison else 'success'} "
                                f"{best.new_val}")
            kept.append(cid)
        if kept:
            # like libbpf, later relocations of this type only consider what matched
            self._cands[relo.type_id] = kept
            return best
        return _calc(relo, index, local, None)


def _kind_group(k: int) -> int:
    return int(Kind.ENUM) if k == Kind.ENUM64 else k


def _chain(btf: "BTF") -> list["BTF"]:
    out = []
    while btf is not None:
        out.append(btf)
        btf = btf.base
    return out[::-1]


# ---------------------------------------------------------------------------------- patching

_SIZE_BYTES = {U.BPF_DW: 8, U.BPF_W: 4, U.BPF_H: 2, U.BPF_B: 1}
_BYTES_SIZE = {v: k for k, v in _SIZE_BYTES.items()}


def _poison_slot(slot: list[int]) -> None:
    slot[0], slot[1], slot[2], slot[3] = OP_CALL, 0, 0, POISON_HELPER_ID


def patch_slots(slots: Sequence[list[int]], i: int, res: CoreResult) -> str | None:
    """Patch raw slot ``slots[i]`` (``[code, regs, off, imm]``, off/imm signed) with
    ``res`` as ``bpf_core_patch_insn`` does.  Returns the failure message if the
    instruction was poisoned, None if it now holds the target value; CoreError if
    the instruction is not what the relocation expects."""
    where = f"relo #{res.index}: insn #{res.relo.insn}"
    if not 0 <= i < len(slots):
        raise CoreError(f"{where} is outside the program ({len(slots)} instructions)")
    s = slots[i]
    code = s[0]
    cls = code & 0x07

    def poison(msg: str) -> str:
        if code == OP_LDDW and i + 1 < len(slots):
            _poison_slot(slots[i + 1])
        _poison_slot(s)
        return msg

    if res.poison:
        return poison(res.failure())
    orig, new = res.orig_val, res.new_val
    if cls in (U.BPF_ALU, U.BPF_ALU64):
        if code & U.BPF_X:
            raise CoreError(f"{where}: ALU instruction with a register operand cannot be "
                            f"relocated")
        if res.validate and s[3] & 0xFFFFFFFFFFFFFFFF != orig:
            raise CoreError(f"{where}: unexpected ALU/ALU64 value: got {s[3] & 0xFFFFFFFF}, "
                            f"exp {orig} -> {new}")
        v = new & 0xFFFFFFFF
        s[3] = v - (1 << 32) if v & 0x80000000 else v
    elif cls in (U.BPF_LDX, U.BPF_ST, U.BPF_STX):
        if res.validate and s[2] & 0xFFFFFFFFFFFFFFFF != orig:
            raise CoreError(f"{where}: unexpected LDX/ST/STX value: got {s[2] & 0xFFFF}, "
                            f"exp {orig} -> {new}")
        if new > 0x7FFF:
            raise CoreError(f"{where}: LDX/ST/STX offset {new} is too big")
        if res.fail_memsz_adjust:
            return poison(res.failure())
        s[2] = new
        if res.new_sz != res.orig_sz:
            have = _SIZE_BYTES[code & 0x18]
            if have != res.orig_sz:
                raise CoreError(f"{where}: unexpected memory access size: got {have}, "
                                f"exp {res.orig_sz}")
            size = _BYTES_SIZE.get(res.new_sz)
            if size is None:
                raise CoreError(f"{where}: invalid new memory access size {res.new_sz}")
            s[0] = (code & 0xE0) | size | cls
    elif cls == U.BPF_LD:
        if code != OP_LDDW or i + 1 >= len(slots) or (s[1] >> 4) != 0 or s[2] != 0:
            raise CoreError(f"{where}: LDIMM64 has unexpected form")
        s2 = slots[i + 1]
        if s2[0] != 0 or s2[1] != 0 or s2[2] != 0:
            raise CoreError(f"{where}: LDIMM64 has unexpected form")
        imm = (s[3] & 0xFFFFFFFF) | ((s2[3] & 0xFFFFFFFF) << 32)
        if res.validate and imm != orig:
            raise CoreError(f"{where}: unexpected LDIMM64 value: got {imm}, exp {orig} -> {new}")
        lo, hi = new & 0xFFFFFFFF, (new >> 32) & 0xFFFFFFFF
        s[3] = lo - (1 << 32) if lo & 0x80000000 else lo
        s2[3] = hi - (1 << 32) if hi & 0x80000000 else hi
    else:
        raise CoreError(f"{where}: trying to relocate unrecognized instruction (code {code:#x})")
    return None


# ---------------------------------------------------------------------------------- whole objects


@dataclass
class CoreReport:
    """Outcome of relocating an object: patched instructions and one result per relocation."""
    insns: dict[str, list["Instruction"]]
    results: list[CoreResult] = field(default_factory=list)
    #: (section, instruction index) -> failure message, for each poisoned instruction
    poisoned: dict[tuple[str, int], str] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[KIND_NAMES[r.kind]] = out.get(KIND_NAMES[r.kind], 0) + 1
        return out


def apply_core_relos(insns_by_section: Mapping[str, Sequence["Instruction"]], btf_ext: "BTFExt",
                     local_btf: "BTF", target_btf: "BTF | None") -> CoreReport:
    """Relocate every section's instructions (``pc`` = slot index in the section).

    Returns new instruction lists (the inputs are immutable); relocations of
    sections not given are skipped, as libbpf skips code it does not load.
    """
    relocator = CoreRelocator(local_btf, target_btf)
    report = CoreReport({name: list(insns) for name, insns in insns_by_section.items()})
    for sec, relos in btf_ext.core_relos.items():
        insns = insns_by_section.get(sec)
        if insns is None:
            continue
        slots = [list(x) for x in unpack_slots(encode(insns))]
        for idx, relo in enumerate(relos):
            res = relocator.resolve(relo, idx)
            report.results.append(res)
            msg = patch_slots(slots, relo.insn, res)
            if msg is not None:
                report.poisoned[(sec, relo.insn)] = f"CO-RE relocation #{idx} failed: {msg}"
        report.insns[sec] = decode(pack_slots(slots), strict=False)
    return report


# ---------------------------------------------------------------------------------- run time

_POISONED: "OrderedDict[bytes, dict[int, str]]" = OrderedDict()
_POISONED_MAX = 256


def register_poisoned(program: Sequence["Instruction"] | bytes, failures: Mapping[int, str]) -> None:
    """Remember why instructions of a loaded program were poisoned (pc -> message),
    so that the interpreter can say which relocation failed if one is reached."""
    if not failures:
        return
    if not isinstance(program, (bytes, bytearray)):
        program = encode(program)
    key = hashlib.sha256(bytes(program)).digest()
    _POISONED[key] = dict(failures)
    _POISONED.move_to_end(key)
    while len(_POISONED) > _POISONED_MAX:
        _POISONED.popitem(last=False)


def poisoned_reason(image: bytes, pc: int) -> str:
    """The message for executing poisoned instruction ``pc`` of a program image."""
    f = _POISONED.get(hashlib.sha256(image).digest())
    if f and pc in f:
        return f[pc]
    return (f"CO-RE relocation failed: instruction was poisoned by the loader (call to invalid "
            f"helper {POISON_HELPER_ID:#x})")

