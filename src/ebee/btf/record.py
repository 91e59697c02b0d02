"""Special fields of a BTF type: the kernel's ``btf_record``.

A map value (or an object from ``bpf_obj_new``) may embed kernel objects the
verifier and the runtime treat specially -- ``struct bpf_spin_lock``,
``bpf_timer``, list and rbtree heads and nodes, ... .  Linux finds them
through the value's BTF (``btf_parse_fields``); so does this module, for the
maps, the loader and the verifier alike.
"""
from __future__ import annotations

from dataclasses import dataclass

from .types import Array, Kind
from .btf import BTF


SPECIAL_FIELDS = ("bpf_spin_lock", "bpf_timer", "bpf_list_head", "bpf_list_node",
                  "bpf_rb_root", "bpf_rb_node", "bpf_refcount", "bpf_wq", "bpf_res_spin_lock")

#: the special fields that hold a graph (what they hold is in a ``contains:`` decl tag)
GRAPH_ROOT_KINDS = ("bpf_list_head", "bpf_rb_root")

#: nesting depth beyond which structs are not searched (bounds self-referencing BTF)
_MAX_DEPTH = 8


def value_record(btf: BTF, type_id: int) -> dict[str, int]:
    """Byte offsets of the special kernel objects (``struct bpf_spin_lock`` ...) a map
    value contains, found through its BTF type (the kernel's ``btf_record``).
    Nested structs are searched; the first field of each kind wins."""
    out: dict[str, int] = {}
    if not type_id:
        return out

    def walk(tid: int, base: int, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        t = btf.resolve(tid)
        name = getattr(t, "name", "")
        if name in SPECIAL_FIELDS:
            out.setdefault(name, base)
            return
        for m in getattr(t, "members", ()) or ():
            walk(m.type_id, base + m.bits_offset // 8, depth + 1)
        if isinstance(t, Array) and t.nelems:
            walk(t.type_id, base, depth + 1)

    try:
        walk(type_id, 0, 0)
    except (KeyError, AttributeError, IndexError):
        return out
    return out


@dataclass(frozen=True)
class GraphRoot:
    """A ``bpf_list_head``/``bpf_rb_root`` and what it holds, from its
    ``__contains(elem, node)`` tag: the element struct and its node's offset."""
    kind: str               # "bpf_list_head" or "bpf_rb_root"
    elem_id: int            # BTF id of the element struct
    elem: str               # its name
    node_off: int           # byte offset of its bpf_list_node / bpf_rb_node


def graph_roots(btf: BTF, holders: list[tuple[int, int]]) -> dict[int, GraphRoot] | None:
    """The graph roots inside a value, by byte offset.  ``holders`` are (BTF id,
    offset) of what makes up the value: its type, or a DATASEC's VARs (the tag then
    sits on the VAR itself, as for ``private(A) struct bpf_list_head h __contains(..)``).
    None when a root names an element type or node the BTF lacks: Linux then
    refuses the value's whole record (no valid spin lock either)."""
    tags: dict[tuple[int, int], str] = {}
    for t in btf:
        if t.kind is Kind.DECL_TAG and t.name.startswith("contains:"):
            tags[(t.type_id, t.component_idx)] = t.name
    out: dict[int, GraphRoot] = {}
    if not tags:
        return out

    bad = []

    def root(tag: str | None, kind: str, off: int) -> None:
        parts = tag.split(":") if tag else []
        if len(parts) != 3:
            bad.append(off)
            return
        try:
            elem = btf.find(parts[1], Kind.STRUCT)
        except KeyError:
            bad.append(off)
            return
        for m in elem.members:
            if m.name == parts[2]:
                out[off] = GraphRoot(kind, elem.id, elem.name, m.bits_offset // 8)
                return
        bad.append(off)

    def walk(tid: int, base: int, tag: str | None, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        t = btf.resolve(tid)
        name = getattr(t, "name", "")
        if name in GRAPH_ROOT_KINDS:
            root(tag, name, base)
            return
        for i, m in enumerate(getattr(t, "members", ()) or ()):
            walk(m.type_id, base + m.bits_offset // 8, tags.get((t.id, i)), depth + 1)

    try:
        for tid, off in holders:
            t = btf[tid]
            if t.kind is Kind.VAR:
                walk(t.type_id, off, tags.get((tid, -1)), 0)
            else:
                walk(tid, off, None, 0)
    except (KeyError, AttributeError, IndexError):
        pass
    return None if bad else out
