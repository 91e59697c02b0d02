"""Ids for live objects, process-wide: Linux's ``map_idr`` in miniature.

A map gets its id when it is created and gives it up when it is closed or
garbage-collected (entries are weak references: an id never keeps an object
alive).  Whoever holds only an id -- the verifier resolving ``map[id:N]``, a
``BPF_MAP_GET_FD_BY_ID``-style lookup -- finds the object here without
importing the package that made it.  Ids count up from 1 and are not reused.
"""
from __future__ import annotations

import itertools
import threading
import weakref
from typing import Generic, TypeVar

T = TypeVar("T")


class Idr(Generic[T]):
    """Weakly held objects by id (``idr_alloc_cyclic`` / ``idr_find`` / ``idr_remove``)."""

    def __init__(self) -> None:
        self._next = itertools.count(1)
        self._live: weakref.WeakValueDictionary[int, T] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def register(self, obj: T) -> int:
        """A new id for ``obj``."""
        with self._lock:
            oid = next(self._next)
            self._live[oid] = obj
        return oid

    def get(self, oid: int) -> T | None:
        """The live object with id ``oid``, or None."""
        return self._live.get(oid)

    def remove(self, oid: int) -> None:
        with self._lock:
            self._live.pop(oid, None)

    def live(self) -> list[T]:
        """Every live object, in id order."""
        with self._lock:
            items = sorted(self._live.items())
        return [obj for _, obj in items]


#: every live map (ebee.maps.Map)
map_idr: Idr = Idr()
