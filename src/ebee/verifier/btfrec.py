"""A map value's special fields (bpf_spin_lock, bpf_timer, kptrs...) from its BTF.

Linux computes ``map->record`` from the map's BTF value type when the map
is created; the verifier forbids plain loads/stores that touch those fields.
"""
from __future__ import annotations

_SPECIAL = {"bpf_spin_lock": "bpf_spin_lock", "bpf_res_spin_lock": "bpf_res_spin_lock",
            "bpf_timer": "bpf_timer", "bpf_wq": "bpf_wq", "bpf_task_work": "bpf_task_work",
            "bpf_list_head": "bpf_list_head", "bpf_list_node": "bpf_list_node",
            "bpf_rb_root": "bpf_rb_root", "bpf_rb_node": "bpf_rb_node",
            "bpf_refcount": "bpf_refcount", "bpf_workqueue": "bpf_wq"}


def record_for_map(m) -> tuple:
    btf = getattr(m, "btf", None)
    tid = getattr(m, "btf_value_type_id", 0)
    if btf is None or not tid:
        return ()
    out = []
    _walk(btf, tid, 0, out, 0)
    return tuple(sorted(out))


def _walk(btf, tid: int, base: int, out: list, depth: int) -> None:
    if depth > 8:
        return
    t = btf.resolve(tid)
    k = t.kind.name
    if k == "STRUCT" and t.name in _SPECIAL:
        out.append((base, btf.sizeof(t), _SPECIAL[t.name]))
        return
    if k in ("STRUCT", "UNION"):
        for m in t.members:
            _walk(btf, m.type_id, base + m.bits_offset // 8, out, depth + 1)
    elif k == "ARRAY":
        et = btf.resolve(t.type_id)
        if et.kind.name == "STRUCT" and et.name in _SPECIAL and t.nelems:
            _walk(btf, t.type_id, base, out, depth + 1)
    elif k == "PTR":
        pass
