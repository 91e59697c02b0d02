"""btf_struct_ids_match: is a pointer to one kernel struct usable as a pointer to another?"""
from __future__ import annotations

from ..btf import BTF


def btf_struct_ids_match(btf: BTF, have: int, off: int, need: int, strict: bool) -> bool:
    """btf_struct_ids_match: ``have`` at ``off`` is ``need``, or (not strict) a struct
    that holds ``need`` at that offset, nested members walked at their offset."""
    if off == 0 and have == need:
        return True
    if strict:
        return False
    seen = 0
    while seen < 16:
        seen += 1
        try:
            t = btf.resolve(have)
        except Exception:
            return False
        nested = None
        for m in getattr(t, "members", ()) or ():
            moff = m.bits_offset // 8
            try:
                mt = btf.resolve(m.type_id)
                msz = btf.sizeof(mt)
            except Exception:
                continue
            if moff <= off < moff + msz and mt.kind.name == "STRUCT":
                nested = (mt.id, off - moff)
                break
        if nested is None:
            return False
        have, off = nested
        if have == need and off == 0:
            return True
    return False
