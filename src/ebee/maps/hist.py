"""Histograms printed from maps, in BCC's format (``bcc/table.py``).

A BPF tool counts events into buckets -- ``hist[log2(latency)]++`` or
``hist[{disk, slot}]++`` -- and user space prints the map as a histogram.  BCC's
``print_log2_hist``/``print_linear_hist`` set the format every BCC user reads
(and libbpf-tools' ``print_log2_hist`` in ``trace_helpers.c`` copies it), so
ebee's maps print exactly the same text, character for character:

* log2: slot ``i`` (1 and up) covers ``[2**(i-1), 2**i - 1]``, the first row
  ``0 -> 1``; slot 0 (the value 0, for ``bpf_log2l``) is never shown; rows end
  at the last non-empty slot; past slot 32 the columns widen and the bar halves;
* linear: one row per slot from 0 to the last non-empty one;
* the bar: ``floor(40 * count / max)`` stars (float arithmetic, as BCC), padded
  to 40 columns.

A map whose key is a struct prints one histogram per distinct first member
(the *bucket*, BCC's "secondary key"), its second member being the slot:
``section_header``, ``section_print_fn``, ``bucket_fn`` and ``bucket_sort_fn``
work as in BCC.  Keys and values are read through the map's BTF (or the
``key_type`` the user set); a per-CPU map's counts are summed over CPUs.
"""
from __future__ import annotations

import ctypes
import dataclasses
import math
from typing import Any, Callable, Iterable

from ..btf.pyvalues import BTFValue

STARS_MAX = 40
LOG2_INDEX_MAX = 65          # enough for the log2 of any 64-bit value
LINEAR_INDEX_MAX = 1025


def stars(val: int, val_max: int, width: int) -> str:
    """The bar of one row: as many stars as BCC's loop draws, '+' last if clipped."""
    if val_max <= 0:
        return ""
    # BCC stops at the first i with i > width*val/val_max - 1 (a float) or i > width-1
    n = min(width, max(0, math.floor(width * val / val_max - 1) + 1))
    text = "*" * n
    if val > val_max:
        text = text[:-1] + "+"
    return text


def log2_hist_lines(vals: list[int], val_type: str = "value",
                    strip_leading_zero: bool | None = None) -> list[str]:
    """The lines BCC's ``_print_log2_hist`` prints for the slot counts ``vals``."""
    idx_max = -1
    val_max = 0
    for i, v in enumerate(vals):
        if v > 0:
            idx_max = i
        val_max = max(val_max, v)
    if idx_max <= 32:
        header, lo_w, hi_w, width = "     %-19s : count     distribution", 10, 10, STARS_MAX
    else:
        header, lo_w, hi_w, width = ("               %-29s : count     distribution", 20, 20,
                                     STARS_MAX // 2)
    out: list[str] = []
    if idx_max > 0:
        out.append(header % val_type)
    strip = bool(strip_leading_zero)
    for i in range(1, idx_max + 1):
        low, high = (1 << i) >> 1, (1 << i) - 1
        if low == high:
            low -= 1
        val = vals[i]
        if strip and not val:
            continue
        strip = False
        out.append(f"{low:>{lo_w}d} -> {high:<{hi_w}d} : {val:<8d} "
                   f"|{stars(val, val_max, width):<{width}s}|")
    return out


def linear_hist_lines(vals: list[int], val_type: str = "value") -> list[str]:
    """The lines BCC's ``_print_linear_hist`` prints for the slot counts ``vals``."""
    idx_max = -1
    val_max = 0
    for i, v in enumerate(vals):
        if v > 0:
            idx_max = i
        val_max = max(val_max, v)
    out: list[str] = []
    if idx_max >= 0:
        out.append("     %-13s : count     distribution" % val_type)
    for i in range(idx_max + 1):
        val = vals[i]
        out.append(f"        {i:<10d} : {val:<8d} |{stars(val, val_max, STARS_MAX):<40s}|")
    return out


# -- reading a map as slots -------------------------------------------------------------------

def _key_decoder(m) -> Callable[[bytes], Any]:
    t = m.key_type
    if isinstance(t, type) and issubclass(t, (ctypes.Structure, ctypes.Union,
                                              ctypes._SimpleCData)):
        return t.from_buffer_copy
    if isinstance(t, BTFValue):
        return t.decode
    if m.btf is not None and m.btf_key_type_id:
        return BTFValue(m.btf, m.btf_key_type_id).decode
    return lambda raw: int.from_bytes(raw, "little")


def _fields(key: Any) -> list[tuple[str, Any]] | None:
    """A struct key's members in order (None for a scalar key); BCC skips the padding
    member its code generator may insert after the bucket."""
    if isinstance(key, (ctypes.Structure, ctypes.Union)):
        names = [f[0] for f in key._fields_ if not f[0].startswith("__pad")]
        return [(n, getattr(key, n)) for n in names]
    if dataclasses.is_dataclass(key) and not isinstance(key, type):
        return [(f.name, getattr(key, f.name)) for f in dataclasses.fields(key)]
    return None


def _scalar(v: Any, what: str) -> int:
    if isinstance(v, ctypes._SimpleCData):
        v = v.value
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"histogram {what} must be an integer, not {type(v).__name__}")
    return v


