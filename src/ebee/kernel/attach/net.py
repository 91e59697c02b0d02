"""XDP and tc programs on network devices.

XDP attaches as a BPF link (LINK_CREATE, BPF_XDP; Linux 5.9+), which detaches
when its fd closes, or through netlink (``link=False``, or where links are
missing), which the exit hooks undo.  tc programs attach as tcx links
(Linux 6.6+) or as direct-action cls_bpf filters on a clsact qdisc that is
created if needed and removed again if we created it.
"""
from __future__ import annotations

import errno
import os

from ...uapi import (TC_H_CLSACT, TC_H_MIN_EGRESS, TC_H_MIN_INGRESS, XDP_FLAGS_DRV_MODE,
                     XDP_FLAGS_HW_MODE, XDP_FLAGS_REPLACE, XDP_FLAGS_SKB_MODE,
                     XDP_FLAGS_UPDATE_IF_NOEXIST, AttachType)
from ..links import CallbackAttachment, Link
from ..netns import Pinned
from . import netlink

XDP_MODES = {None: 0, "": 0, "skb": XDP_FLAGS_SKB_MODE, "generic": XDP_FLAGS_SKB_MODE,
             "xdpgeneric": XDP_FLAGS_SKB_MODE, "drv": XDP_FLAGS_DRV_MODE,
             "native": XDP_FLAGS_DRV_MODE, "xdpdrv": XDP_FLAGS_DRV_MODE,
             "hw": XDP_FLAGS_HW_MODE, "offload": XDP_FLAGS_HW_MODE,
             "xdpoffload": XDP_FLAGS_HW_MODE}


def xdp_flags(mode: str | None) -> int:
    try:
        return XDP_MODES[mode]
    except KeyError:
        raise ValueError(f"XDP mode {mode!r}: expected skb (generic), drv (native) or "
                         f"hw (offload)") from None


def xdp(prog, iface: str | int, *, mode: str | None = None, link: bool = True,
        replace: bool = False):
    """Attach an XDP program to ``iface`` in ``mode`` (None: native where the driver
    supports it, else generic)."""
    idx = netlink.ifindex(iface)
    flags = xdp_flags(mode)
    target = f"xdp/{iface}" + (f" ({mode})" if mode else "")
    if link:
        try:
            return Link.create(prog.fd, idx, AttachType.XDP, flags=flags, program=prog,
                               target=target)
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise OSError(e.errno, f"XDP on {iface}: a program is already attached "
                                       f"(detach it first)") from None
            if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
    # netlink: refuse to silently replace what someone else attached, unless asked
    nl_flags = flags | (0 if replace else XDP_FLAGS_UPDATE_IF_NOEXIST)
    netlink.xdp_set(idx, prog.fd, nl_flags)
    prog_id = prog.info(map_ids=False).id

    ns = Pinned()

    def undo():
        # only remove our program (XDP_FLAGS_REPLACE + the expected fd), in its namespace
        try:
            with ns.entered():
                try:
                    netlink.xdp_set(idx, -1, flags | XDP_FLAGS_REPLACE, expected_fd=prog.fd)
                except OSError:
                    state = netlink.xdp_query(idx)
                    if prog_id and prog_id in (state.prog_id, state.skb_prog_id,
                                               state.drv_prog_id):
                        netlink.xdp_set(idx, -1, flags)
        finally:
            ns.close()
    return CallbackAttachment(undo, prog, target)


TC_DIRECTIONS = {"ingress": (AttachType.TCX_INGRESS, TC_H_MIN_INGRESS),
                 "egress": (AttachType.TCX_EGRESS, TC_H_MIN_EGRESS)}


def tc(prog, iface: str | int, direction: str = "ingress", *, tcx: bool = True,
       priority: int = 0, handle: int = 0):
    """Attach a tc (sched_cls) program on ``iface``'s ingress or egress."""
    try:
        attach_type, minor = TC_DIRECTIONS[direction]
    except KeyError:
        raise ValueError(f"tc direction {direction!r}: expected ingress or egress") from None
    idx = netlink.ifindex(iface)
    target = f"tc/{iface}/{direction}"
    if tcx:
        try:
            return Link.create(prog.fd, idx, attach_type, program=prog, target=target)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
    key = (os.stat("/proc/thread-self/ns/net").st_ino, idx)
    if netlink.qdisc_clsact(idx, create=True):
        _our_clsact[key] = 0
    if key in _our_clsact:
        _our_clsact[key] += 1
    try:
        f = netlink.tc_filter_add(idx, netlink.tc_handle(TC_H_CLSACT >> 16, minor), prog.fd,
                                  prog.name or "ebee", priority=priority,
                                  handle=handle)
    except BaseException:
        _release_clsact(key)
        raise

    ns = Pinned()

    def undo():
        try:
            with ns.entered():
                try:
                    netlink.tc_filter_del(f)
                finally:
                    _release_clsact(key)
        finally:
            ns.close()
    return CallbackAttachment(undo, prog, target)


# clsact qdiscs this process created, by (netns inode, ifindex) -> how many of our filters
# use each; the qdisc goes with the last of them (one that was there before us stays)
_our_clsact: dict[tuple[int, int], int] = {}


def _release_clsact(key: tuple[int, int]) -> None:
    if key not in _our_clsact:
        return
    _our_clsact[key] -= 1
    if _our_clsact[key] <= 0:
        del _our_clsact[key]
        try:
            netlink.qdisc_clsact(key[1], create=False)
        except OSError:
            pass
