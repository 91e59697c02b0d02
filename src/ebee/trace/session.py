"""What both runtimes share: decoding event records and maps, printing them.

A :class:`Session` owns a compiled :class:`~ebee.trace.compiler.Script`, the map
objects it runs with (``ebee.Map`` in user space, ``KernelMapHandle`` in the
kernel: the same raw-key/raw-value interface) and the output.  The backends only
create the maps, run the programs and feed ring-buffer records to
:meth:`Session.handle`.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from typing import Any, Callable

from .compiler import Script
from .layout import JOIN_ARGNUM, JOIN_ARGSIZE, LOST_MAP, MapSpec
from .output import Formatter, MapEntry, format_printf, integer_printf, hist_lines, lhist_label, log2_label
from .values import (STACK_INDENT_MAP, Resolver, decode, json_value, printf_arg, text)


class Session:
    def __init__(self, script: Script, resolver: Resolver, *, json: bool = False,
                 write: Callable[[str], Any] | None = None):
        self.script = script
        self.res = script.resources
        self.resolver = resolver
        self.fmt = Formatter(json)
        self.bpf_maps: dict[str, Any] = {}     # name -> map object (raw_keys/raw_lookup)
        self.text: list[str] = []
        self._write = write
        self.exit_requested = False
        self.in_end = False             # END is running: its output prints even after exit()
        self.lost = 0
        self._fast: dict[int, Callable[[bytes], str]] = {}

    # -- output --------------------------------------------------------------------------

    def emit(self, s: str) -> None:
        if not s:
            return
        self.text.append(s)
        if self._write is not None:
            self._write(s)

    def output(self) -> str:
        return "".join(self.text)

    # -- events --------------------------------------------------------------------------

    def handle(self, data: bytes) -> None:
        """One ring-buffer record: ``u64 id`` then the event's arguments."""
        if len(data) < 8 or (self.exit_requested and not self.in_end):
            return          # bpftrace prints nothing a probe wrote after exit() (until END)
        eid = struct.unpack_from("<Q", data)[0]
        if eid >= len(self.res.events):
            return
        ev = self.res.events[eid]
        k = ev.kind
        if k == "exit":
            self.exit_requested = True
        elif k == "printf":
            fast = self._fast.get(eid)
            if fast is None:
                fast = self._fast[eid] = self.compile_printf(ev)
            self.emit(self.fmt.message("printf", fast(data)))
        elif k in ("system", "cat"):
            vals = [printf_arg(decode(t, data, off, self.resolver)) for off, t in ev.args]
            s = format_printf(ev.fmt, vals)
            if k == "system":
                self.emit(self.fmt.message("syscall", self.run_system(s)))
            else:
                self.emit(self.fmt.message("cat", self.cat_file(s)))
        elif k == "print_value":
            off, t = ev.args[0]
            v = decode(t, data, off, self.resolver)
            self.emit(self.fmt.value(text(v), json_value(v)))
        elif k == "print_map":
            self.emit(self.print_map(ev.map, ev.top, ev.div))
        elif k == "clear":
            self.clear_map(ev.map)
        elif k == "zero":
            self.zero_map(ev.map)
        elif k == "time":
            self.emit(self.fmt.message("time", time.strftime(ev.fmt, time.localtime())))
        elif k == "join":
            parts = []
            for i in range(JOIN_ARGNUM):
                raw = data[8 + i * JOIN_ARGSIZE:8 + (i + 1) * JOIN_ARGSIZE]
                s = raw.split(b"\0", 1)[0]
                if not s:
                    break
                parts.append(s.decode("utf-8", "backslashreplace"))
            self.emit(self.fmt.message("join", ev.fmt.join(parts) + "\n"))

    def compile_printf(self, ev) -> Callable[[bytes], str]:
        """A formatter for one printf call site: integer arguments unpacked with one
        struct format, the format string split once (the output path's hot loop)."""
        ints = all(t.kind in ("int", "ptr") for _, t in ev.args)
        if not ints:
            def slow(data: bytes) -> str:
                return format_printf(ev.fmt, [printf_arg(decode(t, data, off, self.resolver))
                                              for off, t in ev.args])
            return slow
        compiled = integer_printf(ev.fmt, [off for off, _ in ev.args])
        if compiled is not None:
            st, pyfmt = compiled

            def fastest(data: bytes) -> str:
                return pyfmt % st.unpack_from(data)
            return fastest
        st = struct.Struct("<" + "".join("q" if t.kind == "int" and t.signed else "Q"
                                         for _, t in ev.args))
        first = ev.args[0][0] if ev.args else 8
        fmt = ev.fmt

        def fast(data: bytes) -> str:
            return format_printf(fmt, list(st.unpack_from(data, first)))
        return fast

    def lost_events(self) -> int:
        m = self.bpf_maps.get(LOST_MAP)
        if m is None:
            return 0
        try:
            return struct.unpack_from("<Q", bytes(m.raw_lookup(bytes(4))))[0]
        except (KeyError, OSError):
            return 0

    def run_system(self, cmd: str) -> str:
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout
        except OSError as e:
            return f"system: {e}\n"

    def cat_file(self, path: str) -> str:
        try:
            with open(path, errors="backslashreplace") as f:
                return f.read(10240)
        except OSError as e:
            print(f"ERROR: failed to open file '{path}': {os.strerror(e.errno or 0)}",
                  file=sys.stderr)
            return ""

    # -- maps ----------------------------------------------------------------------------

    def entries(self, spec: MapSpec) -> list[MapEntry]:
        m = self.bpf_maps.get(spec.name)
        if m is None:
            return []
        value = spec.value
        kind = value.kind if value is not None else "int"
        esize = (spec.value_size + 7) // 8 * 8
        out: dict[bytes, MapEntry] = {}
        for raw_key in list(m.raw_keys()):
            try:
                raw = bytes(m.raw_lookup(raw_key))
            except (KeyError, OSError):
                continue
            user = raw_key[:spec.key_size - 8] if spec.bucketed else raw_key
            key = tuple(decode(t, user, off, self.resolver) for off, t in spec.key_parts)
            cpus = [raw[i:i + esize] for i in range(0, len(raw), esize)] if spec.percpu \
                else [raw]
            if spec.bucketed:
                bucket = struct.unpack_from("<Q", raw_key, spec.key_size - 8)[0]
                e = out.setdefault(user, MapEntry(key, {}))
                e.value[bucket] = e.value.get(bucket, 0) + sum(
                    struct.unpack_from("<Q", c)[0] for c in cpus)
                continue
            out[raw_key] = MapEntry(key, self.combine(kind, value, cpus))
        return list(out.values())

    def combine(self, kind: str, value, cpus: list[bytes]) -> Any:
        if kind == "count":
            return sum(struct.unpack_from("<Q", c)[0] for c in cpus)
        if kind == "sum":
            return sum(struct.unpack_from("<q" if value.signed else "<Q", c)[0] for c in cpus)
        if kind in ("min", "max"):
            vals = [struct.unpack_from("<q" if value.signed else "<Q", c)[0] for c in cpus
                    if struct.unpack_from("<Q", c, 8)[0]]
            if not vals:
                return 0
            return min(vals) if kind == "min" else max(vals)
        if kind in ("avg", "stats"):
            total = sum(struct.unpack_from("<q" if value.signed else "<Q", c)[0] for c in cpus)
            count = sum(struct.unpack_from("<Q", c, 8)[0] for c in cpus)
            return (count, total)
        return decode(value, cpus[0], 0, self.resolver)

    def key_text(self, key: tuple) -> str:
        if not key:
            return ""
        return "[" + ", ".join(text(k, indent=STACK_INDENT_MAP) for k in key) + "]"

    def print_map(self, name: str, top: int = 0, div: int = 0) -> str:
        spec = self.res.maps.get(name)
        if spec is None:
            return ""
        value = spec.value
        kind = value.kind if value is not None else "int"
        params = value.params if value is not None else ()
        return self.fmt.map(name, kind, params, self.entries(spec), self.key_text,
                            lambda v: text(v, indent=STACK_INDENT_MAP), json_value,
                            lambda k: ",".join(text(x) for x in k), top, div)

    def print_maps(self) -> None:
        """Every map, in name order, as bpftrace prints them at exit."""
        for spec in self.script.user_maps:
            self.emit(self.print_map(spec.name))

    def finish_output(self) -> None:
        """What bpftrace writes after END: two empty lines, then the maps."""
        self.emit("\n\n")
        self.print_maps()

    def clear_map(self, name: str) -> None:
        m = self.bpf_maps.get(name)
        if m is None:
            return
        for k in list(m.raw_keys()):
            try:
                m.delete(k)
            except (KeyError, OSError):
                pass

    def zero_map(self, name: str) -> None:
        m = self.bpf_maps.get(name)
        spec = self.res.maps.get(name)
        if m is None or spec is None:
            return
        size = ((spec.value_size + 7) // 8 * 8) * (self.ncpus(m) if spec.percpu else 1)
        for k in list(m.raw_keys()):
            try:
                self.raw_update(m, k, bytes(size))
            except (KeyError, OSError):
                pass

    def ncpus(self, m) -> int:
        return getattr(m, "ncpus", 1)

    def raw_update(self, m, key: bytes, value: bytes) -> None:
        if hasattr(m, "raw_update"):
            m.raw_update(key, value)
        else:
            m.update(key, value)

    # -- Python values of maps -----------------------------------------------------------

    @property
    def maps(self) -> "MapsView":
        """``t.maps["@name"]``: a map as Python values (see :meth:`map_value`)."""
        return MapsView(self)

    def map_value(self, name: str) -> Any:
        """A map as Python values: a scalar for a map without keys, else a dict (keys are
        tuples for multi-part keys); hist/lhist give {bucket label: count}."""
        spec = self.res.maps.get(name)
        if spec is None:
            raise KeyError(f"no map {name!r} in the script")
        value = spec.value
        kind = value.kind if value is not None else "int"
        out: dict[Any, Any] = {}
        for e in self.entries(spec):
            v = e.value
            if kind in ("hist", "lhist"):
                lo, hi, step = value.params if kind == "lhist" else (0, 0, 1)
                v = {(log2_label(i) if kind == "hist" else lhist_label(i, lo, hi, step)): c
                     for i, c in sorted(v.items())}
            elif kind in ("avg",):
                count, total = v
                v = total // count if count else 0
            elif kind == "stats":
                count, total = v
                v = {"count": count, "average": total // count if count else 0, "total": total}
            else:
                v = json_value(v)
            key = tuple(json_value(k) for k in e.key)
            if not spec.key_parts:
                return v
            out[key[0] if len(key) == 1 else key] = v
        if not spec.key_parts:
            return None
        return out

    def print_log2_hist(self, name: str) -> None:
        """A histogram map's buckets, printed (BCC's ``table.print_log2_hist()``)."""
        self.emit(self.hist_text(name))

    def hist_text(self, name: str) -> str:
        """A histogram's bucket lines (BCC's print_log2_hist shape: label, count, bar)."""
        spec = self.res.maps[name]
        value = spec.value
        out = []
        for e in self.entries(spec):
            label = (log2_label if value.kind == "hist" else
                     (lambda i, p=value.params: lhist_label(i, *p)))
            out.append(hist_lines(e.value, label))
        return "".join(out)



class MapsView:
    def __init__(self, session: Session):
        self.s = session

    def __getitem__(self, name: str) -> Any:
        return self.s.map_value(name)

    def __contains__(self, name: str) -> bool:
        return name in self.s.res.maps and name.startswith("@")

    def __iter__(self):
        return iter([m.name for m in self.s.script.user_maps])

    def keys(self) -> list[str]:
        return list(self)

    def items(self) -> list[tuple[str, Any]]:
        return [(n, self[n]) for n in self]
