"""Helpers ebee's runtime does not implement, though the verifier knows their prototypes.

A program that calls one of these verifies as it does in Linux (the
prototypes are in ``ebee.protos.helpers``); running the call raises
:class:`VMError` ("helper ... is not implemented by ebee"), the message the
engines give for any helper without an implementation.  They are registered
here, rather than left out, so that every engine path that asks whether a
helper id exists (``callx`` to a helper id included) answers as it does for
the implemented ones.
"""
from __future__ import annotations

from ..errors import VMError
from ..uapi import helper_name
from ..uapi import FuncId as F
from .registry import Impl, implements

UNIMPLEMENTED = (
    F.perf_event_read, F.skb_get_tunnel_opt, F.skb_set_tunnel_opt, F.skb_under_cgroup,
    F.probe_write_user, F.current_task_under_cgroup, F.get_socket_cookie, F.setsockopt,
    F.sock_map_update, F.perf_event_read_value, F.perf_prog_read_value, F.getsockopt,
    F.override_return, F.sock_ops_cb_flags_set, F.get_netns_cookie, F.skc_to_tcp_sock,
)


def _unimplemented(fid: F) -> Impl:
    why = f"helper {helper_name(fid)}#{int(fid)} is not implemented by ebee"

    def impl(m, *_):
        raise VMError(why)
    return impl


for _fid in UNIMPLEMENTED:
    implements(_fid)(_unimplemented(_fid))
