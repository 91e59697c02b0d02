"""``/proc/kallsyms``: the kernel's text symbols and the BPF programs' own.

bpftool names what a program calls from here: a helper call's ``imm`` is the
helper's address relative to ``__bpf_call_base``, and every JITed
(sub)program has a ``[bpf]`` symbol (``bpf_prog_<tag>_<name>``).  With
``kernel.kptr_restrict`` the addresses read as zero and nothing resolves.
"""
from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass

KALLSYMS = "/proc/kallsyms"
_TEXT_TYPES = "tTwW"


@dataclass(frozen=True)
class TextSymbols:
    """The kernel's text symbols, sorted by address."""
    call_base: int                 # __bpf_call_base, 0 if hidden
    addrs: tuple[int, ...]
    names: tuple[str, ...]

    def at(self, addr: int) -> str | None:
        """The symbol starting exactly at ``addr`` (the last one listed there)."""
        k = bisect.bisect_right(self.addrs, addr) - 1
        return self.names[k] if k >= 0 and self.addrs[k] == addr else None


@functools.lru_cache(maxsize=1)
def text_symbols() -> TextSymbols:
    """Kernel text (BPF programs left out): read once per process, as it does not change
    while modules stay loaded."""
    base, syms = 0, []
    try:
        with open(KALLSYMS) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or (len(parts) > 3 and parts[3] == "[bpf]"):
                    continue
                a = int(parts[0], 16)
                if parts[2] == "__bpf_call_base":
                    base = a
                if parts[1] in _TEXT_TYPES:
                    syms.append((a, parts[2]))
    except OSError:
        pass
    syms.sort()
    return TextSymbols(base, tuple(a for a, _ in syms), tuple(n for _, n in syms))


def bpf_symbols() -> dict[int, str]:
    """Address -> name of the BPF programs' symbols now (they come and go: not cached)."""
    out = {}
    try:
        with open(KALLSYMS) as f:
            for line in f:
                if line.endswith("[bpf]\n"):
                    parts = line.split()
                    out[int(parts[0], 16)] = parts[2]
    except OSError:
        pass
    return out
