"""Helpers ebee's runtime does not implement, though the verifier knows their prototypes.

Every helper of the generated table (``ebee.protos.helpers``) verifies as it does in
Linux; those without an implementation here are registered, last, with one that raises
:class:`VMError` ("helper ... is not implemented by ebee"), so that every engine path
that asks whether a helper id exists (``callx`` to a helper id included) answers as it
does for the implemented ones.  :data:`CANNOT` are the few that have no meaning
outside the kernel, with why (docs/helpers.md shows them).
"""
from __future__ import annotations

from ..errors import VMError
from ..protos.helpers import HELPERS
from ..uapi import FuncId as F
from ..uapi import helper_name
from .registry import REGISTRY, Impl, implements

#: helpers user space cannot give a meaning to: why, and what ebee does instead
CANNOT: dict[F, str] = {
    F.ima_inode_hash: "the hash IMA (the kernel's integrity subsystem) measured for an inode; "
                      "there is no IMA outside the kernel. The program verifies; the call "
                      "raises VMError.",
    F.ima_file_hash: "as ima_inode_hash, for an open file.",
    F.bprm_opts_set: "sets flags of the linux_binprm of an execve() in progress (bprm LSM "
                     "hooks); ebee runs no execve. The program verifies; the call raises "
                     "VMError.",
    F.tcp_send_ack: "makes the kernel's TCP stack send an ACK on a connection a "
                    "tcp_congestion_ops program controls; ebee has no TCP state machine. The "
                    "program verifies; the call raises VMError.",
}

_NO_SOCKET_RUNTIME = ("ebee has no runtime for {} programs (the kernel cannot test-run them "
                      "either); the program verifies, the call raises VMError.")

#: helpers user space could give a meaning to that ebee does not implement yet: why
NOT_YET: dict[F, str] = {
    **dict.fromkeys((F.setsockopt, F.getsockopt), "socket options of the hook's socket; "
                    "ebee's modelled sockets (ebee.sockets) keep no socket options yet, and "
                    + _NO_SOCKET_RUNTIME.format("cgroup_sock_addr and cgroup_sockopt")),
    F.perf_prog_read_value: "the counter of the perf event that fired; ebee's synthetic "
                            "perf_event runs (testrun.run_event) carry no counter yet.",
    **dict.fromkeys((F.load_hdr_opt, F.store_hdr_opt,
                     F.reserve_hdr_opt), "TCP header options seen and written by sock_ops "
                    "callbacks; ebee's loopback TCP (ebee.sockets) carries no options yet."),
    F.bind: "binds the connecting socket; " + _NO_SOCKET_RUNTIME.format("cgroup_sock_addr"),
    F.lwt_push_encap: "pushes an IP or SRv6 encapsulation and re-routes the packet; ebee's "
                      "LWT test runs have no route (dst) to redo yet.",
    **dict.fromkeys((F.lwt_seg6_store_bytes, F.lwt_seg6_adjust_srh, F.lwt_seg6_action),
                    "edit the SRH of an SRv6 End.BPF action (the per-CPU "
                    "seg6_bpf_srh_state); ebee does not model seg6local processing."),
    F.sk_select_reuseport: "picks a socket of a REUSEPORT_SOCKARRAY for an incoming "
                           "packet; " + _NO_SOCKET_RUNTIME.format("sk_reuseport"),
    **dict.fromkeys((F.tcp_check_syncookie, F.tcp_gen_syncookie),
                    "need a listening TCP socket's syncookie state (its secret, backlog "
                    "and MSS table); ebee's modelled sockets have none. The raw variants "
                    "(bpf_tcp_raw_*_syncookie_*), which take no socket, are implemented."),
    **dict.fromkeys((F.d_path, F.sock_from_file), "need modelled files (struct path, "
                    "struct file); ebee models no VFS."),
    **dict.fromkeys((F.per_cpu_ptr, F.this_cpu_ptr), "take per-CPU kernel variables "
                    "(ksyms, BPF_PSEUDO_BTF_ID), of which ebee's memory holds no copy."),
    **dict.fromkeys((F.sys_bpf, F.sys_close), "run bpf() commands and close() on the "
                    "calling process's file descriptors; ebee's user-space objects have ids, "
                    "not descriptors."),
}


def _unimplemented(fid: F) -> Impl:
    why = f"helper {helper_name(fid)}#{int(fid)} is not implemented by ebee"
    reason = CANNOT.get(fid) or NOT_YET.get(fid)
    if reason:
        why += f" ({reason.split(';')[0]})"

    def impl(m, *_):
        raise VMError(why)
    return impl


#: the helpers with a prototype and no implementation (registered below)
UNIMPLEMENTED: frozenset[F] = frozenset(f for f in HELPERS if f not in REGISTRY)

for _fid in sorted(UNIMPLEMENTED):
    implements(_fid)(_unimplemented(_fid))


def implemented(fid: int) -> bool:
    """Whether ebee's runtime runs helper ``fid`` (not merely verifies calls to it)."""
    return fid in REGISTRY and fid not in UNIMPLEMENTED
