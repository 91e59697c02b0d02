"""How a verification fails: an exception carrying the kernel's errno and final log line."""
from __future__ import annotations

import errno as _errno

EACCES = _errno.EACCES
EINVAL = _errno.EINVAL
E2BIG = _errno.E2BIG
EFAULT = _errno.EFAULT
EPERM = _errno.EPERM
EPROTO = _errno.EPROTO
ENOENT = _errno.ENOENT
ESRCH = _errno.ESRCH
EOPNOTSUPP = _errno.EOPNOTSUPP


class VerifierReject(Exception):
    """The program is unsafe (or malformed); ``msg`` is the kernel's last log line."""

    def __init__(self, msg: str, errno: int = EACCES):
        super().__init__(msg)
        self.msg = msg
        self.errno = errno
