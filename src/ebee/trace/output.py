"""bpftrace 0.17's output, exactly: printf, values, maps, histograms, JSON lines.

The rules (measured on bpftrace 0.17 and read from its ``output.cpp`` /
``bpftrace.cpp``) are in ``../shared/trace/FORMAT.md``; this module is their
one implementation, shared by the kernel and user-space runtimes.  Values
arrive here already decoded (:mod:`ebee.trace.values`); formatting needs no
kernel.
"""
from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from .functions import FORMAT_SPEC

BAR_WIDTH = 52


# -- printf ------------------------------------------------------------------------------

_SPEC = re.compile(r"%(-?)([0-9]*)(?:\.([0-9]+))?(hh|h|ll|l|j|z|t)?([a-zA-Z])")
_BITS = {"hh": 8, "h": 16, None: 32, "l": 64, "ll": 64, "j": 64, "z": 64, "t": 64}


@lru_cache(maxsize=4096)
def _conversion(spec: str) -> Callable[[Any], str]:
    """One conversion as glibc's snprintf does it for a 64-bit argument, as a function."""
    m = _SPEC.fullmatch(spec)
    if m is None:
        return lambda v: spec
    left, width, prec, length, conv = m.groups()
    w = int(width) if width else 0

    def pad(s: str) -> str:
        if not w:
            return s
        return s.ljust(w) if left else s.rjust(w)
    if conv in "sr":
        p = int(prec) if prec is not None else None
        return lambda v: pad((v if isinstance(v, str) else str(v))[:p])
    bits = _BITS[length]
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    if conv == "p":
        return lambda v: pad(v) if isinstance(v, str) else pad(
            "(nil)" if not int(v) & 0xFFFFFFFFFFFFFFFF else f"0x{int(v) & 0xFFFFFFFFFFFFFFFF:x}")
    if conv == "c":
        return lambda v: pad(v) if isinstance(v, str) else pad(chr(int(v) & 0xFF))
    pyfmt = "%" + left + width + (f".{prec}" if prec is not None else "") + \
        {"u": "d", "i": "d"}.get(conv, conv)
    signed = conv in "di"

    def num(v: Any) -> str:
        if isinstance(v, str):          # a symbol or the like printed with an integer spec
            return pad(v)
        x = int(v) & mask
        if signed and x & sign:
            x -= 1 << bits
        return pyfmt % x
    return num


def c_format(spec: str, value: Any) -> str:
    """One conversion as glibc's snprintf does it, for a 64-bit argument."""
    return _conversion(spec)(value)


@lru_cache(maxsize=4096)
def _parse_format(fmt: str) -> tuple[tuple[tuple[str, Callable[[Any], str], str], ...], str]:
    """bpftrace 0.17's format(): each specifier its regex finds (``%%`` is not special to
    it) consumes an argument; the text before a specifier goes through snprintf with it
    (so ``%%`` there prints ``%``), the text after the last one is copied as it is."""
    parts = []
    pos = 0
    for m in FORMAT_SPEC.finditer(fmt):
        parts.append((fmt[pos:m.start()].replace("%%", "%"), _conversion(m.group(0)),
                      m.group(0)))
        pos = m.end()
    return tuple(parts), fmt[pos:]


# struct codes that read a 64-bit little-endian slot the way a C conversion reads the
# argument: %d takes the low 32 bits as an int, %hhu the low byte ...
_STRUCT_CODE = {(None, True): "i4x", (None, False): "I4x", ("h", True): "h6x",
                ("h", False): "H6x", ("hh", True): "b7x", ("hh", False): "B7x"}


def integer_printf(fmt: str, offsets: list[int]) -> tuple[struct.Struct, str] | None:
    """For a printf whose arguments are all integers (at ``offsets`` of the record) and
    whose conversions Python's ``%`` does the same way: one struct and one format string
    that give bpftrace's text (None when that does not hold)."""
    matches = list(FORMAT_SPEC.finditer(fmt))
    if len(matches) != len(offsets) or sorted(offsets) != offsets:
        return None
    codes = ["<"]
    pos_rec = 0
    out = []
    pos = 0
    for m, off in zip(matches, offsets):
        sm = _SPEC.fullmatch(m.group(0))
        left, width, prec, length, conv = sm.groups()
        if conv not in "duxXoc":
            return None
        if off > pos_rec:
            codes.append(f"{off - pos_rec}x")
        signed = conv == "d"
        key = (length if length in ("h", "hh") else None if length is None else "l", signed)
        code = _STRUCT_CODE.get(key) or ("q" if signed else "Q")
        if conv == "c":
            code = "B7x"
        codes.append(code)
        pos_rec = off + 8
        lit = fmt[pos:m.start()].replace("%%", "%").replace("%", "%%")
        out.append(lit + "%" + left + width + (f".{prec}" if prec is not None else "") +
                   {"u": "d"}.get(conv, conv))
        pos = m.end()
    out.append(fmt[pos:].replace("%", "%%"))
    return struct.Struct("".join(codes)), "".join(out)


