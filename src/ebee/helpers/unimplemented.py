"""Prototypes of helpers ebee's runtime does not implement.

The verifier checks every call against its helper's prototype, so a program
that calls one of these verifies as it does in Linux; running the call
raises :class:`VMError` ("helper ... is not implemented by ebee"), the
message the engines give for any helper without an implementation.
Prototypes are Linux 6.18's (kernel/bpf/helpers.c, net/core/filter.c,
kernel/trace/bpf_trace.c); where Linux has several variants per program
type, the networking one (context argument) is given.
"""
from __future__ import annotations

from ..errors import VMError
from ..uapi import FuncId as F
from .proto import Arg, Ret
from .registry import helper, helper_name


def _unimplemented(fid: F, ret: Ret, args: tuple[Arg, ...], *, gpl_only: bool = False,
                   ret_btf: str | None = None) -> None:
    why = f"helper {helper_name(fid)}#{int(fid)} is not implemented by ebee"

    def impl(m, *_):
        raise VMError(why)
    helper(fid, ret, args, gpl_only=gpl_only, ret_btf=ret_btf)(impl)


_CTX, _MAP, _ANY = Arg.PTR_TO_CTX, Arg.CONST_MAP_PTR, Arg.ANYTHING
_MEM, _UNINIT, _SIZE = Arg.PTR_TO_MEM, Arg.PTR_TO_UNINIT_MEM, Arg.CONST_SIZE

_unimplemented(F.perf_event_read, Ret.INTEGER, (_MAP, _ANY), gpl_only=True)
_unimplemented(F.skb_get_tunnel_opt, Ret.INTEGER, (_CTX, _UNINIT, _SIZE))
_unimplemented(F.skb_set_tunnel_opt, Ret.INTEGER, (_CTX, _MEM, _SIZE))
_unimplemented(F.skb_under_cgroup, Ret.INTEGER, (_CTX, _MAP, _ANY))
_unimplemented(F.probe_write_user, Ret.INTEGER, (_ANY, _MEM, _SIZE), gpl_only=True)
_unimplemented(F.current_task_under_cgroup, Ret.INTEGER, (_MAP, _ANY))
_unimplemented(F.get_socket_cookie, Ret.INTEGER, (_CTX,))
_unimplemented(F.setsockopt, Ret.INTEGER, (_CTX, _ANY, _ANY, _MEM, _SIZE))
_unimplemented(F.sock_map_update, Ret.INTEGER, (_CTX, _MAP, Arg.PTR_TO_MAP_KEY, _ANY))
_unimplemented(F.perf_event_read_value, Ret.INTEGER, (_MAP, _ANY, _UNINIT, _SIZE),
               gpl_only=True)
_unimplemented(F.perf_prog_read_value, Ret.INTEGER, (_CTX, _UNINIT, _SIZE), gpl_only=True)
_unimplemented(F.getsockopt, Ret.INTEGER, (_CTX, _ANY, _ANY, _UNINIT, _SIZE))
_unimplemented(F.override_return, Ret.INTEGER, (_CTX, _ANY), gpl_only=True)
_unimplemented(F.sock_ops_cb_flags_set, Ret.INTEGER, (_CTX, _ANY))
_unimplemented(F.get_netns_cookie, Ret.INTEGER, (Arg.PTR_TO_CTX_OR_NULL,))
_unimplemented(F.skc_to_tcp_sock, Ret.PTR_TO_BTF_ID_OR_NULL, (Arg.PTR_TO_BTF_ID_SOCK_COMMON,),
               ret_btf="tcp_sock")