def _count(m, raw: bytes) -> int:
    """A value as a count: an unsigned integer, summed over CPUs for per-CPU maps."""
    vs = m.value_size
    if not 1 <= vs <= 8:
        raise TypeError(f"histogram counts must be integers of at most 8 bytes, not "
                        f"{vs}-byte values")
    if not m.percpu:
        return int.from_bytes(raw[:vs], "little")
    es = m.elem_size
    return sum(int.from_bytes(raw[i * es:i * es + vs], "little") for i in range(m.ncpus))


def _slots(m, index_max: int, bucket_fn) -> tuple[list[int] | None, dict[Any, list[int]]]:
    """The map's counts by slot: one list for a scalar key, or per bucket for a struct
    key (buckets in the map's iteration order)."""
    dec = _key_decoder(m)
    flat: list[int] | None = None
    sections: dict[Any, list[int]] = {}
    for raw_key in m.raw_keys():
        try:
            raw = m.raw_lookup(raw_key)
        except KeyError:
            continue        # deleted while iterating
        key = dec(raw_key)
        fields = _fields(key)
        if fields is None:
            slot, vals = _scalar(key, "key"), None
            if flat is None:
                flat = [0] * index_max
            vals = flat
        else:
            if len(fields) < 2:
                raise TypeError("a struct key of a histogram needs two members: "
                                "the bucket, then the slot")
            bucket = fields[0][1]
            if bucket_fn is not None:
                bucket = bucket_fn(bucket)
            vals = sections.setdefault(bucket, [0] * index_max)
            slot = _scalar(fields[1][1], "slot")
        if not 0 <= slot < index_max:
            raise IndexError(f"histogram slot {slot} is out of range (0..{index_max - 1})")
        vals[slot] = _count(m, raw)
    return flat, sections


def _render(m, index_max: int, lines: Callable[[list[int]], list[str]], section_header: str,
            section_print_fn, bucket_fn, bucket_sort_fn) -> list[str]:
    flat, sections = _slots(m, index_max, bucket_fn)
    if not sections:
        return lines(flat or [0] * index_max)
    out: list[str] = []
    buckets: Iterable[Any] = list(sections)
    if bucket_sort_fn is not None:
        buckets = bucket_sort_fn(buckets)
    for bucket in buckets:
        label = section_print_fn(bucket) if section_print_fn else repr(bucket)
        out.append("")
        out.append(f"{section_header} = {label}")
        out.extend(lines(sections[bucket]))
    return out


def format_log2_hist(m, val_type: str = "value", section_header: str = "Bucket ptr",
                     section_print_fn=None, bucket_fn=None, strip_leading_zero=None,
                     bucket_sort_fn=None) -> str:
    """What :func:`print_log2_hist` prints, as a string (lines end with newlines)."""
    lines = _render(m, LOG2_INDEX_MAX,
                    lambda v: log2_hist_lines(v, val_type, strip_leading_zero),
                    section_header, section_print_fn, bucket_fn, bucket_sort_fn)
    return "".join(line + "\n" for line in lines)


def format_linear_hist(m, val_type: str = "value", section_header: str = "Bucket ptr",
                       section_print_fn=None, bucket_fn=None, bucket_sort_fn=None) -> str:
    """What :func:`print_linear_hist` prints, as a string (lines end with newlines)."""
    lines = _render(m, LINEAR_INDEX_MAX, lambda v: linear_hist_lines(v, val_type),
                    section_header, section_print_fn, bucket_fn, bucket_sort_fn)
    return "".join(line + "\n" for line in lines)