def format_printf(fmt: str, values: list[Any]) -> str:
    parts, tail = _parse_format(fmt)
    out = []
    for (lit, conv, spec), v in zip(parts, values):
        out.append(lit)
        out.append(conv(v))
    for lit, _, spec in parts[len(values):]:
        out.append(lit + spec)
    out.append(tail)
    return "".join(out)


# -- histogram labels --------------------------------------------------------------------

def _suffix(n: int) -> str:
    for shift, suf in ((40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if n >= (1 << shift) and n % (1 << shift) == 0:
            return f"{n >> shift}{suf}"
    return str(n)


def log2_label(idx: int) -> str:
    if idx == 0:
        return "(..., 0)"
    if idx == 1:
        return "[0]"
    if idx == 2:
        return "[1]"
    lo = 1 << (idx - 2)
    return f"[{_suffix(lo)}, {_suffix(lo * 2)})"


def _lsuffix(n: int) -> str:
    if n == 0:
        return "0"
    if n % 1048576 == 0:
        return f"{n // 1048576}M"
    if n % 1024 == 0:
        return f"{n // 1024}K"
    return str(n)


def lhist_label(idx: int, lo: int, hi: int, step: int) -> str:
    n = (hi - lo) // step
    if idx == 0:
        return f"(..., {_lsuffix(lo)})"
    if idx == n + 1:
        return f"[{_lsuffix(hi)}, ...)"
    a = lo + (idx - 1) * step
    return f"[{_lsuffix(a)}, {_lsuffix(a + step)})"


def hist_lines(buckets: dict[int, int], label: Callable[[int], str], div: int = 0) -> str:
    """The bucket lines of one histogram (first to last non-empty bucket)."""
    if div:
        buckets = {k: v // div for k, v in buckets.items()}
    nonzero = [k for k, v in buckets.items() if v]
    if not nonzero:
        return ""
    lo, hi = min(nonzero), max(nonzero)
    top = max(buckets.values())
    out = []
    for i in range(lo, hi + 1):
        c = buckets.get(i, 0)
        bar = int(c / top * BAR_WIDTH) if top else 0
        out.append(f"{label(i):<16}{c:>8} |{'@' * bar:<{BAR_WIDTH}}|\n")
    return "".join(out)


def hist_json(buckets: dict[int, int], kind: str, params: tuple, div: int = 0) -> list[dict]:
    if div:
        buckets = {k: v // div for k, v in buckets.items()}
    nonzero = [k for k, v in buckets.items() if v]
    if not nonzero:
        return []
    out = []
    for i in range(min(nonzero), max(nonzero) + 1):
        c = buckets.get(i, 0)
        d: dict[str, int] = {}
        if kind == "hist":
            if i == 0:
                d["max"] = -1
            elif i == 1:
                d.update(min=0, max=0)
            else:
                lo = 1 << (i - 2)
                d.update(min=lo, max=lo * 2 - 1)
        else:
            lo, hi, step = params
            n = (hi - lo) // step
            if i == 0:
                d["max"] = lo - 1
            elif i == n + 1:
                d["min"] = hi
            else:
                a = lo + (i - 1) * step
                d.update(min=a, max=a + step - 1)
        d["count"] = c
        out.append(d)
    return out


# -- maps --------------------------------------------------------------------------------

@dataclass
class MapEntry:
    """One element of a map as printed: key parts (decoded values) and the value."""
    key: tuple
    value: Any                  # int, str, tuple..., (count, total) for avg/stats, or a
    #                             {bucket: count} dict for hist/lhist
    sort_value: Any = 0


def js(v: Any) -> str:
    """bpftrace's JSON for a value: tuples as [a,b] with no spaces."""
    if isinstance(v, tuple):
        return "[" + ",".join(js(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    return str(v)


class Formatter:
    """Text or JSON output of events and maps; ``fmt_value`` turns a decoded value into
    the text bpftrace prints for it (symbols resolved by the runtime)."""

    def __init__(self, json_mode: bool = False):
        self.json = json_mode

    # -- messages ---------------------------------------------------------------------

    def attached(self, n: int) -> str:
        if self.json:
            return f'{{"type": "attached_probes", "data": {{"probes": {n}}}}}\n'
        return f"Attaching {n} probe{'s' if n != 1 else ''}...\n"

    def message(self, kind: str, text: str) -> str:
        if self.json:
            return f'{{"type": "{kind}", "data": {json.dumps(text)}}}\n'
        return text

    def value(self, text_value: str, json_value: Any) -> str:
        if self.json:
            return f'{{"type": "value", "data": {js(json_value)}}}\n'
        return text_value + "\n"

    def lost(self, n: int) -> str:
        if self.json:
            return f'{{"type": "lost_events", "data": {{"events": {n}}}}}\n'
        return f"Lost {n} events\n"

    # -- maps -------------------------------------------------------------------------

    def map(self, name: str, kind: str, params: tuple, entries: list[MapEntry],
            key_text: Callable[[tuple], str], value_text: Callable[[Any], str],
            value_json: Callable[[Any], Any], key_json: Callable[[tuple], str],
            top: int = 0, div: int = 0) -> str:
        """One map, sorted and formatted as print_map() does."""
        entries = sort_entries(kind, entries)
        if top:
            entries = entries[-top:]
        if self.json:
            return self._map_json(name, kind, params, entries, value_json, key_json, div)
        out = []
        if kind in ("hist", "lhist"):
            for e in entries:
                label = (log2_label if kind == "hist" else
                         (lambda i, p=params: lhist_label(i, *p)))
                head = f"{name}{key_text(e.key)}: \n"
                out.append(head + hist_lines(e.value, label, div) + "\n")
            return "".join(out) if entries else "\n"
        for e in entries:
            if kind == "stats":
                count, total = e.value
                if div:
                    count, total = count // div, total // div
                avg = _avg(total, count)
                text = f"count {count}, average {avg}, total {total}"
            elif kind == "avg":
                count, total = e.value
                text = str(_avg(total, count) // div if div else _avg(total, count))
            else:
                v = e.value
                if div and isinstance(v, int):
                    v = v // div
                text = value_text(v)
            out.append(f"{name}{key_text(e.key)}: {text}\n")
        if kind in ("avg", "stats") or not entries:
            out.append("\n")
        return "".join(out)

    def _map_json(self, name, kind, params, entries, value_json, key_json, div) -> str:
        typ = {"hist": "hist", "lhist": "hist", "stats": "stats", "avg": "stats"}.get(kind, "map")

        def one(e: MapEntry) -> str:
            if kind in ("hist", "lhist"):
                items = hist_json(e.value, kind, params, div)
                return "[" + ", ".join("{" + ", ".join(f'"{k}": {v}' for k, v in d.items())
                                       + "}" for d in items) + "]"
            if kind == "stats":
                count, total = e.value
                return (f'{{"count": {count}, "average": {_avg(total, count)}, '
                        f'"total": {total}}}')
            if kind == "avg":
                count, total = e.value
                return str(_avg(total, count))
            v = e.value
            if div and isinstance(v, int):
                v //= div
            return js(value_json(v))
        scalar = len(entries) == 1 and entries[0].key == ()
        if scalar:
            body = one(entries[0])
        else:
            body = "{" + ", ".join(f"{json.dumps(key_json(e.key))}: {one(e)}"
                                   for e in entries) + "}"
        return f'{{"type": "{typ}", "data": {{"{name}": {body}}}}}\n'


def _avg(total: int, count: int) -> int:
    if not count:
        return 0
    q = abs(total) // count
    return q if total >= 0 else -q


def sort_entries(kind: str, entries: list[MapEntry]) -> list[MapEntry]:
    """bpftrace's print_map order: by value (counts, sums, integers, min/max, averages,
    histogram totals) ascending, else by key."""
    if kind in ("hist", "lhist"):
        return sorted(entries, key=lambda e: sum(e.value.values()))
    if kind in ("avg", "stats"):
        return sorted(entries, key=lambda e: _avg(e.value[1], e.value[0]))
    if all(isinstance(e.value, int) and not isinstance(e.value, bool) for e in entries):
        return sorted(entries, key=lambda e: e.value)
    return sorted(entries, key=lambda e: _key_order(e.key))


def _key_order(key: tuple) -> tuple:
    out = []
    for k in key:
        if isinstance(k, int):
            out.append((0, k, ""))
        else:
            out.append((1, 0, str(k)))
    return tuple(out)
