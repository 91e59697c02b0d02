"""Map errors: ``OSError`` subclasses carrying the kernel's errno.

A missing key is also a ``KeyError``, so dict-style code (``m[k]``,
``except KeyError``) works as it does with a dict.
"""
from __future__ import annotations

import errno as E
import os

from ..errors import BpfOSError
from ..uapi import ENOTSUPP


class MapError(BpfOSError):
    """A map operation failed; ``errno`` is what Linux returns for it."""


class MapKeyError(MapError, KeyError):
    """ENOENT: no such element (also a KeyError)."""

    def __str__(self) -> str:   # KeyError would quote the message
        return OSError.__str__(self)


def strerror(code: int) -> str:
    if code == ENOTSUPP:
        return "Unknown error 524 (ENOTSUPP)"
    return os.strerror(code)


def map_error(code: int, detail: str | None = None) -> MapError:
    msg = strerror(code) + (f": {detail}" if detail else "")
    return (MapKeyError if code == E.ENOENT else MapError)(code, msg)
