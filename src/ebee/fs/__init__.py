"""Pinning: a bpffs equivalent whose objects outlive the process (see :mod:`.store`).

``ebee.pin(path, map_or_program)``, ``ebee.unpin(path)`` (and the session's
``ebee.get_pinned(path)``) use the default store (``$EBEE_PIN_STORE`` or a per-user file under
``$XDG_STATE_HOME/ebee``); :class:`PinStore` opens any other.
"""
from __future__ import annotations

from ..maps import Map
from .store import (ENV_VAR, PinError, PinnedProgram, PinStore, default_location, default_store,
                    normpath, persisted_elements, prog_tag, release_default, sync_all,
                    sync_maps)


def pin(path: str, obj, *, store: PinStore | None = None) -> None:
    """Pin a live map or program at ``path`` (``bpf_obj_pin``)."""
    st = store or default_store()
    if isinstance(obj, Map):
        st.pin_map(path, obj)
    else:
        st.pin_program(path, obj)


def unpin(path: str, *, store: PinStore | None = None) -> None:
    """Remove the pin at ``path`` (``unlink`` in bpffs)."""
    (store or default_store()).unpin(path)


def sync(*, store: PinStore | None = None) -> None:
    """Write program-side changes of pinned maps to the store now."""
    if store is not None:
        store.sync()
    else:
        sync_all()


__all__ = ["ENV_VAR", "PinError", "PinnedProgram", "PinStore", "default_location",
           "default_store", "normpath", "persisted_elements", "pin", "prog_tag", "release_default", "sync",
           "sync_all", "sync_maps", "unpin"]
