"""Changing a map's value size between open and load: libbpf's ``bpf_map__set_value_size``.

For a user map the size is only recorded.  A global-data map (``.data``, ``.bss``,
``.rodata``, ``.data.*``, ...) is memory libbpf has already mapped with the section's
contents, so resizing it also keeps the first ``min(old, new)`` bytes and zero-fills
the rest -- and, since libbpf 1.2, adjusts the object's BTF so the map's DATASEC still
describes it (``map_btf_datasec_resize``): the *last* variable of the section must be
an array; it gets a new ARRAY type (same element and index type) of ``(size - offset) /
element size`` elements, the variable's entry in the DATASEC that size, and the DATASEC
the new size.  When the section cannot be described that way (no array last, a size
that does not fit whole elements) libbpf still resizes the map but drops its BTF value
type, with a warning; the kernel backend then creates the map without BTF, as libbpf
does.
"""
from __future__ import annotations

import errno

from ..btf import BTF, Kind
from ..btf.blob import BTFBlob
from ..uapi import BtfKind, MapType
from .spec import ObjectSpec


def set_value_size(spec: ObjectSpec, name: str, size: int) -> str | None:
    """Resize map ``name`` of an opened object to ``size``-byte values (see the module
    doc).  Returns libbpf's warning when the BTF could not follow, else None; OSError
    (EOPNOTSUPP) for a global-data map that is not an array."""
    m = spec.maps[name]
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 0xFFFFFFFF:
        raise ValueError(f"map '{name}': a value size is a u32, not {size!r}")
    if not m.is_internal:
        m.value_size = size
        return None
    if m.type is not MapType.ARRAY:
        raise OSError(errno.EOPNOTSUPP, f"map '{name}': only array global data can be resized")
    old = m.data if m.data is not None else bytes(m.value_size)
    m.data = bytes(old[:size]) + bytes(max(0, size - len(old)))
    m.value_size = size
    why = _resize_datasec(spec, name, size)
    if why is None:
        return None
    # libbpf keeps the resize and clears the map's BTF key/value type ids
    m.btf_cleared = True
    spec.datasecs[name] = [v for v in spec.datasecs.get(name, []) if v[1] + v[2] <= size]
    warning = (f"map '{name}': cannot be resized, {why}; failed to adjust resized BTF, "
               f"clearing BTF key/value info")
    spec.warnings.append(warning)
    return warning


def _resize_datasec(spec: ObjectSpec, name: str, size: int) -> str | None:
    """map_btf_datasec_resize(): None when done, else why not."""
    btf = spec.btf
    layout = spec.datasecs.get(name)
    if btf is None or layout is None:
        return None                       # -ENOENT: nothing to adjust, not an error
    if not layout:
        return "map value datasec is empty"
    _, off, _, var_id = max(layout, key=lambda v: v[1])      # the last one, by offset
    arr = btf.resolve(btf[var_id].type_id)
    if arr.kind is not Kind.ARRAY:
        return "last var must be an array"
    elem = btf.sizeof(arr.type_id)
    if elem <= 0 or ((size - off) & 0xFFFFFFFF) % elem:
        return (f"element size ({elem}) doesn't align with new total size ({size})")
    nelems = ((size - off) & 0xFFFFFFFF) // elem
    ds_id = btf.find(name, Kind.DATASEC).id
    b = BTFBlob(btf.data)
    new_arr = b.add_type([0, int(BtfKind.ARRAY) << 24, 0, arr.type_id, arr.index_type_id,
                          nelems])
    # the DATASEC as libbpf holds it after btf_fixup_datasec: its size and every
    # variable's offset filled in, sorted by offset -- then the last one resized
    offsets = {tid: (o, sz) for _, o, sz, tid in layout}
    base = b.offs[ds_id - 1]
    entries = []
    for i in range(b.vlen(ds_id)):
        tid, o, sz = b.types[base + 3 + 3 * i:base + 6 + 3 * i]
        o, sz = offsets.get(tid, (o, sz))
        entries.append([tid, o, sz])
    entries.sort(key=lambda e: e[1])
    for e in entries:
        if e[0] == var_id:
            e[2] = size - off
    for i, e in enumerate(entries):
        b.types[base + 3 + 3 * i:base + 6 + 3 * i] = type(b.types)("I", e)
    b.set_word(ds_id, 2, size)
    b.set_word(var_id, 2, new_arr)
    spec.btf = BTF.from_bytes(b.to_bytes(), btf.base, pointer_size=btf.pointer_size)
    spec.datasecs[name] = [(n, o, size - off if t == var_id else sz, t)
                           for n, o, sz, t in layout]
    return None


__all__ = ["set_value_size"]
