"""A C structure as named fields: offsets and sizes, and the ``struct`` format they give.

Every structure the runtime keeps in memory for programs or native code to
read -- the kernel structures behind a context (:mod:`.kernel`) and the
maps' own handle and tables (:mod:`.maps`) -- is written down once, as a
:class:`Layout`.  Rewrites, the interpreter's Python side and the JIT's IR
all take their offsets from it; packers derive their formats from it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

_INT_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


@dataclass(frozen=True)
class Layout:
    """A structure as the runtime models it: name, size, member offsets and sizes.

    A member of size 0 is a flexible array member (C's ``char key[]``): it
    starts at its offset and has the length the structure's owner gives it.
    """
    name: str
    size: int
    members: dict[str, tuple[int, int]] = field(default_factory=dict)

    def off(self, member: str) -> int:
        return self.members[member][0]

    def size_of(self, member: str) -> int:
        return self.members[member][1]

    def packer(self, *names: str) -> struct.Struct:
        """A little-endian ``struct.Struct`` for integer members, in offset order.

        Without ``names`` it covers the whole structure (every sized member);
        with them, the bytes from the first named member to the end of the
        last, to pack at ``off(first)``.  Bytes between the members packed are
        zero padding (``x``), so the members must not overlap.
        """
        whole = not names
        chosen = [m for m, (_o, s) in self.members.items() if s] if whole else list(names)
        spans = sorted(self.members[m] + (m,) for m in chosen)
        start = 0 if whole else spans[0][0]
        fmt, pos = "<", start
        for off, size, name in spans:
            if off < pos or size not in _INT_FORMATS:
                raise ValueError(f"{self.name}.{name} cannot be packed as an integer at {off}")
            fmt += "x" * (off - pos) + _INT_FORMATS[size]
            pos = off + size
        if whole:
            fmt += "x" * (self.size - pos)
        return struct.Struct(fmt)
