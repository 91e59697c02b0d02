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


def _unimplemented(fid: F) -> Impl:
    why = f"helper {helper_name(fid)}#{int(fid)} is not implemented by ebee"
    if fid in CANNOT:
        why += f" ({CANNOT[fid].split(';')[0]})"

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
