"""bpftool's object selectors over ebee's pin store: ``id N``, ``pinned PATH``,
``name NAME``, ``tag TAG`` (programs), a bare number (an id) or a path.

A store's objects are its pins, so a pin's id is its row in the store (stable while
the pin exists), as bpffs objects have the kernel's ids.  The CLI formats what these
functions find; the grammar is bpftool's (``prog show name fw``, ``map dump id 3``).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..fs import PinStore, normpath

KEYWORDS = ("id", "pinned", "name", "tag")


class SelectError(ValueError):
    """A selector that names nothing or is malformed: one line for the user."""


@dataclass(frozen=True)
class Pinned:
    """One pin of the store: its id, path, kind (``prog`` or ``map``) and attributes."""
    id: int
    path: str
    kind: str
    meta: dict
    created: float


def pinned(store: PinStore, kind: str | None = None, prefix: str = "/") -> list[Pinned]:
    """The store's pins of ``kind`` (all kinds if None) under ``prefix``, by id."""
    pfx = "" if prefix in ("", "/") else normpath(prefix)
    return [Pinned(i, p, k, m, c) for i, p, k, m, c in store.entries()
            if (kind is None or k == kind) and (not pfx or p == pfx or p.startswith(pfx + "/"))]


def select(store: PinStore, kind: str, tokens: list[str], *,
           prefix_ok: bool = False) -> tuple[list[Pinned], list[str]]:
    """The pins of ``kind`` that bpftool's selector at the head of ``tokens`` names, and
    the tokens after it.  ``prefix_ok``: a bare path may be a directory of pins
    (``prog show /sys/fs/bpf/dir``).  SelectError if the selector names no ``kind``."""
    if not tokens:
        raise SelectError(f"expected a {kind}: id N | pinned PATH | name NAME"
                          + (" | tag TAG" if kind == "prog" else ""))
    t, rest = tokens[0], tokens[1:]
    if t in KEYWORDS:
        if not rest:
            raise SelectError(f"expected a value after '{t}'")
        v, rest = rest[0], rest[1:]
    elif t.isdigit():
        t, v = "id", t
    else:
        t, v = "path", t
    if t == "tag" and kind != "prog":
        raise SelectError(f"a {kind} cannot be selected by tag")
    every = pinned(store)
    if t == "id":
        try:
            n = int(v, 0)
        except ValueError:
            raise SelectError(f"invalid id {v!r}") from None
        got = [p for p in every if p.id == n]
        if got and got[0].kind != kind:
            raise SelectError(f"id {n} is a {got[0].kind}, not a {kind}")
        if not got:
            raise SelectError(f"no {kind} with id {n}")
        return got, rest
    if t in ("pinned", "path"):
        p = normpath(v)
        exact = [x for x in every if x.path == p]
        if exact:
            if exact[0].kind != kind:
                raise SelectError(f"{v}: pinned object is a {exact[0].kind}, not a {kind}")
            return exact, rest
        if prefix_ok and t == "path":
            under = [x for x in every if x.kind == kind and x.path.startswith(p + "/")]
            if under:
                return under, rest
        raise SelectError(f"{v}: No such file or directory (no pinned {kind})")
    if t == "name":
        # bpftool compares the kernel's name, which keeps 15 characters
        got = [x for x in every if x.kind == kind and x.meta.get("name", "")[:15] == v[:15]]
    else:
        got = [x for x in every if x.kind == kind and x.meta.get("tag") == v.lower()]
    if not got:
        raise SelectError(f"no {kind} with {t} {v!r}")
    return got, rest


__all__ = ["KEYWORDS", "Pinned", "SelectError", "pinned", "select"]
