"""Pinned programs and maps brought back into this process (``bpf_obj_get``)."""
from __future__ import annotations

from typing import Any

from .. import uapi as U
from ..fs import PinError, PinnedProgram, PinStore, default_store
from .object import load


def get_pinned(path: str, *, store: PinStore | None = None) -> Any:
    """The map or program pinned at ``path`` (``bpf_obj_get``); PinError(ENOENT) if none.

    A program pinned by another process is loaded again from its object's pinned bytes,
    with its maps taken from the same store (their pins), as bpffs keeps them alive."""
    st = store or default_store()
    got = st.get(path)
    if not isinstance(got, PinnedProgram):
        return got
    obj = load(got.object, store=st)
    prog = obj.programs.get(got.name)
    if prog is None:
        raise PinError(2, f"{got.path}: program {got.name!r} not in its object")
    if prog.type is U.ProgType.UNSPEC:
        prog.type = got.type
    obj.path = got.object_path or obj.path
    st.adopt_program(got.path, prog)
    return prog
