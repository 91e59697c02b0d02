"""Helpers of sockops and sk_msg programs over ebee's modelled sockets
(``ebee.sockets``): bpf_sock_map_update, bpf_sock_hash_update, bpf_sock_ops_cb_flags_set,
bpf_msg_redirect_map/hash, bpf_msg_apply_bytes, bpf_msg_cork_bytes, bpf_msg_pull_data,
bpf_msg_push_data, bpf_msg_pop_data (ebee.sockets.skmsg), and
sk_skb's bpf_sk_redirect_map/hash (net/core/sock_map.c, net/core/filter.c).

The context object of the run (``cpu.progctx.ctx_obj``) is the stack's
:class:`~ebee.sockets.SockOpsCall` or :class:`~ebee.sockets.MsgCall`.
"""
from __future__ import annotations

import errno as E

from ..errors import VMError
from ..sockets import MsgCall, SkbCall, SockOpsCall, redirect_allowed, suitable
from ..uapi import (BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_ALL_CB_FLAGS,
                    BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, BPF_SOCK_OPS_TCP_LISTEN_CB,
                    FuncId as F, MapType)
from .maps import map_of
from .registry import implements

M64 = (1 << 64) - 1
SK_DROP, SK_PASS = 0, 1
BPF_F_INGRESS = 1


def _neg(e: int) -> int:
    return -e & M64


def _call(m, kind):
    pc = m.progctx
    obj = pc.ctx_obj if pc is not None else None
    if not isinstance(obj, kind):
        raise VMError(f"this helper needs a {kind.__name__} context: run the program from "
                      f"ebee.testrun.sockets")
    return obj


def _sock_map_op_okay(op: int) -> bool:
    return op in (BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB,
                  BPF_SOCK_OPS_TCP_LISTEN_CB)


def _update(m, ctx, mp, key, flags, want: MapType):
    call = _call(m, SockOpsCall)
    mp = map_of(mp)
    if mp.type is not want:
        raise VMError(f"map {mp.id} is not a {want.name} (the verifier rejects this call)")
    if not (call.is_fullsock and suitable(call.sock) and _sock_map_op_okay(call.op)):
        return _neg(E.EOPNOTSUPP)
    # no state check: PASSIVE_ESTABLISHED runs while the child is still SYN_RECV
    r = mp.prog_update_sock(m.read(key, mp.key_size), call.sock.addr, flags, checked=False)
    return r & M64


@implements(F.sock_map_update)
def sock_map_update(m, ctx, mp, key, flags, *_):
    return _update(m, ctx, mp, key, flags, MapType.SOCKMAP)


@implements(F.sock_hash_update)
def sock_hash_update(m, ctx, mp, key, flags, *_):
    return _update(m, ctx, mp, key, flags, MapType.SOCKHASH)


@implements(F.sock_ops_cb_flags_set)
def sock_ops_cb_flags_set(m, ctx, argval, *_):
    call = _call(m, SockOpsCall)
    if not call.is_fullsock:
        return _neg(E.EINVAL)
    v = argval & 0xFFFFFFFF
    call.set_cb_flags(v & BPF_SOCK_OPS_ALL_CB_FLAGS)
    return (v & ~BPF_SOCK_OPS_ALL_CB_FLAGS) & 0xFFFFFFFF


def _redirect(m, mp, key_bytes_of, flags, want: MapType, kind=MsgCall):
    call = _call(m, kind)
    mp = map_of(mp)
    if mp.type is not want:
        raise VMError(f"map {mp.id} is not a {want.name} (the verifier rejects this call)")
    if flags & ~BPF_F_INGRESS:
        return SK_DROP
    sk = mp.lookup_socket(key_bytes_of(mp))
    if sk is None or not redirect_allowed(sk):
        return SK_DROP
    if not flags & BPF_F_INGRESS and not sk.is_tcp:
        return SK_DROP
    call.flags, call.sk_redir = flags, sk
    return SK_PASS


@implements(F.msg_redirect_map)
def msg_redirect_map(m, msg, mp, key, flags, *_):
    return _redirect(m, mp, lambda _m: (key & 0xFFFFFFFF).to_bytes(4, "little"), flags,
                     MapType.SOCKMAP)


@implements(F.msg_redirect_hash)
def msg_redirect_hash(m, msg, mp, key, flags, *_):
    return _redirect(m, mp, lambda mm: m.read(key, mm.key_size), flags, MapType.SOCKHASH)


@implements(F.msg_apply_bytes)
def msg_apply_bytes(m, msg, nbytes, *_):
    _call(m, MsgCall).apply_bytes = nbytes & 0xFFFFFFFF
    return 0


@implements(F.msg_cork_bytes)
def msg_cork_bytes(m, msg, nbytes, *_):
    _call(m, MsgCall).cork_bytes = nbytes & 0xFFFFFFFF
    return 0


@implements(F.msg_pull_data)
def msg_pull_data(m, msg, start, end, flags, *_):
    return _call(m, MsgCall).pull(start, end, flags) & M64


@implements(F.msg_push_data)
def msg_push_data(m, msg, start, length, flags, *_):
    return _call(m, MsgCall).push(start, length, flags) & M64


@implements(F.msg_pop_data)
def msg_pop_data(m, msg, start, length, flags, *_):
    return _call(m, MsgCall).pop(start, length, flags) & M64


@implements(F.sk_redirect_map)
def sk_redirect_map(m, skb, mp, key, flags, *_):
    return _redirect(m, mp, lambda _m: (key & 0xFFFFFFFF).to_bytes(4, "little"), flags,
                     MapType.SOCKMAP, SkbCall)


@implements(F.sk_redirect_hash)
def sk_redirect_hash(m, skb, mp, key, flags, *_):
    return _redirect(m, mp, lambda mm: m.read(key, mm.key_size), flags, MapType.SOCKHASH,
                     SkbCall)
