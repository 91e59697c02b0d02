"""Memory layouts: one home for every structure the runtime lays out in memory.

:mod:`.kernel` has the kernel structures behind program contexts
(``sk_buff``, ``xdp_buff``, ``sock``, ...); :mod:`.maps` the maps' handle
and hash-table internals (docs/maps-layout.md).  Both are :class:`Layout`
values, from which rewrites, packers and the JIT's IR take their offsets.
"""
from .layout import Layout

__all__ = ["Layout"]
