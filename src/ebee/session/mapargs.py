"""Map keys and values written on a command line (``ebee run --map-update NAME KEY VALUE``).

Two spellings, for every map: ``0x`` followed by exactly the key's (value's) size in hex
digits is the raw bytes in order, as bpftool's ``hex`` bytes; anything else is JSON -- an
integer, a list, an object, a string -- encoded through the map's BTF type (a struct from
an object with its members, ``char[]`` from a string), or, for a map without BTF, an
integer in the host's byte order.
"""
from __future__ import annotations

import json
from typing import Any

from ..btf.pyvalues import BTFValue


class MapArgError(ValueError):
    """A key or value that cannot be the map's: one line for the user."""


def _side(m: Any, which: str) -> tuple[int, int]:
    if which == "key":
        return m.key_size, m.btf_key_type_id if m.btf is not None else 0
    return m.value_size, m.btf_value_type_id if m.btf is not None else 0


def encode_arg(m: Any, text: str, which: str) -> bytes:
    """The bytes ``text`` stands for as ``m``'s key or value (``which``)."""
    size, tid = _side(m, which)
    t = text.strip()
    if t.lower().startswith("0x") and len(t) == 2 + 2 * size:
        try:
            return bytes.fromhex(t[2:])
        except ValueError:
            pass
    try:
        v = json.loads(t)
    except ValueError:
        v = t if tid else None      # a bare word: a string for char[] members
        if v is None:
            raise MapArgError(f"{which} {text!r}: not 0x followed by {2 * size} hex digits "
                              f"nor a JSON value") from None
    if tid:
        try:
            return BTFValue(m.btf, tid).encode(v)
        except (ValueError, TypeError, KeyError) as e:
            raise MapArgError(f"{which} {text!r}: {e}") from None
        except Exception as e:      # BTFError: a type with no Python value
            raise MapArgError(f"{which} {text!r}: {e}") from None
    if isinstance(v, bool) or not isinstance(v, int):
        raise MapArgError(f"{which} {text!r}: the map has no BTF for its {which}; give an "
                          f"integer or 0x and {2 * size} hex digits")
    try:
        return v.to_bytes(size, "little", signed=v < 0)
    except OverflowError:
        raise MapArgError(f"{which} {text!r}: does not fit {size} bytes") from None


def apply_updates(maps: dict, updates: list[tuple[str, str, str]]) -> None:
    """``maps[name][key] = value`` for each (name, key, value), as the map's update."""
    for name, k, v in updates:
        m = maps.get(name)
        if m is None:
            raise MapArgError(f"no map named {name!r} (maps: {', '.join(maps) or 'none'})")
        key = encode_arg(m, k, "key") if m.key_size else None
        try:
            m.update(key, encode_arg(m, v, "value"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MapArgError(f"map {name}: update failed: "
                              f"{getattr(e, 'strerror', None) or e}") from None


__all__ = ["MapArgError", "apply_updates", "encode_arg"]
