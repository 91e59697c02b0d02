"""``bpftool btf dump`` raw format, text and JSON, reproduced exactly."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from ..uapi import BTF_INT_BOOL, BTF_INT_CHAR, BTF_INT_SIGNED
from .types import Kind

if TYPE_CHECKING:
    from .btf import BTF
    from .types import Type

_ENCODING = {0: "(none)", BTF_INT_SIGNED: "SIGNED", BTF_INT_CHAR: "CHAR", BTF_INT_BOOL: "BOOL"}
_VAR_LINKAGE = {0: "static", 1: "global", 2: "extern"}
_FUNC_LINKAGE = {0: "static", 1: "global", 2: "extern"}


def _name(s: str) -> str:
    return s if s else "(anon)"


def _ids(btf: "BTF", type_ids: Iterable[int] | None) -> Iterable[int]:
    return range(btf.start_id, btf.type_count) if type_ids is None else type_ids


def format_raw(btf: "BTF", type_ids: Iterable[int] | None = None) -> str:
    """One block per type, as ``bpftool btf dump file F`` prints it."""
    out: list[str] = []
    for tid in _ids(btf, type_ids):
        out.append(format_type_raw(btf, btf[tid]))
    return "".join(out)


def format_type_raw(btf: "BTF", t: "Type") -> str:
    k = t.kind
    head = f"[{t.id}] {k.name} '{_name(t.name)}'"
    if k is Kind.INT:
        return (f"{head} size={t.size} bits_offset={t.bits_offset} nr_bits={t.nr_bits} "
                f"encoding={_ENCODING.get(t.encoding, 'UNKN')}\n")
    if k in (Kind.PTR, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPEDEF, Kind.TYPE_TAG):
        return f"{head} type_id={t.type_id}\n"
    if k is Kind.ARRAY:
        return f"{head} type_id={t.type_id} index_type_id={t.index_type_id} nr_elems={t.nelems}\n"
    if k in (Kind.STRUCT, Kind.UNION):
        lines = [f"{head} size={t.size} vlen={len(t.members)}"]
        for m in t.members:
            s = f"\t'{_name(m.name)}' type_id={m.type_id} bits_offset={m.bits_offset}"
            if m.bitfield_size:
                s += f" bitfield_size={m.bitfield_size}"
            lines.append(s)
        return "\n".join(lines) + "\n"
    if k in (Kind.ENUM, Kind.ENUM64):
        enc = "SIGNED" if t.signed else "UNSIGNED"
        suffix = ("LL" if t.signed else "ULL") if k is Kind.ENUM64 else ""
        lines = [f"{head} encoding={enc} size={t.size} vlen={len(t.values)}"]
        lines += [f"\t'{_name(v.name)}' val={v.value}{suffix}" for v in t.values]
        return "\n".join(lines) + "\n"
    if k is Kind.FWD:
        return f"{head} fwd_kind={'union' if t.is_union else 'struct'}\n"
    if k is Kind.FUNC:
        return f"{head} type_id={t.type_id} linkage={_FUNC_LINKAGE[t.linkage]}\n"
    if k is Kind.FUNC_PROTO:
        lines = [f"{head} ret_type_id={t.return_type_id} vlen={len(t.params)}"]
        lines += [f"\t'{_name(p.name)}' type_id={p.type_id}" for p in t.params]
        return "\n".join(lines) + "\n"
    if k is Kind.VAR:
        return f"{head} type_id={t.type_id}, linkage={_VAR_LINKAGE[t.linkage]}\n"
    if k is Kind.DATASEC:
        lines = [f"{head} size={t.size} vlen={len(t.vars)}"]
        for v in t.vars:
            vt = btf[v.type_id]
            lines.append(f"\ttype_id={v.type_id} offset={v.offset} size={v.size} "
                         f"({vt.kind.name} '{_name(vt.name)}')")
        return "\n".join(lines) + "\n"
    if k is Kind.FLOAT:
        return f"{head} size={t.size}\n"
    if k is Kind.DECL_TAG:
        return f"{head} type_id={t.type_id} component_idx={t.component_idx}\n"
    return head + "\n"     # pragma: no cover - every kind is handled above


def type_json(btf: "BTF", t: "Type") -> dict:
    """One entry of ``bpftool -j btf dump``'s "types" array (same keys, same order)."""
    k = t.kind
    d: dict = {"id": t.id, "kind": k.name, "name": _name(t.name)}
    if k is Kind.INT:
        d.update(size=t.size, bits_offset=t.bits_offset, nr_bits=t.nr_bits,
                 encoding=_ENCODING.get(t.encoding, "UNKN"))
    elif k in (Kind.PTR, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPEDEF, Kind.TYPE_TAG):
        d["type_id"] = t.type_id
    elif k is Kind.ARRAY:
        d.update(type_id=t.type_id, index_type_id=t.index_type_id, nr_elems=t.nelems)
    elif k in (Kind.STRUCT, Kind.UNION):
        members = []
        for m in t.members:
            e = {"name": _name(m.name), "type_id": m.type_id, "bits_offset": m.bits_offset}
            if m.bitfield_size:
                e["bitfield_size"] = m.bitfield_size
            members.append(e)
        d.update(size=t.size, vlen=len(t.members), members=members)
    elif k in (Kind.ENUM, Kind.ENUM64):
        if k is Kind.ENUM and not t.signed:
            # bpftool passes the __s32 btf_enum.val to jsonw_uint_field (a u64), so
            # unsigned values with bit 31 set come out sign-extended; keep that.
            vals = [v.value | 0xFFFFFFFF00000000 if v.value & 0x80000000 else v.value
                    for v in t.values]
        else:
            vals = [v.value for v in t.values]
        d.update(encoding="SIGNED" if t.signed else "UNSIGNED", size=t.size, vlen=len(t.values),
                 values=[{"name": _name(v.name), "val": x} for v, x in zip(t.values, vals)])
    elif k is Kind.FWD:
        d["fwd_kind"] = "union" if t.is_union else "struct"
    elif k is Kind.FUNC:
        d.update(type_id=t.type_id, linkage=_FUNC_LINKAGE[t.linkage])
    elif k is Kind.FUNC_PROTO:
        d.update(ret_type_id=t.return_type_id, vlen=len(t.params),
                 params=[{"name": _name(p.name), "type_id": p.type_id} for p in t.params])
    elif k is Kind.VAR:
        d.update(type_id=t.type_id, linkage=_VAR_LINKAGE[t.linkage])
    elif k is Kind.DATASEC:
        d.update(size=t.size, vlen=len(t.vars),
                 vars=[{"type_id": v.type_id, "offset": v.offset, "size": v.size} for v in t.vars])
    elif k is Kind.FLOAT:
        d["size"] = t.size
    elif k is Kind.DECL_TAG:
        d.update(type_id=t.type_id, component_idx=t.component_idx)
    return d


def format_json(btf: "BTF", type_ids: Iterable[int] | None = None) -> dict:
    return {"types": [type_json(btf, btf[tid]) for tid in _ids(btf, type_ids)]}
